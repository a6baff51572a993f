"""The overlay: box, track id, emotion and seven intensity bars per face, and an fps counter.

Shared by `edgefer predict --annotate`, the on-device window and the local web page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefer.contract import CLASS_NAMES
from edgefer.types import FaceResult

#: BGR colour per emotion, in `CLASS_NAMES` order.
COLOURS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 220),    # angry: red
    (40, 140, 40),    # disgust: green
    (160, 60, 160),   # fear: purple
    (40, 200, 240),   # happy: yellow
    (200, 200, 200),  # neutral: grey
    (200, 120, 40),   # sad: blue
    (40, 140, 255),   # surprise: orange
)
SHORT = ("ang", "dis", "fea", "hap", "neu", "sad", "sur")


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour, thickness: int = 1) -> None:
    import cv2

    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def draw_face(img: np.ndarray, result: FaceResult) -> None:
    """Draw one face's overlay into `img` (BGR, in place)."""
    import cv2

    h, w = img.shape[:2]
    x, y, bw, bh = (int(round(float(v))) for v in result.face.box)
    emotion = result.stable_emotion or result.emotion
    k = CLASS_NAMES.index(emotion) if emotion in CLASS_NAMES else 4
    colour = COLOURS[k]
    thick = max(1, int(round(min(w, h) / 320)))
    cv2.rectangle(img, (x, y), (x + bw, y + bh), colour, thick, cv2.LINE_AA)
    probs = result.smoothed_probabilities if result.smoothed_probabilities is not None else result.probabilities
    label = f"{emotion} {float(probs[k]):.2f}"
    if result.track_id is not None:
        label = f"#{result.track_id} {label}"
    scale = max(0.4, min(1.0, min(w, h) / 600))
    label_y = y - 6 if y - 6 >= 16 else y + int(22 * scale) + 4  # above the box, else inside it
    _text(img, label, (max(0, x), label_y), scale, colour, thick)

    intensity = result.smoothed_intensity if result.smoothed_intensity is not None else result.intensity
    bar_h = int(np.clip(h / 60, 5, 14))
    bar_w = int(np.clip(w / 8, 40, 120))
    panel_w = 30 + bar_w
    if x + bw + 4 + panel_w <= w:
        bx = x + bw + 4  # right of the box
    elif x - 4 - panel_w >= 0:
        bx = x - 4 - panel_w  # left of it
    else:
        bx = max(0, min(w - panel_w, x + 2))  # inside, at its bottom
    by = y if bx != max(0, min(w - panel_w, x + 2)) else y + bh - 7 * (bar_h + 2)
    by = int(np.clip(by, 0, max(0, h - 7 * (bar_h + 2))))
    fscale = max(0.3, bar_h / 28)
    for i, name in enumerate(SHORT):
        yy = by + i * (bar_h + 2)
        if yy + bar_h > h:
            break
        v = float(np.clip(intensity[i], 0.0, 1.0)) if np.isfinite(intensity[i]) else 0.0
        cv2.rectangle(img, (bx + 30, yy), (bx + 30 + bar_w, yy + bar_h), (60, 60, 60), -1)
        cv2.rectangle(img, (bx + 30, yy), (bx + 30 + int(round(bar_w * v)), yy + bar_h), COLOURS[i], -1)
        _text(img, name, (bx, yy + bar_h - 1), fscale, (255, 255, 255))


def draw_results(image_bgr: np.ndarray, results: Sequence[FaceResult], fps: float | None = None) -> np.ndarray:
    """A copy of `image_bgr` with every face's overlay and, when given, the frame rate."""
    import cv2

    img = image_bgr.copy() if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    for result in results:
        draw_face(img, result)
    if fps is not None:
        _text(img, f"{fps:.1f} fps", (8, 22), 0.6, (255, 255, 255))
    return img
