#!/usr/bin/env bash
# The embedded model v2 at GPU scale in one run that fits a lent GPU machine's 10-minute command limit:
#   bash scripts/train_gpu_latent.sh            # on a CUDA host (one H200, 16 CPU cores): about 9 minutes
#   bash scripts/train_gpu_latent.sh --smoke    # the same path on this CPU, a few steps (run by the test suite)
# It continues the newest committed state of the layout model: the 2x-VAE path (assets/train_state/layout2x,
# the furthest: its VAE inside), else the 4x one (assets/train_state/layout4x), else the shipped model with the
# layout path added; renders the world in worker processes, trains with a
# wall-clock budget and writes the model directory and its log to $OUT (default runs/gpu):
#   $OUT/model (ready for `python -m training.evaluate --model $OUT/model`), $OUT/state (fp16 EMA +
#   step + schedule, to commit as assets/train_state/...), $OUT/log.jsonl, $OUT/train.log.
# EXTRA adds training flags, e.g. EXTRA="--grounding 8" (phrase grounding, added to a state that lacks it).
# It installs nothing and downloads nothing: the device machine gets this checkout and its .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
INIT=assets/models/omni-world
for s in layout4x layout2x; do [ -f assets/train_state/$s/state.json ] && INIT=assets/train_state/$s; done
echo "init: $INIT"
FAMS="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,$($PY -c 'from training.data import SFT_FAMILIES as F; print(",".join(f+":0.5" for f in F if f not in ("t2v","i2v","arrows","boxes","reasoning","image_ref","subject_ref","novel_view")))')"
if [ "${1:-}" = "--smoke" ]; then
  ARGS=(--device cpu --batch 4 --steps 2 --workers 2 --threads 1 --save-every 2 --log-every 1 --max-minutes 5)
else
  $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: run with --smoke on a CPU")'
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  ARGS=(--device cuda --batch 256 --steps 2500 --workers 14 --threads 2 --save-every 250 --log-every 25 --max-minutes 8)
fi
$PY -m training.sft --out "$OUT" --init "$INIT" --layout 1 --families "$FAMS" --ema 0.999 --ema-warmup 200 \
    --lr 2e-4 --min-lr 2e-5 --warmup 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 21 \
    --state-dir "$OUT/state" --fresh "${ARGS[@]}" ${EXTRA:-} 2>&1 | grep -v "rms_norm\|Mismatch dtype" | tee "$OUT/train.log"
echo "model: $OUT/model; state to commit: $OUT/state"
