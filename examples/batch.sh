#!/usr/bin/env bash
# Batch animation from the shell: several portraits driven by one video.
#
#   bash examples/batch.sh PORTRAIT_DIR DRIVING_VIDEO OUT_DIR
#
# Two ways to do it; both analyse the driving video once.
set -euo pipefail

portraits=${1:-examples}
driving=${2:-examples/driving.mp4}
out=${3:-batch-out}
mkdir -p "$out"

# 1. The single-call form: one process loads the model once for every source. Outputs are named
#    SOURCE__DRIVING.mp4; --continue-on-error goes on after a bad photo and the exit status is 0 only if all
#    jobs succeeded. --json prints what was written (and what failed) on stdout.
export3d animate "$portraits"/*.png "$driving" -o "$out" --continue-on-error --json > "$out/summary.json" || status=$?
echo "single call: exit ${status:-0}, summary in $out/summary.json"

# 2. A shell loop, for when each job needs its own options: extract the driver's motion once, reuse it.
export3d extract "$driving" -o "$out/motion.npz" --quiet
failed=0
for photo in "$portraits"/*.png; do
    name=$(basename "${photo%.*}")
    if ! export3d animate "$photo" "$out/motion.npz" -o "$out/loop-$name.mp4" --paste-back --quiet; then
        echo "failed: $photo" >&2
        failed=$((failed + 1))
    fi
done
echo "shell loop: $failed failed"
[ "$failed" -eq 0 ]
