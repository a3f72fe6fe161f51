#!/usr/bin/env bash
# The embedded model's recipe, end to end, resumable (re-run it to continue where it stopped):
# VAE -> pretraining (t2v, i2v) -> SFT (every family) -> SFT continued on a new cosine schedule ->
# decoder fine-tune (encoder frozen) ->
# edit start levels chosen on training-split cases -> OmniBench -> model card in assets/.
# Data parallel over NPROC processes (one thread each). Step counts are arguments so a longer
# run (or one on the GPU machine) uses the same script:
#   bash scripts/train_embedded.sh [VAE_STEPS] [PRETRAIN_STEPS] [SFT_STEPS] [NPROC] [CONT_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
VAE_STEPS=${1:-2400}
PRE_STEPS=${2:-2200}
SFT_STEPS=${3:-4800}  # the shipped model: 4,800 (batch 32 per process)
NPROC=${4:-2}
CONT_STEPS=${5:-2000}  # the shipped model: SFT continued 2,000 steps at lr 1e-4 -> 1e-5
PY=.venv/bin/python
export OMP_NUM_THREADS=1
FAMS="t2v:4,i2v:2,$(.venv/bin/python -c 'from training.data import SFT_FAMILIES as F; print(",".join(f for f in F if f not in ("t2v", "i2v")))')"  # every family, t2v weighted 4 and i2v 2
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
$PY -m training.train_vae --out runs/vae --steps "$VAE_STEPS"
run -m training.pretrain --out runs/pretrain --vae runs/vae/final --steps "$PRE_STEPS" --batch 32 \
    --dim 192 --depth 6 --heads 3 --ema 0.995 --lr 5e-4 --warmup 100 --save-every 100 \
    --fg-weight 3 --fg-max-s 0.5 --uniform-time 0.3
run -m training.sft --out runs/sft --init runs/pretrain/model --steps "$SFT_STEPS" --batch 32 \
    --families "$FAMS" \
    --ema 0.995 --lr 3e-4 --warmup 50 --save-every 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5
run -m training.sft --out runs/sft_cont --init runs/sft/model --steps "$CONT_STEPS" --batch 32 \
    --families "$FAMS" \
    --ema 0.995 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 6
rm -rf runs/final && cp -r runs/sft_cont/model runs/final
$PY -m training.train_vae --out runs/vae_dec --init runs/vae/final --decoder-only --steps 1500 --lr 3e-4 \
    --min-lr 3e-5 --warmup 50 --seed 1 --install-into runs/final
$PY -m training.tune_edit_strength --model runs/final --strengths 1,0.9,0.8,0.7,0.6,0.5,0.4 --write \
    --json runs/final/edit_strength.json
$PY -m training.evaluate --model runs/final --json runs/final/omnibench.json
$PY -m training.model_card --model runs/final --bench runs/final/omnibench.json --out assets/models/omni-world \
    --vae-log runs/vae/log.jsonl --logs runs/pretrain/log.jsonl runs/sft/log.jsonl runs/sft_cont/log.jsonl runs/vae_dec/log.jsonl
