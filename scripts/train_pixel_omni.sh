#!/usr/bin/env bash
# The pixel-space generator for every planned family (issue 18): the text-to-video pixel generator
# (assets/train_state/pixel_t2v) grown with context channels (model/pixel_generator.pixel_context: the first frame
# carried along the plan, reference cut-outs, the context video) and trained for MINUTES of wall clock on one thread
# on the families below. Committable state (fp16 EMA + step + config) in assets/train_state/pixel_omni; resumable on
# any machine from runs/pixel_omni/checkpoint.pt, or from that state when runs/ is lost.
#   bash scripts/train_pixel_omni.sh MINUTES
#   then: .venv/bin/python -m training.pixel_probe --out runs/pixel_omni --export DIR --tasks "$TASKS"
#         .venv/bin/python -m training.evaluate --model DIR --jobs 2 --json omnibench.json
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:?minutes}
STATE=${STATE:-assets/train_state/pixel_omni}
source scripts/pixel_families.sh
FAMILIES=${FAMILIES:-$PIXEL_FAMILIES}
INIT=""
if [ ! -f "${OUT:-runs/pixel_omni}/checkpoint.pt" ] && [ ! -f "$STATE/state.json" ]; then
    INIT="--init-from assets/train_state/pixel_t2v"  # a fresh start: grow the t2v generator
fi
export OMP_NUM_THREADS=1
.venv/bin/python -m training.pixel_probe --out "${OUT:-runs/pixel_omni}" --minutes "$MIN" --context $INIT \
    --state-dir "$STATE" --families "$FAMILIES" --cases "${CASES:-12}" ${EXTRA:-}
