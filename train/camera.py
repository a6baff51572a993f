"""Camera-robust augmentation: what a camera does to a face that FER-2013's web crops do not show.

FER-2013 crops are clean, well-exposed web photos; a deployed camera delivers faces 40-80 px wide
upscaled to the crop, through a lens that blurs motion, a small sensor that is noisy in low light, an
auto-exposure that is sometimes wrong, and a JPEG/H.264 encoder at a low bitrate; faces are also
turned a little out of plane. `degrade` applies a random chain of these to a share of a batch:

- out-of-plane turn: a perspective warp that narrows one side of the face (yaw) or the top/bottom (pitch);
- exposure: gamma and gain (under- and over-exposed faces, clipped as a sensor clips);
- low resolution: down to a face 40-80 px wide in a frame (so 0.45-0.9 of the crop), back up bilinearly;
- motion blur: a line kernel 3-7 px long at a random angle;
- sensor noise: Gaussian read noise plus shot noise that grows in the dark (a gain-up in low light);
- compression: JPEG at quality 15-60, i.e. 8x8 DCT blocks quantised hard, which is what H.264 at a low
  bitrate also does to a face (its 4x4/8x8 transform, quantised; H.264's deblocking softens the edges,
  which motion blur and the resampling above already cover).

Each step runs with its own probability on the uint8 face (OpenCV), seeded from the batch's generator
so that a run is reproducible and resumable. The same degradations are applied to photographs by
`benchmarks/camera_robustness.py` to measure a model's sensitivity to each, and there a real H.264
stream too (`h264_stream`, libx264 through PyAV: too slow to run per training face, so JPEG stands in
for it in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraConfig:
    p: float = 0.0  # share of each batch that goes through the chain (0: off)
    turn_p: float = 0.3
    turn: float = 0.10  # the narrowed side shrinks by up to this share of the crop
    exposure_p: float = 0.4
    gamma: tuple[float, float] = (0.5, 2.0)
    gain: tuple[float, float] = (0.6, 1.5)
    lowres_p: float = 0.5
    lowres: tuple[float, float] = (0.45, 0.9)
    motion_p: float = 0.3
    motion_px: tuple[int, int] = (3, 7)
    noise_p: float = 0.4
    noise_sigma: tuple[float, float] = (2.0, 7.0)  # read noise, in 0..255 units
    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (15, 60)


STEPS = ("turn", "exposure", "lowres", "motion", "noise", "jpeg")


def turn(face: np.ndarray, amount: float, axis: int) -> np.ndarray:
    """Perspective warp: one side (axis 0: left/right, yaw; 1: top/bottom, pitch) narrowed by `amount`
    (a share of the crop; negative narrows the other side)."""
    s = face.shape[0]
    d = abs(amount) * s / 2
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    dst = src.copy()
    if axis == 0:
        side = [1, 2] if amount > 0 else [0, 3]  # the right or left edge's two corners
        dst[side[0], 1] += d
        dst[side[1], 1] -= d
    else:
        side = [0, 1] if amount > 0 else [3, 2]  # the top or bottom edge's two corners
        dst[side[0], 0] += d
        dst[side[1], 0] -= d
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(face, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def exposure(face: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    p = (face.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8)


def lowres(face: np.ndarray, scale: float) -> np.ndarray:
    s = face.shape[0]
    k = max(8, round(s * scale))
    small = cv2.resize(face, (k, k), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)


def motion_blur(face: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    k /= max(float(k.sum()), 1e-6)
    return cv2.filter2D(face, -1, k, borderType=cv2.BORDER_REPLICATE)


def sensor_noise(face: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Read noise of `sigma` plus shot noise (variance proportional to the signal), both larger for a
    dark face: a camera raises its gain in low light, and the noise with it."""
    p = face.astype(np.float32)
    dark = 1.0 + 2.0 * max(0.0, 0.5 - float(p.mean()) / 255.0)  # up to 2x in a dark face
    std = sigma * dark + 0.08 * np.sqrt(p) * dark
    return np.clip(p + rng.standard_normal(p.shape).astype(np.float32) * std + 0.5, 0, 255).astype(np.uint8)


def jpeg(face: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on a gray uint8 image
        raise RuntimeError("cv2.imencode(.jpg) failed")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def h264_stream(frame: np.ndarray, kbps: float, rng: np.random.Generator, frames: int = 16, fps: int = 30) -> np.ndarray:
    """`frame` as the last of `frames` frames of a live H.264 stream at `kbps` (libx264 set up as a
    camera's encoder is for live video: no B-frames, the bitrate capped by a one-second buffer). The
    camera drifts 1 px a frame and the sensor adds fresh noise to each, so every frame costs bits as
    in a real stream; the last frame is a P-frame in the frame's own position. BGR or gray uint8 in,
    the same shape out. Needs PyAV (the `test` extra; libx264 comes inside its wheels)."""
    import io

    import av

    gray = frame.ndim == 2
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if gray else frame
    h, w = bgr.shape[:2]
    bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)  # 4:2:0 needs even sizes
    height, width = bgr.shape[:2]
    kbit = max(1, round(kbps))
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = kbit * 1000
        # one encoder thread, so that every machine produces the same bits
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "threads": "1",
                          "x264-params": f"vbv-maxrate={kbit}:vbv-bufsize={kbit}:keyint={2 * fps}"}
        for i in range(frames):
            drift = np.float32([[1, 0, i - (frames - 1)], [0, 1, 0]])
            shot = sensor_noise(cv2.warpAffine(bgr, drift, (width, height), borderMode=cv2.BORDER_REFLECT), 2.0, rng)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(shot, format="bgr24")))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf, "r", format="h264") as inp:
        decoded = [f.to_ndarray(format="bgr24") for f in inp.decode(video=0)]
    if len(decoded) != frames:  # pragma: no cover - libx264 drops no frame at these settings
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {frames} frames")
    last = decoded[-1][:h, :w]
    return cv2.cvtColor(last, cv2.COLOR_BGR2GRAY) if gray else np.ascontiguousarray(last)


def degrade_one(face: np.ndarray, cfg: CameraConfig, rng: np.random.Generator,
                only: str | None = None) -> np.ndarray:
    """One face through the chain (each step with its probability), or through step `only` alone."""
    def on(step: str, p: float) -> bool:
        return only == step if only is not None else bool(rng.random() < p)

    if on("turn", cfg.turn_p):
        face = turn(face, float(rng.uniform(-cfg.turn, cfg.turn)), int(rng.integers(2)))
    if on("exposure", cfg.exposure_p):
        face = exposure(face, float(np.exp(rng.uniform(*np.log(cfg.gamma)))),
                        float(np.exp(rng.uniform(*np.log(cfg.gain)))))
    if on("lowres", cfg.lowres_p):
        face = lowres(face, float(rng.uniform(*cfg.lowres)))
    if on("motion", cfg.motion_p):
        face = motion_blur(face, int(rng.integers(cfg.motion_px[0], cfg.motion_px[1] + 1)), float(rng.uniform(0, 180)))
    if on("noise", cfg.noise_p):
        face = sensor_noise(face, float(rng.uniform(*cfg.noise_sigma)), rng)
    if on("jpeg", cfg.jpeg_p):
        face = jpeg(face, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return face


def degrade(faces: np.ndarray, cfg: CameraConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A share `cfg.p` of the uint8 faces (N x S x S) through the chain; returns the faces and which were
    degraded. The input is not modified."""
    chosen = rng.random(len(faces)) < cfg.p
    out = faces.copy()
    for i in np.flatnonzero(chosen):
        out[i] = degrade_one(faces[i], cfg, rng)
    return out, chosen
