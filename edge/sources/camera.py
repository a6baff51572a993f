"""`--camera`: the platform's usual camera, and which URI schemes are live cameras or streams."""

from __future__ import annotations

from pathlib import Path

#: Schemes whose sources are captured in a thread keeping only the newest frame, and reopened
#: with backoff when they fail (a missing camera never stops the service).
LIVE_SCHEMES = ("v4l2", "csi", "picamera2", "rtsp", "rtsps", "http", "https")


def is_live(uri: str) -> bool:
    """True for cameras and network streams, False for files and folders."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme in LIVE_SCHEMES or uri.startswith("/dev/video")


def default_camera_uri(root: str | Path = "/") -> str:
    """`csi://0` on a Jetson (`/etc/nv_tegra_release` exists), `picamera2://0` on a Raspberry Pi
    (the device-tree model says so), else `v4l2:///dev/video0`. `root` lets tests use a fake tree."""
    root = Path(root)
    if (root / "etc/nv_tegra_release").exists():
        return "csi://0"
    for model in (root / "proc/device-tree/model", root / "sys/firmware/devicetree/base/model"):
        try:
            if "raspberry pi" in model.read_bytes().decode("utf-8", "replace").lower():
                return "picamera2://0"
        except OSError:
            continue
    return "v4l2:///dev/video0"
