#!/usr/bin/env bash
# The t2v curve of a running training (issue 18): every EVERY steps, snapshot the run's exported EMA model
# and score it on OmniBench's t2v cases (24 held-out), at low CPU priority beside the training.
#   bash scripts/t2v_curve.sh runs/layout2x [EVERY]     -> runs/layout2x_curve/t2v_STEP.json
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?a run folder, e.g. runs/layout2x}
EVERY=${2:-200}
OUT="${RUN%/}_curve"
mkdir -p "$OUT"
last=0
while true; do
    step=$(.venv/bin/python -c "import json;print(json.load(open('$RUN/model/model_index.json'))['config']['notes']['step'])" 2>/dev/null || echo 0)
    if [ "$step" -ge $((last + EVERY)) ]; then
        rm -rf "$OUT/model_$step" && cp -r "$RUN/model" "$OUT/model_$step"
        nice -n 10 .venv/bin/python -m training.evaluate --model "$OUT/model_$step" --family t2v \
            --json "$OUT/t2v_$step.json" > "$OUT/t2v_$step.txt" 2>&1
        last=$step
    fi
    sleep 60
done
