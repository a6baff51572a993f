"""Run the `edgefer` command line as a user would: a fresh interpreter, output captured."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefer", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
