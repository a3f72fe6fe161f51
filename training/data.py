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
                  weights: dict[str, float] | None = None, workers: int = 0) -> Iterator[WorldSample]:
    """Endless samples; each rank draws its own disjoint seed sequence. With `workers`, that many
    processes render them (torch's DataLoader; each worker its own seed sequence): a GPU step
    is faster than one CPU core renders a batch."""
    if workers > 0:
        import torch.utils.data as tud

        class _Stream(tud.IterableDataset):
            def __iter__(self):
                info = tud.get_worker_info()
                return _local_stream(families, seed, rank * 1000 + info.id, world_size * 1000, weights)

        loader = tud.DataLoader(_Stream(), batch_size=None, num_workers=workers, prefetch_factor=64,
                                persistent_workers=True, collate_fn=_as_is)
        return iter(loader)
    return _local_stream(families, seed, rank, world_size, weights)


def _as_is(x):
    return x


def _local_stream(families, seed, rank, world_size, weights) -> Iterator[WorldSample]:
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


def truth_layout(smp: WorldSample):
    """The layout plan a perfect planner would make for a world sample: each subject's on-screen box per
    frame and its palette colour, for the families the planner plans (model/layout.LAYOUT_TASKS);
    None for the others. The generator learns to render into these boxes; at inference the
    planner's boxes (made from the request alone) take their place. OmniBench uses this only for the
    labelled 'truth layout' diagnostic, never for the model's own figures."""
    from model.layout import LAYOUT_TASKS, LayoutPlan, PlannedSubject
    from training.world import vocab as V
    from training.world.render import BASE

    if smp.family not in LAYOUT_TASKS:
        return None
    subs = []
    for s in smp.truth.subjects:
        half = s.sizes[:, None] / 2
        boxes = (np.concatenate([s.centers - half, s.centers + half], 1) / BASE).astype(np.float32)
        subs.append(PlannedSubject(f"the {s.color} {s.shape}", s.color, tuple(V.COLORS[s.color]), boxes,
                                   "truth", s.motion))
    camera = smp.truth.info.get("camera", "static") if smp.family == "camera_transfer" else "static"
    return LayoutPlan(subs, frames=len(smp.target), camera=camera)  # (a camera the planner reads off pixels)


def with_planned_labels(truth, planned):
    """The truth's layout with each subject named as the planner names it from the request (the phrase
    grounding reads these words: "checkered blue cross", "@Image_1", "the yellow subject"), matched by colour;
    a subject the planner did not name is "the <colour> subject", as the planner names what it reads off
    pixels. So training phrases are the ones inference will give, never the truth's own description."""
    from dataclasses import replace

    if truth is None:
        return None
    pool = list(planned.subjects) if planned is not None else []
    subs = []
    for s in truth.subjects:
        hit = next((p for p in pool if p.color == s.color), None)
        if hit is not None:
            pool.remove(hit)
        subs.append(replace(s, label=hit.label if hit is not None else f"the {s.color} subject"))
    return replace(truth, subjects=subs)
