"""What a model draws, case by case, beside what it was asked for: a contact sheet for people to look at.

    python -m training.show_cases --model assets/models/omni-world --family t2v --n 6 --out sheet.png \
        [--split train|bench] [--frames 0,5,10,15]

Each row is one OmniWorld case: its prompt and the checker's verdicts, then, frame by frame, the target,
the layout the model's planner made for it (each subject's box in its palette colour), the model's clip
from that plan, the truth's own layout, and the model's clip from the truth's layout (the diagnostic of
`training.evaluate --model layout:DIR`: what a perfect planner would get). The truth is only drawn
beside the clips and handed to the second rendering: the first one, the model's score, never sees it.
The default split is `train` (training compositions), so a sheet can be used to look for failures
without drawing on the held-out benchmark.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.world.preview import GAP, _img

CELL = 80


def _raster_rgb(plan, frames: int) -> np.ndarray:
    """A layout plan as pictures (T, 32, 32, 3) uint8: the raster's colour channels on black."""
    from model.layout import rasterize_layout

    r = np.moveaxis(rasterize_layout(plan, frames=frames), 0, -1)  # (T, H, W, channels)
    rgb, occ = r[..., :3], r[..., 3:4]
    rgb = (np.clip(rgb, -1, 1) + 1) / 2 if rgb.min() < 0 else np.clip(rgb, 0, 1)
    return (rgb * np.clip(occ, 0, 1) * 255).round().astype(np.uint8)


def verdicts(score) -> str:
    return " ".join(f"{k}={'ok' if m.passed else 'x'}" for k, m in score.metrics.items())


def sheet(model_dir: str, family: str, n: int = 6, split: str = "train",
          frames: tuple[int, ...] = (0, 5, 10, 15)) -> Image.Image:
    from model.pipeline import OmniPipeline
    from training.data import truth_layout
    from training.evaluate import bench_cases, score_case

    pipe = OmniPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    font = ImageFont.load_default()
    layout_model = pipe.generator.config.layout_channels > 0
    columns = ["target", "planned layout", "model (its plan)"]
    if layout_model:
        columns += ["truth's layout", "model (truth's layout)"]
    rows = []
    for case in bench_cases(family, n, split=split):
        T = case.target.shape[0]
        planned = pipe.enhancer.enhance(case.request).layout
        own = pipe(case.request).frames
        strips = [case.target, _raster_rgb(planned, T), own]
        lines = [f"[{family}] {case.request.prompt}", f"its plan: success={score_case(case, own).success}  "
                 + verdicts(score_case(case, own))]
        if layout_model:
            given = pipe(case.request, layout=truth_layout(case)).frames
            strips += [_raster_rgb(truth_layout(case), T), given]
            lines.append(f"truth's layout: success={score_case(case, given).success}  "
                         + verdicts(score_case(case, given)))
        text = [w for line in lines for w in textwrap.wrap(line, width=150)]
        width = len(strips) * (len(frames) * (CELL + 2) + 3 * GAP) + GAP
        head = 14 * len(text) + 18
        row = Image.new("RGB", (width, head + CELL + 4), (24, 24, 28))
        d = ImageDraw.Draw(row)
        for k, line in enumerate(text):
            d.text((GAP, 2 + 14 * k), line, fill=(235, 235, 235), font=font)
        x = GAP
        for name, strip in zip(columns, strips):
            d.text((x, head - 14), name, fill=(255, 200, 0), font=font)
            for t in frames:
                row.paste(_img(strip[min(t, T - 1)], CELL), (x, head))
                x += CELL + 2
            x += 3 * GAP
        rows.append(row)
    W = max(r.width for r in rows)
    out = Image.new("RGB", (W, sum(r.height for r in rows) + GAP * (len(rows) + 1)), (10, 10, 12))
    y = GAP
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + GAP
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from training.world import FAMILIES

    ap = argparse.ArgumentParser(prog="python -m training.show_cases", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model directory")
    ap.add_argument("--family", default="t2v", choices=FAMILIES)
    ap.add_argument("--n", type=int, default=6, help="cases (rows)")
    ap.add_argument("--split", default="train", choices=("train", "bench"))
    ap.add_argument("--frames", default="0,5,10,15", help="frame indices per strip")
    ap.add_argument("--out", required=True, help="the PNG to write")
    a = ap.parse_args(argv)
    if not (Path(a.model) / "model_index.json").is_file():
        raise SystemExit(f"--model {a.model}: not a model directory (no model_index.json)")
    torch.set_num_threads(1)
    frames = tuple(int(f) for f in a.frames.split(",") if f.strip())
    img = sheet(a.model, a.family, a.n, a.split, frames)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(a.out)
    print(f"wrote {a.out} ({img.width}x{img.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
