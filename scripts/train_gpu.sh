#!/usr/bin/env bash
# The shipped generator (the pixel generator, model/pixel_generator.py; issue 18) at GPU scale in one run that
# fits a lent GPU machine's 10-minute command limit:
#   bash scripts/train_gpu.sh            # on a CUDA host (one H100 / H200, 16 CPU cores): about 9 minutes
#   bash scripts/train_gpu.sh --smoke    # the same path on this CPU, a few steps (run by the test suite)
# It continues the committed state (assets/train_state/pixel_omni: fp16 EMA + step; the optimiser's moments start
# again), makes its batches in 14 worker processes (world rendering, the enhancer's plan, the pixel context),
# trains whole 16-frame clips at batch 256 for a wall-clock budget with the learning rate annealed 1e-3 -> 1e-4, and
# writes to $OUT (default runs/gpu):
#   $OUT/model   a model directory: the shipped one with this run's generator (its families and sampler settings
#                kept), ready for `python -m training.evaluate --model $OUT/model`
#   $OUT/state   fp16 EMA + step + config: commit it as assets/train_state/pixel_omni when the model is shipped
#   $OUT/log.jsonl, $OUT/train.log
# The latent generator's recipe is scripts/train_gpu_latent.sh. This installs and downloads nothing: the device
# machine gets this checkout and its .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/gpu}
STATE=${STATE:-assets/train_state/pixel_omni}
BASE=${BASE:-assets/models/omni-world}
source scripts/pixel_families.sh
FAMILIES=${FAMILIES:-$PIXEL_FAMILIES}
mkdir -p "$OUT"
rm -rf "$OUT/checkpoint.pt" "$OUT/state" "$OUT/model" "$OUT/log.jsonl"
cp -r "$STATE" "$OUT/state"  # resumed from here, and written back here as the run goes
echo "init: $STATE (step $($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$STATE/state.json"))"
if [ "${1:-}" = "--smoke" ]; then
  ARGS=(--device cpu --batch 4 --steps 2 --workers 2 --crop-frames 8)
else
  $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: run with --smoke on a CPU")'
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  ARGS=(--device cuda --batch 256 --minutes "${MINUTES:-7.5}" --workers 14 --crop-frames 16)
fi
$PY -m training.pixel_probe --out "$OUT" --context --state-dir "$OUT/state" --families "$FAMILIES" \
    --lr "${LR:-1e-3}" --lr-final "${LR_FINAL:-1e-4}" --no-score "${ARGS[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
TASKS=$($PY -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['tasks']))" "$BASE/pixel_generator/config.json")
$PY -m training.pixel_probe --out "$OUT" --context --export "$OUT/model" --base "$BASE" --tasks "$TASKS" | tee -a "$OUT/train.log"
echo "model: $OUT/model; state to commit: $OUT/state"
