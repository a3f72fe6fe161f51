"""The World tab: browse OmniWorld, the procedural world the embedded model learns from.

Pick a task family and a seed: see the contact sheet (request inputs beside target
frames), play the target clip at 4x, and read the MVL request as JSON (media elided).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .context import refused


@dataclass
class WorldTab:
    family: gr.Dropdown
    seed: gr.Number
    split: gr.Radio
    show: gr.Button
    sheet: gr.Image
    video: gr.Video
    request: gr.JSON


def request_summary(request) -> dict:
    """The request as JSON with media replaced by their shapes, for people to read."""
    d = request.to_dict()

    def elide(v):
        if isinstance(v, str) and v.startswith("data:"):
            return "<" + v.split(";", 1)[0][5:] + ">"
        if isinstance(v, list):
            return [elide(x) for x in v]
        if isinstance(v, dict):
            return {k: elide(x) for k, x in v.items()}
        return v

    return elide(d)


def show_sample(family: str, seed: float, split: str, out_dir: Path):
    """Handler: (contact sheet, mp4 path of the 4x target, request summary)."""
    from training.video_io import write_mp4
    from training.world import FAMILIES, sample
    from training.world.preview import contact_sheet

    if family not in FAMILIES:
        raise refused(f"Unknown family {family!r}; pick one of the list.")
    if seed is None or seed < 0 or seed != int(seed) or seed > 2**31 - 1:
        raise refused(f"Seed {seed!r} must be a whole number from 0 to 2147483647.")
    s = sample(family, int(seed), split)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{family}-{split}-{int(seed)}.mp4"
    if not video.exists():
        write_mp4(s.target_hr(4), video, fps=8, upscale=2)
    return contact_sheet([s]), str(video), request_summary(s.request)


def build_world_tab() -> WorldTab:
    from training.world import FAMILIES

    with gr.Row():
        family = gr.Dropdown(list(FAMILIES), value="t2v", label="Task family")
        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
        split = gr.Radio(["train", "bench"], value="train", label="Split (bench = held-out compositions)")
        show = gr.Button("Show sample", variant="primary", elem_id="world-show")
    sheet = gr.Image(label="Request inputs | target frames", type="pil", interactive=False)
    with gr.Row():
        video = gr.Video(label="Target clip (rendered at 4x)", autoplay=True, loop=True, interactive=False,
                         elem_id="world-video")
        request = gr.JSON(label="MVL request")
    return WorldTab(family, seed, split, show, sheet, video, request)


def wire_world_tab(tab: WorldTab, out_dir: Path) -> None:
    inputs = [tab.family, tab.seed, tab.split]
    outputs = [tab.sheet, tab.video, tab.request]
    tab.show.click(lambda f, s, sp: show_sample(f, s, sp, out_dir), inputs, outputs, api_name="world_sample")
