"""Fold the intensity head into the classification head of an edgefer ONNX model (issue 24, round 9).

    python scripts/fold_heads.py IN.onnx OUT.onnx --alpha 0.5 [--version 1.3.0-fold0.5] [--force]

The class logits become `logits + alpha * intensity logits`: the emotion shown leans towards what the
FER+ annotators saw, while the intensities stay bit-identical (`edgefer.train.export.fold_heads`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgefer.errors import UserError
from edgefer.train.export import fold_heads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--version", default="")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    try:
        info = fold_heads(a.src, a.out, a.alpha, a.version or f"fold{a.alpha:g}", force=a.force)
    except UserError as exc:
        print(f"fold_heads: {exc}", file=sys.stderr)
        return 2
    print(f"{a.out}: version {info.version}, classification head + {a.alpha:g} x intensity head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
