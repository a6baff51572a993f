"""Paths the user gave us to write: the one place where an OSError on them becomes a `UserError`.

Every output (a file, a folder of files, a cache or state folder) goes through these helpers, so
a missing or uncreatable folder, a read-only or full file system or a denied permission ends in
one line naming the user's path and the operating system's reason:

    edgefer: error: cannot write /proc/c.npz: No such file or directory

`check_output` fails fast, before minutes of work, without creating anything; `atomic_path`
and friends write under a temporary name beside the target and rename it at the end, so a
failed write removes its temporary file and never clobbers an existing output. An OSError on
some other file (a bug, a library's own file) is not touched and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgefer.errors import UserError


def reason(exc: OSError) -> str:
    """The operating system's words for `exc`: 'No space left on device', 'Read-only file system'..."""
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))


def cannot_write(path: str | Path, exc: OSError, error: type[UserError] = UserError) -> UserError:
    return error(f"cannot write {path}: {reason(exc)}")


def _concerns(exc: OSError, path: Path) -> bool:
    """Whether `exc` is about writing `path`: no file named (a write on an open descriptor), or
    `path` itself, a folder above it, a file under it, or a temporary/companion file beside it."""
    names = [Path(os.fsdecode(n)).absolute() for n in (exc.filename, exc.filename2) if n is not None]
    if not names:
        return True
    target = path.absolute()
    for n in names:
        if n == target or n in target.parents or target in n.parents:
            return True
        if n.parent == target.parent and (target.name in n.name or (target.stem and target.stem in n.name)):
            return True
    return False


@contextmanager
def writing(path: str | Path, error: type[UserError] = UserError) -> Iterator[None]:
    """An OSError inside that concerns `path` (see `_concerns`) becomes `error('cannot write PATH: reason')`."""
    p = Path(path)
    try:
        yield
    except OSError as exc:
        if _concerns(exc, p):
            raise cannot_write(p, exc, error) from None
        raise


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_output(path: str | Path, folder: bool = False, parents: bool = True) -> None:
    """Raise OSError where `path` (a file, or with `folder` a folder to write files into) could not
    be written, without creating anything: the folder that would hold it must be a writable folder
    (probed by making and removing a temporary folder there), or with `parents` its nearest existing
    ancestor must be. An existing non-regular file (/dev/null, a FIFO) is written in place."""
    p = Path(path).absolute()
    if p.exists():
        if folder and not p.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p))
        if not folder and p.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(p))
        if not folder and not p.is_file():
            if not os.access(p, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(p))
            return
        home = p if folder else p.parent
    else:
        home = p.parent
        if not home.exists():
            if not parents:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(home))
            home = _nearest_existing(home)
    if not home.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(home))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgefer-probe-", dir=home))
    except OSError as exc:  # name the folder, not the probe
        raise OSError(exc.errno, exc.strerror, str(home)) from None


def check_output(
    path: str | Path, folder: bool = False, parents: bool = True, error: type[UserError] = UserError
) -> None:
    """`probe_output` as a user error: call it before the work whose result goes to `path`."""
    with writing(path, error):
        probe_output(path, folder=folder, parents=parents)


def ensure_dir(path: str | Path, error: type[UserError] = UserError) -> Path:
    """`mkdir -p path`; a failure is `cannot write PATH: reason`."""
    p = Path(path)
    with writing(p, error):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p))
        p.mkdir(parents=True, exist_ok=True)
    return p


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, or `suffix`, so libraries that go by the
    extension still work) for the caller to write; on success it is renamed over `path`, on any
    failure it is removed and `path` stays as it was. Missing parent folders are created. An
    existing non-regular file (/dev/null, /dev/full, a FIFO) is yielded itself, written in place.
    OSErrors are `cannot write PATH: reason` (see `writing`)."""
    p = Path(path)
    with writing(p):
        if p.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(p))
        if p.exists() and not p.is_file():
            yield p
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp{p.suffix if suffix is None else suffix}")
        try:
            yield tmp
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, p)
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def write_bytes_atomic(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` through `atomic_path`."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write `text` (UTF-8) to `path` through `atomic_path`."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)
