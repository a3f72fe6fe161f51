"""The layout plan between prompt and pixels (DESIGN 3.5.1; LVD, Lian et al. 2023).

The prompt enhancer plans, from the request alone, a box per frame for every subject: where
it starts and how large it is (chosen freely where the request leaves them open, seeded),
how it moves (the motion words and the world's motion knowledge, stored with the model's
vocabulary), what the camera does to it, and where a reference frame shows it (read off the
image's pixels). A user's own arrows and boxes (the Sketch tab) replace the planned track.
The generator reads the plan as a pixel-aligned raster: per subject a soft box painted with
its palette colour, plus occupancy. Not the silhouette, pattern or eyes: those come from the
text and the references.

Pure functions of the request and the vocabulary; nothing here ever sees a benchmark truth.
The motion and camera formulas are the world's own (training/world/vocab.py calls them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

LAYOUT_CHANNELS = 4  # raster: red, green, blue of the subject's palette colour inside its box; occupancy
DEFAULT_MOTION_PARAMS = {"speed": 0.8, "diag_speed": 0.6, "circle_radius": 4.5, "circle_period": 16.0,
                         "jump_height": 6.0, "jump_period": 8.0, "pan_speed": 0.5, "zoom_rate": 0.02}
SIZE_WORDS = {"small": "small", "tiny": "small", "little": "small", "medium": "medium",
              "large": "large", "big": "large", "huge": "large"}


# ------------------------------------------------------------------ the world's motion knowledge
def motion_offsets(motion: str, frames: int, params: dict, t0: int = 0) -> np.ndarray:
    """(frames, 2) centre offsets (x, y) in frame pixels from the position at time 0."""
    p = {**DEFAULT_MOTION_PARAMS, **params}
    t = np.arange(t0, t0 + frames, dtype=np.float32)
    dx = np.zeros_like(t)
    dy = np.zeros_like(t)
    if motion == "left":
        dx = -p["speed"] * t
    elif motion == "right":
        dx = p["speed"] * t
    elif motion == "up":
        dy = -p["speed"] * t
    elif motion == "down":
        dy = p["speed"] * t
    elif motion == "up_right":
        dx, dy = p["diag_speed"] * t, -p["diag_speed"] * t
    elif motion == "down_left":
        dx, dy = -p["diag_speed"] * t, p["diag_speed"] * t
    elif motion == "circle":
        a = 2 * math.pi * t / p["circle_period"]
        dx, dy = p["circle_radius"] * np.sin(a), -p["circle_radius"] * (1 - np.cos(a))
    elif motion == "jump":
        dy = -p["jump_height"] * np.abs(np.sin(math.pi * t / p["jump_period"]))
    elif motion != "still":
        raise ValueError(f"unknown motion {motion!r}")
    return np.stack([dx, dy], axis=1)


def camera_transform(camera: str, frames: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (pan offset, zoom factor). Screen = c + (world - c - pan) * zoom."""
    p = {**DEFAULT_MOTION_PARAMS, **params}
    t = np.arange(frames, dtype=np.float32)
    pan = np.zeros(frames, np.float32)
    zoom = np.ones(frames, np.float32)
    if camera == "pan_left":  # the camera moves left, so the scene slides right
        pan = -p["pan_speed"] * t
    elif camera == "pan_right":
        pan = p["pan_speed"] * t
    elif camera == "zoom_in":
        zoom = 1.0 + p["zoom_rate"] * t
    elif camera == "zoom_out":
        zoom = 1.0 / (1.0 + p["zoom_rate"] * t)
    elif camera != "static":
        raise ValueError(f"unknown camera {camera!r}")
    return pan, zoom


def keyframes(panels: int, frames: int) -> list[int]:
    """The frames a storyboard's panels show: spread evenly from the first frame to the last."""
    return [int(k) for k in np.linspace(0, frames - 1, panels).round()] if panels > 1 else [0][:panels]


def camera_warp(img: np.ndarray, camera: str, frames: int, params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A still frame (H, W, C) seen through a world camera: (frames, H, W, C) and where each frame sees the still
    frame (frames, H, W) bool; frame 0 is the frame itself. Screen = c + (world - c - pan) * zoom (nearest pixel)."""
    pan, zoom = camera_transform(camera, frames, params or {})
    h, w = img.shape[:2]
    out = np.zeros((frames, *img.shape), img.dtype)
    seen = np.zeros((frames, h, w), bool)
    for t in range(frames):
        wx = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / zoom[t] + w / 2 + pan[t]
        wy = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / zoom[t] + h / 2
        ix, iy = np.floor(wx).astype(int), np.floor(wy).astype(int)
        out[t] = img[np.clip(iy, 0, h - 1)][:, np.clip(ix, 0, w - 1)]
        seen[t] = ((iy >= 0) & (iy < h))[:, None] & ((ix >= 0) & (ix < w))[None, :]
    return out, seen


def polyline_track(points: np.ndarray, frames: int, hold: int = 0) -> np.ndarray:
    """Constant-speed positions along a polyline, arriving `hold` frames early (the world's
    'follows the arrow' and 'moves into the box')."""
    points = np.asarray(points, np.float32)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    moving = frames - hold
    d = np.minimum(np.arange(frames) / max(moving - 1, 1), 1.0) * cum[-1]
    return np.stack([np.interp(d, cum, points[:, 0]), np.interp(d, cum, points[:, 1])], 1).astype(np.float32)


# ------------------------------------------------------------------ the plan
@dataclass
class PlannedSubject:
    label: str  # how the request names it: "the red circle", "@Image_1", "@Subject_1"
    color: str | None  # palette colour name, when known
    rgb: tuple[float, float, float]  # painted into the raster (grey when the colour is unknown)
    boxes: np.ndarray  # (T, 4) per frame (x0, y0, x1, y1), normalised 0..1
    source: str = "text"  # text | image | user (a user's own arrow or box)
    motion: str = "still"


@dataclass
class LayoutPlan:
    subjects: list[PlannedSubject] = field(default_factory=list)
    frames: int = 16
    notes: list[str] = field(default_factory=list)
    camera: str = "static"  # the camera the boxes are seen through (a camera transfer's, read off its @Video)

    def is_empty(self) -> bool:
        return not self.subjects

    def to_dict(self) -> dict:
        return {"frames": self.frames, "notes": list(self.notes), "camera": self.camera,
                "subjects": [{"label": s.label, "color": s.color, "rgb": [round(float(v), 4) for v in s.rgb],
                              "source": s.source, "motion": s.motion,
                              "boxes": np.round(s.boxes, 4).tolist()} for s in self.subjects]}

    @classmethod
    def from_dict(cls, d: dict) -> "LayoutPlan":
        subs = [PlannedSubject(label=s["label"], color=s.get("color"), rgb=tuple(s["rgb"]),
                               boxes=np.asarray(s["boxes"], np.float32), source=s.get("source", "text"),
                               motion=s.get("motion", "still")) for s in d.get("subjects", [])]
        return cls(subs, int(d.get("frames", 16)), list(d.get("notes", [])), str(d.get("camera", "static")))

    def describe(self) -> list[str]:
        """Readable lines for the enhancer's plan."""
        out = []
        for s in self.subjects:
            b0, b1 = s.boxes[0], s.boxes[-1]
            c0 = ((b0[0] + b0[2]) / 2, (b0[1] + b0[3]) / 2)
            c1 = ((b1[0] + b1[2]) / 2, (b1[1] + b1[3]) / 2)
            colour = f", {s.color}" if s.color and s.color not in s.label else ""
            out.append(f"Layout: {s.label}{colour} ({s.motion}, {s.source}) from ({c0[0]:.2f}, {c0[1]:.2f}) to "
                       f"({c1[0]:.2f}, {c1[1]:.2f}), size {b0[2] - b0[0]:.2f}")
        if self.camera != "static":
            out.append(f"Layout camera: {CAMERA_PHRASES.get(self.camera, self.camera)}")
        return out + [f"Layout note: {n}" for n in self.notes]


def subject_masks(plan: LayoutPlan | None, frames: int = 16, side: int = 32, soft: float = 1.0) -> np.ndarray:
    """(subjects, frames, side, side) float32: where each subject's soft box wins the pixel (1 inside, falling
    linearly to 0 over `soft` px outside the box; where boxes overlap, the later subject wins where its weight
    is higher), that weight there and 0 elsewhere: at most one subject per pixel."""
    subs = [] if plan is None else plan.subjects
    w = np.zeros((len(subs), frames, side, side), np.float32)
    c = (np.arange(side, dtype=np.float32) + 0.5)
    occ = np.zeros((frames, side, side), np.float32)
    for i, s in enumerate(subs):
        boxes = np.asarray(s.boxes, np.float32)
        idx = np.linspace(0, len(boxes) - 1, frames).round().astype(int) if len(boxes) != frames else np.arange(frames)
        for t, k in enumerate(idx):
            x0, y0, x1, y1 = boxes[k] * side
            wx = np.clip(1 - np.maximum(x0 - c, c - x1) / soft, 0, 1)
            wy = np.clip(1 - np.maximum(y0 - c, c - y1) / soft, 0, 1)
            m = wy[:, None] * wx[None, :]
            new = m > occ[t]
            w[:i, t] = np.where(new, 0, w[:i, t])
            w[i, t] = np.where(new, m, 0)
            occ[t] = np.maximum(occ[t], m)
    return w


def rasterize_layout(plan: LayoutPlan | None, frames: int = 16, side: int = 32, soft: float = 1.0) -> np.ndarray:
    """(LAYOUT_CHANNELS, frames, side, side) float32: each subject's soft box, painted with its
    colour, and occupancy. An empty or absent plan is all zeros (the generator then draws freely)."""
    r = np.zeros((LAYOUT_CHANNELS, frames, side, side), np.float32)
    if plan is None or plan.is_empty():
        return r
    w = subject_masks(plan, frames, side, soft)
    rgb = np.asarray([s.rgb for s in plan.subjects], np.float32)  # (S, 3)
    r[:3] = np.einsum("sfhw,sc->cfhw", w, rgb)
    r[3] = w.sum(0)
    return r


# ------------------------------------------------------------------ reading subjects off pixels
def find_colour(img: np.ndarray, rgb, dark: float = 0.5, tol: float = 0.13, min_px: int = 3, max_side: float = 20):
    """(centre x, y, size) in pixels of the pixels of this palette colour (body or its darker
    pattern marks) in an (H, W, 3) uint8 image, or None when fewer than `min_px` show it or they
    spread wider than `max_side` px (a background of that colour, not a subject)."""
    f = img.astype(np.float32) / 255.0
    rgb = np.asarray(rgb, np.float32)
    m = (np.abs(f - rgb).max(-1) <= tol) | (np.abs(f - dark * rgb).max(-1) <= tol * 0.7)
    if m.sum() < min_px:
        return None
    ys, xs = np.nonzero(m)
    my, mx = np.median(ys), np.median(xs)
    keep = (np.abs(ys - my) <= 12) & (np.abs(xs - mx) <= 12)  # one blob: stray pixels far away do not count
    ys, xs = ys[keep], xs[keep]
    size = float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    if size > max_side or len(xs) > max_side * max_side:
        return None
    return float((xs.min() + xs.max() + 1) / 2), float((ys.min() + ys.max() + 1) / 2), size


def subject_cutout(img: np.ndarray, tol: float = 0.1) -> tuple[np.ndarray, np.ndarray] | None:
    """A reference image's subject: the crop around the pixels that differ from the plate (the border's median
    colour) and its alpha; None when the image shows no such pixels."""
    a = img.astype(np.float32) / 255
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    m = np.abs(a - np.median(border, 0)).max(-1) > tol
    if m.sum() < 4:
        return None
    ys, xs = np.nonzero(m)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return a[sl], m[sl].astype(np.float32)


def dominant_colour(img: np.ndarray, palette: dict) -> str | None:
    """The palette colour most pixels of a reference image (a subject on a plate) show."""
    best, n_best = None, 0
    f = img.astype(np.float32) / 255.0
    for name, rgb in palette.items():
        n = int((np.abs(f - np.asarray(rgb, np.float32)).max(-1) <= 0.13).sum())
        if n > n_best:
            best, n_best = name, n
    return best if n_best >= 3 else None


# ------------------------------------------------------------------ the planner
class LayoutPlanner:
    """Plans a LayoutPlan for a request from the enhanced prompt, its references and annotations.

    `vocab` is the enhancer's Vocabulary: colours and their palette, shapes, sizes (px), motion
    phrases and the motion parameters of the world the model was trained on."""

    def __init__(self, vocab, side: int = 32):
        self.vocab = vocab
        self.side = side
        self.params = {**DEFAULT_MOTION_PARAMS, **(getattr(vocab, "motion_params", None) or {})}
        self.palette = {k: tuple(v) for k, v in (getattr(vocab, "palette", None) or {}).items()}
        sizes = getattr(vocab, "sizes", None) or {"small": 9, "medium": 12, "large": 15}
        self.sizes = {k: float(v) for k, v in sizes.items()}

    # -------------------------------------------------------------- text
    def mentions(self, text: str) -> list[dict]:
        """Each subject the text names ("a striped red circle", "@Image_2", "@Subject_1"), in order,
        with its motion (the words up to the next mention) and size word."""
        v = self.vocab
        colours = "|".join(sorted(v.colors, key=len, reverse=True)) or "(?!)"
        shapes = "|".join(sorted(v.shapes, key=len, reverse=True)) or "(?!)"
        sizes = "|".join(SIZE_WORDS)
        pat = re.compile(rf"(?:\b(?P<size>{sizes})\s+)?(?:\b(?:{'|'.join(v.patterns) or '(?!)'})\s+)?"
                         rf"\b(?P<color>{colours})\s+(?P<shape>{shapes})\b|(?P<ref>@(?:Image|Subject)_\d+)",
                         re.IGNORECASE)
        found = list(pat.finditer(text))
        out = []
        for i, m in enumerate(found):
            if m.group("ref") and re.search(r"\b(in|into|onto|on)\s+$", text[max(0, m.start() - 6):m.start()]):
                continue  # "in @Image_3": a place, not a subject
            if m.group("ref") and re.match(r"\s*:", text[m.end():m.end() + 2]) and m.group("ref").lower() == "@image_1":
                continue  # "@Image_1: ..." introduces the first frame, the subjects follow
            end = found[i + 1].start() if i + 1 < len(found) else len(text)
            out.append({"label": m.group(0).strip(), "color": (m.group("color") or "").lower() or None,
                        "ref": m.group("ref"), "size": SIZE_WORDS.get((m.group("size") or "").lower()),
                        "motion": self.motion_of(text[m.end():end])})
        return out

    def motion_of(self, clause: str) -> str:
        from .prompt_enhancer import MOTION_KEYWORDS  # one table of motion words (the enhancer's)

        low = clause.lower()
        for name, phrase in sorted(self.vocab.motions.items(), key=lambda kv: -len(kv[1])):
            if phrase in low:
                return name
        return next((m for p, m in MOTION_KEYWORDS if re.search(p, low)), "still")

    @staticmethod
    def camera_of(text: str) -> str:
        low = text.lower()
        for cam, words in CAMERA_PHRASES.items():
            if words.split("camera ", 1)[1] in low:
                return cam
        return "static"

    def video_camera(self, video, frames: int) -> str:
        """The camera motion a video shows, read off its pixels: the world camera (static, pans, zooms) whose
        warp of the first frame (`camera_warp`) best predicts the later frames (mean absolute error where the
        warp sees)."""
        v = np.asarray(video)
        idx = np.linspace(0, len(v) - 1, frames).round().astype(int)
        clip = np.stack([_as_uint8(v[i], self.side) for i in idx]).astype(np.float32) / 255.0
        best, best_err = "static", 1e9
        for cam in ("static",) + tuple(CAMERA_PHRASES):
            warped, seen = camera_warp(clip[0], cam, frames, self.params)
            late = slice(frames // 2, frames)
            err = float(np.abs(warped[late] - clip[late])[seen[late]].mean()) if seen[late].any() else 1e9
            if err < best_err - 1e-6:
                best, best_err = cam, err
        return best

    # -------------------------------------------------------------- geometry
    def _screen(self, world: np.ndarray, camera: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
        pan, zoom = camera_transform(camera, frames, self.params)
        c = self.side / 2
        x = c + (world[:, 0] - c - pan) * zoom
        y = c + (world[:, 1] - c) * zoom
        return np.stack([x, y], 1), zoom

    def _boxes(self, centres: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        h = sizes[:, None] / 2
        return (np.concatenate([centres - h, centres + h], 1) / self.side).astype(np.float32)

    def _free_start(self, rng, offsets, size, camera, frames, placed) -> np.ndarray:
        """A start (world px) keeping the whole track on screen, apart from subjects placed before."""
        best, best_gap = None, -1e9
        for _ in range(96):
            start = rng.uniform(size / 2 + 1, self.side - size / 2 - 1, 2).astype(np.float32)
            centres, zoom = self._screen(start + offsets, camera, frames)
            half = size * zoom / 2
            inside = np.all(centres - half[:, None] >= 0.5) and np.all(centres + half[:, None] <= self.side - 0.5)
            gap = min([float((np.abs(centres - pc).max(-1) - (size * zoom + ps) / 2).min()) for pc, ps in placed],
                      default=99.0)
            score = gap if inside else gap - 1000
            if score > best_gap:
                best, best_gap = start, score
            if inside and gap >= 1.0:
                break
        return best, best_gap >= 1.0

    # -------------------------------------------------------------- plan
    def plan(self, request, text: str, task: str, seed: int = 0) -> LayoutPlan:
        frames = int(request.frames)
        rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, 7])
        camera = self.camera_of(text)
        frame_img = None
        if request.images and task in FIRST_FRAME_TASKS and (request.video is None or task in MOTION_SOURCE_TASKS):
            frame_img = _as_uint8(request.images[0], self.side)
        plan = LayoutPlan(frames=frames)
        if task in EDIT_PLANNED + VIDEO_PLANNED:
            return self._plan_edit(request, text, task, frames, rng)
        if task in SHOT_TASKS:
            return self._plan_shot(request, text, task, frames)
        if task == "storyboard" and request.storyboard is not None:
            return self._plan_storyboard(request, frames)
        if task == "camera_transfer":
            return self._plan_camera_transfer(request, frames, frame_img)
        if task in MOTION_SOURCE_TASKS:
            return self._plan_motion_transfer(request, text, frames, frame_img)
        if request.video is not None or request.storyboard is not None or task not in PLANNED_TASKS:
            return plan  # a sketch, or a video or storyboard the task does not plan from: no layout
        placed: list[tuple[np.ndarray, np.ndarray]] = []
        mentions = self.mentions(text)
        logic = re.search(r"\bthe (largest|smallest|biggest|tiniest) of\b", text.lower())
        if logic and frame_img is not None:
            mentions = self._logic_mentions(frame_img, logic.group(1), text)
        for m in mentions:
            colour = m["color"]
            if colour is None and m["ref"]:
                colour = self._ref_colour(request, m["ref"])
            rgb = self.palette.get(colour, (0.5, 0.5, 0.5)) if colour else (0.5, 0.5, 0.5)
            seen = find_colour(frame_img, rgb) if frame_img is not None and colour in self.palette else None
            size = self.sizes.get(m["size"]) if m["size"] else None
            if size is None and m["ref"]:  # a reference image shows the subject at its size
                size = self._ref_size(request, m["ref"])
            source = "text"
            if seen is not None:
                size = size or float(min(max(self.sizes.values()), max(min(self.sizes.values()), seen[2])))
                source = "image"
            free_size = size is None
            if free_size:
                size = float(rng.choice(sorted(self.sizes.values())))
            offsets = motion_offsets(m["motion"], frames, self.params)
            if seen is not None:
                start = np.float32(seen[:2])
            else:  # a free start; where none fits, a smaller free size (as the world redraws its scene)
                for option in [size] + ([v for v in sorted(self.sizes.values(), reverse=True) if v < size]
                                        if free_size else []):
                    start, ok = self._free_start(rng, offsets, option, camera, frames, placed)
                    if ok:
                        break
                size = option
            if seen is not None:  # a reference frame shows the subject on screen at time 0
                c = self.side / 2
                pan0, zoom0 = camera_transform(camera, 1, self.params)
                start = np.float32([c + (start[0] - c) / zoom0[0] + pan0[0], c + (start[1] - c) / zoom0[0]])
            centres, zoom = self._screen(start + offsets, camera, frames)
            placed.append((centres, size * zoom))
            plan.subjects.append(PlannedSubject(m["label"], colour, tuple(float(x) for x in rgb),
                                                self._boxes(centres, size * zoom), source, m["motion"]))
        if frame_img is not None:  # subjects the frame shows that the words do not move stay where they are
            plan.subjects += self._still_subjects(frame_img, camera, frames, skip={p.color for p in plan.subjects})
        self._apply_annotations(request, plan, frame_img)
        return plan

    def video_subjects(self, video, frames: int) -> list[PlannedSubject]:
        """The subjects a context video shows, read off its pixels: per palette colour seen in at least
        half of the frames, its box per frame (frames where it is hidden take the nearest seen one)."""
        v = np.asarray(video)
        idx = np.linspace(0, len(v) - 1, frames).round().astype(int)
        clip = [_as_uint8(v[i], self.side) for i in idx]
        out = []
        lo, hi = min(self.sizes.values()), max(self.sizes.values())
        for name, rgb in self.palette.items():
            seen = [find_colour(f, rgb) for f in clip]
            ok = [k for k, x in enumerate(seen) if x is not None]
            if len(ok) < frames / 2:
                continue
            size = float(np.clip(np.median([seen[k][2] for k in ok]), lo, hi))
            c = np.float32([seen[min(ok, key=lambda k: abs(k - t))][:2] for t in range(frames)])
            out.append(PlannedSubject(f"the {name} subject", name, tuple(float(x) for x in rgb),
                                      self._boxes(c, np.full(frames, size, np.float32)), "video", "as in @Video"))
        return out

    def _shown(self, img: np.ndarray) -> list[tuple[str, tuple, np.ndarray, float]]:
        """Each palette colour an image shows as a subject: (name, rgb, centre (x, y) px, size within the world's)."""
        lo, hi = min(self.sizes.values()), max(self.sizes.values())
        out = []
        for name, rgb in self.palette.items():
            seen = find_colour(img, rgb)
            if seen is not None:
                out.append((name, tuple(float(x) for x in rgb), np.float32(seen[:2]), float(np.clip(seen[2], lo, hi))))
        return out

    def _still_subjects(self, img: np.ndarray, camera: str, frames: int, skip=()) -> list[PlannedSubject]:
        """The subjects a first frame shows (`_shown`, less the colours in `skip`) staying where they are in the
        world, seen through `camera` (frame 0 is the image itself)."""
        out = []
        for name, rgb, xy, size in self._shown(img):
            if name not in skip:
                centres, zoom = self._screen(np.tile(xy, (frames, 1)), camera, frames)
                out.append(PlannedSubject(f"the {name} subject", name, rgb, self._boxes(centres, size * zoom), "image",
                                          "still"))
        return out

    def video_motion(self, video, frames: int) -> tuple[str, np.ndarray] | None:
        """The motion of the subject that moves most in a video, read off its pixels: (the world's motion name,
        or "path" where none fits within 1 px on average (`fit_motion`), and its (frames, 2) centre offsets from
        frame 0 in frame px: the world's own offsets for a named motion, the measured ones for a path).
        None: the video shows no subject."""
        subs = self.video_subjects(video, frames)
        if not subs:
            return None
        tracks = [centres_of(s.boxes) * self.side for s in subs]
        track = max(tracks, key=lambda c: float(np.ptp(c, 0).sum()))
        seen = (track - track[:1]).astype(np.float32)
        name, offsets = self.fit_motion(np.arange(frames, dtype=np.float32), seen, frames)
        return name, (offsets if name != "path" else seen)

    def _plan_motion_transfer(self, request, text: str, frames: int, frame_img) -> LayoutPlan:
        """'@Image_1: the red circle moves like the subject in @Video': the subject @Image_1 shows (the one the
        words name, else its dominant colour) starts where the image shows it and follows the track of the
        subject that moves most in @Video (read off its pixels); the image's other subjects stay still."""
        plan = LayoutPlan(frames=frames)
        if frame_img is None or request.video is None:
            return plan
        moved = self.video_motion(request.video, frames)
        mentions = [m for m in self.mentions(text) if m["color"]]
        colour = mentions[0]["color"] if mentions else dominant_colour(frame_img, self.palette)
        for name, rgb, xy, size in self._shown(frame_img):
            mover = name == colour and moved is not None
            motion, offsets = moved if mover else ("still", np.zeros((frames, 2), np.float32))
            label = next((m["label"] for m in mentions if m["color"] == name), f"the {name} subject")
            plan.subjects.insert(0 if mover else len(plan.subjects), PlannedSubject(
                label, name, rgb, self._boxes(xy + offsets, np.full(frames, size, np.float32)), "image", motion))
        return plan

    def _plan_shot(self, request, text: str, task: str, frames: int) -> LayoutPlan:
        """The shot after (or before) @Video: each subject the video shows (read off its pixels) starts where the
        video leaves it (or ends where the video finds it) and does what the words say: a close-up centres it at
        the largest size, still; "goes back the way it came" retraces its track; "arriving" (a shot before) is
        its own motion carried back in time to where the video begins; any other motion words move it from
        there; otherwise it stays still."""
        plan = LayoutPlan(frames=frames)
        if request.video is None:
            return plan
        low = text.split(":", 1)[-1].lower()
        side, t = self.side, np.arange(frames, dtype=np.float32)
        for s in self.video_subjects(request.video, frames):
            c = centres_of(s.boxes) * side
            size = float((s.boxes[0, 2] - s.boxes[0, 0]) * side)
            own, own_offsets = self.fit_motion(t, c - c[0], frames)
            if task == "next_shot":
                anchor, motion = c[-1], self.motion_of(low)
                offsets = motion_offsets(motion, frames, self.params) if motion != "still" else np.zeros_like(c)
                if re.search(r"close[- ]?up", low):
                    anchor, size, motion, offsets = np.float32([side / 2, side / 2]), max(self.sizes.values()), \
                        "still", np.zeros_like(c)
                elif re.search(r"\bback the way\b|\bgoes back\b|\bretrac|\breturns?\b", low):
                    path = own_offsets if own != "path" else c - c[0]  # the world's formula where one fits
                    motion, offsets = "retrace", path[::-1] - path[-1]
                elif re.search(r"\bstops?\b|\bturns? (?:its|his|her) back\b", low):
                    motion, offsets = "still", np.zeros_like(c)
            else:
                anchor, motion = c[0], "still"
                offsets = np.zeros_like(c)
                if re.search(r"\barriv", low):  # its motion before the video: the same formula, earlier in time
                    motion = own
                    if own != "path":
                        offsets = motion_offsets(own, frames, self.params, t0=-frames)
                    else:
                        offsets = (t - frames)[:, None] * (c[-1] - c[0]) / max(frames - 1, 1)
            boxes = self._boxes(np.float32(anchor) + offsets, np.full(frames, size, np.float32))
            plan.subjects.append(PlannedSubject(s.label, s.color, s.rgb, boxes, "video", motion))
        return plan

    def _plan_storyboard(self, request, frames: int) -> LayoutPlan:
        """A storyboard's panels are keyframes spread evenly over the shot (`keyframes`); every palette colour
        the first panel shows is a subject, found in each panel (a panel that hides it: skipped); between
        keyframes it follows the world's motion that fits the panels within 1 px (`fit_motion`), else a
        straight line from panel to panel."""
        from .conditioning import storyboard_panels

        panels = [_as_uint8(p, self.side) for p in storyboard_panels(request)]
        plan = LayoutPlan(frames=frames)
        if not panels:
            return plan
        keys = keyframes(len(panels), frames)
        lo, hi = min(self.sizes.values()), max(self.sizes.values())
        for name, rgb in self.palette.items():
            seen = [find_colour(p, rgb) for p in panels]
            if seen[0] is None:
                continue
            at = [(k, np.float32(x[:2])) for k, x in zip(keys, seen) if x is not None]
            ks = np.float32([k for k, _ in at])
            pts = np.stack([c for _, c in at]) - seen[0][:2]
            motion, offsets = self.fit_motion(ks, pts, frames)
            size = float(np.clip(np.median([x[2] for x in seen if x is not None]), lo, hi))
            plan.subjects.append(PlannedSubject(f"the {name} subject", name, tuple(float(x) for x in rgb),
                                                self._boxes(np.float32(seen[0][:2]) + offsets,
                                                            np.full(frames, size, np.float32)), "image", motion))
        return plan

    def fit_motion(self, times: np.ndarray, offsets: np.ndarray, frames: int) -> tuple[str, np.ndarray]:
        """The world's motion whose offsets at `times` fit the seen `offsets` (from time 0) within 1 px on
        average: (its name, its (frames, 2) offsets); else ("path", straight lines through the seen points).
        Seen once (one panel), nothing says it moves: still."""
        if len(times) < 2:
            return "still", np.zeros((frames, 2), np.float32)
        fits = []
        for m in sorted(getattr(self.vocab, "motions", None) or {}):
            try:
                full = motion_offsets(m, frames, self.params)
            except ValueError:  # a motion word of the vocabulary with no formula here
                continue
            fits.append((float(np.linalg.norm(full[times.astype(int)] - offsets, axis=1).mean()), m, full))
        err, name, full = min(fits, key=lambda f: f[0], default=(1e9, "path", None))
        if err <= 1.0:
            return name, full
        t = np.arange(frames, dtype=np.float32)
        return "path", np.stack([np.interp(t, times, offsets[:, 0]), np.interp(t, times, offsets[:, 1])], 1)

    def _plan_camera_transfer(self, request, frames: int, frame_img) -> LayoutPlan:
        """'@Image_1 filmed with the camera motion of @Video': the subjects @Image_1 shows stay where they are in
        the world, seen through the camera read off @Video (`video_camera`; `plan.camera` holds its name)."""
        plan = LayoutPlan(frames=frames)
        if frame_img is None or request.video is None:
            return plan
        plan.camera = self.video_camera(request.video, frames)
        plan.subjects = self._still_subjects(frame_img, plan.camera, frames)
        return plan

    def _plan_edit(self, request, text: str, task: str, frames: int, rng) -> LayoutPlan:
        """Add / remove / replace: the context video's subjects where it shows them, less the one removed,
        recoloured where replaced, plus the one added (its start chosen freely, its motion from the words).
        The other edits (VIDEO_PLANNED): the video's subjects where they are, each the words name called by them."""
        plan = LayoutPlan(frames=frames)
        if request.video is None:
            return plan
        subs = self.video_subjects(request.video, frames)
        mentions = self.mentions(text)
        low = text.lower()
        if task == "edit_remove":
            gone = {m["color"] for m in mentions if m["color"]}
            subs = [s for s in subs if s.color not in gone]
        elif task in ("edit_replace", "combined") and mentions and (task == "edit_replace" or "replace " in low):
            old = mentions[0]["color"]
            new = mentions[1] if len(mentions) > 1 else None
            colour = (new["color"] or (self._ref_colour(request, new["ref"]) if new["ref"] else None)) if new else None
            for s in subs:
                if s.color == old and colour in self.palette:
                    s.color, s.rgb, s.label = colour, tuple(float(x) for x in self.palette[colour]), new["label"]
        elif task == "edit_add" and mentions:
            m = next((m for m in mentions if m["ref"] != "@Video"), mentions[0])
            colour = m["color"] or (self._ref_colour(request, m["ref"]) if m["ref"] else None)
            motion = self.motion_of(low.split(";", 1)[1] if ";" in low else low)
            size = self.sizes.get(m["size"]) if m["size"] else None
            if size is None and m["ref"]:
                size = self._ref_size(request, m["ref"])
            if size is None:
                size = float(rng.choice(sorted(self.sizes.values())))
            offsets = motion_offsets(motion, frames, self.params)
            placed = [(centres_of(s.boxes) * self.side, (s.boxes[:, 2] - s.boxes[:, 0]) * self.side) for s in subs]
            start, _ = self._free_start(rng, offsets, size, "static", frames, placed)
            centres, zoom = self._screen(start + offsets, "static", frames)
            rgb = self.palette.get(colour, (0.5, 0.5, 0.5))
            subs.append(PlannedSubject(m["label"], colour, tuple(float(x) for x in rgb),
                                       self._boxes(centres, size * zoom), "text", motion))
        elif task in VIDEO_PLANNED:
            for s in subs:  # the words' name (their first mention of its colour) for a subject read off the video
                m = next((m for m in mentions if m["color"] == s.color), None)
                if m is not None:
                    s.label = m["label"]
        plan.subjects = subs
        return plan

    def _logic_mentions(self, img, which: str, text: str) -> list[dict]:
        """'the largest of the three moves left': every subject the frame shows, the one asked
        about moving, the others still."""
        seen = [(name, find_colour(img, rgb)) for name, rgb in self.palette.items()]
        seen = [(n, s) for n, s in seen if s is not None]
        if not seen:
            return []
        big = which in ("largest", "biggest")
        mover = max(seen, key=lambda ns: ns[1][2] if big else -ns[1][2])[0]
        motion = self.motion_of(text)
        return [{"label": f"the {n} subject", "color": n, "ref": None, "size": None,
                 "motion": motion if n == mover else "still"} for n, _ in seen]

    def _ref_size(self, request, ref: str) -> float | None:
        """The size (px, within the world's sizes) an @Image_k reference shows its subject at; None otherwise."""
        k = int(ref.split("_")[1])
        if not (ref.lower().startswith("@image") and 1 <= k <= len(request.images)):
            return None
        cut = subject_cutout(_as_uint8(request.images[k - 1], self.side))
        if cut is None:
            return None
        lo, hi = min(self.sizes.values()), max(self.sizes.values())
        return float(np.clip(max(cut[1].shape), lo, hi))

    def _ref_colour(self, request, ref: str) -> str | None:
        k = int(ref.split("_")[1])
        if ref.lower().startswith("@image") and 1 <= k <= len(request.images):
            return dominant_colour(_as_uint8(request.images[k - 1], self.side), self.palette)
        if ref.lower().startswith("@subject"):
            views = list(request.subjects.values())
            if 1 <= k <= len(views) and views[k - 1]:
                return dominant_colour(_as_uint8(views[k - 1][0], self.side), self.palette)
        return None

    def _apply_annotations(self, request, plan: LayoutPlan, frame_img) -> None:
        """A user's arrows and boxes replace the planned track of the subject they are bound to
        (or of the first subject): the subject follows the arrow at constant speed, or moves into
        the box, arriving 4 frames early (the world's meaning of both)."""
        ann = request.annotations
        if ann.is_empty():
            return
        frames, side = plan.frames, self.side

        def target(ref: str | None) -> PlannedSubject | None:
            if ref:
                for s in plan.subjects:
                    if s.label.lower() == ref.lower() or (s.color and s.color in ref.lower()):
                        return s
            return plan.subjects[0] if plan.subjects else None

        def ensure(ref: str | None, start_xy) -> PlannedSubject:
            s = target(ref)
            if s is None:  # nothing planned yet: the annotation itself says where a subject is
                colour = next((c for c in self.palette if ref and c in ref.lower()), None)
                rgb = self.palette.get(colour, (0.5, 0.5, 0.5))
                size = self.sizes.get("medium", 12.0)
                seen = find_colour(frame_img, rgb) if frame_img is not None and colour else None
                if seen is not None:
                    start_xy, size = seen[:2], float(np.clip(seen[2], min(self.sizes.values()), max(self.sizes.values())))
                boxes = self._boxes(np.tile(np.float32(start_xy), (frames, 1)), np.full(frames, size, np.float32))
                s = PlannedSubject(ref or "the subject", colour, tuple(rgb), boxes, "user")
                plan.subjects.append(s)
            return s

        for a in ann.arrows:
            pts = np.asarray(a.points, np.float32) * side
            s = ensure(a.ref, pts[0])
            size = float((s.boxes[0, 2] - s.boxes[0, 0]) * side)
            track = polyline_track(pts, frames)
            s.boxes, s.source, s.motion = self._boxes(track, np.full(frames, size, np.float32)), "user", "path"
        for b in ann.boxes:
            x0, y0, x1, y1 = (float(v) * side for v in b.box)
            goal = np.float32([(x0 + x1) / 2, (y0 + y1) / 2])
            s = ensure(b.ref, goal)
            size = float((s.boxes[0, 2] - s.boxes[0, 0]) * side)
            start = np.float32([(s.boxes[0, 0] + s.boxes[0, 2]) / 2, (s.boxes[0, 1] + s.boxes[0, 3]) / 2]) * side
            track = polyline_track(np.stack([start, goal]), frames, hold=4)
            s.boxes, s.source, s.motion = self._boxes(track, np.full(frames, size, np.float32)), "user", "path"


# edits whose subjects the planner reads off the context video (and adds, removes or recolours)
EDIT_PLANNED = ("edit_add", "edit_remove", "edit_replace")
# tasks whose @Video gives only a motion to follow, never content: their @Image_1 is the first frame
MOTION_SOURCE_TASKS = ("motion_transfer", "camera_transfer")
# shots before or after @Video: the video's subjects and place, continued (the video's last frame, or first)
SHOT_TASKS = ("next_shot", "previous_shot")
# the world's camera motions, as the words name them
CAMERA_PHRASES = {"pan_left": "the camera pans left", "pan_right": "the camera pans right",
                  "zoom_in": "the camera zooms in", "zoom_out": "the camera zooms out"}
# tasks whose @Image_1 is the clip's first frame (the planner reads the subjects off it)
FIRST_FRAME_TASKS = ("i2v", "arrows", "boxes", "reasoning") + MOTION_SOURCE_TASKS
# edits that change how things look, not where they are: the plan is the context video's subjects where it shows them
VIDEO_PLANNED = ("background", "stylize", "material", "effects", "weather", "combined")
# (a sketch's outline already says where its subject is: not planned over it)
PLANNED_TASKS = ("t2v", "reasoning", "i2v", "image_ref", "subject_ref", "novel_view", "arrows", "boxes")
# every family the planner makes a layout for (the others: sketches, and requests with a mask, keep their own)
LAYOUT_TASKS = PLANNED_TASKS + EDIT_PLANNED + VIDEO_PLANNED + MOTION_SOURCE_TASKS + SHOT_TASKS + ("storyboard",)


def centres_of(boxes: np.ndarray) -> np.ndarray:
    """(T, 4) boxes -> (T, 2) centres."""
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)


def _as_uint8(img, side: int) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = a[..., :3]
    if a.shape[:2] != (side, side):
        from PIL import Image

        a = np.asarray(Image.fromarray(a).resize((side, side), Image.BILINEAR))
    return a


def draw_layout(plan: LayoutPlan | None, background: np.ndarray | None = None, size: int = 192) -> np.ndarray:
    """A picture of the plan for people: each subject's first box (solid) and last box (dashed) in its
    colour, its track as a line ending in a dot, over `background` (e.g. the reference frame) or grey."""
    from PIL import Image, ImageDraw

    if background is not None:
        img = Image.fromarray(_as_uint8(background, 32)).resize((size, size), Image.NEAREST).convert("RGB")
    else:
        img = Image.new("RGB", (size, size), (60, 60, 66))
    d = ImageDraw.Draw(img)
    for s in (plan.subjects if plan else []):
        col = tuple(int(255 * v) for v in s.rgb)
        b0 = [float(v) * size for v in s.boxes[0]]
        b1 = [float(v) * size for v in s.boxes[-1]]
        d.rectangle(b0, outline=col, width=3)
        for k in range(0, 4):  # the last box, dashed
            x0, y0, x1, y1 = b1
            for a in np.linspace(0, 1, 8, endpoint=False)[k % 2::2]:
                d.line([x0 + a * (x1 - x0), y0, x0 + (a + 1 / 16) * (x1 - x0), y0], fill=col, width=2)
                d.line([x0 + a * (x1 - x0), y1, x0 + (a + 1 / 16) * (x1 - x0), y1], fill=col, width=2)
                d.line([x0, y0 + a * (y1 - y0), x0, y0 + (a + 1 / 16) * (y1 - y0)], fill=col, width=2)
                d.line([x1, y0 + a * (y1 - y0), x1, y0 + (a + 1 / 16) * (y1 - y0)], fill=col, width=2)
        c = centres_of(np.asarray(s.boxes)) * size
        d.line([tuple(p) for p in c], fill=(255, 255, 255), width=2)
        d.ellipse([c[-1][0] - 4, c[-1][1] - 4, c[-1][0] + 4, c[-1][1] + 4], fill=col, outline=(255, 255, 255))
    return np.asarray(img)
