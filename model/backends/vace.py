"""MVL request -> WanVACEPipeline inputs, one documented mapping per task family.

VACE (Jiang et al. 2025) takes three things beside the prompt (diffusers' `WanVACEPipeline`):
`video` (frames; gray where nothing is given), `mask` (per frame; white = generate, black =
keep what `video` shows there) and `reference_images` (letterboxed by the pipeline onto a white
canvas of the output size and prepended as extra latent frames). Every family the Wan backend
serves is one way of filling these three; `FAMILIES` says how, `REFUSED` says why not for the
rest. Pure functions of the request: no model, no torch.

Family              video / mask / reference_images
t2v, reasoning      none / none / none (the prompt alone; the enhancer resolves the reasoning)
i2v                 @Image_1 as frame 0 then gray / frame 0 black, rest white / none
image_ref           none / none / every @Image_N
subject_ref,        none / none / every view of every @Subject, then the @Image_N
novel_view          (the view asked for is in the prompt)
next_shot           @Video's last K frames, then gray / K black, rest white (video extension)
previous_shot       gray, then @Video's first K frames / rest white, K black
edit_* / background @Video with the region gray / the region white on every frame (inpainting);
/ material / effects  the region is the painted mask, else the drawn box; refused without either
/ weather / combined
stylize             with a mask or box as above; without: @Video in grayscale / all white
                    (VACE's gray-to-colour control: the structure stays, the look is the prompt's)
arrows              the subject's box moved along each arrow, drawn on white frames / all white
                    (VACE's layout / trajectory control); bound images as references
boxes               each box drawn on white frames / all white (layout control)
sketch              @Image_1 (the drawing) as frame 0's control, then gray / all white
storyboard          panel j at frame round(j (F-1) / (P-1)), gray between / panels black
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..mvl import IMAGE_REF_RE, MVLRequest

GRAY = 127  # VACE's "nothing here": 0 in the model's [-1, 1] range
EDIT_FAMILIES = ("edit_add", "edit_remove", "edit_replace", "background", "material", "effects", "weather",
                 "combined", "stylize")

FAMILIES = {
    "t2v": "the prompt alone (no video, no mask)",
    "reasoning": "the prompt alone, as the enhancer resolved it; reference images as reference_images",
    "i2v": "@Image_1 as frame 0 (mask black there, white after): VACE's first-frame extension",
    "image_ref": "every @Image_N as reference_images (letterboxed on white by VACE)",
    "subject_ref": "every view of every @Subject (then the @Image_N) as reference_images",
    "novel_view": "the subject's views as reference_images; the view asked for stays in the prompt",
    "next_shot": "video extension: @Video's last frames kept at the start by the mask, the rest generated",
    "previous_shot": "video extension backwards: @Video's first frames kept at the end, the rest generated",
    **{f: "inpainting: the painted mask (or the drawn box) is grayed and regenerated on every frame, the rest "
          "of @Video kept" for f in EDIT_FAMILIES if f != "stylize"},
    "stylize": "inpainting of the mask or box as the edits; without one, @Video in grayscale as the control "
               "video (all regenerated: the structure stays, the look follows the prompt)",
    "arrows": "a control video of the subject's box moved along each arrow (VACE's layout / trajectory control)",
    "boxes": "a control video with each box drawn on every frame (layout control)",
    "sketch": "the drawing as frame 0's control (VACE's scribble control), the rest generated",
    "storyboard": "the panels as keyframes at their times (mask black there), the frames between generated",
}
REFUSED = {
    "motion_transfer": "VACE transfers motion through a pose, depth or optical-flow video, and the studio ships "
                       "no extractor for them: draw the motion as an arrow on the Sketch tab instead",
    "camera_transfer": "VACE follows a camera through a depth or flow video, and the studio ships no extractor for "
                       "them: describe the camera move in the prompt (t2v)",
    "upscale": "the Wan backend has no super-resolution stage: set upscale to false and ask for the size directly",
}


@dataclass
class VaceInputs:
    video: list | None = None  # PIL images, one per frame
    mask: list | None = None  # PIL images (white = generate)
    reference_images: list | None = None  # PIL images
    notes: list[str] = field(default_factory=list)  # how the request was mapped, for the plan


def _pil(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)))


def fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover (height, width) and crop the middle: frames keep their aspect."""
    from PIL import Image

    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    big = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - height) // 2, (nw - width) // 2
    return big[top:top + height, left:left + width]


def fit_video(v: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """Resample a clip to `frames` frames (nearest in time) at (height, width)."""
    idx = np.linspace(0, len(v) - 1, frames).round().astype(int) if len(v) != frames else np.arange(frames)
    return np.stack([fit(v[i], height, width) for i in idx])


def _plain(value: int, height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _masks(keep: list[bool], height: int, width: int) -> list:
    """One mask image per frame: black where the frame is kept, white where it is generated."""
    return [_pil(_plain(0 if k else 255, height, width)) for k in keep]


def region_mask(request: MVLRequest) -> tuple[np.ndarray | None, str]:
    """The region an edit may change at the output size (bool (H, W)): the painted mask, else the
    union of the drawn boxes; (None, '') when the request names no region."""
    H, W = request.height, request.width
    if request.mask is not None:
        return fit(np.asarray(request.mask), H, W).max(axis=2) > 127, "the painted mask"
    boxes = request.annotations.boxes
    if boxes:
        m = np.zeros((H, W), bool)
        for b in boxes:
            x0, y0, x1, y1 = b.box
            m[int(y0 * H):max(int(y0 * H) + 1, round(y1 * H)), int(x0 * W):max(int(x0 * W) + 1, round(x1 * W))] = True
        return m, f"the drawn box{'es' if len(boxes) > 1 else ''}"
    return None, ""


def references(request: MVLRequest, with_subjects: bool = True) -> list[np.ndarray]:
    """Subject views (library order) then the reference images: what VACE gets as reference_images."""
    out = [np.asarray(v) for views in request.subjects.values() for v in views] if with_subjects else []
    return out + [np.asarray(i) for i in request.images]


def storyboard_panels(request: MVLRequest) -> list[np.ndarray]:
    sb = request.storyboard
    if sb.panels:
        return [np.asarray(p) for p in sb.panels]
    g = np.asarray(sb.grid)
    h, w = g.shape[0] // sb.rows, g.shape[1] // sb.cols
    return [g[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(sb.rows) for c in range(sb.cols)]


PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0)]


def _draw_box(frame: np.ndarray, cx: float, cy: float, bw: float, bh: float, color, thick: int) -> None:
    H, W = frame.shape[:2]
    x0, x1 = int(round((cx - bw / 2) * W)), int(round((cx + bw / 2) * W))
    y0, y1 = int(round((cy - bh / 2) * H)), int(round((cy + bh / 2) * H))
    x0, x1, y0, y1 = max(0, x0), min(W, max(x1, x0 + 1)), max(0, y0), min(H, max(y1, y0 + 1))
    frame[y0:y1, x0:min(W, x0 + thick)] = color
    frame[y0:y1, max(x0, x1 - thick):x1] = color
    frame[y0:min(H, y0 + thick), x0:x1] = color
    frame[max(y0, y1 - thick):y1, x0:x1] = color


def _along(points: list, u: float) -> tuple[float, float]:
    """The point at fraction u of a polyline's length."""
    pts = np.asarray(points, np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    total = float(seg.sum())
    if total <= 0:
        return float(pts[0, 0]), float(pts[0, 1])
    d = u * total
    for (p0, p1), L in zip(zip(pts[:-1], pts[1:]), seg):
        if d <= L or L == seg[-1]:
            t = 0.0 if L == 0 else min(1.0, d / L)
            p = p0 + t * (p1 - p0)
            return float(p[0]), float(p[1])
        d -= L
    return float(pts[-1, 0]), float(pts[-1, 1])


def layout_video(request: MVLRequest) -> list[np.ndarray]:
    """VACE's layout control: white frames with each box outlined in its own colour; a box bound to
    an arrow (same ref, else in drawing order) moves along it, frame by frame."""
    H, W, F = request.height, request.width, request.frames
    ann = request.annotations
    thick = max(1, min(H, W) // 32)
    frames = [_plain(255, H, W) for _ in range(F)]
    boxes = list(ann.boxes)
    used: set[int] = set()
    for k, arrow in enumerate(ann.arrows):
        j = next((i for i, b in enumerate(boxes) if i not in used and b.ref and b.ref == arrow.ref), None)
        if j is None:
            j = next((i for i in range(len(boxes)) if i not in used), None) if not arrow.ref else None
        if j is not None:
            used.add(j)
            x0, y0, x1, y1 = boxes[j].box
            bw, bh = x1 - x0, y1 - y0
        else:
            bw = bh = 0.25  # no box drawn for this arrow: a quarter of the frame
        for f in range(F):
            cx, cy = _along(arrow.points, f / max(1, F - 1))
            _draw_box(frames[f], cx, cy, bw, bh, PALETTE[k % len(PALETTE)], thick)
    for i, b in enumerate(boxes):
        if i in used:
            continue
        x0, y0, x1, y1 = b.box
        for f in range(F):
            _draw_box(frames[f], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0,
                      PALETTE[(len(ann.arrows) + i) % len(PALETTE)], thick)
    return frames


def extension_length(request: MVLRequest, keep: int) -> int:
    """How many frames of @Video a next / previous shot keeps: `keep`, at most the clip and the output
    less one (something is always generated)."""
    return max(1, min(keep, len(request.video), request.frames - 1))


def vace_inputs(request: MVLRequest, family: str, extension_frames: int = 5) -> VaceInputs:
    """The WanVACEPipeline inputs of a (resolved, validated) request served as `family`."""
    H, W, F = request.height, request.width, request.frames
    out = VaceInputs()
    if family in ("t2v", "reasoning"):
        refs = references(request)
        if refs:
            out.reference_images = [_pil(r) for r in refs]
            out.notes.append(f"reference_images: {len(refs)}")
        out.notes.append("no control video: generated from the prompt")
    elif family == "i2v":
        first = fit(np.asarray(request.images[0]), H, W)
        out.video = [_pil(first)] + [_pil(_plain(GRAY, H, W)) for _ in range(F - 1)]
        out.mask = _masks([True] + [False] * (F - 1), H, W)
        out.notes.append("@Image_1 is frame 0 (kept by the mask); frames 1.. generated")
    elif family in ("image_ref", "subject_ref", "novel_view"):
        refs = references(request)
        out.reference_images = [_pil(r) for r in refs]
        n_views = sum(len(v) for v in request.subjects.values())
        out.notes.append(f"reference_images: {n_views} subject view(s), {len(request.images)} image(s)")
    elif family in ("next_shot", "previous_shot"):
        ctx = fit_video(np.asarray(request.video), len(request.video), H, W)
        k = extension_length(request, extension_frames)
        gray = [_plain(GRAY, H, W)] * (F - k)
        if family == "next_shot":
            frames, keep = list(ctx[-k:]) + gray, [True] * k + [False] * (F - k)
            out.notes.append(f"frames 0-{k - 1} are @Video's last {k} (kept); frames {k}-{F - 1} generated")
        else:
            frames, keep = gray + list(ctx[:k]), [False] * (F - k) + [True] * k
            out.notes.append(f"frames {F - k}-{F - 1} are @Video's first {k} (kept); frames 0-{F - k - 1} generated")
        out.video, out.mask = [_pil(f) for f in frames], _masks(keep, H, W)
    elif family in EDIT_FAMILIES:
        src = fit_video(np.asarray(request.video), F, H, W)
        region, where = region_mask(request)
        if region is None:  # only stylize gets here (check_family refuses the others)
            gray = src.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            out.video = [_pil(np.repeat(g[..., None], 3, axis=2).round()) for g in gray]
            out.mask = _masks([False] * F, H, W)
            out.notes.append("@Video in grayscale as the control video; every pixel regenerated")
        else:
            edited = np.where(region[None, :, :, None], np.uint8(GRAY), src)
            out.video = [_pil(f) for f in edited]
            m = _pil(np.where(region[..., None], 255, 0).repeat(3, axis=2))
            out.mask = [m] * F
            out.notes.append(f"inpainting {where} ({100 * region.mean():.0f}% of the frame) on all {F} frames; "
                             "the rest of @Video kept")
        if request.images:
            out.reference_images = [_pil(np.asarray(i)) for i in request.images]
            out.notes.append(f"reference_images: {len(request.images)}")
    elif family in ("arrows", "boxes"):
        out.video = [_pil(f) for f in layout_video(request)]
        out.mask = _masks([False] * F, H, W)
        ann = request.annotations
        out.notes.append(f"layout control video: {len(ann.arrows)} arrow(s), {len(ann.boxes)} box(es)")
        refs = references(request)
        if refs:
            out.reference_images = [_pil(r) for r in refs]
            out.notes.append(f"reference_images: {len(refs)}")
    elif family == "sketch":
        out.video = [_pil(fit(np.asarray(request.images[0]), H, W))] + [_pil(_plain(GRAY, H, W))] * (F - 1)
        out.mask = _masks([False] * F, H, W)
        out.notes.append("@Image_1 (the drawing) as frame 0's control; every frame generated")
        if len(request.images) > 1:
            out.reference_images = [_pil(np.asarray(i)) for i in request.images[1:]]
    elif family == "storyboard":
        panels = storyboard_panels(request)
        times = [0] if len(panels) == 1 else [round(j * (F - 1) / (len(panels) - 1)) for j in range(len(panels))]
        frames = [_plain(GRAY, H, W) for _ in range(F)]
        keep = [False] * F
        for p, t in zip(panels, times):
            frames[t], keep[t] = fit(p, H, W), True
        out.video, out.mask = [_pil(f) for f in frames], _masks(keep, H, W)
        out.notes.append(f"{len(panels)} panel(s) as keyframes at frames {', '.join(map(str, times))}")
        refs = references(request)
        if refs:
            out.reference_images = [_pil(r) for r in refs]
    else:
        raise ValueError(f"no VACE mapping for {family!r}")
    return out


def family_needs(request: MVLRequest, family: str) -> str | None:
    """Why the request cannot be served as `family` by the Wan backend (None: it can)."""
    if family in REFUSED:
        return REFUSED[family]
    if family not in FAMILIES:
        return "no mapping onto VACE's inputs"
    has_video = request.video is not None
    if family == "i2v" and not request.images:
        return "image-to-video needs @Image_1: upload the first frame"
    if family == "sketch" and not request.images:
        return "a sketch video needs the drawing as @Image_1"
    if family in ("next_shot", "previous_shot") and not has_video:
        return "video extension needs the context clip as @Video"
    if family in ("image_ref", "subject_ref", "novel_view") and not (request.images or request.subjects):
        return "reference-to-video needs a reference image or a subject"
    if family == "storyboard" and request.storyboard is None:
        return "a storyboard needs panels or a grid image"
    if family in ("arrows", "boxes") and request.annotations.is_empty():
        return "layout control needs an arrow or a box drawn on the frame"
    if family in EDIT_FAMILIES:
        if not has_video:
            return "an edit needs the clip to edit as @Video"
        if request.mask is None and not request.annotations.boxes and family != "stylize":
            return ("VACE edits a region it is shown: paint the region on the Edit tab's mask, or draw a box around "
                    "it (only stylize can restyle the whole clip without one)")
    return None


def referenced_images(request: MVLRequest) -> list[int]:
    return [int(IMAGE_REF_RE.match(r).group(1)) for r in request.references() if IMAGE_REF_RE.match(r)]
