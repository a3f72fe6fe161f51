"""Write world samples as files: `NAME.mp4` + `NAME.txt` (caption) + `NAME.world.json` (truth).

The sidecar holds what the data filter's cross-modal tier checks exactly: the subjects,
background and camera of the clip, its render scale, and the request that made it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..video_io import write_mp4
from .families import WorldSample, sample


def sidecar(s: WorldSample, scale: int) -> dict:
    t = s.truth
    r = s.request
    plain = s.scene.weather is None and s.scene.style is None and s.scene.background != "greenscreen" and all(
        x.material is None and x.effect is None for x in s.scene.subjects)
    return {
        "family": s.family,
        "caption": s.request.prompt,
        "scale": scale,
        "background": t.background,
        "camera": t.camera,
        "weather": s.scene.weather,
        "style": s.scene.style,
        # the perception checker can read the subjects back (no weather, style, material, effect)
        "perceivable": plain,
        # the caption describes the clip itself (text only), rather than an instruction about inputs
        "describes": not r.images and r.video is None and not r.subjects and r.storyboard is None,
        "subjects": [
            {"color": x.color, "shape": x.shape, "pattern": x.pattern, "view": x.view, "motion": x.motion,
             "size": x.size}
            for x in t.subjects
        ],
    }


def write_sample(s: WorldSample, out: Path, name: str, scale: int = 4) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    clip = s.target_hr(scale) if scale > 1 else s.target
    path = write_mp4(clip, out / f"{name}.mp4", fps=8)
    (out / f"{name}.txt").write_text(s.request.prompt + "\n")
    side = sidecar(s, scale)
    if isinstance(s.request.video, np.ndarray):  # the context video, for the edit check
        (out / "sources").mkdir(exist_ok=True)
        write_mp4(s.request.video, out / "sources" / f"{name}.mp4", fps=8, upscale=scale)
        side["edit"] = {"source": f"sources/{name}.mp4", "instruction": s.request.prompt}
    (out / f"{name}.world.json").write_text(json.dumps(side, indent=1))
    return path


def export_samples(family: str, n: int, out: str | Path, seed: int = 0, scale: int = 4) -> list[Path]:
    out = Path(out)
    return [write_sample(sample(family, seed + k), out, f"{family}_{seed + k:05d}", scale) for k in range(n)]


def load_sidecar(video: Path) -> dict | None:
    """The world truth beside a video file, or None when there is none (or it is unreadable)."""
    side = video.parent / (video.stem + ".world.json")
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
