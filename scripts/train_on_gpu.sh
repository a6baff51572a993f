#!/usr/bin/env bash
# Any `edgefer train` recipe on a lent GPU in one device-tool call, resumable across calls
# (scripts/train_on_gpu.py says how to pack .gpu/ here and what comes back).
#   bash scripts/train_on_gpu.sh NAME [edgefer train options ...]
# Adds --data (the carried FER-2013 npz), --out /tmp/gpu-runs/NAME, --detector (the carried YuNet),
# --device ($DEVICE, default cuda) and --resume. Files packed with --file are at .gpu/files/<name>.
# GPU_DIR (default .gpu) and GPU_WORK (default /tmp/gpu-work) move the carried and the working folders.
#   BUDGET: seconds the training may run in this call (default 520: the call's 600 less unpacking and
#   copying); a run cut short by it resumes in the next call with the same NAME.
set -uo pipefail
: "${OUT:?OUT must name the folder to keep results in}"
[ $# -ge 1 ] || { echo "usage: $0 NAME [edgefer train options]" >&2; exit 2; }
name=$1; shift
case $name in ''|*/*|.*) echo "train_on_gpu: NAME must be a plain folder name, got '$name'" >&2; exit 2;; esac
gpu=${GPU_DIR:-.gpu}          # what `train_on_gpu.py pack` wrote, carried
work=${GPU_WORK:-/tmp/gpu-work}  # the unpacked data and the runs; a warm machine keeps them between calls
[ -f "$gpu/fer.npz.xz" ] || { echo "train_on_gpu: $gpu/fer.npz.xz missing: run 'python scripts/train_on_gpu.py pack' here and carry $gpu" >&2; exit 2; }
export PYTHONUNBUFFERED=1
start=$(date +%s)
# the package importable without installing it (that machine has no package index)
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cp -r edgefer "$shim/"
for d in edge convert calibration train systemd; do ln -sfn "$PWD/$d" "$shim/edgefer/$d"; done
export PYTHONPATH=$shim
mkdir -p "$work"
if [ ! -f "$work/fer.npz" ] || [ "$gpu/fer.npz.xz" -nt "$work/fer.npz" ]; then
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$gpu/fer.npz.xz" "$work/fer.npz.tmp" && mv "$work/fer.npz.tmp" "$work/fer.npz" || exit 1
fi
run=$work/runs/$name
mkdir -p "$run"
# a fresh machine: continue from the checkpoint carried back, unless this machine's own is newer
if [ -f "$gpu/resume/$name/last.pt" ] && { [ ! -f "$run/last.pt" ] || [ "$gpu/resume/$name/last.pt" -nt "$run/last.pt" ]; }; then
    cp "$gpu/resume/$name/last.pt" "$run/last.pt"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
planned=$(python3 - "$@" <<'PY'
import sys
a = sys.argv[1:]
print(a[a.index("--epochs") + 1] if "--epochs" in a else 60)
PY
)
budget=${BUDGET:-520}
timeout --signal=TERM --kill-after=20 "$budget" python3 -m edgefer train --data "$work/fer.npz" --out "$run" \
    --detector "$gpu/detector.onnx" --device "${DEVICE:-cuda}" --resume "$@" 2>&1 | tee -a "$run/train.log"
rc=${PIPESTATUS[0]}
cut=""
[ "$rc" = 124 ] || [ "$rc" = 137 ] && cut="--cut"
python3 scripts/train_on_gpu.py keep "$run" "$OUT" --planned "$planned" --seconds $(( $(date +%s) - start )) $cut || exit 1
ls -l "$OUT"
# cut by the budget is not a failure: the next call resumes
[ -n "$cut" ] && exit 0
exit "$rc"
