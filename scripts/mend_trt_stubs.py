"""Mend the syntax slips of the generated `tensorrt-stubs` in a copy, so mypy can read them.

Usage: python scripts/mend_trt_stubs.py STUB_DIR   (edits the .pyi files under STUB_DIR in place;
run it on a temporary copy, as scripts/check_trt_types.sh does).

Slips found in tensorrt-stubs 10.13: parameters named `in` (a keyword), and parameters without a
default after parameters with one. Each is rewritten (`in` -> `in_`; the later ones get `= ...`)
until every stub parses.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def split_top(params: str) -> list[str]:
    """Split a parameter list on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def mend_defaults(line: str) -> str:
    """Give `= ...` to parameters without a default that follow one with a default."""
    start = line.index("(") + 1
    depth, end = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(line[end], 0)
        end += 1
    params = split_top(line[start:end - 1])
    seen_default, out = False, []
    for p in params:
        name = p.strip()
        if "=" in name.split(":", 1)[-1] or name.startswith("*"):
            seen_default = seen_default or "=" in name
        elif seen_default:
            p = p + " = ..."
        out.append(p)
    return line[:start] + ",".join(out) + line[end - 1:]


def mend_file(path: Path, max_rounds: int = 500) -> int:
    src = re.sub(r"([(,]\s*)in: ", r"\1in_: ", path.read_text())
    fixes = 0
    for _ in range(max_rounds):
        try:
            ast.parse(src)
            break
        except SyntaxError as exc:
            lines = src.splitlines()
            i = (exc.lineno or 1) - 1
            if "non-default argument" not in (exc.msg or "") and "parameter without a default" not in (exc.msg or ""):
                raise SystemExit(f"{path}:{exc.lineno}: cannot mend: {exc.msg}") from None
            lines[i] = mend_defaults(lines[i])
            src = "\n".join(lines) + "\n"
            fixes += 1
    else:
        raise SystemExit(f"{path}: still not parseable after {max_rounds} fixes")
    path.write_text(src)
    return fixes


if __name__ == "__main__":
    root = Path(sys.argv[1])
    total = sum(mend_file(p) for p in root.rglob("*.pyi"))
    print(f"mended {total} signatures under {root}")
