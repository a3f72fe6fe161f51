#!/usr/bin/env bash
# The embedded model moved to a 2x VAE (the path past the 4x VAE's OmniBench ceiling of 0.40), resumable:
# 2x VAE (ceiling 0.688) -> the shipped generator transplanted into its latent space (training/transplant.py)
# + SFT there -> SFT continued -> SFT with the generator's input path (`--input-skip 1`: a patch of the 2x
# space is 256 numbers and a token 192, so the noise in x_s could not reach the velocity without it; the
# measured run branched this stage off stage 2 at its step 2,200 of 4,000). Not the shipped model yet:
# it ships when it beats it on OmniBench.
#   bash scripts/train_2x.sh [VAE_STEPS] [SFT_STEPS] [CONT_STEPS] [NPROC] [SKIP_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
VAE_STEPS=${1:-3600}
SFT_STEPS=${2:-2000}
CONT_STEPS=${3:-4000}
NPROC=${4:-2}
SKIP_STEPS=${5:-1200}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
FAMS="t2v:4,i2v:2,$($PY -c 'from training.data import SFT_FAMILIES as F; print(",".join(f for f in F if f not in ("t2v", "i2v")))')"
run() { if [ "$NPROC" -gt 1 ]; then $PY -m torch.distributed.run --nproc_per_node "$NPROC" "$@"; else $PY "$@"; fi; }
$PY -m training.train_vae --out runs/vae2x_a --spatial-down 2 --steps "$VAE_STEPS"
run -m training.sft --out runs/t2x --init assets/models/omni-world --transplant-vae runs/vae2x_a/final --patch 4 \
    --transplant-mode procrustes --transplant-lr-mult 10 --steps "$SFT_STEPS" --batch 32 --families "$FAMS" \
    --ema 0.995 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 7
run -m training.sft --out runs/t2x_b --init runs/t2x/model --steps "$CONT_STEPS" --batch 32 --families "$FAMS" \
    --ema 0.995 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 --uniform-time 0.3 --fg-weight 3 --fg-max-s 0.5 --seed 8
run -m training.sft --out runs/t2x_skip --init runs/t2x_b/model --input-skip 1 --steps "$SKIP_STEPS" --batch 32 \
    --families "$FAMS" --ema 0.995 --lr 1e-4 --min-lr 1e-5 --warmup 50 --save-every 100 --uniform-time 0.3 --fg-weight 3 \
    --fg-max-s 0.5 --seed 10
$PY -m training.evaluate --model runs/t2x_skip/model --jobs "$NPROC" --json runs/t2x_skip/omnibench.json
