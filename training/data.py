"""Training data from OmniWorld: batches of world samples for every stage.

The stages differ only in which families they draw (pretraining: text-to-video and
image-to-video; SFT: every family) and all use `split="train"`, so the held-out
compositions of OmniBench are never seen.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from training.world import FAMILIES, WorldSample, sample

PRETRAIN_FAMILIES: tuple[str, ...] = ("t2v", "i2v")
SFT_FAMILIES: tuple[str, ...] = FAMILIES


def sample_stream(families: tuple[str, ...], seed: int, rank: int = 0, world_size: int = 1,
                  weights: dict[str, float] | None = None) -> Iterator[WorldSample]:
    """Endless samples; each rank draws its own disjoint seed sequence."""
    rng = np.random.default_rng([seed, rank, world_size])
    p = np.array([(weights or {}).get(f, 1.0) for f in families], np.float64)
    p /= p.sum()
    while True:
        fam = families[int(rng.choice(len(families), p=p))]
        try:
            yield sample(fam, int(rng.integers(2**31 - 1)), "train")
        except RuntimeError:  # a rare layout that does not fit the frame: draw another sample
            continue


def clip_batch(stream: Iterator[WorldSample], batch: int, image_fraction: float = 0.25,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For the VAE: (clips (B, 16, 32, 32, 3), images (b, 1, 32, 32, 3)) uint8 from targets and inputs."""
    rng = rng or np.random.default_rng(0)
    clips, images = [], []
    while len(clips) < batch:
        s = next(stream)
        clips.append(s.target)
        if rng.random() < image_fraction:
            imgs = [im for im in s.request.images if isinstance(im, np.ndarray) and im.shape == (32, 32, 3)]
            images.append(imgs[0] if imgs else s.target[int(rng.integers(16))])
    return np.stack(clips), np.stack(images)[:, None] if images else np.zeros((0, 1, 32, 32, 3), np.uint8)
