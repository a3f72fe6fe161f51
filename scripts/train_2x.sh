#!/usr/bin/env bash
# The embedded model's path past the 4x VAE's OmniBench ceiling (0.40), resumable, as measured in session 11:
# 2x VAE (16 channels at 16x16) -> the shipped generator transplanted into its latent space
# (training/transplant.py) with the generator's input path (`--input-skip 1`) from the start -> edit levels
# re-tuned for this VAE -> OmniBench and GSB against the shipped model (measured: 0.060, level with it).
# The input path matters: a patch of the 2x space (4 x 4 x 16) is 256 numbers and a token 192, so without it
# the noise in x_s cannot reach the velocity (loss stalled at 0.66-0.70; with it 0.64 after 120 steps).
# Not the shipped model: it ships when it beats it on OmniBench with every GSB dimension >= 100%.
#   bash scripts/train_2x.sh [VAE_STEPS] [SFT_STEPS] [NPROC]
set -euo pipefail
cd "$(dirname "$0")/.."
VAE_STEPS=${1:-2400}
SFT_STEPS=${2:-1800}
NPROC=${3:-2}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
FAMS="t2v:4,i2v:2,$($PY -c 'from training.data import SFT_FAMILIES as F; print(",".join(f for f in F if f not in ("t2v", "i2v")))')"
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
$PY -m training.train_vae --out runs/vae2x_a --spatial-down 2 --steps "$VAE_STEPS"
run -m training.sft --out runs/t2x_skip0 --init assets/models/omni-world --transplant-vae runs/vae2x_a/final --patch 4 \
    --transplant-mode procrustes --transplant-lr-mult 10 --input-skip 1 --steps "$SFT_STEPS" --batch 32 \
    --families "$FAMS" --ema 0.995 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 --uniform-time 0.3 \
    --fg-weight 3 --fg-max-s 0.5 --seed 7
$PY -m training.tune_edit_strength --model runs/t2x_skip0/model --strengths 1,0.8,0.6,0.4 --write \
    --json runs/t2x_skip0/edit_strength.json  # the edit levels for this VAE (the 4x model's cost consistency 29% GSB)
$PY -m training.evaluate --model runs/t2x_skip0/model --jobs "$NPROC" --json runs/t2x_skip0/omnibench.json
$PY -m training.evaluate --compare runs/t2x_skip0/omnibench.json assets/models/omni-world/omnibench.json
