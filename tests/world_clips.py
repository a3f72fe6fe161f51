"""Crafted clip folders for the data-filter tests: good world clips and one of each defect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from training.video_io import write_mp4
from training.world import sample
from training.world.export import sidecar, write_sample


def _moving_t2v(seed: int):
    """A one-subject text-to-video sample whose subject moves (seeds searched from `seed`)."""
    while True:
        s = sample("t2v", seed)
        if len(s.truth.subjects) == 1 and s.truth.subjects[0].motion not in ("still",) and s.truth.camera == "static":
            return s
        seed += 1


def build_defect_folder(root: Path) -> dict[str, str]:
    """Write good clips and crafted defects; returns file name -> expected tier (None = keep)."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}
    goods = [_moving_t2v(100 * k) for k in range(3)]
    for k, s in enumerate(goods):
        write_sample(s, root, f"good_{k}")
        expect[f"good_{k}.mp4"] = None
    a = goods[0]
    hr_a = a.target_hr(4)
    # each defect but the duplicate starts from a clip of its own, so none is also a duplicate
    fresh = iter(_moving_t2v(5000 + 100 * k) for k in range(8))

    def put(name: str, frames: np.ndarray, caption: str, side: dict | None, tier: str | None):
        write_mp4(frames, root / f"{name}.mp4")
        (root / f"{name}.txt").write_text(caption)
        if side is not None:
            (root / f"{name}.world.json").write_text(json.dumps(side))
        expect[f"{name}.mp4"] = tier

    side_a = sidecar(a, 4)
    # basic tier
    put("zz_duplicate", np.clip(hr_a.astype(np.int16) + 3, 0, 255).astype(np.uint8), a.request.prompt, side_a, "basic")
    (root / "corrupt.mp4").write_text("this is not a video, only text with an .mp4 name\n")
    (root / "corrupt.txt").write_text("a red circle moves left")
    expect["corrupt.mp4"] = "basic"
    data = (root / "good_1.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 5])
    expect["truncated.mp4"] = "basic"
    put("tiny", a.target[:, ::2, ::2], a.request.prompt, None, "basic")
    put("short", hr_a[:4], a.request.prompt, side_a, "basic")
    # temporal tier
    f = next(fresh)
    put("frozen", np.repeat(f.target_hr(4)[:1], 16, axis=0), f.request.prompt, sidecar(f, 4), "temporal")
    f = next(fresh)
    k = 5
    hr = f.target_hr(4).astype(np.float32)
    box = sum(np.roll(np.roll(hr, dy, 1), dx, 2) for dy in range(-k, k + 1) for dx in range(-k, k + 1))
    put("blurred", (box / (2 * k + 1) ** 2).astype(np.uint8), f.request.prompt, sidecar(f, 4), "temporal")
    f = next(fresh)
    rng = np.random.default_rng(0)
    jit = np.stack([np.roll(x, (int(rng.choice([-6, 6])), int(rng.choice([-6, 6]))), (0, 1)) for x in f.target_hr(4)])
    put("jitter", jit, f.request.prompt, sidecar(f, 4), "temporal")
    f, g = next(fresh), next(fresh)
    cut = np.concatenate([f.target_hr(4)[:8], g.target_hr(4)[8:]])
    put("cut", cut, f.request.prompt, sidecar(f, 4), "temporal")
    # cross-modal tier
    t = a.truth.subjects[0]
    other_color = next(c for c in ("blue", "red", "yellow") if c != t.color)
    other_shape = next(s for s in ("square", "circle", "triangle") if s != t.shape)
    wrong = f"A {other_color} {other_shape} {'moves left' if t.motion != 'left' else 'moves right'} in a grey studio."
    f = next(fresh)
    put("miscaptioned", f.target_hr(4), wrong, None, "cross_modal")
    f = next(fresh)
    put("miscaptioned_sidecar", f.target_hr(4), wrong, sidecar(f, 4), "cross_modal")
    return expect
