"""The perception checker: reads world attributes back off any clip.

Given a clip (from the renderer, a model, or a file) and what to look for (subject
colours and sizes, the camera move), it finds the background, each subject's mask per
frame, and from the masks the shape, pattern, facing (view) and motion. OmniBench, the
judge and the data filter all use it. It is strict on purpose: a frame whose foreground
is far larger than the subjects it should hold (noise, smears) counts as not showing
them, so a noise clip never reads as a still subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import vocab as V
from .render import BASE, _erode, background_video, shape_mask

FG_THRESHOLD = 0.15  # max-channel distance from the background that counts as foreground
LABEL_THRESHOLD = 0.2  # max-channel distance to a palette colour to take its label
MOTION_TOLERANCE = 1.5  # px, mean track error still read as the right motion


@dataclass
class SubjectPercept:
    color: str
    found: np.ndarray  # (T,) bool: the subject is visible as one compact blob
    centers: np.ndarray  # (T, 2) screen centre in base px (nan where not found)
    areas: np.ndarray  # (T,) base px^2
    shape: str | None
    pattern: str | None
    view: str | None
    motion: str | None
    motion_error: float  # px, of the best motion template (inf when too few frames)

    @property
    def found_fraction(self) -> float:
        return float(self.found.mean())


@dataclass
class ScenePercept:
    background: str | None
    background_error: float  # mean of per-frame 60th percentile distance to that background
    frame_ok: np.ndarray  # (T,) the frame's foreground is plausible for the expected subjects
    subjects: list[SubjectPercept]


# ---------------------------------------------------------------- palette labelling
_PALETTE_NAMES: list[str] = []
_PALETTE: list[tuple[float, float, float]] = []
for _name, _rgb in V.COLORS.items():
    _PALETTE_NAMES += [_name, _name + ":dark"]
    _PALETTE += [_rgb, tuple(c * V.DARK for c in _rgb)]
_PALETTE_NAMES.append("eye")
_PALETTE.append(V.EYE_COLOR)
_PALETTE_ARR = np.float32(_PALETTE)
EYE_LABEL = len(_PALETTE) - 1


def label_pixels(frames: np.ndarray) -> np.ndarray:
    """Palette index per pixel (-1 when no palette colour is close). frames float (..., 3)."""
    d = np.abs(frames[..., None, :] - _PALETTE_ARR).max(-1)  # (..., P)
    lab = d.argmin(-1)
    return np.where(d.min(-1) <= LABEL_THRESHOLD, lab, -1)


def color_labels(color: str) -> tuple[int, int]:
    i = _PALETTE_NAMES.index(color)
    return i, i + 1


# ---------------------------------------------------------------- background
def background_errors(clip_f: np.ndarray, camera: str, candidates=V.BACKGROUNDS) -> dict[str, float]:
    T, H = clip_f.shape[:2]
    scale = H // BASE
    out = {}
    for bg in candidates:
        ref = background_video(bg, camera, T, scale)
        d = np.abs(clip_f - ref).max(-1).reshape(T, -1)
        out[bg] = float(np.percentile(d, 60, axis=1).mean())
    return out


# ---------------------------------------------------------------- shape templates
@lru_cache(maxsize=1)
def _templates() -> dict[str, np.ndarray]:
    return {s: _crop_resize(shape_mask(s, 48), 16) for s in V.SHAPES}


def _crop_resize(mask: np.ndarray, n: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    m = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = m.shape
    yi = ((np.arange(n) + 0.5) * h / n).astype(int).clip(0, h - 1)
    xi = ((np.arange(n) + 0.5) * w / n).astype(int).clip(0, w - 1)
    return m[yi][:, xi]


def classify_shape(mask: np.ndarray) -> str:
    crop = _crop_resize(mask, 16)
    best, best_iou = None, -1.0
    for s, tpl in _templates().items():
        iou = (crop & tpl).sum() / max((crop | tpl).sum(), 1)
        if iou > best_iou:
            best, best_iou = s, iou
    return best


def classify_pattern(body: np.ndarray, dark: np.ndarray) -> str:
    """body: subject pixels (no eyes); dark: the pattern-mark pixels among them."""
    n = body.sum()
    if n == 0 or dark.sum() / n < 0.12:
        return "plain"
    rows = [(dark[r] & body[r]).sum() / body[r].sum() for r in range(body.shape[0]) if body[r].sum() >= 2]
    purity = float(np.mean([max(f, 1 - f) for f in rows])) if rows else 0.0
    return "striped" if purity >= 0.85 else "checkered"


def classify_view(eye_xs: np.ndarray, x0: float, width: float) -> str:
    if eye_xs.size == 0:
        return "back"
    rel = (eye_xs + 0.5 - x0) / width
    if rel.min() < 0.5 < rel.max():
        return "front"
    return "left" if rel.max() <= 0.5 else "right"


def classify_motion(world_track: np.ndarray, found: np.ndarray) -> tuple[str | None, float]:
    """Nearest motion template by mean-centred track distance over the found frames."""
    if found.sum() < max(4, int(0.75 * len(found))):
        return None, float("inf")
    T = len(found)
    tr = world_track[found]
    tr = tr - tr.mean(0)
    best, best_err = None, float("inf")
    for m in V.MOTIONS:
        tpl = V.motion_track(m, T, (0.0, 0.0))[found]
        tpl = tpl - tpl.mean(0)
        err = float(np.linalg.norm(tr - tpl, axis=1).mean())
        if err < best_err:
            best, best_err = m, err
    return best, best_err


def _majority(values: list[str | None]) -> str | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    names, counts = np.unique(vals, return_counts=True)
    return str(names[counts.argmax()])


# ---------------------------------------------------------------- the checker
def perceive(clip: np.ndarray, colors: list[str], sizes: list[float] | None = None, camera: str = "static",
             background: str | None = None, extra_fg_area: float = 0.0, lossy: bool = False) -> ScenePercept:
    """Read the subjects of the given colours (and the background) off a uint8 clip.

    `sizes` (base px) set the expected blob size: a number, or a (smallest, largest) range where the
    request leaves the size open (any size the world could have drawn passes); `background` skips the background
    search (used when the truth's background is a plate); `extra_fg_area` (base px^2)
    allows for foreground that is not a listed subject (other subjects of an edit).
    `lossy` (decoded video files): chroma subsampling leaves a halo of blended colour
    around subjects that reads as pattern marks; masks are eroded by scale/2 px first.
    """
    clip_f = clip.astype(np.float32) / 255.0
    T, H, W, _ = clip_f.shape
    scale = H // BASE
    sizes = sizes or [12.0] * len(colors)
    errs = background_errors(clip_f, camera)
    bg = background or min(errs, key=errs.get)
    bg_err = errs.get(bg, float("inf"))
    ref = background_video(bg, camera, T, scale)
    fg = np.abs(clip_f - ref).max(-1) > FG_THRESHOLD  # (T, H, W)
    expected = sum(_hi(s) ** 2 for s in sizes) + extra_fg_area  # base px^2, a box per subject
    fg_area = fg.reshape(T, -1).sum(1) / (scale * scale)
    pan, zoom = V.camera_transform(camera, T)
    frame_ok = fg_area <= 1.6 * expected * zoom ** 2 + 40
    labels = np.where(fg, label_pixels(clip_f), -1)
    subjects = []
    for color, size in zip(colors, sizes):
        subjects.append(_perceive_subject(labels, frame_ok, color, size, scale, pan, zoom,
                                          erode=scale // 2 if lossy else 0))
    return ScenePercept(bg, bg_err, frame_ok, subjects)


def _hi(size) -> float:
    return float(max(size)) if isinstance(size, (tuple, list)) else float(size)


def _lo(size) -> float:
    return float(min(size)) if isinstance(size, (tuple, list)) else float(size)


def _perceive_subject(labels, frame_ok, color, size, scale, pan, zoom, erode: int = 0) -> SubjectPercept:
    T, H, W = labels.shape
    body_l, dark_l = color_labels(color)
    found = np.zeros(T, bool)
    centers = np.full((T, 2), np.nan, np.float32)
    areas = np.zeros(T, np.float32)
    shapes, patterns, views = [], [], []
    for t in range(T):
        lab = labels[t]
        body = lab == body_l
        dark = lab == dark_l
        m = body | dark
        if erode:
            m = _erode(m, erode)
            body, dark = body & m, dark & m
        n = int(m.sum())
        exp_side = _hi(size) * zoom[t] * scale  # the upper gates take the largest size allowed,
        low_side = _lo(size) * zoom[t] * scale  # the lower gate the smallest
        if not frame_ok[t] or n < 0.3 * low_side * low_side * 0.45:
            continue
        ys, xs = np.nonzero(m)
        my, mx = np.median(ys), np.median(xs)
        core = (np.abs(ys - my) <= 0.8 * exp_side) & (np.abs(xs - mx) <= 0.8 * exp_side)
        if core.sum() < 0.85 * n:
            continue  # scattered colour, not one subject
        ys, xs = ys[core], xs[core]
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if (y1 - y0) > 1.6 * exp_side or (x1 - x0) > 1.6 * exp_side:
            continue
        box = np.zeros((y1 - y0, x1 - x0), bool)
        box[ys - y0, xs - x0] = True
        eyes = lab[y0:y1, x0:x1] == EYE_LABEL
        full = box | eyes
        if full.sum() / full.size < 0.3:
            continue
        found[t] = True
        fy, fx = np.nonzero(full)
        centers[t] = ((fx.mean() + x0 + 0.5) / scale, (fy.mean() + y0 + 0.5) / scale)
        areas[t] = full.sum() / (scale * scale)
        shapes.append(classify_shape(full))
        patterns.append(classify_pattern(box & ~eyes, dark[y0:y1, x0:x1] & box))
        ey, ex = np.nonzero(eyes)
        views.append(classify_view(ex.astype(np.float32), 0.0, float(x1 - x0)))
    c = BASE / 2
    world = np.stack([c + (centers[:, 0] - c) / zoom + pan, c + (centers[:, 1] - c) / zoom], 1)
    motion, err = classify_motion(np.nan_to_num(world), found)
    enough = found.sum() >= max(1, int(0.5 * T))
    return SubjectPercept(
        color=color, found=found, centers=centers, areas=areas,
        shape=_majority(shapes) if enough else None,
        pattern=_majority(patterns) if enough else None,
        view=_majority(views) if enough else None,
        motion=motion, motion_error=err,
    )
