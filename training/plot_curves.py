"""Draw training curves as a PNG (PIL only, no plotting library): the loss of consecutive
stages against cumulative hours, each stage in its own colour, so a model card shows at a
glance where training went and where it flattened.

    python -m training.plot_curves --logs runs/pretrain/log.jsonl runs/sft2/log.jsonl runs/sft3/log.jsonl \
        --labels pretrain sft sft-cont --out assets/models/omni-world/curve.png [--smooth 5]

Each log is a training log.jsonl (one JSON object per line with `loss` and `hours`, as
training/train_omni.py writes them). Stages are laid end to end in the order given.

    python -m training.plot_curves --dpo benchmarks/results/dpo_round.json --out dpo_curves.png

draws a preference round's Flow-DPO loss and implicit reward margin per step, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
W, H, L, R, T, B = 900, 420, 70, 20, 40, 60  # size and margins (left, right, top, bottom)


def read_stage(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(hours, loss) of one log; hours restart at 0 for the stage. Lines without both are skipped."""
    try:
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        raise SystemExit(f"--logs {path}: not a readable log.jsonl ({e})")
    rows = [r for r in rows if "loss" in r and "hours" in r]
    if not rows:
        raise SystemExit(f"--logs {path}: no lines with 'loss' and 'hours'")
    h = np.array([r["hours"] for r in rows], float)
    keep = np.r_[True, np.diff(h) > 0]  # a resumed run may log the same step twice
    return h[keep], np.array([r["loss"] for r in rows], float)[keep]


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(y) < k:
        return y
    c = np.convolve(y, np.ones(k) / k, mode="valid")
    return np.r_[y[: k - 1], c] if len(c) else y


def plot(stages: list[tuple[str, np.ndarray, np.ndarray]], out: str | Path | None, title: str = "training loss",
         k: int = 5, xlabel: str = "hours of training (cumulative)", end_to_end: bool = True) -> Image.Image:
    """Draw the stages (label, x, y) and save the PNG to `out` (when given); end_to_end lays each
    stage's x after the previous one's last, otherwise the series share one x axis."""
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    offset, laid = 0.0, []
    for label, h, y in stages:
        laid.append((label, h + offset, smooth(y, k)))
        offset = offset + float(h[-1]) if end_to_end else max(offset, float(h[-1]))
    x_max = max(offset, 1e-6)
    ys = np.concatenate([y for _, _, y in laid])
    y_lo, y_hi = float(np.percentile(ys, 1)), float(np.percentile(ys, 99))
    y_lo, y_hi = max(0.0, y_lo - 0.05 * (y_hi - y_lo)), y_hi + 0.05 * (y_hi - y_lo) + 1e-9

    def px(x, y):
        return (float(L + (W - L - R) * x / x_max), float(T + (H - T - B) * (1 - (np.clip(y, y_lo, y_hi) - y_lo) / (y_hi - y_lo))))

    d.rectangle([L, T, W - R, H - B], outline=(160, 160, 160))
    for i in range(5):  # y grid and labels
        v = y_lo + (y_hi - y_lo) * i / 4
        _, yy = px(0, v)
        d.line([L, yy, W - R, yy], fill=(232, 232, 232))
        d.text((8, yy - 6), f"{v:.2f}", fill=(60, 60, 60))
    step = max(1, int(np.ceil(x_max / 8)))
    for hx in range(0, int(x_max) + 1, step):  # x ticks every whole hour (or more)
        xx, _ = px(hx, y_lo)
        d.line([xx, H - B, xx, H - B + 4], fill=(120, 120, 120))
        d.text((xx - 4, H - B + 8), str(hx), fill=(60, 60, 60))
    d.text(((W - L) // 2, H - 22), xlabel, fill=(60, 60, 60))
    d.text((L, 12), title, fill=(0, 0, 0))
    for i, (label, h, y) in enumerate(laid):
        c = COLORS[i % len(COLORS)]
        pts = [px(a, b) for a, b in zip(h, y)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        if end_to_end:  # where the stage starts
            x0, _ = px(float(h[0]), y_lo)
            d.line([x0, T, x0, H - B], fill=(210, 210, 210))
        d.rectangle([W - R - 300, T + 10 + 16 * i, W - R - 288, T + 20 + 16 * i], fill=c)
        d.text((W - R - 282, T + 8 + 16 * i), label, fill=(30, 30, 30))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        img.save(out)
    return img


def plot_dpo(report: str | Path, out: str | Path) -> Path:
    """A preference round's report (`python -m studio_backend.dpo_round --json`): loss and margin per step."""
    try:
        curves = json.loads(Path(report).read_text())["curves"]
        loss, margin = (np.asarray(curves[k], float) for k in ("loss", "margin"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--dpo {report}: not a preference-round report with curves ({e})")
    steps = np.arange(1, len(loss) + 1, dtype=float)
    panels = [plot([("loss", steps, loss)], None, "Flow-DPO loss (ln 2 = 0.693 at the start)", 1, "step", False),
              plot([("margin", steps, margin)], None, "implicit reward margin", 1, "step", False)]
    img = Image.new("RGB", (2 * W, H), "white")
    for i, p in enumerate(panels):
        img.paste(p, (i * W, 0))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.plot_curves", description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", nargs="+", help="log.jsonl of each stage, in training order")
    ap.add_argument("--dpo", help="a preference-round report (studio_backend.dpo_round --json): its loss and margin")
    ap.add_argument("--labels", nargs="*", default=None, help="one name per log (default: the log's folder)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="training loss")
    ap.add_argument("--smooth", type=int, default=5, help="moving average over this many log lines")
    a = ap.parse_args(argv)
    if bool(a.logs) == bool(a.dpo):
        ap.error("give --logs or --dpo")
    if a.dpo:
        print(f"wrote {plot_dpo(a.dpo, a.out)}")
        return 0
    labels = a.labels or [Path(p).parent.name for p in a.logs]
    if len(labels) != len(a.logs):
        ap.error(f"--labels: {len(labels)} names for {len(a.logs)} logs")
    stages = [(lab, *read_stage(p)) for lab, p in zip(labels, a.logs)]
    plot(stages, a.out, a.title, a.smooth)
    print(f"wrote {a.out} ({sum(len(h) for _, h, _ in stages)} points, {sum(float(h[-1]) for _, h, _ in stages):.2f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
