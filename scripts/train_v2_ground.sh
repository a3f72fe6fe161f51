#!/usr/bin/env bash
# The embedded model v2 with phrase grounding (issue 18): the 2x-path state (assets/train_state/layout2x, its
# schedule complete at step 3,000) with the generator's grounding path added (GeneratorConfig.grounding_channels:
# each planned subject's words painted into its box; zero-initialised, so it starts as that model), trained on
# the planned families. Resumable on any machine: from runs/ground2x, or, when runs/ is lost, from the
# committed assets/train_state/ground2x (fp16 EMA + step + schedule).
#   bash scripts/train_v2_ground.sh [STEPS] [NPROC] [EXTRA FLAGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-2000}
NPROC=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
PY=.venv/bin/python
export OMP_NUM_THREADS=1
PLANNED="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,edit_add:1,edit_remove:1,edit_replace:1"
REST=$($PY -c 'from training.data import SFT_FAMILIES as F; p="'"$PLANNED"'"; n={x.split(":")[0] for x in p.split(",")}; print(",".join(f+":0.5" for f in F if f not in n))')
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
run -m training.sft --out runs/ground2x --init assets/train_state/layout2x --grounding 8 "$@" --steps "$STEPS" \
    --batch 32 --families "$PLANNED,$REST" --ema 0.995 --ema-warmup 100 --lr 5e-5 \
    --min-lr 1e-5 --warmup 20 --save-every 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 23 \
    --state-dir assets/train_state/ground2x
$PY -m training.tune_edit_strength --model runs/ground2x/model --strengths 1,0.8,0.6,0.4 --write \
    --json runs/ground2x/edit_strength.json
$PY -m training.evaluate --model runs/ground2x/model --jobs "$NPROC" --json runs/ground2x/omnibench.json
$PY -m training.evaluate --compare runs/ground2x/omnibench.json assets/models/omni-world/omnibench.json
