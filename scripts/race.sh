#!/usr/bin/env bash
# A race on equal CPU time (issue 18): arms that differ only in generator paths, trained side by side from the
# committed 2x-path state (assets/train_state/layout2x) for MINUTES of wall clock on one process and one thread
# each (the same families, seed, schedule and batch), then scored on training-split compositions (the
# decision; never the benchmark) and on the held-out benchmark of the planned families (reported).
#   bash scripts/race.sh MINUTES NAME="FLAGS" [NAME="FLAGS" ...]   -> $OUT/NAME/..., $OUT/summary.txt
#   e.g. bash scripts/race.sh 45 plain="" ground="--grounding 8"
#   LIMIT=1 OUT=/tmp/race bash scripts/race.sh 0.2 plain="" ground="--grounding 4"   (a smoke run)
#   SPLITS=train: score the training split only (the decision), not the benchmark
# A new path (--refine W, --grounding G) starts at zero beside the trained body, at its own rate multiplier.
# An arm's FLAGS come last, so they may also override the shared ones (e.g. --fg-max-s 1.0).
# Each arm keeps a committable state in $OUT/NAME/state (fp16 EMA + step + schedule), as the recipe scripts do.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:?minutes}
shift
PY=.venv/bin/python
export OMP_NUM_THREADS=1
STATE=${STATE:-assets/train_state/layout2x}
OUT=${OUT:-runs/race}
mkdir -p "$OUT"
PLANNED="t2v:4,i2v:2,arrows:2,boxes:2,reasoning:1,image_ref:1,subject_ref:1,novel_view:1,edit_add:1,edit_remove:1,edit_replace:1"
REST=$($PY -c 'from training.data import SFT_FAMILIES as F; p="'"$PLANNED"'"; n={x.split(":")[0] for x in p.split(",")}; print(",".join(f+":0.5" for f in F if f not in n))')
NAMES=()
for spec in "$@"; do
    name=${spec%%=*}; flags=${spec#*=}; NAMES+=("$name")
    # shellcheck disable=SC2086
    $PY -m training.sft --out "$OUT/$name" --init "$STATE" --steps 100000 --batch 16 \
        --families "$PLANNED,$REST" --ema 0.99 --ema-warmup 50 --lr 5e-5 --min-lr 5e-5 --warmup 20 --save-every 100 \
        --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 17 --max-minutes "$MIN" --fresh --state-dir "$OUT/$name/state" \
        $flags > "$OUT/$name.log" 2>&1 &
done
wait
FAMS="--family t2v --family boxes --family arrows --family i2v ${LIMIT:+--limit $LIMIT}"
for split in ${SPLITS:-train bench}; do
    for a in "${NAMES[@]}"; do
        # shellcheck disable=SC2086
        $PY -m training.evaluate --model "$OUT/$a/model" $FAMS $([ $split = train ] && echo --split train) \
            --json "$OUT/$a/$split.json" > "$OUT/$a/$split.txt" 2>&1 &
        while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 1; done
    done
    wait
done
{ for a in "${NAMES[@]}"; do
    echo "== $a: steps $($PY -c "import json; print(json.load(open('$OUT/$a/model/model_index.json'))['config']['notes']['step'])")"
    echo "-- training-split compositions (the decision)"; tail -6 "$OUT/$a/train.txt"
    if [ -f "$OUT/$a/bench.txt" ]; then echo "-- held-out benchmark"; tail -6 "$OUT/$a/bench.txt"; fi; done; } | tee "$OUT/summary.txt"
