#!/usr/bin/env bash
# The 2x path with a wider latent-resolution head (issue 18): the committed 2x state (step 3,000, schedule done)
# continued with --refine W (the head won its 60-minute race at width 32: loss 0.332 vs 0.370, t2v colour and
# motion up), on the race's recipe (constant lr 5e-5, batch 16, EMA 0.99), for MINUTES of wall clock per call.
# Resumable on any machine: runs/head2x/checkpoint.pt, or when runs/ is lost the committed
# assets/train_state/head2x (fp16 EMA + step + schedule; the optimiser's moments start again); the first call
# starts from assets/train_state/layout2x and adds the zero-initialised head.
#   bash scripts/train_v2_head.sh MINUTES [WIDTH] [NPROC]
#   then: python -m training.evaluate --model runs/head2x/model --family t2v ... (see scripts/race.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:?minutes}
WIDTH=${2:-64}
NPROC=${3:-1}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
OUT=${OUT:-runs/head2x}
STATE=${STATE:-assets/train_state/head2x}
PLANNED="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,edit_add:1,edit_remove:1,edit_replace:1"
REST=$($PY -c 'from training.data import SFT_FAMILIES as F; p="'"$PLANNED"'"; n={x.split(":")[0] for x in p.split(",")}; print(",".join(f+":0.5" for f in F if f not in n))')
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
run -m training.sft --out "$OUT" --init assets/train_state/layout2x --steps 100000 --batch 16 \
    --families "$PLANNED,$REST" --ema 0.99 --ema-warmup 50 --lr 5e-5 --min-lr 5e-5 --warmup 20 --save-every 100 \
    --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 19 --max-minutes "$MIN" --state-dir "$STATE" \
    --refine "$WIDTH" --refine-lr-mult 10 ${EXTRA:-}
