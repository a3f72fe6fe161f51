"""Supervised fine-tuning on every MVL task family, from the pretrained model
(see training/train_omni.py). Held-out compositions are never sampled.

    python -m training.sft --out runs/sft --init runs/pretrain/model [--steps N] [--batch B]
"""

import sys

from training.data import SFT_FAMILIES
from training.train_omni import main, parse

DEFAULTS = {"stage": "sft", "out": "runs/sft", "families": ",".join(SFT_FAMILIES), "init": "runs/pretrain/model",
            "lr": 2e-4}

if __name__ == "__main__":
    cfg, resume = parse(sys.argv[1:], DEFAULTS)
    main(cfg, resume)
