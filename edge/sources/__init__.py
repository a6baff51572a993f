"""Frame sources picked by URI, as jetson-utils does.

| URI                                   | kind        | class                                   |
|---------------------------------------|-------------|-----------------------------------------|
| `clip.mp4`, `file://clip.mp4`         | `video`     | `files.VideoFileSource` (frame by frame)|
| `photos/`, `file:///data/photos`      | `images`    | `files.ImageFolderSource`               |
| `face.jpg`                            | `images`    | `files.ImageFolderSource` (one frame)   |
| `v4l2:///dev/video0`, `v4l2://0`, `0`, `/dev/video0` | `v4l2` | `v4l2.V4l2Source`              |
| `csi://0` (Jetson, nvarguscamerasrc)  | `csi`       | `csi.CsiSource`                         |
| `picamera2://0` (Raspberry Pi)        | `picamera2` | `picamera.PicameraSource`               |
| `rtsp://...`, `rtsps://...`, `http(s)://...` | `stream` | `stream.StreamSource`               |

Modules are imported only when used. File sources get the path; live sources get the whole URI.
Every class takes `(location, width=None, height=None, fps=None)`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgefer.errors import UserError

from .base import Source
from .files import IMAGE_SUFFIXES, VIDEO_SUFFIXES

#: source kind -> "module:Class"
SOURCES: dict[str, str] = {
    "video": "edgefer.edge.sources.files:VideoFileSource",
    "images": "edgefer.edge.sources.files:ImageFolderSource",
    "v4l2": "edgefer.edge.sources.v4l2:V4l2Source",
    "csi": "edgefer.edge.sources.csi:CsiSource",
    "picamera2": "edgefer.edge.sources.picamera:PicameraSource",
    "stream": "edgefer.edge.sources.stream:StreamSource",
}

#: URI scheme -> source kind (`file` is resolved to `video` or `images` by what the path is).
SCHEMES: dict[str, str] = {
    "file": "file",
    "v4l2": "v4l2",
    "csi": "csi",
    "picamera2": "picamera2",
    "rtsp": "stream",
    "rtsps": "stream",
    "http": "stream",
    "https": "stream",
}


def _file_kind(path: Path, uri: str) -> tuple[str, str]:
    if path.is_dir():
        return "images", str(path)
    if not path.exists():
        raise UserError(f"{uri}: no such file or directory")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images", str(path)
    return "video", str(path)  # VIDEO_SUFFIXES and anything else OpenCV may still open


def parse_uri(uri: str | int) -> tuple[str, str]:
    """A source URI -> (kind, location): the registry key and what its class is given."""
    text = str(uri).strip()
    if not text:
        raise UserError("empty source URI")
    if re.fullmatch(r"\d+", text):
        return "v4l2", text
    if re.fullmatch(r"/dev/video\d+", text):
        return "v4l2", text
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if not match:
        return _file_kind(Path(text).expanduser(), text)
    scheme = match.group(1).lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise UserError(f"{text}: unknown source scheme {scheme!r} (use a path, file://, v4l2://, a camera "
                        f"index, csi://, picamera2://, rtsp:// or http(s)://)")
    if kind == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            # file://clip.mp4 (relative, jetson-utils style) puts the name in netloc
            return _file_kind(Path(unquote(parts.netloc + parts.path)).expanduser(), text)
        return _file_kind(Path(unquote(parts.path)).expanduser(), text)
    return kind, text


def source_class(kind: str) -> type:
    """The class registered for a source kind, imported now."""
    if kind not in SOURCES:
        raise UserError(f"unknown source kind {kind!r} (known: {', '.join(SOURCES)})")
    module, cls = SOURCES[kind].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"source {kind!r} is not available here ({exc})") from None
    return getattr(mod, cls)


def open_source(uri: str | int, **options: Any) -> Source:
    """Open the source a URI names (see the table above); `options` go to its class."""
    kind, location = parse_uri(uri)
    return source_class(kind)(location, **options)


__all__ = ["IMAGE_SUFFIXES", "SCHEMES", "SOURCES", "VIDEO_SUFFIXES", "Source", "open_source", "parse_uri",
           "source_class"]
