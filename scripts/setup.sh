#!/usr/bin/env bash
# Install edgefer into a virtual environment (.venv in the repository root) with the system's own
# python3. Stock Debian 12, Ubuntu 22.04/24.04 and Raspberry Pi OS bookworm mark their Python as
# externally managed (PEP 668), so `pip install` outside a venv is refused there; a venv is the
# way their documentation gives. Usage:
#
#   ./scripts/setup.sh                         # the project (README command 1)
#   ./scripts/setup.sh -e '.[train,test]'      # other pip arguments (scripts/test.sh does this)
#   ./scripts/setup.sh --venv-only             # only create the venv
#
# Environment: PYTHON (default python3), EDGEFER_VENV (default .venv).
# On a Jetson (JetPack's python3-libnvinfer) or Raspberry Pi OS (python3-picamera2), TensorRT and
# picamera2 come from the OS, so the venv is created with --system-site-packages to see them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${EDGEFER_VENV:-.venv}

say() { echo "setup: $*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "needs the OS packages $*, and this system has no apt-get: install them, then run again"
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "needs the OS packages $* (run as root or install sudo)"; exit 1; }
    sudo="sudo"
  fi
  say "installing OS packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v "$PY" >/dev/null || apt_install python3

if [ ! -x "$VENV/bin/python" ]; then
  site=""
  if "$PY" -c 'import tensorrt' 2>/dev/null || "$PY" -c 'import picamera2' 2>/dev/null; then
    site="--system-site-packages"
    say "TensorRT or picamera2 found in the system Python: the venv will see the system's packages"
  fi
  # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package, python3-venv.
  if ! "$PY" -m venv $site "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv
    "$PY" -m venv $site "$VENV"
  fi
fi

[ "${1:-}" = --venv-only ] && exit 0
if [ $# -eq 0 ]; then set -- .; fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
say "edgefer $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("edgefer"))') is in $VENV: run $VENV/bin/edgefer, or 'source $VENV/bin/activate' first"
