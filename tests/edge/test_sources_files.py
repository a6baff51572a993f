"""The URI table and the file sources: every frame of a clip in order, image folders, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.edge.sources import SOURCES, open_source, parse_uri, source_class
from edgefer.edge.sources.base import Source
from edgefer.edge.sources.files import ImageFolderSource, VideoFileSource
from edgefer.errors import UserError


def test_uri_table(tmp_path, face_clip, photos_dir):
    clip, _ = face_clip
    assert parse_uri(str(clip)) == ("video", str(clip))
    assert parse_uri(f"file://{clip}") == ("video", str(clip))
    assert parse_uri(str(photos_dir / "happy")) == ("images", str(photos_dir / "happy"))
    one = next((photos_dir / "happy").glob("*.jpg"))
    assert parse_uri(str(one)) == ("images", str(one))
    assert parse_uri("0") == ("v4l2", "0")
    assert parse_uri(2) == ("v4l2", "2")
    assert parse_uri("/dev/video1") == ("v4l2", "/dev/video1")
    assert parse_uri("v4l2:///dev/video0") == ("v4l2", "v4l2:///dev/video0")
    assert parse_uri("csi://0") == ("csi", "csi://0")
    assert parse_uri("picamera2://0") == ("picamera2", "picamera2://0")
    for uri in ("rtsp://user:pw@cam/stream", "rtsps://cam/s", "http://127.0.0.1:8080/video.mjpg", "https://x/y.m3u8"):
        assert parse_uri(uri) == ("stream", uri)
    assert set(SOURCES) == {"video", "images", "v4l2", "csi", "picamera2", "stream"}


@pytest.mark.parametrize("uri", ["ftp://host/clip.mp4", "gopher://x", "webrtc://x"])
def test_unknown_scheme_is_a_user_error(uri):
    with pytest.raises(UserError, match="unknown source scheme"):
        open_source(uri)


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(UserError, match="no such file"):
        open_source(f"file://{tmp_path}/nope.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(UserError):
        open_source("")


def test_registered_classes_import_or_fail_clearly():
    assert source_class("video") is VideoFileSource and source_class("images") is ImageFolderSource
    for kind in ("v4l2", "csi", "picamera2", "stream"):
        try:
            cls = source_class(kind)
        except UserError as exc:  # a live-source module not written yet, or its dependency missing
            assert kind in str(exc)
        else:
            assert callable(cls)
    with pytest.raises(UserError):
        source_class("teleport")


def test_video_file_every_frame_in_order(face_clip):
    path, where = face_clip
    src = open_source(str(path))
    assert isinstance(src, Source) and src.live is False and src.name == str(path)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert [f.index for f in frames] == list(range(len(where)))
    assert all(f.image.shape == (480, 640, 3) for f in frames)
    # media time: 30 fps
    assert frames[-1].monotonic - frames[0].monotonic == pytest.approx((len(frames) - 1) / 30.0, abs=1e-6)
    assert src.read() is None and src.skipped == 0
    src.close()
    assert src.read() is None


def test_corrupt_or_non_video_files_are_user_errors(tmp_path, face_clip):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a video" * 1000)
    with pytest.raises(UserError):
        open_source(str(junk))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(UserError):
        open_source(str(empty))
    # a clip cut short in the middle still plays its intact frames, then ends
    clip, where = face_clip
    cut = tmp_path / "cut.avi"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    src = VideoFileSource(cut)
    n = 0
    while src.read() is not None:
        n += 1
    assert 0 < n < len(where)


def test_image_folder_skips_unreadable_images(tmp_path, photos_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, p in enumerate(sorted((photos_dir / "happy").glob("*.jpg"))[:3]):
        shutil.copy(p, folder / f"{i}.jpg")
    (folder / "1b.jpg").write_bytes(b"truncated jpeg")
    (folder / "readme.txt").write_text("ignored")
    src = open_source(str(folder), fps=10)
    got = []
    while (f := src.read()) is not None:
        got.append((f.index, Path(f.source).name, f.image.dtype))
    assert got == [(0, "0.jpg", np.uint8), (1, "1.jpg", np.uint8), (2, "2.jpg", np.uint8)]
    assert [p.name for p in src.unreadable] == ["1b.jpg"] and src.skipped == 1


def test_gray_and_png_images(tmp_path):
    img = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    cv2.imwrite(str(tmp_path / "g.png"), img)
    f = ImageFolderSource(tmp_path / "g.png").read()
    assert f.image.shape == (48, 64, 3)


def test_a_corrupt_frame_inside_a_clip_is_skipped_and_counted(face_clip, tmp_path):
    """MJPEG/AVI: blank out the JPEG data of one frame in the middle; the others still play."""
    import re

    clip, where = face_clip
    data = bytearray(clip.read_bytes())
    movi = data.index(b"movi")
    chunks = [m.start() for m in re.finditer(b"00dc", data) if m.start() > movi]
    assert len(chunks) >= len(where)
    o = chunks[len(where) // 2]
    size = int.from_bytes(data[o + 4:o + 8], "little")
    data[o + 10:o + 8 + size] = b"\x00" * (size - 2)  # keep the chunk header and the JPEG SOI marker
    bad = tmp_path / "one_bad_frame.avi"
    bad.write_bytes(bytes(data))
    src = VideoFileSource(bad)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f.index)
    assert frames == list(range(len(where) - 1)) and src.skipped == 1


def test_image_folder_stills_or_sequence_and_one_clock(tmp_path, photos_dir):
    """Each image is a new scene unless `sequence`; `start` continues a clock (`next_monotonic`)."""
    for i, p in enumerate(sorted((photos_dir / "happy").glob("*.jpg"))[:2]):
        shutil.copy(p, tmp_path / f"{i}.jpg")
    stills = ImageFolderSource(tmp_path)
    assert [stills.read().new_scene, stills.read().new_scene, stills.read()] == [True, True, None]
    seq = ImageFolderSource(tmp_path, fps=10, sequence=True)
    a, b = seq.read(), seq.read()
    assert not a.new_scene and not b.new_scene and b.monotonic - a.monotonic == pytest.approx(0.1)
    assert seq.next_monotonic == pytest.approx(a.monotonic + 0.2)
    more = ImageFolderSource(tmp_path, fps=10, sequence=True, start=seq.next_monotonic)
    c = more.read()
    assert c.monotonic == pytest.approx(b.monotonic + 0.1) and c.timestamp == pytest.approx(b.timestamp + 0.1, abs=1e-3)
    more.set_start(5.0)
    assert more.read().monotonic == pytest.approx(5.1)


def test_video_frames_are_one_scene_and_start_continues_the_clock(face_clip):
    path, where = face_clip
    src = VideoFileSource(path)
    frames = [src.read() for _ in range(3)]
    assert not any(f.new_scene for f in frames)
    again = VideoFileSource(path, start=src.next_monotonic)
    assert again.read().monotonic == pytest.approx(frames[-1].monotonic + 1 / src.fps)
    src.close()
    again.close()
