#!/usr/bin/env bash
# The embedded model v2 on CPU (issue 18): the shipped generator with the layout plan as a pixel-aligned
# input (model/layout.py; zero-initialised, so it starts as the shipped model), trained on the truth's
# layouts of the planned families (the planner's own plans take their place at inference), resumable
# on any machine: every checkpoint also writes assets/train_state/layout4x (fp16 EMA + step + schedule,
# committed), so a lost runs/ costs only the optimiser's moments. Re-run the same command to continue.
#   bash scripts/train_v2.sh [STEPS] [NPROC]
# Stage 1 (the curriculum's first): the planned families weighted up (t2v 4, i2v / arrows / boxes 2,
# reasoning / references / add / remove / replace 1), every other family 0.5 so nothing is forgotten.
# Then OmniBench (planner's layouts) and the truth-layout diagnostic (what a perfect planner would reach).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3000}
NPROC=${2:-2}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
PLANNED="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,edit_add:1,edit_remove:1,edit_replace:1"
REST=$($PY -c 'from training.data import SFT_FAMILIES as F; p="'"$PLANNED"'"; n={x.split(":")[0] for x in p.split(",")}; print(",".join(f+":0.5" for f in F if f not in n))')
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
run -m training.sft --out runs/layout4x --init assets/models/omni-world --layout 1 --steps "$STEPS" --batch 32 \
    --families "$PLANNED,$REST" --ema 0.995 --ema-warmup 100 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 \
    --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 11 --state-dir assets/train_state/layout4x
$PY -m training.evaluate --model runs/layout4x/model --jobs "$NPROC" --json runs/layout4x/omnibench.json
$PY -m training.evaluate --model layout:runs/layout4x/model --jobs "$NPROC" --json runs/layout4x/omnibench_truth_layout.json
$PY -m training.evaluate --compare runs/layout4x/omnibench.json assets/models/omni-world/omnibench.json
