"""`edgefer bench` in a subprocess on a generated clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from make_clips import make_moving_face_clip  # noqa: E402

EDGEFER = [sys.executable, "-m", "edgefer"]


def test_bench_json(tmp_path, photos_dir, yunet_path):
    photo = sorted((photos_dir / "happy").glob("*.jpg"))[0]
    clip = make_moving_face_clip(photo, tmp_path / "c.avi", frames=12)
    assert cv2.VideoCapture(str(clip)).isOpened()
    p = subprocess.run([*EDGEFER, "bench", "--source", str(clip), "--frames", "20", "--warmup", "2", "--json",
                        "--detector", str(yunet_path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["fps"] > 0 and r["frames"] == 20 and r["frame_size"] == [640, 480]
    assert set(r["ms"]) >= {"decode", "detect", "align", "classify", "classify_per_face", "total"}
    assert r["faces_per_frame"] == 1.0
    assert r["ms"]["total"] >= r["ms"]["detect"] + r["ms"]["classify"]
    # the daemon's default detector width, measured here (edge/detector.py, choose_input_width)
    assert r["detector_choice"]["reason"].startswith("auto: ") and r["input_width"] in (640, 480, 320)
    assert r["input_width"] == r["detector_choice"]["input_width"]


def test_bench_bad_source(tmp_path, yunet_path):
    for source, message in (("gopher://nowhere", "unknown source scheme"), (str(tmp_path / "missing.mp4"), "no such file")):
        p = subprocess.run([*EDGEFER, "bench", "--source", source, "--detector", str(yunet_path)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], p.stderr
