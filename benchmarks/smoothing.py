"""Smoothing acceptance, long version of tests/edge/test_tracker.py (same code: tests/smoothing_clip.py).

Clips are made of real model outputs: FER-2013 PublicTest faces, each shown steadily with small
per-frame jitter (shift, rotation, scale, brightness, noise, blur) and classified frame by frame by
the embedded model; a change clip shows face A then a face B whose dominant class differs.

    python benchmarks/smoothing.py [--faces 40] [--seconds 20] [--pairs 30] [--model PATH]

Prints, per frame rate (and with dropped frames), raw argmax changes vs reported changes on steady
faces (acceptance: ratio >= 5) and the latency of reporting a real change (acceptance: <= 0.5 s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import smoothing_clip as C  # noqa: E402

from edgefer.edge.classifier import Classifier  # noqa: E402
from edgefer.edge.tracker import TrackerConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--npz", type=Path, default=ROOT.parent / "shared/data/fer2013/fer2013_trainval.npz")
    args = ap.parse_args()
    clf = Classifier.open(args.model)
    pool = C.load_public_test(args.npz)
    cfg = TrackerConfig()
    print(f"tracker: tau_s={cfg.tau_s} switch_margin={cfg.switch_margin} switch_hold_s={cfg.switch_hold_s}; "
          f"model {args.model or 'embedded default'}")
    rng = np.random.default_rng(1)
    faces = pool[rng.choice(len(pool), args.faces, replace=False)]
    print("\n| steady faces | fps | dropped | frames | faces with raw flips | raw argmax changes | reported changes | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for fps, drop in [(30, 0.0), (15, 0.0), (10, 0.0), (30, 0.3)]:
        r = C.steady_figures(clf, faces, args.seconds, fps, seed=1, drop=drop)
        print(f"| {r['faces']} x {args.seconds:g} s | {fps} | {drop:.0%} | {r['frames']} | {r['faces_with_raw_flips']} | "
              f"{r['raw_changes']} | {r['reported_changes']} | {r['ratio']} |", flush=True)
    pairs = C.change_pairs(clf, pool, args.pairs, seed=2)
    print("\n| change pairs | fps | dropped | reported | median s | p90 s | max s | within 0.5 s |")
    print("|---|---|---|---|---|---|---|---|")
    for fps, drop in [(30, 0.0), (15, 0.0), (10, 0.0), (30, 0.3)]:
        r = C.change_figures(clf, pairs, fps, seed=3, drop=drop)
        print(f"| {r['pairs']} | {fps} | {drop:.0%} | {r['reported']} | {r['median_s']} | {r['p90_s']} | {r['max_s']} | "
              f"{r['within_0.5s']}/{r['pairs']} |", flush=True)


if __name__ == "__main__":
    main()
