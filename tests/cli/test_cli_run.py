"""`edgefer run` on stills, sequences and a clip, as a user runs it: a folder of photos is a set of
unrelated stills (nothing tracked or smoothed across files) unless `--sequence` (or `[source]
sequence = true`) says it is one scene; a video is tracked either way."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from make_clips import make_frames, write_clip

from edgefer.contract import CLASS_NAMES

#: photos whose faces sit at about the same place (so a tracker left running links them) and whose
#: emotions differ (so blending one into the next shows)
PHOTOS = [("happy", 0), ("angry", 0), ("surprise", 0)]


def run(*args: object, cwd: Path | None = None) -> list[dict]:
    p = subprocess.run(
        [sys.executable, "-m", "edgefer", "run", *map(str, args), "--jsonl", "-"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


def probs(d: dict, key: str = "probabilities") -> list[float]:
    return [d[key][n] for n in CLASS_NAMES]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photos_dir) -> Path:
    folder = tmp_path_factory.mktemp("stills")
    for i, (cls, k) in enumerate(PHOTOS):
        shutil.copy(sorted((photos_dir / cls).glob("*.jpg"))[k], folder / f"{i}_{cls}.jpg")
    return folder


@pytest.fixture(scope="module")
def photos_reversed(tmp_path_factory, photos) -> Path:
    """The same photos, named so that they are read in the opposite order."""
    folder = tmp_path_factory.mktemp("stills_rev")
    files = sorted(photos.glob("*.jpg"))
    for i, f in enumerate(reversed(files)):
        shutil.copy(f, folder / f"{i}_{f.name}")
    return folder


def by_photo(records: list[dict]) -> dict[str, list[dict]]:
    """Faces per photo, keyed by the photo's own name (the reversed copy's prefix dropped)."""
    out = {}
    for r in records:
        name = Path(r["source"]).name
        out[name if name.count("_") == 1 else name.split("_", 1)[1]] = r["faces"]
    return out


def test_a_folder_of_photos_is_a_set_of_stills(photos, photos_reversed, yunet_path):
    records = run("--source", photos, "--detector", yunet_path)
    assert [Path(r["source"]).name for r in records] == sorted(p.name for p in photos.glob("*.jpg"))
    faces = [f for r in records for f in r["faces"]]
    assert len(faces) >= len(PHOTOS)
    emotions = {f["emotion"] for f in faces}
    assert len(emotions) >= 2, "the photos must differ, or blending could not show"
    for r in records:
        assert sorted(f["track_id"] for f in r["faces"]) == list(range(1, len(r["faces"]) + 1))
        for f in r["faces"]:
            assert f["smoothed_probabilities"] == f["probabilities"]
            assert f["smoothed_intensity"] == f["intensity"]
            assert f["stable_emotion"] == f["emotion"]
    # no state leaks across files: each photo gives the same record whatever was read before it
    assert by_photo(records) == by_photo(run("--source", photos_reversed, "--detector", yunet_path))


def test_photos_of_different_sizes_are_all_read(photos, yunet_path, tmp_path):
    """A folder of stills mixes sizes (the shared photos do): every image gives its record, none is
    dropped as a 'changed frame size' as a video's frame would be."""
    files = sorted(photos.glob("*.jpg"))
    for i, (f, size) in enumerate(zip(files, [None, (300, 260), (420, 380)])):
        img = cv2.imread(str(f))
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img if size is None else cv2.resize(img, size))
    records = run("--source", tmp_path, "--detector", yunet_path)
    assert [Path(r["source"]).name for r in records] == ["0.jpg", "1.jpg", "2.jpg"]
    assert all(r["faces"] for r in records)
    assert len({cv2.imread(str(tmp_path / n)).shape for n in ("0.jpg", "1.jpg", "2.jpg")}) == 3


def check_sequence(records: list[dict]) -> None:
    """One track through all photos, smoothed exactly as a 30 fps clip with tau_s = 0.15."""
    assert all(len(r["faces"]) == 1 for r in records), "one face per photo expected"
    faces = [r["faces"][0] for r in records]
    assert [f["track_id"] for f in faces] == [1] * len(faces)
    alpha = 1 - math.exp(-(1 / 30) / 0.15)
    smoothed = probs(faces[0])
    assert probs(faces[0], "smoothed_probabilities") == smoothed
    for f in faces[1:]:
        smoothed = [s + alpha * (p - s) for s, p in zip(smoothed, probs(f))]
        assert probs(f, "smoothed_probabilities") == pytest.approx(smoothed, abs=2e-4)
        assert probs(f, "smoothed_probabilities") != probs(f)


def test_sequence_flag_tracks_across_photos(photos, yunet_path):
    check_sequence(run("--source", photos, "--sequence", "--detector", yunet_path))


def test_sequence_config_key(photos, yunet_path, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nuri = "{photos}"\nsequence = true\n[detector]\nmodel = "{yunet_path}"\n')
    check_sequence(run("--config", cfg))
    assert by_photo(run("--config", cfg, "--no-sequence")) == by_photo(
        run("--source", photos, "--detector", yunet_path)
    )


def test_a_video_clip_is_still_tracked(photos_dir, yunet_path, tmp_path):
    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]), cv2.IMREAD_COLOR)
    frames, _ = make_frames(photo, frames=20, width=480, height=360, face_height=180)
    clip = write_clip(frames, tmp_path / "clip.avi")
    records = run("--source", clip, "--detector", yunet_path)
    faces = [f for r in records for f in r["faces"]]
    assert len(records) == 20 and len(faces) >= 18
    assert {f["track_id"] for f in faces} == {1}
    assert any(probs(f, "smoothed_probabilities") != probs(f) for f in faces[1:]), "smoothed over time"


def test_help_says_stills_and_sequence():
    p = subprocess.run([sys.executable, "-m", "edgefer", "run", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(p.stdout.split())
    assert "--sequence" in text and "each image is its own still" in text
