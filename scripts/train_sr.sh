#!/usr/bin/env bash
# The super-resolution stage (issue 22) on CPU, resumable on any machine: runs/sr holds the checkpoint and the
# optimiser; when runs/ is lost, the committed assets/train_state/sr (weights + step; the optimiser's moments
# start again) takes its place. Re-run the same command to continue. Then the side-by-side benchmark.
#   bash scripts/train_sr.sh [STEPS]
# The recipe: dim 128, depth 4, 2 heads, windows of 4 x 8 x 8 tokens, an output conv refiner of 32 channels,
# batches of 8 random 16 x 16 x 8-frame crops of OmniWorld pairs (every family), half the base clips through
# the shipped VAE's round trip, blur up to 1 px and noise up to 0.1; from step 2,000 the base-clip conv path
# (48 channels, 6 (2+1)D blocks, pixel shuffle; added at zero) and bf16 autocast where native. 4,800 steps:
# +1.10 dB over bicubic on the truth's clips (benchmarks/results/sr_4800.json), +0.70 at 2,000 without the path.
# From step 5,500 (session 33): 30% of clips clean at level 0 (--p-clean 0.3), a quarter through the VAE (the shipped
# pixel generator does not use it), lr 3e-4 -> 1e-5 cosine over 8,000 steps: +1.34 dB at 8,000 (sr_8000.json); the same
# recipe to 12,000 (session 34): +1.48 dB (sr_12000.json). The cosine spans all STEPS: a longer run resumes at its rate.
# From 12,000 (session 35): the conv path 16 blocks deep (10 more, added as identities), whole 16-frame crops (batch 4,
# the same pixels per step: an edge's sub-pixel place shows across all of a clip's frames) and a peak lr of 1e-3 (the
# cosine then runs at ~1e-4 -> 1e-5 over the rest): +1.61 dB at 14,800 (sr_14800.json); on to 17,000 (the cosine over
# 17,000 steps restarts it at 5e-5): +1.66 dB (sr_17000.json). State committed at 17,000.
# Session 36 went on from 17,000 towards 21,000 (the cosine over 21,000 steps restarts it at ~9e-5) and stopped at the
# step the train-state table names; resume with `bash scripts/train_sr.sh 21000`.
# EXTRA="..." adds or overrides options (the last one given wins), e.g. EXTRA="--dtype bf16" on a busy machine.
# OUT=DIR trains in another run folder (default runs/sr).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-21000}
OUT=${OUT:-runs/sr}
PY=.venv/bin/python
export OMP_NUM_THREADS=1
if [ ! -f "$OUT/state.pt" ] && [ -f assets/train_state/sr/state.pt ]; then
    mkdir -p "$OUT" && cp -r assets/train_state/sr/ckpt assets/train_state/sr/state.pt "$OUT/"
fi
$PY -m training.train_sr --out "$OUT" --steps "$STEPS" --batch 4 --dim 128 --depth 4 --heads 2 --window 4,8,8 \
    --crop-side 16 --crop-frames 16 --vae assets/models/omni-world/vae --p-vae 0.25 --p-clean 0.3 --save-every 100 \
    --refine 32 --base-conv 48 --base-conv-depth 16 --lr 1e-3 --min-lr 1e-5 ${EXTRA:-}
$PY -m benchmarks.sr --sr "$OUT/final" --cases 4 --json "$OUT/sr.json"
