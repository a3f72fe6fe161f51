"""Pretraining: text-to-video and image-to-video on OmniWorld (see training/train_omni.py).

    python -m training.pretrain --out runs/pretrain --vae runs/vae/final [--steps N] [--batch B]
    torchrun --nproc_per_node 2 -m training.pretrain ...
"""

import sys

from training.data import PRETRAIN_FAMILIES
from training.train_omni import main, parse

DEFAULTS = {"stage": "pretrain", "out": "runs/pretrain", "families": ",".join(PRETRAIN_FAMILIES)}

if __name__ == "__main__":
    cfg, resume = parse(sys.argv[1:], DEFAULTS)
    main(cfg, resume)
