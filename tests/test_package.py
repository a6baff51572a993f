"""The package as users install it: every module imports without optional extras, every command's
--help works, and every package folder is declared (a non-editable install would drop it). And the
house rules of its source: no module over 500 lines, no import cycle between the package's modules."""

from __future__ import annotations

import ast
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


MAX_LINES = 500


def _source_files() -> list[Path]:
    """The project's Python files, tracked or new (not ignored), outside tests/ and benchmarks/."""
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"git ls-files: {r.stderr.strip()}"
    paths = [ROOT / line for line in r.stdout.splitlines() if not line.startswith(("tests/", "benchmarks/"))]
    return sorted(p for p in paths if p.is_file())


def test_no_module_over_500_lines():
    """One idea per module: a module over 500 lines is split where it holds two (docs/STYLE.md)."""
    files = _source_files()
    assert any(p.name == "recipe.py" for p in files), "git ls-files found none of the project's modules"
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def _package_files() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (a package by its `__init__.py`)."""
    files = {}
    for pkg, folder in PACKAGE_DIR.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [*pkg.split("."), *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """For each module, the package modules it imports anywhere in its body (inside functions too: a
    lazy import still needs the other module). `from X import y` counts as an import of `X.y` where
    that is a module, else of `X`; relative imports are resolved against the importing module."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import edgefer.convert.chain as c` and the like
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, one per back edge of a depth-first walk, each as the chain of modules that closes it."""
    state: dict[str, str] = {}  # "open": on the walk's stack, "done": all it reaches walked
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_cycle_finder_sees_lazy_and_relative_imports(tmp_path):
    """The finder itself, on a tiny package: a cycle closed by a relative import inside a function is found,
    and a chain without one is not."""
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import c\n")
    (tmp_path / "c.py").write_text("def g():\n    from edgefer.train.a import x\n")
    (tmp_path / "d.py").write_text("import edgefer.train.a\n")
    files = {f"edgefer.train.{p.stem}": p for p in tmp_path.glob("*.py")}
    graph = import_graph(files)
    assert graph["edgefer.train.d"] == {"edgefer.train.a"}
    assert find_cycles(graph) == [["edgefer.train.a", "edgefer.train.b", "edgefer.train.c", "edgefer.train.a"]]
    (tmp_path / "c.py").write_text("import numpy\n")
    assert find_cycles(import_graph(files)) == []


def test_no_import_cycles():
    """Modules that import each other, even lazily inside a function, are one idea split in two or two
    ideas tangled: move what both need into a third module, or turn one dependency around."""
    files = _package_files()
    assert "edgefer.train.recipe" in files and "edgefer.convert.chain" in files
    cycles = find_cycles(import_graph(files))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
