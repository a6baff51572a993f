"""What this machine can run: one check per piece, each with an install hint when it is missing.

Every check is a small function returning a `Check`; none of them raises, and optional packages
(tensorrt, pycuda, picamera2) are imported only inside their check.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    value: str
    hint: str = ""  # what to do when not ok
    required: bool = False  # a missing required piece makes `edgefer doctor` exit 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", False, "not installed", "pip install onnxruntime (Jetson: onnxruntime-gpu from Jetson Zoo)", True)
    return Check("onnxruntime", True, f"{ort.__version__}; providers: {', '.join(ort.get_available_providers())}", required=True)


def int8_verdict(facts: dict[str, Any], choice: str) -> tuple[bool, str, str]:
    """(ok, value, hint) of the INT8 check from `edge.precision.measure()`'s facts (pure)."""
    kind = facts["cpu_kind"]
    if not facts["cpu_scheme"]:
        return False, f"{kind}: ONNX Runtime computes even the cpu INT8 scheme wrongly here (probe error " \
                      f"{facts['cpu_scheme_error']:.2f}); runs FP32", "report this CPU and ONNX Runtime version as a bug"
    full = "exact" if facts["full_range"] else f"NOT exact (16-bit sums saturate, probe error {facts['full_range_error']:.2f})"
    value = (f"{kind}: full-range INT8 (tensorrt scheme) {full}; cpu-scheme INT8 exact; INT8 {facts['ratio']:.2f}x "
             f"FP32 here ({facts['fp32_ms']:.2f} -> {facts['int8_ms']:.2f} ms/face, measured); runs: {choice}")
    hints = [] if facts["full_range"] else ["use INT8 models converted with --for cpu (the default of onnx-int8) here"]
    if facts["ratio"] < 1.0:
        hints.append("INT8 is slower than FP32 on this CPU and ONNX Runtime: precision auto runs FP32 (use FP32 models)")
    return facts["ratio"] >= 1.0, value, "; ".join(hints)


def check_cpu() -> Check:
    """Measured, not guessed from flags: `edgefer.convert.probe` on this CPU (well under a second)."""
    from edgefer.edge.precision import choose, measure

    try:
        facts = measure()
        choice = choose(None, "auto", facts)
    except Exception as exc:  # a broken runtime is reported, never raised
        return Check("cpu int8", False, f"probe failed ({exc})", "check the ONNX Runtime install")
    ok, value, hint = int8_verdict(facts, f"the embedded {choice.precision.upper()} model (precision auto)")
    return Check("cpu int8", ok, value, hint)


def check_detector(path: Path | None = None) -> Check:
    """The face detector's input width `[detector] input_width = "auto"` picks here with the daemon's
    default threads, measured on `path`, else on the cached model (never downloaded here)."""
    from edgefer.edge.detector import YunetDetector, choose_input_width, resolve_detector_model, timed_input_widths
    from edgefer.errors import UserError

    try:
        det = YunetDetector.open(resolve_detector_model(path, allow_download=False), threads=0)
    except UserError as exc:
        return Check("detector width", False, f"not measured: {exc}" if path else
                     "not measured: no detector model in the cache", "edgefer doctor --detector PATH (a YuNet ONNX file), "
                     "or run 'edgefer run' once online to cache it")
    try:
        width, reason = choose_input_width(timed_input_widths(det, 0))
    finally:
        det.close()
    return Check("detector width", True, f"input_width auto -> {width} ({reason.removeprefix('auto: ')})")


def check_tensorrt() -> Check:
    try:
        import tensorrt as trt
    except ImportError:
        return Check("tensorrt", False, "not installed", "Jetson: apt install python3-libnvinfer (JetPack); "
                     "x86 with an NVIDIA GPU: pip install 'edgefer[tensorrt]'")
    return Check("tensorrt", True, str(trt.__version__))


def check_cuda() -> Check:
    try:
        import pycuda.driver as cuda
    except ImportError:
        return Check("cuda / gpu", False, "pycuda not installed", "pip install 'edgefer[tensorrt]' (Jetson: apt install python3-pycuda)")
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return Check("cuda / gpu", False, "no CUDA device", "check the NVIDIA driver (nvidia-smi / tegrastats)")
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        v = cuda.get_driver_version()
        return Check("cuda / gpu", True, f"{dev.name()}, compute capability {major}.{minor}, CUDA driver {v // 1000}.{v % 1000 // 10}")
    except Exception as exc:  # pycuda raises its own error types
        return Check("cuda / gpu", False, f"CUDA unusable ({exc})", "check the NVIDIA driver and permissions on /dev/nvidia*")


def check_cameras() -> Check:
    devices = sorted(glob.glob("/dev/video*"))
    if devices:
        return Check("cameras", True, ", ".join(devices))
    return Check("cameras", False, "no /dev/video* devices",
                 "plug in a USB camera; a CSI camera needs GStreamer (Jetson) or picamera2 (Raspberry Pi); "
                 "the service user must be in group 'video'")


def check_gstreamer() -> Check:
    try:
        import cv2
    except ImportError:
        return Check("opencv gstreamer", False, "OpenCV not installed", "pip install opencv-python-headless")
    info = cv2.getBuildInformation()
    line = next((ln for ln in info.splitlines() if "GStreamer" in ln), "")
    ok = "YES" in line
    return Check("opencv gstreamer", ok, f"OpenCV {cv2.__version__}: GStreamer {'yes' if ok else 'no'}",
                 "" if ok else "needed for csi:// and rtsp:// via GStreamer; on a Jetson use the system OpenCV "
                 "(apt install python3-opencv, built with GStreamer) instead of the pip wheel")


def check_picamera2() -> Check:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        return Check("picamera2", False, "not installed", "Raspberry Pi OS: apt install python3-picamera2 "
                     "(only for Raspberry Pi camera modules)")
    return Check("picamera2", True, "installed")


CHECKS = (check_onnxruntime, check_cpu, check_detector, check_tensorrt, check_cuda, check_cameras, check_gstreamer, check_picamera2)


def run_checks(detector: Path | None = None) -> list[Check]:
    return [check(detector) if check is check_detector else check() for check in CHECKS]
