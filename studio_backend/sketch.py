"""Reading arrows and boxes drawn on a frame (the Sketch tab's ImageEditor layers).

Convention shown in the UI: arrows in red, boxes in yellow, on the drawing layer. An
arrow's stroke is ordered along its main direction and its head is the end with more ink
(the arrowhead's extra strokes); a box is the bounding rectangle of a yellow stroke. Each
annotation is bound to the subject under the arrow's tail or inside the box, named by its
colour (the world's palette) when one is there. Everything is normalised to 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARROW_RGB = np.array([230, 30, 30], np.float32)
BOX_RGB = np.array([240, 220, 20], np.float32)


@dataclass
class ParsedArrow:
    points: list[tuple[float, float]]
    bound_to: str | None


@dataclass
class ParsedBox:
    box: tuple[float, float, float, float]
    bound_to: str | None


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components as (N, 2) (y, x) arrays, largest first; specks under 6 px dropped."""
    H, W = mask.shape
    seen = np.zeros_like(mask, bool)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, pts = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pts.append((y, x))
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        if len(pts) >= 6:
            comps.append(np.array(pts))
    return sorted(comps, key=len, reverse=True)


def _ink(layer: np.ndarray, rgb: np.ndarray, tol: float = 90.0) -> np.ndarray:
    alpha = layer[..., 3] > 40 if layer.shape[-1] == 4 else np.ones(layer.shape[:2], bool)
    d = np.abs(layer[..., :3].astype(np.float32) - rgb).max(-1)
    return alpha & (d < tol)


def _arrow_path(pts: np.ndarray, n: int = 6) -> list[tuple[float, float]]:
    xy = pts[:, ::-1].astype(np.float32)  # (x, y)
    c = xy.mean(0)
    u, s, vt = np.linalg.svd(xy - c, full_matrices=False)
    axis = vt[0]
    t = (xy - c) @ axis
    lo, hi = t.min(), t.max()
    edges = np.linspace(lo, hi, n + 1)
    path = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (t >= a) & (t <= b)
        if sel.any():
            path.append(tuple(xy[sel].mean(0)))
    # the head is the end with more ink (an arrowhead's extra strokes)
    span = hi - lo
    head_hi = ((t > hi - 0.2 * span).sum()) >= ((t < lo + 0.2 * span).sum())
    if not head_hi:
        path = path[::-1]
    # keep the tail and head points exactly at the stroke ends
    return path


def _subject_at(frame: np.ndarray, x: float, y: float, radius: int) -> str | None:
    """The palette colour of the subject at (x, y) in the frame, if any (most common nearby)."""
    from training.world.vocab import COLORS

    H, W = frame.shape[:2]
    xs = slice(max(0, int(x) - radius), min(W, int(x) + radius + 1))
    ys = slice(max(0, int(y) - radius), min(H, int(y) + radius + 1))
    px = frame[ys, xs].reshape(-1, 3).astype(np.float32) / 255
    names = list(COLORS)
    pal = np.float32([COLORS[c] for c in names])
    d = np.abs(px[:, None, :] - pal[None]).max(-1)
    near = d.min(1) < 0.2
    if not near.any():
        return None
    votes = np.bincount(d.argmin(1)[near], minlength=len(names))
    return names[int(votes.argmax())]


def parse_sketch(frame: np.ndarray, layers: list[np.ndarray]) -> tuple[list[ParsedArrow], list[ParsedBox]]:
    """frame: (H, W, 3) uint8 background; layers: RGBA drawings of the same size."""
    H, W = frame.shape[:2]
    arrows, boxes = [], []
    for layer in layers:
        if layer is None:
            continue
        layer = np.asarray(layer)
        if layer.shape[:2] != (H, W):
            from PIL import Image

            layer = np.asarray(Image.fromarray(layer).resize((W, H), Image.NEAREST))
        for comp in _components(_ink(layer, ARROW_RGB)):
            path = _arrow_path(comp)
            if len(path) < 2:
                continue
            who = _subject_at(frame, *path[0], radius=max(1, W // 32))
            arrows.append(ParsedArrow([(min(1.0, float(x) / W), min(1.0, float(y) / H)) for x, y in path], who))
        for comp in _components(_ink(layer, BOX_RGB)):
            y0, x0 = comp.min(0)
            y1, x1 = comp.max(0) + 1
            if (x1 - x0) < 3 or (y1 - y0) < 3:
                continue
            who = _subject_at(frame, (x0 + x1) / 2, (y0 + y1) / 2, radius=max(1, min(x1 - x0, y1 - y0) // 3))
            boxes.append(ParsedBox((float(x0) / W, float(y0) / H, float(x1) / W, float(y1) / H), who))
    return arrows, boxes


def describe(arrows: list[ParsedArrow], boxes: list[ParsedBox]) -> list[str]:
    """What the studio understood, in words."""
    lines = []
    for k, a in enumerate(arrows, 1):
        (x0, y0), (x1, y1) = a.points[0], a.points[-1]
        dx, dy = x1 - x0, y1 - y0
        horiz = "right" if dx > 0.05 else "left" if dx < -0.05 else ""
        vert = "down" if dy > 0.05 else "up" if dy < -0.05 else ""
        way = " and ".join(w for w in (vert, horiz) if w) or "in place"
        who = f"the {a.bound_to} subject" if a.bound_to else "no subject (drawn on the background)"
        lines.append(f"Arrow {k}: from ({x0:.2f}, {y0:.2f}) to ({x1:.2f}, {y1:.2f}), heading {way}, "
                     f"{len(a.points)} points; bound to {who}")
    for k, b in enumerate(boxes, 1):
        who = f"around the {b.bound_to} subject" if b.bound_to else "an empty region (a target area)"
        lines.append(f"Box {k}: ({', '.join(f'{v:.2f}' for v in b.box)}), {who}")
    return lines or ["Nothing drawn yet: draw an arrow in red or a box in yellow on the frame."]
