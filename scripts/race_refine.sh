#!/usr/bin/env bash
# A race on equal CPU time (issue 18): does the generator's latent-resolution head (GeneratorConfig.refine_channels)
# draw better than the same model without it? Both arms start from the committed 2x-path state
# (assets/train_state/layout2x), train side by side for MINUTES of wall clock on one process and one thread each
# (the same families, seed, schedule and batch; the head, new beside a trained body, at 10x the rate), then are scored on training-split compositions (the decision;
# never the benchmark) and on the held-out benchmark of the planned families (reported).
#   bash scripts/race_refine.sh [MINUTES] [WIDTH]     -> runs/race_refine/{plain,head}/..., runs/race_refine/summary.txt
#   LIMIT=1 OUT=/tmp/race bash scripts/race_refine.sh 0.2 8   (a smoke run: one case per family)
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-60}
WIDTH=${2:-32}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
STATE=assets/train_state/layout2x
OUT=${OUT:-runs/race_refine}
mkdir -p "$OUT"
PLANNED="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,edit_add:1,edit_remove:1,edit_replace:1"
REST=$($PY -c 'from training.data import SFT_FAMILIES as F; p="'"$PLANNED"'"; n={x.split(":")[0] for x in p.split(",")}; print(",".join(f+":0.5" for f in F if f not in n))')
arm() {  # NAME REFINE
    $PY -m training.sft --out "$OUT/$1" --init "$STATE" --refine "$2" --refine-lr-mult 10 --steps 100000 --batch 16 \
        --families "$PLANNED,$REST" --ema 0.99 --ema-warmup 50 --lr 5e-5 --min-lr 5e-5 --warmup 20 --save-every 100 \
        --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 17 --max-minutes "$MIN" --fresh \
        > "$OUT/$1.log" 2>&1
}
arm plain 0 & arm head "$WIDTH" & wait
FAMS="--family t2v --family boxes --family arrows --family i2v ${LIMIT:+--limit $LIMIT}"
for a in plain head; do
    $PY -m training.evaluate --model "$OUT/$a/model" $FAMS --split train --json "$OUT/$a/train_split.json" \
        > "$OUT/$a/train_split.txt" 2>&1 &
done
wait
for a in plain head; do
    $PY -m training.evaluate --model "$OUT/$a/model" $FAMS --json "$OUT/$a/bench.json" > "$OUT/$a/bench.txt" 2>&1 &
done
wait
{ for a in plain head; do echo "== $a: steps $($PY -c "import json; print(json.load(open('$OUT/$a/model/model_index.json'))['config']['notes']['step'])")";
    echo "-- training-split compositions (the decision)"; tail -6 "$OUT/$a/train_split.txt";
    echo "-- held-out benchmark"; tail -6 "$OUT/$a/bench.txt"; done; } | tee "$OUT/summary.txt"
