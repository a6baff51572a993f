"""How small a face the detector finds in a camera picture, by the detector's input width.

Each labelled photo is brought down so that its face is N px wide and put in a 640 x 480 picture (the
test clips' textured background), as a face at a distance looks to a VGA camera; YuNet then looks for
it at each input width (the daemon's `detector.input_width`, 320 by default: the picture is halved
before detection). Prints the share of faces found per face width and input width, and the
detector's time per picture on this machine (one thread; pin the process with `taskset -c 0`).

    taskset -c 0 python benchmarks/face_size.py --photos ../shared/data/photos \\
        --detector ../shared/models/face_detection_yunet_2026may.onnx --every 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from camera_robustness import in_picture, small  # beside this file
from candidates import run, write_json

from edgefer.edge.pipeline import build_pipeline


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--detector", type=Path)
    ap.add_argument("--face-px", default="40,48,64,80,96", help="face widths, comma-separated")
    ap.add_argument("--widths", default="320,480,640", help="detector input widths, comma-separated")
    ap.add_argument("--every", type=int, default=1, help="every Nth photo only")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from edgefer.edge.photos import class_folders, list_images, read_image

    files = [p for sub, _ in class_folders(a.photos) for p in list_images(sub)][:: a.every]
    images = [im for im in (read_image(p) for p in files) if im is not None]
    widths = [int(w) for w in a.widths.split(",")]
    dets = {w: build_pipeline(detector=a.detector, input_width=w, threads=1) for w in widths}
    ref = dets[max(widths)].detector
    face_w = [max((float(f.box[2]) for f in ref.detect(im)), default=0.0) for im in images]
    rng = np.random.default_rng(0)
    found: dict[int, dict[int, int]] = {}
    seconds = {w: 0.0 for w in widths}
    for px in (int(p) for p in a.face_px.split(",")):
        pictures = [in_picture(small(px)(im, w, rng), rng) for im, w in zip(images, face_w)]
        found[px] = {}
        for w, pipe in dets.items():
            t0 = time.perf_counter()
            found[px][w] = sum(bool(pipe.detector.detect(p)) for p in pictures)
            seconds[w] += time.perf_counter() - t0
    n_pictures = len(images) * len(found)
    for pipe in dets.values():
        pipe.close()

    print(f"photos: {a.photos}, {len(images)} images, each in a 640x480 picture; faces found %")
    print("| face width in the picture | " + " | ".join(f"detector input width {w}" for w in widths) + " |")
    print("|---|" + "---|" * len(widths))
    for px, per in found.items():
        print(f"| {px} px | " + " | ".join(f"{100 * per[w] / len(images):.1f}" for w in widths) + " |")
    print("| detection, ms per picture (one thread) | "
          + " | ".join(f"{1000 * seconds[w] / n_pictures:.2f}" for w in widths) + " |")
    write_json(a.json, {"images": len(images), "found": found, "ms_per_picture": {
        w: 1000 * seconds[w] / n_pictures for w in widths}})
    return 0


if __name__ == "__main__":
    run(main, "face_size")
