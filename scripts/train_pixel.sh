#!/usr/bin/env bash
# The pixel-space generator for text-to-video (issue 18; model/pixel_generator.py): train for MINUTES of wall clock
# on one thread, score it on 24 training-split t2v compositions (the planner's layout, 20 steps), and keep the
# committable state (fp16 EMA + step + config) in assets/train_state/pixel_t2v. Resumable on any machine:
# runs/pixel_probe/checkpoint.pt, or when runs/ is lost the committed state (the optimiser's moments start again).
#   bash scripts/train_pixel.sh MINUTES
#   then: .venv/bin/python -m training.pixel_probe --export DIR   (the shipped model + this pixel_generator/)
#         .venv/bin/python -m training.evaluate --model DIR --jobs 2 --json omnibench.json
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:?minutes}
export OMP_NUM_THREADS=1
.venv/bin/python -m training.pixel_probe --out "${OUT:-runs/pixel_probe}" --minutes "$MIN" \
    --state-dir "${STATE:-assets/train_state/pixel_t2v}" ${EXTRA:-}
