"""Record golden outputs once; `tests/edge/test_goldens.py` compares against them.

- `tests/golden/detections.json`: YuNet boxes, scores and landmarks on a fixed list of shared photos
  (depends only on the detector file and the decoding code);
- `tests/golden/predictions.json`: the full pipeline's probabilities and intensities on the same
  photos with the embedded default model, keyed by that model's sha256. Re-run this script when the
  default model changes (the test says so when the sha256 differs).

    python scripts/record_goldens.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
DETECTOR = "face_detection_yunet_2026may.onnx"
INPUT_WIDTH = 320
PER_CLASS = 3


def golden_photos(photos: Path) -> list[Path]:
    """The first `PER_CLASS` photos (by name) of every class folder."""
    out = []
    for sub in sorted(p for p in photos.iterdir() if p.is_dir()):
        out += sorted(p for p in sub.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:PER_CLASS]
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def record(shared: Path) -> tuple[dict, dict]:
    import cv2

    from edgefer.edge.classifier import default_model_path
    from edgefer.edge.pipeline import build_pipeline

    photos = shared / "data" / "photos"
    det_path = shared / "models" / DETECTOR
    pipeline = build_pipeline(detector=det_path, threads=1, input_width=INPUT_WIDTH)
    detections: dict = {"detector": DETECTOR, "detector_sha256": sha256(det_path), "input_width": INPUT_WIDTH,
                        "score_threshold": pipeline.detector.score_threshold, "images": {}}
    model = default_model_path()
    predictions: dict = {"model_sha256": sha256(model), "model_version": pipeline.classifier.info.version,
                         "images": {}}
    for path in golden_photos(photos):
        rel = str(path.relative_to(photos))
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces = pipeline.detector.detect(image)
        detections["images"][rel] = [{"box": [round(float(v), 3) for v in f.box], "score": round(f.score, 5),
                                      "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in f.landmarks]}
                                     for f in faces]
        result = pipeline.process_image(image, source=rel)
        predictions["images"][rel] = [{"probabilities": [round(float(p), 5) for p in r.probabilities],
                                       "intensity": [round(float(v), 5) for v in r.intensity]} for r in result.faces]
    pipeline.close()
    return detections, predictions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Record golden detector and pipeline outputs into tests/golden/.")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--only", choices=("detections", "predictions"), default=None)
    a = ap.parse_args(argv)
    detections, predictions = record(a.shared)
    if a.only in (None, "detections"):
        write_json_atomic(GOLDEN / "detections.json", detections)
    if a.only in (None, "predictions"):
        write_json_atomic(GOLDEN / "predictions.json", predictions)
    print(f"recorded {len(detections['images'])} images into {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
