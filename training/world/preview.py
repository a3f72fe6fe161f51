"""Contact sheets: what a family's requests and targets look like, for people to check.

Each row is one sample: its prompt, then its inputs (reference images, subject views,
context-video frames, storyboard panels, annotations drawn on the image they belong to),
then frames of the target clip.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.mvl import MVLRequest

from .families import FAMILIES, WorldSample, sample

CELL = 96  # pixels per image on the sheet
GAP = 6
TARGET_FRAMES = (0, 3, 6, 9, 12, 15)


def _img(arr: np.ndarray, side: int = CELL) -> Image.Image:
    return Image.fromarray(arr).resize((side, side), Image.NEAREST)


def _annotated(arr: np.ndarray, request: MVLRequest) -> Image.Image:
    im = _img(arr).convert("RGB")
    d = ImageDraw.Draw(im)
    for a in request.annotations.arrows:
        pts = [(x * CELL, y * CELL) for x, y in a.points]
        d.line(pts, fill=(255, 255, 255), width=3)
        d.line(pts, fill=(230, 30, 30), width=1)
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
        v = np.array([x1 - x0, y1 - y0])
        v = v / (np.linalg.norm(v) + 1e-6) * 8
        n = np.array([-v[1], v[0]]) * 0.6
        d.polygon([(x1, y1), (x1 - v[0] + n[0], y1 - v[1] + n[1]), (x1 - v[0] - n[0], y1 - v[1] - n[1])],
                  fill=(230, 30, 30))
    for b in request.annotations.boxes:
        x0, y0, x1, y1 = (v * CELL for v in b.box)
        d.rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=2)
    return im


def inputs_of(request: MVLRequest) -> list[tuple[str, Image.Image]]:
    """(caption, picture) for every visual input of a request."""
    out: list[tuple[str, Image.Image]] = []
    for i, img in enumerate(request.images, 1):
        if isinstance(img, np.ndarray):
            pic = _annotated(img, request) if i == 1 and not request.annotations.is_empty() else _img(img)
            out.append((f"@Image_{i}", pic))
    for name, views in request.subjects.items():
        for j, v in enumerate(views, 1):
            if isinstance(v, np.ndarray):
                out.append((f"@{name} view {j}", _img(v)))
    if isinstance(request.video, np.ndarray):
        T = request.video.shape[0]
        for t in (0, T // 2, T - 1):
            out.append((f"@Video t={t}", _img(request.video[t])))
    sb = request.storyboard
    if sb is not None:
        for j, p in enumerate(sb.panels, 1):
            if isinstance(p, np.ndarray):
                out.append((f"panel {j}", _img(p)))
        if isinstance(sb.grid, np.ndarray):
            out.append((f"grid {sb.rows}x{sb.cols}", _img(sb.grid)))
    return out


def contact_sheet(samples: list[WorldSample]) -> Image.Image:
    font = ImageFont.load_default()
    rows = []
    for s in samples:
        cells = inputs_of(s.request)
        n_in = max(1, len(cells))
        width = (n_in + len(TARGET_FRAMES)) * (CELL + GAP) + 3 * GAP
        text = textwrap.wrap(f"[{s.family}] {s.request.prompt}", width=max(40, width // 6))
        head = 14 * len(text) + 4
        row = Image.new("RGB", (width, head + CELL + 16), (24, 24, 28))
        d = ImageDraw.Draw(row)
        for k, line in enumerate(text):
            d.text((GAP, 2 + 14 * k), line, fill=(235, 235, 235), font=font)
        x = GAP
        for cap, pic in cells:
            row.paste(pic, (x, head))
            d.text((x, head + CELL + 2), cap, fill=(150, 200, 255), font=font)
            x += CELL + GAP
        if not cells:
            d.text((x, head + CELL // 2), "(text only)", fill=(150, 150, 150), font=font)
            x += CELL + GAP
        x += 2 * GAP
        d.line([(x - GAP - 2, head), (x - GAP - 2, head + CELL)], fill=(255, 200, 0), width=2)
        for t in TARGET_FRAMES:
            row.paste(_img(s.target[t]), (x, head))
            d.text((x, head + CELL + 2), f"target t={t}", fill=(255, 200, 0), font=font)
            x += CELL + GAP
        rows.append(row)
    W = max(r.width for r in rows)
    H = sum(r.height for r in rows) + GAP * (len(rows) + 1)
    sheet = Image.new("RGB", (W, H), (10, 10, 12))
    y = GAP
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + GAP
    return sheet


def preview(family: str, n: int = 4, seed: int = 0, split: str = "train") -> Image.Image:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return contact_sheet([sample(family, seed + k, split) for k in range(n)])
