#!/usr/bin/env bash
# The latent-resolution head (GeneratorConfig.refine_channels) against the same model without it, on equal CPU
# time (issue 18): scripts/race.sh with two arms; the head, new beside a trained body, at 10x the rate.
#   bash scripts/race_refine.sh [MINUTES] [WIDTH]     -> runs/race_refine/{plain,head}/..., runs/race_refine/summary.txt
#   LIMIT=1 OUT=/tmp/race bash scripts/race_refine.sh 0.2 8   (a smoke run: one case per family)
# Then: python -m training.race_report runs/race_refine plain head
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-60}
WIDTH=${2:-32}
OUT=${OUT:-runs/race_refine} exec bash scripts/race.sh "$MIN" plain="" head="--refine $WIDTH --refine-lr-mult 10"
