"""The overlay draws on a copy, inside the image, wherever the face is."""

from __future__ import annotations

import numpy as np

from edgefer.edge.draw import draw_results
from edgefer.types import Face, FaceResult


def result(box, track_id=None) -> FaceResult:
    probs = np.array([0.05, 0.05, 0.05, 0.6, 0.1, 0.1, 0.05], np.float32)
    intensity = np.array([0.1, 0.0, 0.2, 0.9, 0.3, 0.1, np.nan], np.float32)
    face = Face(np.array(box, np.float32), 0.9, np.zeros((5, 2), np.float32))
    return FaceResult(face=face, probabilities=probs, intensity=intensity, track_id=track_id)


def test_draws_on_a_copy():
    img = np.zeros((480, 640, 3), np.uint8)
    out = draw_results(img, [result([100, 100, 150, 180], track_id=7)], fps=29.7)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not img.any() and out.any()
    # the box outline is drawn, the face inside is left alone (apart from the label)
    assert out[100:281, 99:102].any() and not out[200:260, 150:200].any()


def test_faces_at_edges_and_gray_frames():
    img = np.zeros((120, 160), np.uint8)
    out = draw_results(img, [result([-20, -10, 100, 140]), result([120, 60, 80, 80])])
    assert out.shape == (120, 160, 3) and out.any()
    assert draw_results(img, []).shape == (120, 160, 3)
