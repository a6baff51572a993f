#!/usr/bin/env bash
# Type-check edgefer's TensorRT code with mypy against the `tensorrt-stubs` package.
#
# TensorRT itself cannot be installed here, so the stubs are installed with --no-deps (otherwise
# they pull the real TensorRT) into a temporary folder, their generated syntax slips are mended
# there (scripts/mend_trt_stubs.py), and mypy checks the modules that call TensorRT. A self-test
# then misspells a builder-config method in a copy and expects mypy to fail, so a silently
# disabled check cannot pass. Needs: pip, mypy (the `test` extra). Exit status: mypy's.
set -euo pipefail
cd "$(dirname "$0")/.."
STUBS_VERSION="${TRT_STUBS_VERSION:-10.13.0.35.1}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python -m pip install -q --disable-pip-version-check --no-deps --target "$TMP/stubs" "tensorrt-stubs==${STUBS_VERSION}"
python scripts/mend_trt_stubs.py "$TMP/stubs"
cat > "$TMP/mypy.ini" <<'INI'
[mypy]
python_version = 3.11
ignore_missing_imports = True
follow_imports = silent
[mypy-tensorrt_bindings.*]
ignore_errors = True
[mypy-tensorrt.*]
ignore_errors = True
INI
FILES=(convert/trt_build.py convert/trt_legacy_calibrator.py edge/backends/tensorrt.py)
MYPYPATH="$TMP/stubs" python -m mypy --config-file "$TMP/mypy.ini" "${FILES[@]}"
sed 's/set_memory_pool_limit(/set_memory_pool_limt(/' convert/trt_build.py > "$TMP/misspelt_trt_build.py"
if MYPYPATH="$TMP/stubs" python -m mypy --config-file "$TMP/mypy.ini" "$TMP/misspelt_trt_build.py" >/dev/null 2>&1; then
    echo "self-test FAILED: mypy did not flag a misspelt IBuilderConfig method; the stubs are not in use" >&2
    exit 1
fi
echo "self-test ok: a misspelt IBuilderConfig method is flagged"
