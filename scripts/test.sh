#!/usr/bin/env bash
# Run edgefer's test suite on a fresh Debian/Ubuntu machine: installs what the tests need
# (Mosquitto, Chromium, systemd-analyze, OpenSSL from the OS; the project with its test and
# training extras), then runs the linter and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
# Emulated CPUs (x86 without VNNI, Arm64) for the INT8 tests: tests/convert/test_emulated_cpus.py
command -v qemu-x86_64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
# An AVX2-only CPU at native speed (scripts/cpuid_mask.c, built with cc): tests/convert/test_emulated_cpus.py
command -v cc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing OS packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The project and its test and training extras go into the same virtual environment as command 1
# (.venv, created by scripts/setup.sh with the system's python3: PEP 668 forbids the system one).
VENV=${EDGEFER_VENV:-.venv}
export EDGEFER_VENV="$VENV"
./scripts/setup.sh --venv-only   # creates the venv (installing python3-venv if needed)
PY="$VENV/bin/python"
# PyTorch (the `train` extra) is only needed by the training tests; take the CPU build.
$PY -c 'import torch' 2>/dev/null || $PY -m pip install -q 'torch==2.13.0' \
  || echo "note: PyTorch not installed; training tests will be skipped"
./scripts/setup.sh -e '.[train,test]'

$PY -m ruff check .
# TensorRT code is type-checked against tensorrt-stubs (TensorRT itself cannot be installed here).
PATH="$(cd "$VENV/bin" && pwd):$PATH" ./scripts/check_trt_types.sh
# Chromium is installed above: a missing browser must fail the overlay test, not skip it.
export EDGEFER_REQUIRE_BROWSER=1
# qemu-user-static and debootstrap are installed above: the emulated-CPU tests must run, not skip.
export EDGEFER_REQUIRE_EMULATION=1
exec $PY -m pytest -q "$@"
