"""The OmniWorld renderer: a scene description in, an exact clip and per-subject masks out.

Everything is a pure function of the scene (no randomness here: samplers own the RNG), so
the same scene renders the same clip at any scale: `scale=1` is the base 32x32 clip the
CPU model learns, `scale=4` the 128x128 super-resolution target of the same scene.
Coordinates are in base pixels; sprites, backgrounds and post-processes are cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import vocab as V

BASE = 32  # base clip side in pixels
FRAMES = 16  # base clip length


@dataclass
class SubjectSpec:
    shape: str
    color: str
    pattern: str = "plain"
    view: str = "front"
    size: float = 12.0  # base pixels at zoom 1
    track: np.ndarray | None = None  # (T, 2) world (x, y) centre per frame, base px
    motion: str = "still"
    material: str | None = None
    effect: str | None = None
    name: str | None = None  # library name, if it is a named subject

    def identity(self) -> tuple[str, str, str]:
        return (self.shape, self.color, self.pattern)

    def phrase(self) -> str:
        """Plain words for the subject: 'a striped orange circle'."""
        pat = "" if self.pattern == "plain" else self.pattern + " "
        return f"a {pat}{self.color} {self.shape}"


@dataclass
class Scene:
    background: str = "studio"
    subjects: list[SubjectSpec] = field(default_factory=list)
    camera: str = "static"
    frames: int = FRAMES
    weather: str | None = None
    style: str | None = None
    background_image: np.ndarray | None = None  # (H, W, 3) uint8 plate instead of a named background


@dataclass
class Rendered:
    clip: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (N, T, H, W) bool, visible pixels of each subject
    centers: np.ndarray  # (N, T, 2) screen centre in base px
    sizes: np.ndarray  # (N, T) on-screen size in base px


# --------------------------------------------------------------------- backgrounds
def _background_rgb(name: str, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Background colour at world coordinates (base px); textures are periodic in X."""
    shape = X.shape + (3,)
    if name == "studio":
        return np.broadcast_to(np.float32([0.50, 0.50, 0.52]), shape).copy()
    if name == "night":
        return np.broadcast_to(np.float32([0.06, 0.07, 0.20]), shape).copy()
    if name == "greenscreen":
        return np.broadcast_to(np.float32([0.00, 0.80, 0.00]), shape).copy()
    if name == "desert":
        base = np.float32([0.87, 0.75, 0.52])
        shade = 0.05 * np.sin(0.45 * Y + 0.25 * np.sin(0.4 * X))
        return base + shade[..., None].astype(np.float32)
    if name == "meadow":
        blade = (np.floor(X) % 3 == 0) & (np.floor(Y) % 4 != 0)
        return np.where(blade[..., None], np.float32([0.17, 0.38, 0.13]), np.float32([0.26, 0.50, 0.20]))
    if name == "sky":
        g = np.clip(Y / BASE, 0, 1)[..., None].astype(np.float32)
        return (1 - g) * np.float32([0.42, 0.62, 0.95]) + g * np.float32([0.72, 0.84, 1.0])
    if name == "brick":
        row = np.floor(Y / 4)
        mortar = (np.floor(Y) % 4 == 0) | (np.floor(X + 4 * (row % 2)) % 8 == 0)
        return np.where(mortar[..., None], np.float32([0.78, 0.75, 0.70]), np.float32([0.55, 0.27, 0.20]))
    if name == "ocean":
        wave = np.floor(Y + 1.5 * np.sin(0.6 * X)) % 5 == 0
        return np.where(wave[..., None], np.float32([0.45, 0.70, 0.90]), np.float32([0.08, 0.32, 0.58]))
    raise ValueError(f"unknown background {name!r}; known: {', '.join(V.BACKGROUNDS)}")


def _screen_grid(scale: int) -> tuple[np.ndarray, np.ndarray]:
    side = BASE * scale
    c = (np.arange(side, dtype=np.float32) + 0.5) / scale  # pixel centres in base px
    return np.meshgrid(c, c)  # X, Y


@lru_cache(maxsize=256)
def background_video(name: str, camera: str, frames: int, scale: int) -> np.ndarray:
    """(T, H, W, 3) float32 background under the camera move; read-only, copy before use."""
    pan, zoom = V.camera_transform(camera, frames)
    Xs, Ys = _screen_grid(scale)
    c = BASE / 2
    out = np.empty((frames,) + Xs.shape + (3,), np.float32)
    for t in range(frames):
        X = c + (Xs - c) / zoom[t] + pan[t]
        Y = c + (Ys - c) / zoom[t]
        out[t] = _background_rgb(name, X, Y)
    out.setflags(write=False)
    return out


def background_plate(name: str, scale: int = 1) -> np.ndarray:
    """One still uint8 frame of a named background (a reference image of a place)."""
    return to_uint8(background_video(name, "static", 1, scale)[0])


# --------------------------------------------------------------------- sprites
def _shape_mask(shape: str, n: int) -> np.ndarray:
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    U, Vv = np.meshgrid(u, u)
    if shape == "circle":
        return (U - 0.5) ** 2 + (Vv - 0.5) ** 2 <= 0.25
    if shape == "square":
        return np.ones((n, n), bool)
    if shape == "triangle":
        return np.abs(U - 0.5) <= Vv / 2 + 0.5 / n
    if shape == "diamond":
        return np.abs(U - 0.5) + np.abs(Vv - 0.5) <= 0.5 + 0.25 / n
    if shape == "cross":
        return (np.abs(U - 0.5) <= 1 / 6 + 0.01) | (np.abs(Vv - 0.5) <= 1 / 6 + 0.01)
    if shape == "dome":
        return ((U - 0.5) / 0.5) ** 2 + (Vv - 1.0) ** 2 <= 1.0
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(V.SHAPES)}")


def shape_mask(shape: str, n: int) -> np.ndarray:
    """Boolean (n, n) mask of a shape filling its box (the perception templates use it too)."""
    return _shape_mask(shape, n)


def _pattern_mask(pattern: str, n: int) -> np.ndarray:
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    U, Vv = np.meshgrid(u, u)
    if pattern == "plain":
        return np.zeros((n, n), bool)
    if pattern == "striped":
        return np.floor(Vv * 6) % 2 == 1
    if pattern == "checkered":  # a 4x4 checkerboard: rows and columns both alternate
        return (np.floor(U * 4) + np.floor(Vv * 4)) % 2 == 1
    raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(V.PATTERNS)}")


EYE_Y = 0.55
EYE_X = {"front": (0.32, 0.68), "left": (0.25,), "right": (0.75,), "back": ()}


def _eye_mask(view: str, n: int, body: np.ndarray) -> np.ndarray:
    if view not in EYE_X:
        raise ValueError(f"unknown view {view!r}; known: {', '.join(V.VIEWS)}")
    eyes = np.zeros((n, n), bool)
    e = max(1, round(n / 8))
    cy = int(round(EYE_Y * n - e / 2))
    for ex in EYE_X[view]:
        cx = int(round(ex * n - e / 2))
        eyes[cy:cy + e, cx:cx + e] = True
    return eyes & body


@lru_cache(maxsize=8192)
def sprite(shape: str, color: str, pattern: str, view: str, material: str | None, n: int):
    """(rgb (n, n, 3) float32, alpha (n, n) float32, mask (n, n) bool) of one subject."""
    body = _shape_mask(shape, n)
    base = np.float32(V.COLORS[color])
    rgb = np.broadcast_to(base, (n, n, 3)).copy()
    marks = _pattern_mask(pattern, n) & body
    rgb[marks] *= V.DARK
    alpha = body.astype(np.float32)
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    U, Vv = np.meshgrid(u, u)
    if material == "glass":
        rgb = 0.45 * rgb + 0.55 * np.float32([0.85, 0.95, 1.0])
        alpha = alpha * 0.45
        shine = body & (np.abs(U + Vv - 0.7) < 0.09)
        rgb[shine] = 1.0
        alpha[shine] = 0.95
    elif material == "gold":
        shade = (1.15 - 0.35 * Vv)[..., None]
        rgb = np.clip(np.float32([0.88, 0.66, 0.12]) * shade, 0, 1)
        rgb[body & (np.abs(U - Vv) < 0.07)] = np.float32([1.0, 0.93, 0.6])
    elif material == "ice":
        rgb = np.broadcast_to(np.float32([0.72, 0.90, 1.0]), (n, n, 3)).copy()
        rgb[body & (np.abs(U - 0.3 - 0.4 * Vv) < 0.05)] = np.float32([0.95, 1.0, 1.0])
        alpha = alpha * 0.8
    elif material == "stone":
        ii, jj = np.meshgrid(np.arange(n), np.arange(n))
        speck = ((ii * 7 + jj * 13) % 5 == 0)[..., None]
        rgb = np.where(speck, np.float32([0.36, 0.35, 0.33]), np.float32([0.56, 0.54, 0.50])).astype(np.float32)
    elif material is not None:
        raise ValueError(f"unknown material {material!r}; known: {', '.join(V.MATERIALS)}")
    eyes = _eye_mask(view, n, body)
    rgb[eyes] = np.float32(V.EYE_COLOR)
    alpha[eyes] = 1.0
    for a in (rgb, alpha, body):
        a.setflags(write=False)
    return rgb, alpha, body


# --------------------------------------------------------------------- subject effects
def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Square dilation of (..., H, W) boolean masks by r pixels."""
    out = m.copy()
    for _ in range(r):
        g = out.copy()
        g[..., 1:, :] |= out[..., :-1, :]
        g[..., :-1, :] |= out[..., 1:, :]
        g[..., :, 1:] |= out[..., :, :-1]
        g[..., :, :-1] |= out[..., :, 1:]
        out = g
    return out


def _erode(m: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~m, r)


def apply_effect(clip: np.ndarray, mask: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                 color: str, effect: str, scale: int) -> None:
    """Draw a subject effect in place on a float clip (T, H, W, 3) from its masks (T, H, W)."""
    T, H, W, _ = clip.shape
    if effect == "glow":
        ring = _dilate(mask, 2 * scale) & ~mask
        light = 0.5 * np.float32(V.COLORS[color]) + 0.5
        clip[ring] = 0.4 * clip[ring] + 0.6 * light
    elif effect == "frost":
        edge = mask & ~_erode(mask, scale)
        clip[edge] = np.float32([0.86, 0.95, 1.0])
    elif effect == "fire":
        up = np.zeros_like(mask)
        for k in range(1, 3 * scale + 1):
            up[:, :-k, :] |= mask[:, k:, :]
        flame = up & ~mask
        xs = np.arange(W) // scale
        ys = np.arange(H) // scale
        t = np.arange(T)[:, None, None]
        flicker = ((xs[None, None, :] + 2 * t) % 3 != 0) & np.ones((1, H, 1), bool)
        hot = ((ys[None, :, None] + t) % 2 == 0)
        fire_rgb = np.where(hot[..., None], np.float32([1.0, 0.8, 0.15]), np.float32([1.0, 0.35, 0.05]))
        fire_rgb = np.broadcast_to(fire_rgb, (T, H, W, 3))
        sel = flame & flicker
        clip[sel] = fire_rgb[sel]
    elif effect == "sparkles":
        for t in range(T):
            cx, cy = centers[t]
            r = 0.8 * sizes[t]
            for k in range(6):
                a = np.deg2rad(60 * k + 20 * t)
                px = int((cx + r * np.cos(a)) * scale)
                py = int((cy + r * np.sin(a)) * scale)
                if 0 <= px < W - scale + 1 and 0 <= py < H - scale + 1:
                    clip[t, py:py + scale, px:px + scale] = np.float32([1.0, 0.97, 0.55])
    else:
        raise ValueError(f"unknown effect {effect!r}; known: {', '.join(V.EFFECTS)}")


# --------------------------------------------------------------------- weather and styles
def _base_grid(T: int, H: int, W: int, scale: int):
    t = np.arange(T)[:, None, None]
    yb = (np.arange(H) // scale)[None, :, None]
    xb = (np.arange(W) // scale)[None, None, :]
    return t, yb, xb


def apply_weather(clip: np.ndarray, weather: str, scale: int) -> np.ndarray:
    T, H, W, _ = clip.shape
    t, yb, xb = _base_grid(T, H, W, scale)
    if weather == "rain":
        out = clip * 0.75
        streak = ((3 * xb + yb - 4 * t) % 13 == 0) & ((yb + 2 * t) % 6 < 3)
        out = np.where(streak[..., None], 0.4 * out + 0.6 * np.float32([0.78, 0.82, 0.92]), out)
    elif weather == "snow":
        flake = (7 * xb + 3 * (yb - t)) % 17 == 0
        out = np.where(flake[..., None], np.float32([0.97, 0.97, 1.0]), 0.85 * clip + 0.15)
    elif weather == "fog":
        out = 0.45 * clip + 0.55 * np.float32([0.80, 0.80, 0.82])
    elif weather == "lightning":
        dark = clip * np.float32([0.5, 0.5, 0.62])
        flash = (t == 4) | (t == 10)
        out = np.where(flash[..., None], 0.5 * clip + 0.5, dark)
    elif weather == "sunset":
        g = (1.0 - (np.arange(H, dtype=np.float32) + 0.5) / H)[None, :, None, None]
        out = clip * np.float32([1.0, 0.72, 0.50]) + g * np.float32([0.18, 0.06, 0.0])
    else:
        raise ValueError(f"unknown weather {weather!r}; known: {', '.join(V.WEATHER)}")
    return np.clip(out, 0, 1).astype(np.float32)


def _edges(clip: np.ndarray) -> np.ndarray:
    g = np.zeros(clip.shape[:3], np.float32)
    dx = np.abs(np.diff(clip, axis=2)).max(-1)
    dy = np.abs(np.diff(clip, axis=1)).max(-1)
    g[:, :, 1:] = np.maximum(g[:, :, 1:], dx)
    g[:, 1:, :] = np.maximum(g[:, 1:, :], dy)
    return g


def apply_style(clip: np.ndarray, style: str, scale: int) -> np.ndarray:
    T, H, W, _ = clip.shape
    lum = (clip @ np.float32([0.299, 0.587, 0.114]))[..., None]
    if style == "grayscale":
        out = np.repeat(lum, 3, axis=-1)
    elif style == "sepia":
        m = np.float32([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
        out = clip @ m.T
    elif style == "neon":
        e = _edges(clip)[..., None] > 0.15
        vivid = clip / np.maximum(clip.max(-1, keepdims=True), 1e-3)
        out = np.where(e, vivid, 0.08 * clip)
    elif style == "pixel":
        b = 4 * scale
        blocks = clip.reshape(T, H // b, b, W // b, b, 3).mean(axis=(2, 4), keepdims=True)
        out = np.broadcast_to(blocks, (T, H // b, b, W // b, b, 3)).reshape(T, H, W, 3)
    elif style == "sketch":
        e = _edges(clip)[..., None] > 0.12
        out = np.where(e, np.float32([0.15, 0.15, 0.20]), np.float32([0.97, 0.96, 0.92]))
    else:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(V.STYLES)}")
    return np.clip(out, 0, 1).astype(np.float32)


# --------------------------------------------------------------------- the renderer
def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def screen_geometry(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """On-screen centres (N, T, 2) and sizes (N, T) in base px after the camera move."""
    pan, zoom = V.camera_transform(scene.camera, scene.frames)
    c = BASE / 2
    n = len(scene.subjects)
    centers = np.zeros((n, scene.frames, 2), np.float32)
    sizes = np.zeros((n, scene.frames), np.float32)
    for i, s in enumerate(scene.subjects):
        tr = s.track[: scene.frames] if s.track is not None else np.full((scene.frames, 2), c, np.float32)
        centers[i, :, 0] = c + (tr[:, 0] - c - pan) * zoom
        centers[i, :, 1] = c + (tr[:, 1] - c) * zoom
        sizes[i] = s.size * zoom
    return centers, sizes


def render(scene: Scene, scale: int = 1) -> Rendered:
    """Render a scene. Subjects are drawn in list order (later ones in front)."""
    T = scene.frames
    side = BASE * scale
    if scene.background_image is not None:
        plate = scene.background_image.astype(np.float32) / 255.0
        if plate.shape[:2] != (side, side):
            plate = _resize_nearest(plate, side)
        clip = np.repeat(plate[None], T, axis=0)
    else:
        clip = background_video(scene.background, scene.camera, T, scale).copy()
    centers, sizes = screen_geometry(scene)
    n = len(scene.subjects)
    masks = np.zeros((n, T, side, side), bool)
    for i, s in enumerate(scene.subjects):
        for t in range(T):
            npx = max(3, int(round(sizes[i, t] * scale)))
            rgb, alpha, body = sprite(s.shape, s.color, s.pattern, s.view, s.material, npx)
            x0 = int(round(centers[i, t, 0] * scale - npx / 2))
            y0 = int(round(centers[i, t, 1] * scale - npx / 2))
            xa, ya = max(0, x0), max(0, y0)
            xb, yb = min(side, x0 + npx), min(side, y0 + npx)
            if xa >= xb or ya >= yb:
                continue
            sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            a = alpha[sl][..., None]
            region = clip[t, ya:yb, xa:xb]
            clip[t, ya:yb, xa:xb] = region * (1 - a) + rgb[sl] * a
            m = body[sl]
            masks[:i, t, ya:yb, xa:xb] &= ~m  # occluded by this subject
            masks[i, t, ya:yb, xa:xb] |= m
        if s.effect is not None:
            apply_effect(clip, masks[i], centers[i], sizes[i], s.color, s.effect, scale)
    if scene.weather is not None:
        clip = apply_weather(clip, scene.weather, scale)
    if scene.style is not None:
        clip = apply_style(clip, scene.style, scale)
    return Rendered(to_uint8(clip), masks, centers, sizes)


def _resize_nearest(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    ys = (np.arange(side) * h // side).clip(0, h - 1)
    xs = (np.arange(side) * w // side).clip(0, w - 1)
    return img[ys][:, xs]


def subject_on_plate(spec: SubjectSpec, background: str = "studio", scale: int = 1,
                     center: tuple[float, float] | None = None) -> np.ndarray:
    """A reference image: one subject, still, centred (or at `center`) on a background plate."""
    c = center if center is not None else (BASE / 2, BASE / 2)
    s = SubjectSpec(**{**spec.__dict__, "track": np.float32([c]), "effect": None})
    return render(Scene(background=background, subjects=[s], frames=1), scale).clip[0]


def compatible(color: str, background: str) -> bool:
    """True when a subject colour (and its pattern marks) stands out from a background."""
    return (color, background) in _COMPATIBLE


def _compatibility() -> frozenset[tuple[str, str]]:
    ok = set()
    for bg in V.BACKGROUNDS:
        px = background_video(bg, "static", 1, 1)[0].reshape(-1, 3)
        for name, rgb in V.COLORS.items():
            body = np.float32(rgb)
            worst = min(np.abs(px - body).max(-1).min(), np.abs(px - body * V.DARK).max(-1).min())
            if worst >= 0.2:
                ok.add((name, bg))
    return frozenset(ok)


_COMPATIBLE = _compatibility()
