"""Samplers: one per task family of DESIGN section 5, each returning a WorldSample.

A sample is an MVL request (what a user would send), the target clip (what a perfect
model returns) and the exact truth behind it (subjects, masks, tracks, edit region), so
OmniBench can score any model's answer. `split="train"` never renders a held-out
(colour, shape) pair anywhere in the sample; `split="bench"` puts one on the subject that
the request is about, so the benchmark measures composition, not memory.

Families are deterministic (the target follows from the request, e.g. an edit of a given
video) or open (text-to-video: where the subject starts is the model's choice); open
families are scored by attributes the perception checker reads off the clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from model.mvl import Annotations, Arrow, Box, MVLRequest, Storyboard

from . import vocab as V
from .render import BASE, FRAMES, Rendered, Scene, SubjectSpec, compatible, render, screen_geometry, subject_on_plate, background_plate

Split = str  # "train" | "bench"


@dataclass
class SubjectTruth:
    shape: str
    color: str
    pattern: str
    view: str
    motion: str
    size: float  # base px at zoom 1
    centers: np.ndarray  # (T, 2) on-screen centre, base px
    sizes: np.ndarray  # (T,) on-screen size, base px
    mask: np.ndarray  # (T, H, W) visible pixels at base resolution
    name: str | None = None


@dataclass
class Truth:
    background: str
    camera: str
    subjects: list[SubjectTruth]
    checks: tuple[str, ...]  # which OmniBench metrics apply (see training.evaluate)
    deterministic: bool  # True when the target is fully determined by the request
    source: np.ndarray | None = None  # the context clip of an edit
    edit_region: np.ndarray | None = None  # (T, H, W) pixels the edit is allowed to change
    keyframes: tuple[int, ...] = ()
    focus: int = 0  # the subject that trajectory / box / added checks are about
    box: tuple[float, float, float, float] | None = None  # base px (x0, y0, x1, y1)
    info: dict = field(default_factory=dict)  # readable facts: weather, style, variant...


@dataclass
class WorldSample:
    family: str
    request: MVLRequest
    target: np.ndarray  # (T, 32, 32, 3) uint8
    truth: Truth
    scene: Scene  # renders the target at any scale: render(scene, 4) is the SR target

    def target_hr(self, scale: int = 4) -> np.ndarray:
        return render(self.scene, scale).clip


# --------------------------------------------------------------------- helpers
def _choice(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _new_subject(rng, split: Split, background: str, used: set[str], primary: bool,
                 **fixed) -> SubjectSpec:
    """A random subject whose colour stands out from `background` and is not in `used`."""
    colors = [c for c in V.COLORS if c not in used and compatible(c, background)]
    if "color" in fixed:
        colors = [fixed["color"]]
    for _ in range(200):
        if split == "bench" and primary and "shape" not in fixed:
            pairs = [p for p in sorted(V.HELD_OUT_PAIRS) if p[0] in colors]
            color, shape = _choice(rng, pairs)
        else:
            color = _choice(rng, colors)
            shape = fixed.get("shape") or _choice(rng, V.SHAPES)
        if split == "train" and (color, shape) in V.HELD_OUT_PAIRS:
            continue
        spec = SubjectSpec(
            shape=shape, color=color,
            pattern=fixed.get("pattern") or _choice(rng, V.PATTERNS),
            view=fixed.get("view", "front"),
            size=float(fixed.get("size") or _choice(rng, list(V.SIZES.values()))),
        )
        used.add(color)
        return spec
    raise RuntimeError(f"no subject fits background {background} with colours {sorted(used)} taken")


def _named_subject(rng, split: Split, used: set[str], background: str | None = None) -> SubjectSpec:
    names = [n for n, (_, c, _) in V.NAMED_SUBJECTS.items()
             if c not in used and (background is None or compatible(c, background))]
    if split == "train":
        names = [n for n in names if n not in V.HELD_OUT_SUBJECTS]
    else:
        held = [n for n in names if n in V.HELD_OUT_SUBJECTS]
        names = held or names
    name = _choice(rng, names)
    shape, color, pattern = V.NAMED_SUBJECTS[name]
    used.add(color)
    return SubjectSpec(shape=shape, color=color, pattern=pattern, size=13.0, name=name)


def _in_frame(scene: Scene, margin: float = 1.0) -> bool:
    centers, sizes = screen_geometry(scene)
    half = sizes[..., None] / 2
    return bool(np.all(centers - half >= margin) and np.all(centers + half <= BASE - margin))


def _separated(scene: Scene, gap: float = 1.0) -> bool:
    centers, sizes = screen_geometry(scene)
    n = len(scene.subjects)
    for i in range(n):
        for j in range(i + 1, n):
            d = np.abs(centers[i] - centers[j]).max(-1)
            if np.any(d < (sizes[i] + sizes[j]) / 2 + gap):
                return False
    return True


def _start_range(s: SubjectSpec, camera: str, frames: int, t0: int = 0) -> tuple[float, float, float, float]:
    """Start positions (x_lo, x_hi, y_lo, y_hi) that keep the whole track on screen under the camera."""
    rel = V.motion_track(s.motion, frames, (0.0, 0.0), t0) - V.motion_track(s.motion, 1, (0.0, 0.0), t0)[0]
    pan, zoom = V.camera_transform(camera, frames)
    c = BASE / 2
    edge = s.size * zoom / 2 + 1  # on-screen half size + margin
    lo = c + (edge - c) / zoom
    hi = c + (BASE - edge - c) / zoom
    return (float(np.max(lo - rel[:, 0] + pan)), float(np.min(hi - rel[:, 0] + pan)),
            float(np.max(lo - rel[:, 1])), float(np.min(hi - rel[:, 1])))


def _place(rng, scene: Scene, fixed: set[int] = frozenset(), separate: bool = True, t0: int = 0,
           gap: float = 1.0) -> bool:
    """Choose start positions, one subject at a time, so every track stays on screen and
    (with `separate`) no two subjects ever come within `gap` px. Candidates are drawn 64
    at a time and checked with array maths. False when some subject finds no spot."""
    pan, zoom = V.camera_transform(scene.camera, scene.frames)
    c = BASE / 2
    shift = np.stack([pan, np.zeros_like(pan)], 1)  # (T, 2)

    def screen(world):  # (..., T, 2) world -> screen
        return c + (world - c - shift) * zoom[:, None]

    placed: list[tuple[np.ndarray, np.ndarray]] = []  # (screen centres (T, 2), sizes (T,))
    for i in fixed:
        s = scene.subjects[i]
        placed.append((screen(s.track[: scene.frames]), s.size * zoom))
    for i, s in enumerate(scene.subjects):
        if i in fixed:
            continue
        x_lo, x_hi, y_lo, y_hi = _start_range(s, scene.camera, scene.frames, t0)
        if x_lo > x_hi or y_lo > y_hi:
            return False
        rel = V.motion_track(s.motion, scene.frames, (0.0, 0.0), t0) - V.motion_track(s.motion, 1, (0.0, 0.0), t0)[0]
        starts = np.stack([rng.uniform(x_lo, x_hi, 64), rng.uniform(y_lo, y_hi, 64)], 1).astype(np.float32)
        cand = screen(starts[:, None, :] + rel[None])  # (K, T, 2)
        size_t = s.size * zoom
        ok = np.ones(len(starts), bool)
        if separate:
            for pc, ps in placed:
                d = np.abs(cand - pc[None]).max(-1)  # (K, T)
                ok &= np.all(d >= (size_t + ps)[None] / 2 + gap, axis=1)
        if not ok.any():
            return False
        k = int(np.argmax(ok))
        s.track = (starts[k] + rel).astype(np.float32)
        placed.append((cand[k], size_t))
    return True


def _scene_with_subjects(rng, split: Split, n: int, motions=V.MOTIONS, camera: str = "static",
                         backgrounds=V.SCENE_BACKGROUNDS, primary_first: bool = True,
                         sizes=None) -> Scene:
    """A random scene of n subjects with distinct colours, placed without overlap."""
    for _ in range(200):
        bg = _choice(rng, backgrounds)
        used: set[str] = set()
        subs = []
        for i in range(n):
            if sizes is not None:
                kw = {"size": sizes[i]}
            elif n >= 3:  # three subjects only fit the 32x32 frame when they are not all large
                kw = {"size": float(_choice(rng, [V.SIZES["small"], V.SIZES["medium"]]))}
            else:
                kw = {}
            s = _new_subject(rng, split, bg, used, primary=primary_first and i == 0, **kw)
            # a third subject stays near its spot: three crossing tracks do not fit in 32x32
            compact = [m for m in motions if m in ("still", "jump", "circle")]
            s.motion = _choice(rng, compact if i >= 2 and compact else motions)
            subs.append(s)
        scene = Scene(background=bg, subjects=subs, camera=camera)
        if _place(rng, scene):
            return scene
    raise RuntimeError(f"could not place {n} subjects with motions {motions} under camera {camera}")


def _n_subjects(rng) -> int:
    return int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))


def _truth(scene: Scene, r: Rendered, checks: tuple[str, ...], deterministic: bool, **kw) -> Truth:
    subs = [
        SubjectTruth(shape=s.shape, color=s.color, pattern=s.pattern, view=s.view, motion=s.motion,
                     size=s.size, centers=r.centers[i], sizes=r.sizes[i], mask=r.masks[i], name=s.name)
        for i, s in enumerate(scene.subjects)
    ]
    return Truth(background=scene.background, camera=scene.camera, subjects=subs, checks=checks,
                 deterministic=deterministic, **kw)


def _motion_sentence(s: SubjectSpec, ref: str | None = None) -> str:
    return f"{ref or s.phrase()} {V.MOTION_WORDS[s.motion]}"


def _the(s: SubjectSpec) -> str:
    """'the red circle': colours are unique in a clip, so colour + shape names a subject."""
    return f"the {s.color} {s.shape}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _sample(family, request, scene, checks, deterministic, **kw) -> WorldSample:
    r = render(scene)
    request.task = family
    return WorldSample(family, request, r.clip, _truth(scene, r, checks, deterministic, **kw), scene)


def _copy_scene(scene: Scene, **changes) -> Scene:
    subs = [SubjectSpec(**{**s.__dict__}) for s in scene.subjects]
    base = dict(background=scene.background, subjects=subs, camera=scene.camera, frames=scene.frames,
                weather=scene.weather, style=scene.style, background_image=scene.background_image)
    base.update(changes)
    return Scene(**base)


def _edit_region(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    from .render import _dilate

    diff = np.abs(source.astype(np.int16) - target.astype(np.int16)).max(-1) > 2
    return _dilate(diff, 1)


def _edit_sample(family, rng, source_scene: Scene, target_scene: Scene, prompt: str,
                 images=(), checks=("edit", "preserve"), **info) -> WorldSample:
    src = render(source_scene).clip
    r = render(target_scene)
    req = MVLRequest(prompt=prompt, images=list(images), video=src, task=family)
    region = _edit_region(src, r.clip)
    truth = _truth(target_scene, r, checks, True, source=src, edit_region=region, info=info)
    return WorldSample(family, req, r.clip, truth, target_scene)


# --------------------------------------------------------------------- families
def sample_t2v(rng, split: Split) -> WorldSample:
    n = _n_subjects(rng)
    camera = "static" if n == 3 or rng.random() < 0.75 else _choice(rng, V.CAMERAS[1:])
    scene = _scene_with_subjects(rng, split, n, camera=camera)
    parts = [_motion_sentence(s) for s in scene.subjects]
    prompt = _join(parts) + " " + V.BACKGROUND_WORDS[scene.background]
    if camera != "static":
        prompt += ", " + V.CAMERA_WORDS[camera]
    return _sample("t2v", MVLRequest(prompt=prompt[0].upper() + prompt[1:] + "."), scene,
                   ("attributes", "stability"), False)


def sample_i2v(rng, split: Split) -> WorldSample:
    camera = "static" if rng.random() < 0.8 else _choice(rng, ("pan_left", "pan_right"))
    scene = _scene_with_subjects(rng, split, int(rng.choice([1, 2], p=[0.7, 0.3])), camera=camera)
    first = render(_copy_scene(scene, frames=1, camera="static")).clip[0]
    parts = [_motion_sentence(s, _the(s)) for s in scene.subjects]
    prompt = "@Image_1: " + _join(parts)
    if camera != "static":
        prompt += ", " + V.CAMERA_WORDS[camera]
    return _sample("i2v", MVLRequest(prompt=prompt + ".", images=[first]), scene,
                   ("first_frame", "reference", "motion", "stability"), True)


def sample_image_ref(rng, split: Split) -> WorldSample:
    n = int(rng.choice([1, 2], p=[0.6, 0.4]))
    scene = _scene_with_subjects(rng, split, n)
    images, refs = [], []
    for s in scene.subjects:
        images.append(subject_on_plate(s, "studio"))
        refs.append(f"@Image_{len(images)}")
    parts = [_motion_sentence(s, ref) for s, ref in zip(scene.subjects, refs)]
    if rng.random() < 0.7:
        images.append(background_plate(scene.background))
        where = f"in @Image_{len(images)}"
    else:
        where = V.BACKGROUND_WORDS[scene.background]
    prompt = _join(parts) + " " + where + "."
    return _sample("image_ref", MVLRequest(prompt=prompt, images=images), scene,
                   ("identity", "attributes", "stability"), False)


def _views_of(spec: SubjectSpec, views) -> list[np.ndarray]:
    out = []
    for v in views:
        s = SubjectSpec(**{**spec.__dict__, "view": v, "size": 14.0})
        out.append(subject_on_plate(s, "studio"))
    return out


def sample_subject_ref(rng, split: Split) -> WorldSample:
    for _ in range(50):
        bg = _choice(rng, V.SCENE_BACKGROUNDS)
        used: set[str] = set()
        n = int(rng.choice([1, 2], p=[0.6, 0.4]))
        subs = [_named_subject(rng, split if i == 0 else "train", used, bg) for i in range(n)]
        for s in subs:
            s.motion = _choice(rng, V.MOTIONS)
        scene = Scene(background=bg, subjects=subs)
        if _place(rng, scene):
            break
    library = {s.name: _views_of(s, ["front"] + list(rng.permutation(["left", "right", "back"])[: int(rng.integers(1, 3))]))
               for s in scene.subjects}
    parts = [_motion_sentence(s, "@" + s.name) for s in scene.subjects]
    prompt = _join(parts) + " " + V.BACKGROUND_WORDS[scene.background] + "."
    return _sample("subject_ref", MVLRequest(prompt=prompt, subjects=library), scene,
                   ("identity", "attributes", "stability"), False)


VIEW_WORDS = {"front": "facing the camera", "left": "facing left", "right": "facing right",
              "back": "seen from behind"}


def sample_novel_view(rng, split: Split) -> WorldSample:
    for _ in range(50):
        bg = _choice(rng, V.SCENE_BACKGROUNDS)
        s = _named_subject(rng, split, set(), bg)
        views = list(rng.permutation(V.VIEWS))
        given, wanted = views[: int(rng.integers(1, 3))], views[-1]
        s.view = wanted
        s.motion = _choice(rng, ("still", "left", "right", "jump"))
        scene = Scene(background=bg, subjects=[s])
        if _place(rng, scene):
            break
    prompt = f"@{s.name} {VIEW_WORDS[wanted]}, {V.MOTION_WORDS[s.motion].replace('stays still', 'standing still')}, {V.BACKGROUND_WORDS[bg]}."
    req = MVLRequest(prompt=prompt, subjects={s.name: _views_of(s, given)})
    return _sample("novel_view", req, scene, ("identity", "view", "attributes", "stability"), False,
                   info={"given_views": given, "view": wanted})


def sample_motion_transfer(rng, split: Split) -> WorldSample:
    moving = [m for m in V.MOTIONS if m != "still"]
    src = _scene_with_subjects(rng, "train", 1, motions=moving)
    m, start = src.subjects[0].motion, tuple(src.subjects[0].track[0])
    for _ in range(50):
        bg = _choice(rng, V.SCENE_BACKGROUNDS)
        s = _new_subject(rng, split, bg, {src.subjects[0].color}, primary=True, size=src.subjects[0].size)
        s.motion, s.track = m, V.motion_track(m, FRAMES, start)
        scene = Scene(background=bg, subjects=[s])
        if _in_frame(scene):
            break
    image = render(_copy_scene(scene, frames=1)).clip[0]
    req = MVLRequest(prompt=f"@Image_1: {_the(s)} moves like the subject in @Video.", images=[image],
                     video=render(src).clip)
    return _sample("motion_transfer", req, scene, ("first_frame", "reference", "trajectory", "stability"), True)


def sample_camera_transfer(rng, split: Split) -> WorldSample:
    camera = _choice(rng, V.CAMERAS[1:])
    textured = ("meadow", "brick", "ocean", "desert", "sky")
    for _ in range(50):
        src = _scene_with_subjects(rng, "train", 1, motions=("still",), camera=camera, backgrounds=textured)
        scene = _scene_with_subjects(rng, split, int(rng.integers(1, 3)), motions=("still",), camera=camera,
                                     backgrounds=textured)
        if scene.background != src.background:
            break
    image = render(_copy_scene(scene, frames=1, camera="static")).clip[0]
    req = MVLRequest(prompt="@Image_1 filmed with the camera motion of @Video.", images=[image],
                     video=render(src).clip)
    return _sample("camera_transfer", req, scene, ("first_frame", "reference"), True, info={"camera": camera})


def sample_next_shot(rng, split: Split) -> WorldSample:
    variant = _choice(rng, ("turn_around", "close_up", "go_back"))
    moving = ("left", "right", "up", "down", "up_right", "down_left")
    ctx = _scene_with_subjects(rng, split, 1, motions=moving)
    s = ctx.subjects[0]
    end = tuple(s.track[-1])
    nxt = _copy_scene(ctx)
    t = nxt.subjects[0]
    if variant == "turn_around":
        t.motion, t.view, t.track = "still", "back", V.motion_track("still", FRAMES, end)
        words = "the subject stops and turns its back to us"
    elif variant == "close_up":
        t.motion, t.size, t.track = "still", 15.0, V.motion_track("still", FRAMES, (BASE / 2, BASE / 2))
        words = "a close-up of the subject, centred and still"
    else:
        back = {"left": "right", "right": "left", "up": "down", "down": "up",
                "up_right": "down_left", "down_left": "up_right"}[s.motion]
        t.motion, t.track = back, V.motion_track(back, FRAMES, end)
        words = "the subject goes back the way it came"
    req = MVLRequest(prompt=f"The next shot after @Video: {words}.", video=render(ctx).clip)
    return _sample("next_shot", req, nxt, ("reference", "identity", "stability"), True, info={"variant": variant})


def sample_previous_shot(rng, split: Split) -> WorldSample:
    variant = _choice(rng, ("arrives", "from_behind", "faces_right"))
    if variant == "arrives":
        # place one 32-frame track: the previous shot is its first half, @Video the second
        long = _scene_with_subjects(rng, split, 1, motions=("up_right", "down_left"),
                                    sizes=[float(V.SIZES["small"])])
        long.frames = 2 * FRAMES
        if not _place(rng, long):
            raise RuntimeError("a 32-frame diagonal track of a small subject always fits")
        s = long.subjects[0]
        ctx = _copy_scene(long, frames=FRAMES)
        ctx.subjects[0].track = s.track[FRAMES:]
        prev = _copy_scene(long, frames=FRAMES)
        prev.subjects[0].track = s.track[:FRAMES]
        words = "the subject arriving at where @Video begins"
    else:
        ctx = _scene_with_subjects(rng, split, 1, motions=("left", "right", "up", "down", "jump"))
        prev = _copy_scene(ctx)
        p = prev.subjects[0]
        p.motion = "still"
        p.view = "back" if variant == "from_behind" else "right"
        p.track = V.motion_track("still", FRAMES, tuple(ctx.subjects[0].track[0]))
        words = ("the subject standing at its starting point, seen from behind" if variant == "from_behind"
                 else "the subject standing at its starting point, facing right")
    req = MVLRequest(prompt=f"The shot before @Video: {words}.", video=render(ctx).clip)
    return _sample("previous_shot", req, prev, ("reference", "identity", "stability"), True,
                   info={"variant": variant})


def sample_sketch(rng, split: Split) -> WorldSample:
    scene = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    sketch = render(_copy_scene(scene, frames=1, style="sketch")).clip[0]
    parts = []
    for s in scene.subjects:
        pat = "" if s.pattern == "plain" else f", {s.pattern}"
        parts.append(f"the {s.shape} is {s.color}{pat} and {V.MOTION_WORDS[s.motion]}")
    prompt = f"Bring the sketch @Image_1 to life: {'; '.join(parts)}; {V.BACKGROUND_WORDS[scene.background]}."
    return _sample("sketch", MVLRequest(prompt=prompt, images=[sketch]), scene,
                   ("first_frame", "reference", "attributes", "stability"), True)


KEYFRAMES = (0, 5, 10, 15)


def sample_storyboard(rng, split: Split) -> WorldSample:
    scene = _scene_with_subjects(rng, split, int(rng.integers(1, 3)), motions=V.MOTIONS[1:])
    clip = render(scene).clip
    panels = [clip[k] for k in KEYFRAMES]
    if rng.random() < 0.5:
        board = Storyboard(panels=panels, captions=[f"beat {i + 1}" for i in range(len(panels))])
        prompt = "Turn the storyboard panels into one continuous shot."
    else:
        grid = np.concatenate([np.concatenate(panels[:2], 1), np.concatenate(panels[2:], 1)], 0)
        board = Storyboard(grid=grid, rows=2, cols=2)
        prompt = "Turn the 2x2 comic grid, read left to right, top to bottom, into one continuous shot."
    return _sample("storyboard", MVLRequest(prompt=prompt, storyboard=board), scene,
                   ("keyframes", "reference", "stability"), True, keyframes=KEYFRAMES)


def sample_edit_add(rng, split: Split) -> WorldSample:
    for _ in range(100):
        src = _scene_with_subjects(rng, "train", int(rng.integers(1, 3)))
        new = _new_subject(rng, split, src.background, {s.color for s in src.subjects}, primary=True)
        new.motion = _choice(rng, V.MOTIONS)
        tgt = _copy_scene(src)
        tgt.subjects.append(new)
        if _place(rng, tgt, fixed=set(range(len(src.subjects)))):
            break
    images = []
    if rng.random() < 0.5:
        what = new.phrase()
    else:
        images = [subject_on_plate(new, "studio")]
        what = "@Image_1"
    prompt = f"Add {what} to @Video; it {V.MOTION_WORDS[new.motion]}."
    s = _edit_sample("edit_add", rng, src, tgt, prompt, images, checks=("added", "preserve_added"))
    s.truth.focus = len(tgt.subjects) - 1
    return s


def sample_edit_remove(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, split, int(rng.integers(2, 4)))
    k = 0  # the primary (held-out in bench) subject is the one removed
    tgt = _copy_scene(src)
    gone = tgt.subjects.pop(k)
    return _edit_sample("edit_remove", rng, src, tgt, f"Remove {_the(gone)} from @Video.")


def sample_edit_replace(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, "train", int(rng.integers(1, 3)))
    old = src.subjects[0]
    new = _new_subject(rng, split, src.background, {s.color for s in src.subjects}, primary=True, size=old.size)
    tgt = _copy_scene(src)
    t = tgt.subjects[0]
    t.shape, t.color, t.pattern = new.shape, new.color, new.pattern
    if rng.random() < 0.5:
        images, what = [], new.phrase()
    else:
        images, what = [subject_on_plate(new, "studio")], "@Image_1"
    return _edit_sample("edit_replace", rng, src, tgt, f"Replace {_the(old)} in @Video with {what}.", images)


def sample_background(rng, split: Split) -> WorldSample:
    variant = _choice(rng, ("text", "reference", "greenscreen"))
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    colors = [s.color for s in src.subjects]
    choices = [b for b in V.SCENE_BACKGROUNDS if b != src.background and all(compatible(c, b) for c in colors)]
    new_bg = _choice(rng, choices)
    images = []
    if variant == "greenscreen":
        src = _copy_scene(src, background="greenscreen")
        if any(not compatible(c, "greenscreen") for c in colors):
            src.subjects = [s for s in src.subjects if compatible(s.color, "greenscreen")] or src.subjects
    tgt = _copy_scene(src, background=new_bg)
    if variant == "reference" or (variant == "greenscreen" and rng.random() < 0.5):
        images = [background_plate(new_bg)]
        what = "@Image_1"
    else:
        what = V.BACKGROUND_WORDS[new_bg].split(" ", 1)[1] if new_bg != "night" else "a night sky"
    verb = "Replace the green screen in @Video with" if variant == "greenscreen" else "Replace the background of @Video with"
    return _edit_sample("background", rng, src, tgt, f"{verb} {what}.", images, variant=variant)


def sample_stylize(rng, split: Split) -> WorldSample:
    style = _choice(rng, V.STYLES)
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    tgt = _copy_scene(src, style=style)
    if rng.random() < 0.5:
        prompt, images = f"Make @Video look like {V.STYLE_WORDS[style]}.", []
    else:
        other = _scene_with_subjects(rng, "train", 1)
        images = [render(_copy_scene(other, frames=1, style=style)).clip[0]]
        prompt = "Restyle @Video in the style of @Image_1."
    return _edit_sample("stylize", rng, src, tgt, prompt, images, checks=("edit",), style=style)


MATERIAL_WORDS = {"glass": "glass", "gold": "solid gold", "ice": "ice", "stone": "stone"}


def sample_material(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    mat = _choice(rng, V.MATERIALS)
    tgt = _copy_scene(src)
    tgt.subjects[0].material = mat
    return _edit_sample("material", rng, src, tgt, f"Turn {_the(src.subjects[0])} in @Video into {MATERIAL_WORDS[mat]}.",
                        material=mat)


def sample_effects(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    eff = _choice(rng, V.EFFECTS)
    tgt = _copy_scene(src)
    tgt.subjects[0].effect = eff
    return _edit_sample("effects", rng, src, tgt, f"In @Video, {_the(src.subjects[0])} {V.EFFECT_WORDS[eff]}.",
                        effect=eff)


def sample_weather(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    w = _choice(rng, V.WEATHER)
    tgt = _copy_scene(src, weather=w)
    return _edit_sample("weather", rng, src, tgt, f"{V.WEATHER_WORDS[w].capitalize()} in @Video.",
                        checks=("edit",), weather=w)


def sample_combined(rng, split: Split) -> WorldSample:
    src = _scene_with_subjects(rng, split, int(rng.integers(1, 3)))
    tgt = _copy_scene(src)
    ops = list(rng.permutation(["weather", "material", "effect", "background", "replace"]))[: int(rng.integers(2, 4))]
    words = []
    first = _the(src.subjects[0])
    if "replace" in ops:
        new = _new_subject(rng, split, src.background, {s.color for s in src.subjects}, primary=True,
                           size=src.subjects[0].size)
        t = tgt.subjects[0]
        t.shape, t.color, t.pattern = new.shape, new.color, new.pattern
        words.append(f"replace {first} with {new.phrase()}")
        first = f"the {new.color} {new.shape}"
    if "background" in ops:
        colors = [s.color for s in tgt.subjects]
        bg = _choice(rng, [b for b in V.SCENE_BACKGROUNDS if b != src.background and all(compatible(c, b) for c in colors)])
        tgt.background = bg
        words.append("move the scene " + V.BACKGROUND_WORDS[bg])
    if "material" in ops:
        mat = _choice(rng, V.MATERIALS)
        tgt.subjects[0].material = mat
        words.append(f"turn {first} into {MATERIAL_WORDS[mat]}")
    if "effect" in ops:
        eff = _choice(rng, V.EFFECTS)
        tgt.subjects[0].effect = eff
        words.append(f"{first} {V.EFFECT_WORDS[eff]}")
    if "weather" in ops:
        w = _choice(rng, V.WEATHER)
        tgt.weather = w
        words.append(V.WEATHER_WORDS[w])
    prompt = "In @Video, " + _join(words) + "."
    return _edit_sample("combined", rng, src, tgt, prompt, checks=("edit", "preserve"), ops=[str(o) for o in ops])


def _polyline_track(points: np.ndarray, frames: int, hold: int = 0) -> np.ndarray:
    """Constant-speed positions along a polyline (base px), arriving `hold` frames early."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    moving = frames - hold
    d = np.minimum(np.arange(frames) / max(moving - 1, 1), 1.0) * cum[-1]
    x = np.interp(d, cum, points[:, 0])
    y = np.interp(d, cum, points[:, 1])
    return np.stack([x, y], 1).astype(np.float32)


def sample_arrows(rng, split: Split) -> WorldSample:
    for _ in range(200):
        scene = _scene_with_subjects(rng, split, int(rng.integers(1, 3)), motions=("still",))
        s = scene.subjects[0]
        h = s.size / 2 + 1
        pts = [s.track[0]]
        for _ in range(int(rng.integers(1, 3))):
            pts.append(np.float32([rng.uniform(h, BASE - h), rng.uniform(h, BASE - h)]))
        pts = np.stack(pts)
        if np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() < 8:
            continue
        s.track = _polyline_track(pts, FRAMES)
        s.motion = "path"
        if _in_frame(scene) and _separated(scene):
            break
    image = render(_copy_scene(scene, frames=1)).clip[0]
    arrow = Arrow(points=[(float(x) / BASE, float(y) / BASE) for x, y in pts], ref=_the(s))
    req = MVLRequest(prompt=f"@Image_1: {_the(s)} follows the arrow.", images=[image],
                     annotations=Annotations(arrows=[arrow]))
    return _sample("arrows", req, scene, ("first_frame", "trajectory", "reference"), True,
                   info={"path": pts.tolist()})


def sample_boxes(rng, split: Split) -> WorldSample:
    for _ in range(200):
        scene = _scene_with_subjects(rng, split, int(rng.integers(1, 3)), motions=("still",))
        s = scene.subjects[0]
        side = s.size + 4
        bx = float(rng.uniform(1, BASE - side - 1))
        by = float(rng.uniform(1, BASE - side - 1))
        box = (bx, by, bx + side, by + side)
        goal = np.float32([bx + side / 2, by + side / 2])
        start = s.track[0]
        if np.abs(goal - start).max() < s.size:  # must actually travel
            continue
        s.track = _polyline_track(np.stack([start, goal]), FRAMES, hold=4)
        s.motion = "path"
        if _in_frame(scene) and _separated(scene):
            break
    image = render(_copy_scene(scene, frames=1)).clip[0]
    b = Box(box=tuple(v / BASE for v in box), ref=_the(s), label="goal")
    req = MVLRequest(prompt=f"@Image_1: {_the(s)} moves into the box.", images=[image],
                     annotations=Annotations(boxes=[b]))
    return _sample("boxes", req, scene, ("first_frame", "box", "reference"), True, box=box)


def sample_reasoning(rng, split: Split) -> WorldSample:
    if rng.random() < 0.5:  # world knowledge
        for _ in range(100):
            scene = _scene_with_subjects(rng, split, 1, motions=tuple(V.KNOWLEDGE_MOTIONS.values()))
            s = scene.subjects[0]
            cols = [k for k, v in V.KNOWLEDGE_COLORS.items() if v == s.color]
            if cols:
                break
        shp = _choice(rng, [k for k, v in V.KNOWLEDGE_SHAPES.items() if v == s.shape])
        mot = _choice(rng, [k for k, v in V.KNOWLEDGE_MOTIONS.items() if v == s.motion])
        pat = "" if s.pattern == "plain" else s.pattern + " "
        prompt = f"A {pat}thing, {shp}, in {_choice(rng, cols)}, {mot} {V.BACKGROUND_WORDS[scene.background]}."
        return _sample("reasoning", MVLRequest(prompt=prompt), scene, ("attributes", "stability"), False,
                       info={"variant": "knowledge"})
    # simple logic: which of three subjects is the largest / smallest
    sizes = [V.SIZES["small"], V.SIZES["medium"], V.SIZES["large"]]
    order = list(rng.permutation(3))
    scene = _scene_with_subjects(rng, split, 3, motions=("still",), sizes=[float(sizes[i]) for i in order])
    which = _choice(rng, ("largest", "smallest"))
    k = int(np.argmax([s.size for s in scene.subjects]) if which == "largest" else np.argmin([s.size for s in scene.subjects]))
    mover = scene.subjects[k]
    image = render(_copy_scene(scene, frames=1)).clip[0]
    for _ in range(60):
        mover.motion = _choice(rng, ("left", "right", "up", "down", "jump", "circle"))
        mover.track = V.motion_track(mover.motion, FRAMES, tuple(mover.track[0]))
        if _in_frame(scene) and _separated(scene, gap=0.0):
            break
    else:
        mover.motion, mover.track = "still", V.motion_track("still", FRAMES, tuple(mover.track[0]))
    prompt = f"@Image_1: the {which} of the three {V.MOTION_WORDS[mover.motion]}; the others stay still."
    return _sample("reasoning", MVLRequest(prompt=prompt, images=[image]), scene,
                   ("first_frame", "reference", "trajectory"), True, focus=k, info={"variant": "logic", "which": which})


SAMPLERS: dict[str, Callable[[np.random.Generator, Split], WorldSample]] = {
    "t2v": sample_t2v, "i2v": sample_i2v, "image_ref": sample_image_ref, "subject_ref": sample_subject_ref,
    "novel_view": sample_novel_view, "motion_transfer": sample_motion_transfer,
    "camera_transfer": sample_camera_transfer, "next_shot": sample_next_shot,
    "previous_shot": sample_previous_shot, "sketch": sample_sketch, "storyboard": sample_storyboard,
    "edit_add": sample_edit_add, "edit_remove": sample_edit_remove, "edit_replace": sample_edit_replace,
    "background": sample_background, "stylize": sample_stylize, "material": sample_material,
    "effects": sample_effects, "weather": sample_weather, "combined": sample_combined,
    "arrows": sample_arrows, "boxes": sample_boxes, "reasoning": sample_reasoning,
}
FAMILIES: tuple[str, ...] = tuple(SAMPLERS)


def sample(family: str, seed: int | np.random.Generator, split: Split = "train") -> WorldSample:
    """One sample of a family; the same (family, seed, split) always gives the same sample."""
    if family not in SAMPLERS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if split not in ("train", "bench"):
        raise ValueError(f"split must be 'train' or 'bench', not {split!r}")
    # the family is part of the seed, so the same seed gives unrelated scenes in two families
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng([seed, FAMILIES.index(family)])
    return SAMPLERS[family](rng, split)
