"""Live sources without the hardware: the pure parts (pipeline strings, frame formats, URIs)."""

from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest

from edgefer.edge.sources.camera import default_camera_uri
from edgefer.edge.sources.csi import gstreamer_pipeline, parse_sensor
from edgefer.edge.sources.picamera import FORMATS, to_bgr
from edgefer.edge.sources.stream import StreamSource, redact
from edgefer.edge.sources.v4l2 import V4l2Source, parse_device
from edgefer.errors import UserError


def test_csi_pipeline_string():
    p = gstreamer_pipeline(1, 1920, 1080, 30, 960, 540, flip_method=2)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080")
    assert "framerate=(fraction)30/1" in p and "nvvidconv flip-method=2" in p
    assert "width=(int)960, height=(int)540, format=(string)BGRx" in p
    assert p.endswith("video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")
    assert "width=(int)1280" in gstreamer_pipeline()  # output defaults to the sensor size
    assert parse_sensor("csi://0") == 0 and parse_sensor("csi://") == 0
    with pytest.raises(UserError):
        parse_sensor("csi://front")
    with pytest.raises(UserError):
        gstreamer_pipeline(flip_method=9)


@pytest.fixture(scope="module")
def photo(photos_dir) -> np.ndarray:
    img = cv2.resize(cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0])), (320, 240))
    img[:, :, 0] = (img[:, :, 0] * 0.5).astype(np.uint8)  # tint it: many of the photos are grey
    img[:, :, 2] = np.clip(img[:, :, 2].astype(int) + 60, 0, 255).astype(np.uint8)
    return img


def test_picamera_formats_to_bgr(photo):
    """Arrays laid out as picamera2 documents each format, built from a real photo."""
    rgb = photo[:, :, ::-1]
    alpha = np.full(photo.shape[:2] + (1,), 255, np.uint8)
    recorded = {
        "RGB888": photo,  # [B, G, R] per pixel
        "BGR888": rgb,  # [R, G, B]
        "XRGB8888": np.dstack([photo, alpha]),  # [B, G, R, 255]
        "XBGR8888": np.dstack([rgb, alpha]),  # [R, G, B, 255]
    }
    for fmt, arr in recorded.items():
        out = to_bgr(arr, fmt)
        assert out.shape == photo.shape and out.flags.c_contiguous, fmt
        assert np.array_equal(out, photo), fmt
    i420 = cv2.cvtColor(photo, cv2.COLOR_BGR2YUV_I420)
    assert i420.shape == (360, 320)
    yv12 = cv2.cvtColor(photo, cv2.COLOR_BGR2YUV_YV12)
    for fmt, arr in (("YUV420", i420), ("YVU420", yv12)):
        out = to_bgr(arr, fmt)
        assert out.shape == photo.shape
        assert np.abs(out.astype(int) - photo.astype(int)).mean() < 4, fmt  # chroma subsampling only
    # Swapping the planes is visible: the conversion really depends on the format.
    assert np.abs(to_bgr(i420, "YVU420").astype(int) - photo.astype(int)).mean() > 4
    assert set(FORMATS) == {"RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420", "YVU420"}


@pytest.mark.parametrize("fmt,shape", [("RGB888", (10, 10, 4)), ("XRGB8888", (10, 10, 3)), ("YUV420", (10, 10, 3)),
                                       ("YUV420", (11, 10)), ("NV12", (15, 10))])
def test_picamera_rejects_wrong_layouts(fmt, shape):
    with pytest.raises(ValueError):
        to_bgr(np.zeros(shape, np.uint8), fmt)


def test_picamera_missing_package_message():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    from edgefer.edge.sources.picamera import PicameraSource

    with pytest.raises(UserError, match="apt install python3-picamera2"):
        PicameraSource("picamera2://0")


def test_default_camera_per_platform(tmp_path):
    assert default_camera_uri(tmp_path) == "v4l2:///dev/video0"
    pi = tmp_path / "pi"
    (pi / "proc/device-tree").mkdir(parents=True)
    (pi / "proc/device-tree/model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert default_camera_uri(pi) == "picamera2://0"
    jetson = tmp_path / "jetson"
    (jetson / "etc").mkdir(parents=True)
    (jetson / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    assert default_camera_uri(jetson) == "csi://0"


def test_v4l2_uris_and_missing_device():
    assert parse_device("v4l2:///dev/video2") == "/dev/video2"
    assert parse_device("v4l2://3") == 3 and parse_device("0") == 0 and parse_device("/dev/video1") == "/dev/video1"
    with pytest.raises(UserError):
        parse_device("v4l2://camera")
    with pytest.raises(OSError, match="cannot open camera .*no such device"):
        V4l2Source("v4l2:///dev/video99")  # the supervisor retries this with backoff


def test_stream_redacts_password_and_fails_fast_when_refused():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/stream") == "rtsp://admin:***@10.0.0.5:554/stream"
    assert redact("rtsp://10.0.0.5/stream") == "rtsp://10.0.0.5/stream"
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(OSError, match=r"cannot open stream rtsp://u:\*\*\*@127.0.0.1"):
        StreamSource(f"rtsp://u:secret@127.0.0.1:{port}/x")
    assert time.monotonic() - t0 < 10
