"""Every command that writes, against every kind of bad output path: one line, non-zero, no traceback.

Bad paths: a parent that cannot be created (under /proc), a place nobody may create files (/proc
itself), a read-only file system and a full one (tmpfs mounts; skipped with the reason where this
process may not mount), and /dev/full for a file target. `EDGEFER_PATHS_TABLE=FILE` appends each
case's printed line and exit code to FILE (the table of the closing note).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mount(target: Path, *options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """A read-only tmpfs and a full one (64 KiB, filled), or None where mounting is refused."""
    base = tmp_path_factory.mktemp("mounts")
    ro, full = base / "ro", base / "full"
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(ro, "ro", "size=64k"):
        yield None
        return
    _mount(full, "size=64k")
    with open(full / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * (1 << 20))
        except OSError:
            pass
    yield {"read-only fs": ro, "full fs": full}
    for m in (ro, full):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, photos_dir, fer_npz):
    base = tmp_path_factory.mktemp("inputs")
    photos = base / "photos"
    for cls in ("happy", "sad"):
        (photos / cls).mkdir(parents=True)
        for p in sorted((photos_dir / cls).glob("*.jpg"))[:2]:
            shutil.copy(p, photos / cls / p.name)
    return {"photos": photos, "one": next((photos / "happy").iterdir()), "npz": fer_npz}


# command -> (argv with {out} for the bad path, whether the output is a folder)
COMMANDS = {
    "calibration build --out": (["calibration", "build", "--from", "{npz}", "--per-class", "8", "--out", "{out}"], False),
    "predict --annotate": (["predict", "{one}", "--annotate", "{out}"], True),
    "predict --json >": (None, False),  # stdout: the shell's business, not ours
    "eval --plot": (["eval", "{photos}", "--plot", "{out}"], False),
    "run --jsonl": (["run", "--source", "{photos}/happy", "--max-frames", "1", "--jsonl", "{out}"], False),
    "convert --out": (["convert", "--to", "onnx-fp16", "--out", "{out}"], False),
    "install-service --config-dir": (["install-service", "--config-dir", "{out}", "--unit-dir", "{out}",
                                       "--no-create-user", "--executable", "/usr/bin/true"], True),
}
BAD = ["missing parent", "unwritable", "read-only fs", "full fs", "/dev/full"]


def _bad_path(kind: str, folder: bool, mounts: dict | None, name: str) -> Path | None:
    if kind == "missing parent":
        return Path("/proc/edgefer-missing/sub") / name
    if kind == "unwritable":
        return Path("/proc") / name
    if kind == "/dev/full":
        return None if folder else Path("/dev/full")
    if mounts is None:
        pytest.skip("cannot mount a tmpfs here (needs root and mount(8))")
    return mounts[kind] / name


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("command", [c for c, (argv, _) in COMMANDS.items() if argv is not None])
def test_bad_output_path_is_one_line(command, kind, mounts, inputs, yunet_path, tmp_path):
    argv, folder = COMMANDS[command]
    out = _bad_path(kind, folder, mounts, "out.d" if folder else "out.onnx" if command.startswith("convert") else "out.file")
    if out is None:
        pytest.skip("/dev/full is a file, not a folder target")
    args = [a.format(out=out, **inputs) for a in argv]
    if command.split()[0] in ("run", "predict", "eval", "calibration"):
        args += ["--detector", str(yunet_path)]
    r = subprocess.run([sys.executable, "-m", "edgefer", *args], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    # Log lines of a daemon that kept running (a sink reporting a full disk) are not the error.
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not re.match(r"\d{4}-\d\d-\d\d .* (WARNING|ERROR) ", ln)]
    table = os.environ.get("EDGEFER_PATHS_TABLE")
    if table:
        with open(table, "a") as fh:
            fh.write(f"| `{command}` | {kind} | `{lines[-1] if lines else ''}` | {r.returncode} |\n")
    assert r.returncode != 0, r.stdout[-500:] + r.stderr[-1000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("edgefer: error: "), r.stderr[-2000:]
    named = re.search(r"cannot write (\S+?):|error: (\S+?):", lines[0])
    said = Path((named.group(1) or named.group(2)).rstrip("/")) if named else None
    assert said is not None and (said == out or said in out.parents or out in said.parents), lines[0]  # the path, a parent, or a file in it
