"""The package as users install it: every module imports without optional extras, every command's
--help works, and every package folder is declared (a non-editable install would drop it)."""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefer.cli import COMMANDS

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
OPTIONAL = ("tensorrt", "pycuda", "picamera2", "libcamera")


def _modules() -> list[str]:
    names = []
    for pkg, folder in PACKAGE_DIR.items():
        names.append(pkg)
        for info in pkgutil.walk_packages([str(ROOT / folder)], prefix=pkg + "."):
            names.append(info.name)
    return sorted(set(n for n in names if not n.endswith("__main__")))


def test_every_package_folder_is_declared():
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for pkg, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= declared, f"add to pyproject packages: {sorted(found - declared)}"


@pytest.mark.parametrize("name", _modules())
def test_module_imports_without_optional_packages(name):
    """Importing any module must not import TensorRT, pycuda or picamera2 (they are imported lazily)."""
    code = (f"import sys, importlib; importlib.import_module({name!r}); "
            f"bad = [m for m in {OPTIONAL!r} if m in sys.modules]; sys.exit(f'eager import: {{bad}}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if r.returncode and name.startswith("edgefer.train.") and "No module named 'torch'" in r.stderr \
            and importlib.util.find_spec("torch") is None:
        pytest.skip("the training extra (torch) is not installed")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help(command):
    r = subprocess.run([sys.executable, "-m", "edgefer", command, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage:" in r.stdout and "Example" in r.stdout, f"{command} --help lacks an example"


def test_top_level_help_lists_every_command():
    r = subprocess.run([sys.executable, "-m", "edgefer", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for command in COMMANDS:
        assert command in r.stdout


def test_embedded_default_model_is_small_and_valid():
    from edgefer.edge.classifier import default_model_path
    from edgefer.modelinfo import read_onnx_info

    path = default_model_path()
    assert path.stat().st_size < 5 * 1024 * 1024
    info = read_onnx_info(path)
    assert len(info.template) == 5 and info.input.size == 48


def test_unknown_command_is_one_line():
    r = subprocess.run([sys.executable, "-m", "edgefer", "frobnicate"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
