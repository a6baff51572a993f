"""The aligner: an exact similarity fit onto the template, crops of the model's size, and framing
that reproduces FER-2013's crops (model-independent check; accuracy is in benchmarks/framing.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.edge.align import Aligner, align_faces
from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo
from edgefer.types import Face

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads((ROOT / "train" / "alignment_template.json").read_text())


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_template_file_is_well_formed():
    assert TEMPLATE["size"] == 48 and len(TEMPLATE["points"]) == 5 and TEMPLATE["n"] > 1000
    p = np.array(TEMPLATE["points"])
    # right eye left of left eye, eyes above nose above mouth, all inside the crop
    assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0] and p[:2, 1].max() < p[2, 1] < p[3:, 1].min()
    assert (p > 0).all() and (p < 48).all()


def test_transform_recovers_a_known_similarity():
    al = Aligner(TEMPLATE["points"], 48)
    m_true = similarity(17.0, 5.5, 210.0, 95.0)  # crop -> frame
    frame_pts = np.c_[al.template, np.ones(5)] @ m_true.T
    m = al.transform(frame_pts)  # frame -> crop
    back = np.c_[frame_pts, np.ones(5)] @ m.T
    assert np.abs(back - al.template).max() < 1e-3


def test_crop_of_a_rotated_face_matches_the_upright_crop(face_photo):
    """A face rotated and scaled in the frame gives (nearly) the same crop as the upright face."""
    img = cv2.imread(str(face_photo), cv2.IMREAD_COLOR)
    al = Aligner(TEMPLATE["points"], 48)
    # landmarks of the upright face, chosen by hand-free means: the template scaled into the photo
    m_up = similarity(0.0, 5.0, 60.0, 50.0)
    pts = np.c_[al.template, np.ones(5)] @ m_up.T
    upright, kept = al.align(img, [Face(np.zeros(4, np.float32), 1.0, pts.astype(np.float32))])
    rot = cv2.getRotationMatrix2D((175, 175), 25, 1.3)
    img_rot = cv2.warpAffine(img, rot, (350, 350), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    pts_rot = np.c_[pts, np.ones(5)] @ rot.T
    rotated, _ = al.align(img_rot, [Face(np.zeros(4, np.float32), 1.0, pts_rot.astype(np.float32))])
    assert upright.shape == (1, 48, 48) and upright.dtype == np.uint8 and list(kept) == [0]
    assert np.abs(upright[0].astype(int) - rotated[0]).mean() < 6


def test_degenerate_landmarks_are_left_out(face_photo):
    img = cv2.imread(str(face_photo), cv2.IMREAD_COLOR)
    al = Aligner(TEMPLATE["points"], 48)
    good = Face(np.zeros(4, np.float32), 1.0, (al.template * 4 + 50).astype(np.float32))
    nan = Face(np.zeros(4, np.float32), 1.0, np.full((5, 2), np.nan, np.float32))
    point = Face(np.zeros(4, np.float32), 1.0, np.full((5, 2), 100.0, np.float32))
    crops, kept = al.align(img, [nan, good, point])
    assert crops.shape == (1, 48, 48) and list(kept) == [1]
    assert align_faces(img, [good], 48, TEMPLATE["points"]).shape == (1, 48, 48)
    assert align_faces(img, [good], 96, TEMPLATE["points"], 48).shape == (1, 96, 96)


def test_bad_templates_are_config_errors():
    with pytest.raises(ConfigError):
        Aligner([[1, 2]] * 4, 48)
    with pytest.raises(ConfigError):
        Aligner([[np.nan, 2]] * 5, 48)
    with pytest.raises(ConfigError, match="template"):
        Aligner.from_info(ModelInfo(template=[]))
    assert Aligner.from_info(ModelInfo(template=TEMPLATE["points"])).size == 48


def median_fit(al: Aligner, landmarks: list[np.ndarray], centre_frame: np.ndarray, upscale: int):
    """Median (crop-centre offset, scale relative to the true one, rotation in degrees) of the
    aligner's fits of upscaled faces."""
    c = np.array([(al.size - 1) / 2.0] * 2)
    fits = [al.transform(lm) for lm in landmarks]
    off = np.median([m @ np.r_[centre_frame, 1.0] - c for m in fits], axis=0)
    scale = float(np.median([np.sqrt(abs(np.linalg.det(m[:, :2]))) * upscale for m in fits]))
    angle = float(np.median([np.degrees(np.arctan2(m[1, 0], m[0, 0])) for m in fits]))
    return off, scale, angle


def test_realigned_fer_faces_reproduce_the_original_framing(fer_npz, yunet_path, capsys):
    """Short version of benchmarks/framing.py, independent of the classifier's weights: upscaled
    PublicTest faces are re-detected and aligned onto the derived template; the fitted transform
    must, on the median face, be the one that undoes the upscaling (same centre, same scale, no
    rotation), i.e. deployed crops are framed like the training crops."""
    from edgefer.data import load_faces
    from edgefer.edge.detector import YunetDetector
    from edgefer.train.realign import PAD, UPSCALE, central_face, upscale_face

    pixels = load_faces(fer_npz).split("PublicTest").pixels[:200]
    det = YunetDetector.open(yunet_path, threads=1)
    side = 48 * UPSCALE + 2 * PAD
    centre_frame = (np.array([23.5, 23.5]) + 0.5) * UPSCALE - 0.5 + PAD  # the crop centre in the image
    landmarks = []
    for gray in pixels:
        face = central_face(det.detect(upscale_face(gray, UPSCALE, PAD)), side)
        if face is not None:
            landmarks.append(face.landmarks)
    assert len(landmarks) >= 0.9 * len(pixels)
    al = Aligner(TEMPLATE["points"], 48)
    off, scale, angle = median_fit(al, landmarks, centre_frame, UPSCALE)
    with capsys.disabled():
        print(f"\nframing on {len(landmarks)}/{len(pixels)} PublicTest faces: median crop-centre offset "
              f"{off.round(2)} px, scale {scale:.3f}, rotation {angle:.2f} deg")
    assert np.abs(off).max() < 0.75 and abs(scale - 1.0) < 0.03 and abs(angle) < 1.5
    # the check has teeth: a template 3 px off, or 10% too large, is caught
    off3, _, _ = median_fit(Aligner(al.template + [3.0, 0.0], 48), landmarks, centre_frame, UPSCALE)
    assert abs(off3[0] - 3.0) < 0.75
    c = np.array([23.5, 23.5])
    _, scale11, _ = median_fit(Aligner((al.template - c) * 1.1 + c, 48), landmarks, centre_frame, UPSCALE)
    assert abs(scale11 - 1.1 * scale) < 0.01 and abs(scale11 - 1.0) >= 0.03


def test_derive_template_script_reproduces_the_committed_template(fer_npz, yunet_path, tmp_path):
    """Short run of scripts/derive_template.py (400 faces): close to the committed template."""
    import derive_template

    out = tmp_path / "tpl.json"
    rc = derive_template.main(["--data", str(fer_npz), "--detector", str(yunet_path), "--out", str(out),
                               "--limit", "400", "--seed", "1"])
    assert rc == 0
    got = json.loads(out.read_text())
    assert got["size"] == 48 and got["n"] >= 350
    assert np.abs(np.array(got["points"]) - np.array(TEMPLATE["points"])).max() < 1.0
    assert got["refinement"]["rounds"][-1][0] == pytest.approx(1.0, abs=1e-3)
