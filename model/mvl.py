"""The MVL (Multimodal Visual Language) request: one JSON-serialisable object for every task.

It is what the job queue stores, what the pipeline takes and what arena pairs share
(DESIGN 3.1). Media are either in-memory uint8 arrays (images ``(H, W, 3)``, videos
``(T, H, W, 3)``) or strings naming an asset of the studio's media store. In JSON, arrays
are lossless PNG data URIs, so a request round-trips unchanged.

Validation happens once, at the edge, through :meth:`MVLRequest.validate`, and raises
:class:`MVLValidationError` with a message that names the problem and the fix.
"""

from __future__ import annotations

import base64
import io
import json
import math
import numbers
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Union

import numpy as np

# The task families of DESIGN section 5. `task=None` lets the prompt enhancer infer one.
TASKS: tuple[str, ...] = (
    "t2v", "i2v", "image_ref", "subject_ref", "novel_view", "motion_transfer",
    "camera_transfer", "next_shot", "previous_shot", "sketch", "storyboard",
    "edit_add", "edit_remove", "edit_replace", "background", "stylize", "material",
    "effects", "weather", "combined", "arrows", "boxes", "reasoning",
)

MAX_IMAGES = 8  # reference images per request
MAX_SUBJECTS = 6  # library subjects referenced by one request
MAX_VIEWS = 8  # images per subject
MAX_ARROWS = 8
MAX_BOXES = 8
MAX_PANELS = 16
FRAMES_RANGE = (1, 129)  # 1 frame = an image; Wan's presets make 81 (each backend checks its own limits)
SIZE_RANGE = (16, 1280)  # height / width, multiples of 8; Wan's 720p is 1280 wide
STEPS_RANGE = (1, 200)
GUIDANCE_RANGE = (0.0, 20.0)
MAX_PROMPT_CHARS = 2000

Media = Union[np.ndarray, str]  # array in memory, or a media-store asset id
REFERENCE_RE = re.compile(r"@([A-Za-z][A-Za-z0-9_]*)")
IMAGE_REF_RE = re.compile(r"^Image_(\d+)$")
SUBJECT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


def _unknown_reference(name: str, subjects) -> str:
    """The error for @name that is no image, no video and no subject: with the reference meant where only its case
    differs (references are case-sensitive: @image_1 is not @Image_1)."""
    meant = [f"Image_{m.group(1)}"] if (m := re.match(r"^image_(\d+)$", name, re.I)) else []
    meant += ["Video"] if name.lower() == "video" else []
    meant += [s for s in subjects if s.lower() == name.lower()]
    if meant:
        return f"@{name} is not a reference: references are case-sensitive; did you mean @{meant[0]}?"
    return (f"@{name} is not in the subject library: add the subject or fix the name"
            + (f" (known: {', '.join('@' + s for s in subjects)})" if subjects else ""))
_RESERVED = {"Video"}


class MVLValidationError(ValueError):
    """A request that cannot be generated; the message names the input and the fix."""


@dataclass
class Arrow:
    """A motion path drawn on the frame: ordered points, normalised 0..1 (x, y)."""

    points: list[tuple[float, float]]
    ref: str | None = None  # "@Image_1", "@Name" or a subject colour/shape phrase it is bound to


@dataclass
class Box:
    """A rectangle drawn on the frame, normalised (x0, y0, x1, y1)."""

    box: tuple[float, float, float, float]
    ref: str | None = None
    label: str | None = None


@dataclass
class Annotations:
    arrows: list[Arrow] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.arrows and not self.boxes


@dataclass
class Storyboard:
    """Either ordered panels (keyframes, one per beat) or one grid image of rows x cols."""

    panels: list[Media] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    grid: Media | None = None
    rows: int = 0
    cols: int = 0


@dataclass
class MVLRequest:
    prompt: str
    images: list[Media] = field(default_factory=list)
    subjects: dict[str, list[Media]] = field(default_factory=dict)
    video: Media | None = None
    mask: Media | None = None  # with a context video: where the edit may change it (bright = change), one image
    annotations: Annotations = field(default_factory=Annotations)
    storyboard: Storyboard | None = None
    task: str | None = None  # one of TASKS; None = inferred by the prompt enhancer
    frames: int = 16
    fps: int = 8
    height: int = 32
    width: int = 32
    steps: int = 10
    guidance: float = 3.0
    # video edits: the noise level denoising starts from (1 = redraw @Video freely, lower keeps
    # more of it); None = the model's own choice for the task
    strength: float | None = None
    # mask-free video edits: keep @Video's own pixels where the edit changed them by less than this
    # (0..1, largest channel; paste-back); 0 = off, None = the model's own choice for the task
    preserve: float | None = None
    seed: int = 0
    upscale: bool = False  # run the super-resolution stage (4x)

    # ----------------------------------------------------------------- references
    def references(self) -> list[str]:
        """Every `@Name` in the prompt, in order of appearance (duplicates kept once)."""
        seen: list[str] = []
        for name in REFERENCE_RE.findall(self.prompt):
            if name not in seen:
                seen.append(name)
        return seen

    # ----------------------------------------------------------------- validation
    def validate(self) -> "MVLRequest":
        """Check the whole request once; raise MVLValidationError naming the problem."""
        _check(isinstance(self.prompt, str), "prompt must be text")
        _check(self.prompt.strip() != "", "the prompt is empty: describe the video to make")
        _check(len(self.prompt) <= MAX_PROMPT_CHARS,
               f"the prompt has {len(self.prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
        _check(self.task is None or self.task in TASKS,
               f"unknown task {self.task!r}; use one of {', '.join(TASKS)} or leave it empty")
        _check(len(self.images) <= MAX_IMAGES,
               f"{len(self.images)} reference images given; at most {MAX_IMAGES} are supported")
        _check(len(self.subjects) <= MAX_SUBJECTS,
               f"{len(self.subjects)} subjects given; at most {MAX_SUBJECTS} per request")
        for i, img in enumerate(self.images, 1):
            _check_image(img, f"@Image_{i}")
        for name, views in self.subjects.items():
            _check(bool(SUBJECT_NAME_RE.match(name)) and name not in _RESERVED
                   and not IMAGE_REF_RE.match(name),
                   f"subject name {name!r} is not usable as a reference: use letters, digits "
                   "and _ (starting with a letter, at most 32), not Image_N or Video")
            _check(1 <= len(views) <= MAX_VIEWS,
                   f"subject @{name} has {len(views)} images; give 1 to {MAX_VIEWS} views")
            for j, img in enumerate(views, 1):
                _check_image(img, f"view {j} of @{name}")
        if self.video is not None:
            _check_video(self.video, "@Video")
        if self.mask is not None:
            _check(self.video is not None, "a mask marks where @Video may change: give the context video too, "
                                           "or remove the mask")
            _check_image(self.mask, "the edit mask")
            if isinstance(self.mask, np.ndarray):
                _check(bool((self.mask.max(axis=2) > 127).any()),
                       "the edit mask is empty: paint the region the edit may change (bright), or remove the mask")
        for name in self.references():
            m = IMAGE_REF_RE.match(name)
            if m:
                n = int(m.group(1))
                _check(1 <= n <= len(self.images),
                       f"@Image_{n} is used but only {len(self.images)} image"
                       f"{'' if len(self.images) == 1 else 's'} were given: upload it or fix the number")
            elif name == "Video":
                _check(self.video is not None, "@Video is used but no context video was given")
            else:
                _check(name in self.subjects, _unknown_reference(name, self.subjects))
        ann = self.annotations
        _check(len(ann.arrows) <= MAX_ARROWS, f"{len(ann.arrows)} arrows drawn; at most {MAX_ARROWS}")
        _check(len(ann.boxes) <= MAX_BOXES, f"{len(ann.boxes)} boxes drawn; at most {MAX_BOXES}")
        for k, arrow in enumerate(ann.arrows, 1):
            _check(len(arrow.points) >= 2, f"arrow {k} needs at least 2 points (a start and an end)")
            for p in arrow.points:
                _check(len(p) == 2 and all(_real(v) for v in p),
                       f"arrow {k} has point {tuple(p)!r}: a point is two numbers (x, y) from 0 to 1")
                x, y = p
                _check(_unit(x) and _unit(y),
                       f"arrow {k} has point ({x:.3g}, {y:.3g}) outside the frame: coordinates are 0..1")
            self._check_binding(arrow.ref, f"arrow {k}")
        for k, box in enumerate(ann.boxes, 1):
            _check(len(box.box) == 4, f"box {k} needs 4 numbers (x0, y0, x1, y1)")
            _check(all(_real(v) for v in box.box), f"box {k} {tuple(box.box)!r}: coordinates must be numbers from 0 to 1")
            x0, y0, x1, y1 = box.box
            _check(all(_unit(v) for v in box.box),
                   f"box {k} ({x0:.3g}, {y0:.3g}, {x1:.3g}, {y1:.3g}) is outside the frame: coordinates are 0..1")
            _check(x1 > x0 and y1 > y0, f"box {k} is empty: x1 must exceed x0 and y1 exceed y0")
            self._check_binding(box.ref, f"box {k}")
        if self.storyboard is not None:
            sb = self.storyboard
            _check(len(sb.panels) <= MAX_PANELS, f"{len(sb.panels)} storyboard panels; at most {MAX_PANELS}")
            _check(bool(sb.panels) != (sb.grid is not None),
                   "a storyboard is either panels or one grid image, not both and not neither")
            for j, p in enumerate(sb.panels, 1):
                _check_image(p, f"storyboard panel {j}")
            if sb.grid is not None:
                _check_image(sb.grid, "storyboard grid")
                _check(1 <= sb.rows <= 4 and 1 <= sb.cols <= 4,
                       f"storyboard grid of {sb.rows}x{sb.cols}: rows and cols must be 1..4")
        _check_int(self.frames, "frames", *FRAMES_RANGE)
        _check_int(self.fps, "fps", 1, 60)
        for dim in ("height", "width"):
            v = getattr(self, dim)
            _check_int(v, dim, *SIZE_RANGE)
            _check(v % 8 == 0, f"{dim}={v} must be a multiple of 8")
        _check_int(self.steps, "steps", *STEPS_RANGE)
        _check(_real(self.guidance) and GUIDANCE_RANGE[0] <= self.guidance <= GUIDANCE_RANGE[1],
               f"guidance={self.guidance} is out of range {GUIDANCE_RANGE[0]}..{GUIDANCE_RANGE[1]}")
        if self.strength is not None:
            _check(_real(self.strength) and 0 < self.strength <= 1,
                   f"strength={self.strength!r} is out of range: give a number in (0, 1] (1 = redraw @Video "
                   "freely), or leave it empty for the model's choice")
            _check(self.video is not None, "strength says how much of @Video an edit may redraw: give the "
                                           "context video too, or leave strength empty")
        if self.preserve is not None:
            _check(_real(self.preserve) and 0 <= self.preserve < 1,
                   f"preserve={self.preserve!r} is out of range: give a number in [0, 1) (0 = off), or leave it "
                   "empty for the model's choice")
            _check(self.video is not None, "preserve says which pixels of @Video an edit keeps: give the "
                                           "context video too, or leave preserve empty")
        _check_int(self.seed, "seed", 0, 2**31 - 1)
        return self

    def _check_binding(self, ref: str | None, what: str) -> None:
        if ref is None or not ref.startswith("@"):
            return
        name = ref[1:]
        m = IMAGE_REF_RE.match(name)
        if m:
            _check(1 <= int(m.group(1)) <= len(self.images), f"{what} is bound to {ref}, which was not given")
        else:
            _check(name in self.subjects, f"{what} is bound to {ref}, which is not in the subject library")

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        d = _plain(asdict(self))  # numpy numbers (a sketch's coordinates, a slider's value) become JSON's
        d["images"] = [_encode_media(m) for m in self.images]
        d["subjects"] = {k: [_encode_media(m) for m in v] for k, v in self.subjects.items()}
        d["video"] = None if self.video is None else _encode_media(self.video)
        d["mask"] = None if self.mask is None else _encode_media(self.mask)
        if self.storyboard is not None:
            d["storyboard"]["panels"] = [_encode_media(m) for m in self.storyboard.panels]
            d["storyboard"]["grid"] = None if self.storyboard.grid is None else _encode_media(self.storyboard.grid)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MVLRequest":
        if not isinstance(d, dict):
            raise MVLValidationError("an MVL request must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise MVLValidationError(f"unknown field(s) {sorted(unknown)} in the MVL request; known: {sorted(known)}")
        if "prompt" not in d:
            raise MVLValidationError("the MVL request has no prompt")
        kw = dict(d)
        try:
            kw["images"] = [_decode_media(m) for m in d.get("images", [])]
            kw["subjects"] = {k: [_decode_media(m) for m in v] for k, v in d.get("subjects", {}).items()}
            kw["video"] = None if d.get("video") is None else _decode_media(d["video"])
            kw["mask"] = None if d.get("mask") is None else _decode_media(d["mask"])
            ann = d.get("annotations") or {}
            kw["annotations"] = Annotations(
                arrows=[Arrow(points=[tuple(p) for p in a["points"]], ref=a.get("ref")) for a in ann.get("arrows", [])],
                boxes=[Box(box=tuple(b["box"]), ref=b.get("ref"), label=b.get("label")) for b in ann.get("boxes", [])],
            )
            sb = d.get("storyboard")
            if sb is not None:
                kw["storyboard"] = Storyboard(
                    panels=[_decode_media(m) for m in sb.get("panels", [])],
                    captions=list(sb.get("captions", [])),
                    grid=None if sb.get("grid") is None else _decode_media(sb["grid"]),
                    rows=int(sb.get("rows", 0)), cols=int(sb.get("cols", 0)),
                )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, MVLValidationError):
                raise
            raise MVLValidationError(f"malformed MVL request: {e}") from e
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> "MVLRequest":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MVLValidationError(f"the MVL request is not valid JSON: {e}") from e
        return cls.from_dict(d)


# --------------------------------------------------------------------- helpers
def _check(ok: bool, message: str) -> None:
    if not ok:
        raise MVLValidationError(message)


def _real(v: Any) -> bool:
    """Any real number whatever its type (Python, numpy, a 0-d array), not a bool and not NaN."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and not math.isnan(float(v))


def _whole(v: Any) -> bool:
    """A whole number whatever its integer type (Python or numpy), not a bool."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _unit(v: Any) -> bool:
    return _real(v) and 0.0 <= v <= 1.0


def _plain(x: Any) -> Any:
    """numpy scalars (and tuples / lists / dicts of them) as plain Python values, so json.dumps takes them."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _check_int(v: Any, name: str, lo: int, hi: int) -> None:
    _check(_whole(v) and lo <= v <= hi,
           f"{name}={v!r} is out of range: use a whole number from {lo} to {hi}")


def _check_image(m: Media, what: str) -> None:
    if isinstance(m, str):
        _check(m != "", f"{what} is an empty reference")
        return
    _check(isinstance(m, np.ndarray) and m.dtype == np.uint8 and m.ndim == 3 and m.shape[2] == 3,
           f"{what} must be an RGB uint8 image (H, W, 3)")
    _check(8 <= m.shape[0] <= 4096 and 8 <= m.shape[1] <= 4096,
           f"{what} is {m.shape[1]}x{m.shape[0]}; images must be 8..4096 pixels a side")


def _check_video(m: Media, what: str) -> None:
    if isinstance(m, str):
        _check(m != "", f"{what} is an empty reference")
        return
    _check(isinstance(m, np.ndarray) and m.dtype == np.uint8 and m.ndim == 4 and m.shape[3] == 3,
           f"{what} must be an RGB uint8 video (T, H, W, 3)")
    _check(1 <= m.shape[0] <= 1024, f"{what} has {m.shape[0]} frames; 1..1024 are supported")


_PNG_PREFIX = "data:image/png;base64,"
_STRIP_PREFIX = "data:video/x-png-strip;frames="


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _encode_media(m: Media) -> str:
    if isinstance(m, str):
        return m
    if m.ndim == 3:
        return _PNG_PREFIX + base64.b64encode(_png_bytes(m)).decode()
    t, h, w, c = m.shape  # a video is stored as a vertical strip of its frames
    return f"{_STRIP_PREFIX}{t};base64," + base64.b64encode(_png_bytes(m.reshape(t * h, w, c))).decode()


def _decode_media(s: Any) -> Media:
    from PIL import Image

    if not isinstance(s, str):
        raise MVLValidationError("media must be a data URI or an asset id string")
    if s.startswith(_PNG_PREFIX):
        arr = np.asarray(Image.open(io.BytesIO(base64.b64decode(s[len(_PNG_PREFIX):]))).convert("RGB"))
        return np.ascontiguousarray(arr)
    if s.startswith(_STRIP_PREFIX):
        head, data = s[len(_STRIP_PREFIX):].split(";base64,", 1)
        t = int(head)
        strip = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        if t <= 0 or strip.shape[0] % t:
            raise MVLValidationError(f"video strip of height {strip.shape[0]} does not split into {t} frames")
        return np.ascontiguousarray(strip.reshape(t, strip.shape[0] // t, strip.shape[1], 3))
    return s
