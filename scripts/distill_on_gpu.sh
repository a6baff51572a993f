#!/usr/bin/env bash
# Distil a wide teacher into the default model on a lent GPU machine, in one call (stages 12 and 13 of
# docs/training-history.md ran through it): unpack the data carried in .gpu/ (the FER-2013 npz,
# xz-compressed to fit a call, and the YuNet detector), make the package importable without installing
# it (that machine has no package index), run scripts/distill_on_gpu.py inside its time budget, and keep
# the results in $OUT (what the device tool brings back): the checkpoints, distill.log, and logs.tar
# with every history, curve and per-student log.
#   BUDGET: seconds for the driver (default 500); EXTRA: more driver options (e.g. --device cpu --smoke 3).
set -uo pipefail
: "${OUT:?OUT must name the folder to keep results in}"
export PYTHONUNBUFFERED=1
rm -rf /tmp/distill-runs  # a warm machine keeps an earlier call's runs: never mistake them for this call's
shim=/tmp/edgefer-shim
rm -rf "$shim" && mkdir -p "$shim" && cp -r edgefer "$shim/"
for d in edge convert calibration train systemd; do ln -sfn "$PWD/$d" "$shim/edgefer/$d"; done
export PYTHONPATH=$shim
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/fer.npz.xz'), open('/tmp/fer.npz', 'wb'))" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# shellcheck disable=SC2086
timeout $(( ${BUDGET:-500} + 50 )) python3 scripts/distill_on_gpu.py --data /tmp/fer.npz \
    --detector .gpu/face_detection_yunet_2026may.onnx --runs /tmp/distill-runs --keep "$OUT" \
    --device cuda --budget "${BUDGET:-500}" ${EXTRA:-} 2>&1 | tee "$OUT/distill.log"
rc=${PIPESTATUS[0]}
# killed at the limit: keep what the runs hold so far
for d in /tmp/distill-runs/teacher /tmp/distill-runs/student /tmp/distill-runs/student-s*; do
    n=$(basename "$d")
    [ -e "$OUT/$n-history.json" ] || cp "$d/history.json" "$OUT/$n-history.json" 2>/dev/null
    [ "$n" = teacher ] && continue
    [ -e "$OUT/$n-last.pt" ] || cp "$d/last.pt" "$OUT/$n-last.pt" 2>/dev/null
    [ -e "$OUT/$n.log" ] || cp "$d.log" "$OUT/$n.log" 2>/dev/null
done
# the device tool brings back at most 8 files (16 MiB each): histories, curves and logs travel as one tar,
# each checkpoint as itself
small=$(cd "$OUT" && ls -- *.json *.png *.log 2>/dev/null | grep -vx distill.log)
if [ -n "$small" ]; then
    # shellcheck disable=SC2086
    (cd "$OUT" && tar -cf logs.tar $small && rm -f $small)
fi
ls -l "$OUT"
exit "$rc"
