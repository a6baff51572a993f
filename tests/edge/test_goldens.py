"""Detector and pipeline outputs against goldens recorded once by scripts/record_goldens.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RERECORD = "re-record with: python scripts/record_goldens.py"


def load(name: str) -> dict:
    path = GOLDEN / name
    if not path.exists():
        pytest.fail(f"{path} is missing; {RERECORD}")
    return json.loads(path.read_text())


def test_detections_match_goldens(shared_dir, photos_dir):
    from edgefer.edge.detector import YunetDetector

    golden = load("detections.json")
    model = shared_dir / "models" / golden["detector"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == golden["detector_sha256"]
    det = YunetDetector.open(model, threads=1, input_width=golden["input_width"],
                             score_threshold=golden["score_threshold"])
    assert len(golden["images"]) >= 20
    for rel, faces in golden["images"].items():
        got = det.detect(cv2.imread(str(photos_dir / rel), cv2.IMREAD_COLOR))
        assert len(got) == len(faces), rel
        for g, f in zip(got, faces):
            assert np.abs(g.box - f["box"]).max() < 0.5, rel
            assert np.abs(g.landmarks - np.array(f["landmarks"])).max() < 0.5, rel
            assert abs(g.score - f["score"]) < 2e-3, rel


def test_pipeline_outputs_match_goldens(photos_dir, pipeline):
    from edgefer.edge.classifier import default_model_path

    golden = load("predictions.json")
    sha = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    if sha != golden["model_sha256"]:
        pytest.fail(f"the embedded default model changed (sha256 {sha[:12]}, goldens for "
                    f"{golden['model_sha256'][:12]}); {RERECORD}")
    for rel, faces in golden["images"].items():
        r = pipeline.process_image(cv2.imread(str(photos_dir / rel), cv2.IMREAD_COLOR))
        assert len(r.faces) == len(faces), rel
        for g, f in zip(r.faces, faces):
            assert np.abs(g.probabilities - f["probabilities"]).max() < 2e-3, rel
            assert np.abs(g.intensity - f["intensity"]).max() < 2e-3, rel
