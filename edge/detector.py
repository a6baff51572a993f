"""Face detection: YuNet (ONNX) run through the backend protocol, decoded by our own numpy code.

YuNet has twelve outputs: `cls`, `obj`, `bbox` and `kps` at strides 8, 16 and 32, one row per
grid cell (row-major). The decoding below is the one of OpenCV's `cv2.FaceDetectorYN`
(`modules/objdetect/src/face_detect.cpp`): score = sqrt(clip(cls) * clip(obj)); centre =
(cell + offset) * stride; size = exp(log-size) * stride; landmarks = (cell + offset) * stride;
then non-maximum suppression. The frame is downscaled to a configurable width first (detection
cost grows with pixels, faces near a camera are large), padded bottom/right with zeros to a
multiple of 32, and results are mapped back to frame pixels.

The model file is found as users find it (`resolve_detector_model`): an explicit path, else the
cache folder, else a one-time download from OpenCV Zoo checked against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefer.errors import ConfigError
from edgefer.modelinfo import check_model_path, load_onnx
from edgefer.types import Face

from .backends import Backend, open_backend

log = logging.getLogger(__name__)

#: Detector files we know, with the pinned sha256 and where OpenCV Zoo publishes them.
ZOO_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
YUNET_MODELS: dict[str, str] = {
    "face_detection_yunet_2026may.onnx": "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
    "face_detection_yunet_2023mar.onnx": "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
}
DEFAULT_DETECTOR = "face_detection_yunet_2026may.onnx"
#: Releases with the same weights and outputs (2026may is 2023mar with dynamic H and W; the fixed
#: shape is relaxed in memory, see `relax_input_shape`): a fallback when one cannot be fetched.
EQUIVALENT = {"face_detection_yunet_2026may.onnx": "face_detection_yunet_2023mar.onnx"}
STRIDES = (8, 16, 32)
DIVISOR = 32
YUNET_OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES)


#: `[detector] input_width = "auto"` (the default): the widest of these whose detection time, measured
#: at start on a 640x480 frame, is within `AUTO_BUDGET_MS`, under a third of the 50-ms frame budget; else
#: the narrowest. (At 10 ms this Xeon's one-core time at 640, 8-11 ms, flipped between 640 and 480 from
#: start to start.) Small faces need the width (benchmarks/face_size.py: in a 640x480 frame, 48-px faces are
#: found 31% of the time at 320, 92% at 480, 99% at 640); a Pi needs the speed.
AUTO_WIDTHS = (640, 480, 320)
AUTO_BUDGET_MS = 15.0


class Detector(Protocol):
    """Finds faces in a BGR frame; faces come back in frame pixels, best score first."""

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Model file: explicit path, cache, pinned download


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/edgefer` (default `~/.cache/edgefer`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgefer"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a file whose sha256 is not the pinned one (a truncated download, a swapped file)."""
    actual = sha256_of(path)
    if actual != expected:
        raise ConfigError(f"{path}: sha256 {actual[:16]}... does not match the pinned {expected[:16]}...; "
                          f"delete the file and fetch it again ({ZOO_URL}{path.name})")


class DownloadError(ConfigError):
    """The file could not be fetched (network, HTTP error); unlike a sha256 mismatch, worth a retry elsewhere."""


def download(url: str, target: Path, expected: str, timeout: float = 30.0) -> Path:
    """Fetch `url` into `target` (temp file, sha256 check, then rename): never a half-written model."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"{target.parent}: cannot write the detector cache ({exc.strerror}); "
                          f"put {target.name} somewhere and pass --detector PATH") from None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
        actual = sha256_of(Path(tmp))
        if actual != expected:
            raise ConfigError(f"{url}: downloaded file has sha256 {actual[:16]}..., expected the pinned "
                              f"{expected[:16]}...; refused (nothing was saved)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"detector model {target.name} is not at {target} and cannot be downloaded from {url} "
                          f"({reason}); download it on a connected machine and copy it to {target}, "
                          f"or pass --detector PATH") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def resolve_detector_model(path: str | Path | None = None, name: str = DEFAULT_DETECTOR,
                           cache: Path | None = None, allow_download: bool | None = None,
                           url: str | None = None, base_url: str = ZOO_URL) -> Path:
    """The detector file to use (`url`: exactly this file, no fallback; `base_url`: the folder
    that publishes the known releases).

    1. `path` when given (a known YuNet file name must carry its pinned sha256);
    2. else `<cache>/<name>`, or the cached equivalent release (`EQUIVALENT`), verified against
       the pinned sha256;
    3. else a download from OpenCV Zoo (or `url`) into the cache, verified before it is kept; when
       `name` cannot be fetched (network error, not published), its equivalent release is tried.
       A file that arrives with the wrong sha256 is refused outright.
    `allow_download=None` follows the environment: `EDGEFER_OFFLINE=1` forbids downloading.
    """
    if path is not None:
        p = check_model_path(path, "detector model")
        if p.name in YUNET_MODELS:
            verify_sha256(p, YUNET_MODELS[p.name])
        return p
    if name not in YUNET_MODELS:
        raise ConfigError(f"unknown detector model {name!r} (known: {', '.join(YUNET_MODELS)}); "
                          "pass a file with --detector PATH")
    folder = cache or cache_dir()
    names = [name] + ([EQUIVALENT[name]] if name in EQUIVALENT and url is None else [])
    for n in names:
        if (folder / n).exists():
            verify_sha256(folder / n, YUNET_MODELS[n])
            return folder / n
    target = folder / name
    if allow_download is None:
        allow_download = os.environ.get("EDGEFER_OFFLINE", "") not in ("1", "true", "yes")
    if not allow_download:
        raise ConfigError(f"detector model {name} not found at {target} (downloads are off); "
                          f"fetch {ZOO_URL}{name} and copy it to {target}, or pass --detector PATH")
    errors: list[DownloadError] = []
    for n in names:
        log.info("downloading the face detector %s into %s (once)", n, folder)
        try:
            return download(url or base_url + n, folder / n, YUNET_MODELS[n])
        except DownloadError as exc:
            errors.append(exc)
    raise errors[0]  # the message names the file asked for and where to put it


# ---------------------------------------------------------------------------------------------
# Geometry and decoding (pure functions, tested against cv2.FaceDetectorYN)


def round_up(value: int, divisor: int = DIVISOR) -> int:
    return max(divisor, (int(value) + divisor - 1) // divisor * divisor)


def input_geometry(frame_w: int, frame_h: int, input_width: int,
                   fixed: tuple[int, int] | None = None) -> tuple[float, int, int, int, int]:
    """How a frame goes into the network: (scale, resized w, resized h, padded w, padded h).

    Dynamic models: width `input_width` (a multiple of 32), height by aspect ratio, padded up to a
    multiple of 32. Fixed-shape models (`fixed` = (w, h)): the largest size that fits, padded.
    """
    if fixed is not None:
        pw, ph = fixed
        scale = min(pw / frame_w, ph / frame_h)
    else:
        scale = input_width / frame_w
    rw = max(1, min(int(round(frame_w * scale)), fixed[0] if fixed else 1 << 30))
    rh = max(1, min(int(round(frame_h * scale)), fixed[1] if fixed else 1 << 30))
    pw, ph = fixed if fixed is not None else (round_up(rw), round_up(rh))
    return scale, rw, rh, pw, ph


def decode(outputs: dict[str, np.ndarray], pad_w: int, pad_h: int,
           score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's twelve outputs -> boxes (N x 4 x,y,w,h), scores (N,), landmarks (N x 5 x 2), in
    network-input pixels, before NMS, for candidates scoring at least `score_threshold`."""
    boxes, scores, kps = [], [], []
    for s in STRIDES:
        cols, rows = pad_w // s, pad_h // s
        cls = np.asarray(outputs[f"cls_{s}"], np.float32).reshape(-1)
        obj = np.asarray(outputs[f"obj_{s}"], np.float32).reshape(-1)
        if cls.size != rows * cols:
            raise ValueError(f"cls_{s} has {cls.size} cells, expected {rows} x {cols}")
        score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
        idx = np.nonzero(score >= score_threshold)[0]
        if idx.size == 0:
            continue
        bbox = np.asarray(outputs[f"bbox_{s}"], np.float32).reshape(-1, 4)[idx]
        kp = np.asarray(outputs[f"kps_{s}"], np.float32).reshape(-1, 5, 2)[idx]
        grid = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (c, r)
        centre = (grid + bbox[:, :2]) * s
        size = np.exp(bbox[:, 2:]) * s
        boxes.append(np.concatenate([centre - size / 2, size], axis=1))
        kps.append((kp + grid[:, None, :]) * s)
        scores.append(score[idx])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return (np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
            np.concatenate(kps).astype(np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
        top_k: int = 5000) -> np.ndarray:
    """Indices kept by OpenCV's NMS (the one `FaceDetectorYN` uses), best score first."""
    import cv2

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), score_threshold, nms_threshold, 1.0, top_k)
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def relax_input_shape(model):  # onnx.ModelProto -> the same, in place
    """Declare a fixed-shape YuNet ONNX (the 2023mar release, 1x3x640x640) dynamic in H and W.

    The network is fully convolutional (OpenCV DNN runs it at any size, and the 2026may release is
    the same graph with dynamic dims), but ONNX Runtime enforces declared shapes; relaxed, it runs
    on the downscaled frame instead of a 640x640 canvas. Models already dynamic are left alone."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
        return model
    if {o.name for o in model.graph.output} != set(YUNET_OUTPUTS):
        return model  # not YuNet: the constructor will say so
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out_dims = out.type.tensor_type.shape.dim
        if len(out_dims) > 1:
            out_dims[1].dim_param = "anchors"
    del model.graph.value_info[:]  # stale intermediate shapes; ONNX Runtime infers them again
    return model


# ---------------------------------------------------------------------------------------------


class YunetDetector:
    """YuNet through any backend: downscale, pad, infer, decode, NMS, map back, filter by size."""

    def __init__(self, backend: Backend, input_width: int = 320, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, min_face: float = 24.0, top_k: int = 5000,
                 upscale: bool = True) -> None:
        names = {o.name for o in backend.outputs}
        missing = [n for n in YUNET_OUTPUTS if n not in names]
        if missing:
            raise ConfigError(f"{getattr(backend, 'path', 'detector')}: not a YuNet model "
                              f"(missing outputs {', '.join(missing)})")
        if input_width < DIVISOR or input_width % DIVISOR:
            raise ConfigError(f"detector input width must be a positive multiple of {DIVISOR}, got {input_width}")
        if not 0.0 < score_threshold <= 1.0 or not 0.0 < nms_threshold <= 1.0:
            raise ConfigError("detector score and NMS thresholds must be in (0, 1]")
        self.backend = backend
        self.input_name = backend.inputs[0].name
        shape = backend.inputs[0].shape
        h, w = shape[2], shape[3]
        # fixed-shape models (2023mar, a static TensorRT engine) get frames fitted and padded into that size
        self.fixed = (int(w), int(h)) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None
        self.input_width = input_width
        self.upscale = upscale  # False: frames narrower than input_width go in at their own size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face = min_face
        self.top_k = top_k
        self.last_input_size: tuple[int, int] = (0, 0)  # resized (w, h) of the last frame, for parity checks

    @classmethod
    def open(cls, path: str | Path | None = None, backend: str = "auto", threads: int = 0,
             input_width: int = 320, score_threshold: float = 0.6, nms_threshold: float = 0.3,
             min_face: float = 24.0, **backend_options) -> "YunetDetector":
        """Resolve the model file (see `resolve_detector_model`) and open it on a backend."""
        model_path = resolve_detector_model(path)
        if model_path.suffix.lower() == ".onnx":
            model = relax_input_shape(load_onnx(model_path, "detector model"))
            be = open_backend(model_path, backend, model=model, threads=threads, **backend_options)
        else:
            be = open_backend(model_path, backend, **backend_options)
        return cls(be, input_width=input_width, score_threshold=score_threshold,
                   nms_threshold=nms_threshold, min_face=min_face)

    def blob(self, image: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """BGR frame -> (1 x 3 x H x W float32 blob, scale, padded w, padded h): raw BGR 0..255 as
        YuNet expects, zero padding bottom/right as OpenCV does."""
        import cv2

        fh, fw = image.shape[:2]
        width = self.input_width if self.upscale else min(self.input_width, fw)
        scale, rw, rh, pw, ph = input_geometry(fw, fh, width, self.fixed)
        self.last_input_size = (rw, rh)
        resized = image if (rw, rh) == (fw, fh) else cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :rh, :rw] = resized.transpose(2, 0, 1)
        return x, scale, pw, ph

    def detect_input(self, blob: np.ndarray, pad_w: int, pad_h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the network on a prepared blob; boxes, scores, landmarks in network pixels after NMS."""
        out = self.backend.infer({self.input_name: blob})
        boxes, scores, kps = decode(out, pad_w, pad_h, self.score_threshold)
        keep = nms(boxes, scores, self.score_threshold, self.nms_threshold, self.top_k)
        return boxes[keep], scores[keep], kps[keep]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a BGR (or gray, or BGRA) uint8 frame, in frame pixels, best score first."""
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4)):
            import cv2

            code = cv2.COLOR_BGRA2BGR if image.ndim == 3 and image.shape[2] == 4 else cv2.COLOR_GRAY2BGR
            image = cv2.cvtColor(image, code)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"not an image frame: shape {image.shape}")
        blob, scale, pw, ph = self.blob(image)
        boxes, scores, kps = self.detect_input(blob, pw, ph)
        faces = []
        for b, s, k in zip(boxes / scale, scores, kps / scale):
            if min(b[2], b[3]) < self.min_face:
                continue
            faces.append(Face(box=b.astype(np.float32), score=float(s), landmarks=k.astype(np.float32)))
        return faces

    def close(self) -> None:
        self.backend.close()


def measure_input_widths(det: YunetDetector, widths: tuple[int, ...] = AUTO_WIDTHS, repeats: int = 7,
                         stop_over_ms: float | None = None) -> dict[int, float]:
    """Median ms of `det.detect` on a 640x480 frame (seeded noise) at each input width, narrowest first;
    with `stop_over_ms`, wider ones are not timed once one takes longer (they would take longer still:
    a slow device does not spend its start timing widths it cannot use). `det` keeps its width."""
    import time

    frame = np.random.default_rng(0).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    was, out = (det.input_width, det.upscale), {}
    try:
        det.upscale = True
        for w in sorted(widths):
            det.input_width = w
            det.detect(frame)  # warm-up: the runtime's first run at a new shape is slow
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                det.detect(frame)
                times.append((time.perf_counter() - t0) * 1000)
            out[w] = float(np.median(times))
            if stop_over_ms is not None and out[w] > stop_over_ms:
                break
    finally:
        det.input_width, det.upscale = was
    return out


#: Timings per (detector file, threads), taken once per process: a SIGHUP reload rebuilds the pipeline
#: and must keep the watchdog pinging rather than time the detector again (the device's speed is the same).
_TIMED: dict[tuple[str, int], dict[int, float]] = {}


def timed_input_widths(det: YunetDetector, threads: int) -> dict[int, float]:
    """`measure_input_widths` up to the budget, once per detector file and thread count in this process."""
    key = (str(getattr(det.backend, "path", "")), threads)
    if key not in _TIMED:
        _TIMED[key] = measure_input_widths(det, stop_over_ms=AUTO_BUDGET_MS)
    return _TIMED[key]


def choose_input_width(ms: dict[int, float], budget_ms: float = AUTO_BUDGET_MS) -> tuple[int, str]:
    """The widest width measured within `budget_ms` (`ms`: `measure_input_widths`), else the narrowest;
    and why, for the log and `edgefer doctor`."""
    fits = [w for w in sorted(ms, reverse=True) if ms[w] <= budget_ms]
    times = ", ".join(f"{w}: {ms[w]:.1f} ms" for w in sorted(ms, reverse=True))
    if fits:
        return fits[0], f"auto: the widest within {budget_ms:g} ms per 640x480 frame here ({times})"
    return min(ms), f"auto: none within {budget_ms:g} ms per 640x480 frame here ({times}); the narrowest"
