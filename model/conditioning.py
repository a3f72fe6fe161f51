"""From an (enhanced) MVL request to the generator's condition pieces.

Shared by the pipeline and by training, so the model sees at training time exactly what
it gets at inference: text states, VAE latents of reference images (slots 1..8), subject
views (slots 9..14), the context video, storyboard panels (slot 15, placed in time) and
a raster of the drawn arrows and boxes.
"""

from __future__ import annotations

import numpy as np
import torch

from .generator import ANNOTATION, GROUNDING, IMAGE, LAYOUT, STORYBOARD, SUBJECT, TEXT, VIDEO, CondPiece
from .layout import LayoutPlan, rasterize_layout, subject_masks
from .mvl import Annotations, MVLRequest
from .vae import to_model_range

SUBJECT_SLOT0 = 8
PANEL_SLOT = 15
SIDE = 32  # the embedded model's frame side


def _fit(img: np.ndarray, side: int = SIDE) -> np.ndarray:
    if img.shape[:2] == (side, side):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((side, side), Image.BILINEAR))


def _fit_video(v: np.ndarray, frames: int, side: int = SIDE) -> np.ndarray:
    idx = np.linspace(0, len(v) - 1, frames).round().astype(int) if len(v) != frames else np.arange(frames)
    return np.stack([_fit(v[i], side) for i in idx])


def storyboard_panels(request: MVLRequest) -> list[np.ndarray]:
    sb = request.storyboard
    if sb is None:
        return []
    if sb.panels:
        return [_fit(p) for p in sb.panels]
    g = sb.grid
    h, w = g.shape[0] // sb.rows, g.shape[1] // sb.cols
    return [_fit(g[r * h:(r + 1) * h, c * w:(c + 1) * w]) for r in range(sb.rows) for c in range(sb.cols)]


def rasterize_annotations(ann: Annotations, side: int = SIDE) -> np.ndarray:
    """(3, side, side) float: arrow progress 0..1 along each path, arrow mask, box mask."""
    r = np.zeros((3, side, side), np.float32)
    for a in ann.arrows:
        pts = np.array(a.points, np.float32) * side
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        total = max(float(seg.sum()), 1e-6)
        done = 0.0
        for (p0, p1), L in zip(zip(pts[:-1], pts[1:]), seg):
            n = max(2, int(L * 3))
            for u in np.linspace(0, 1, n):
                x, y = p0 + u * (p1 - p0)
                i, j = int(min(side - 1, max(0, y))), int(min(side - 1, max(0, x)))
                r[0, i, j] = max(r[0, i, j], (done + u * L) / total)
                r[1, i, j] = 1.0
            done += L
    for b in ann.boxes:
        x0, y0, x1, y1 = (int(round(v * side)) for v in b.box)
        r[2, y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = 1.0
    return r


@torch.no_grad()
def build_conditions(requests: list[MVLRequest], prompts: list[str], vae, text_encoder,
                     drop_text: list[bool] | None = None, drop_visual: list[bool] | None = None,
                     latent_frames: int = 8, layouts: list[LayoutPlan | None] | None = None,
                     frames: int = 16, grounding: bool = False) -> list[list[CondPiece]]:
    """Condition pieces per request; media are encoded in two batched VAE calls (images, videos).
    `layouts`: the layout plan of each request (None: no plan), rasterised as a LAYOUT piece; it is kept
    when the visual references are dropped (it is the enhancer's plan, not a reference). `grounding`: each
    plan's subjects also as a GROUNDING piece (their box weights and the pooled text states of their labels,
    GeneratorConfig.grounding_channels); it is text, so it goes where the text is dropped."""
    B = len(requests)
    drop_text = drop_text or [False] * B
    drop_visual = drop_visual or [False] * B
    images: list[np.ndarray] = []
    image_owner: list[tuple[int, int, int, int]] = []  # (request, kind, slot, t0)
    videos: list[np.ndarray] = []
    video_owner: list[int] = []
    for i, r in enumerate(requests):
        if drop_visual[i]:
            continue
        for k, img in enumerate(r.images, 1):
            images.append(_need_array(img, f"@Image_{k}"))
            image_owner.append((i, IMAGE, k, 0))
        for k, (name, views) in enumerate(r.subjects.items(), 1):
            for v in views:
                images.append(_need_array(v, f"@{name}"))
                image_owner.append((i, SUBJECT, SUBJECT_SLOT0 + k, 0))
        panels = storyboard_panels(r)
        for j, p in enumerate(panels):
            t0 = round(j * (latent_frames - 1) / max(1, len(panels) - 1))
            images.append(p)
            image_owner.append((i, STORYBOARD, PANEL_SLOT, t0))
        if r.video is not None:
            videos.append(_fit_video(_need_array(r.video, "@Video"), 16))
            video_owner.append(i)
    pieces: list[list[CondPiece]] = [[] for _ in range(B)]
    keep = [i for i in range(B) if not drop_text[i]]
    if keep:
        states, mask = text_encoder.encode([prompts[i] for i in keep])
        for j, i in enumerate(keep):
            pieces[i].append(CondPiece(TEXT, states[j], mask=mask[j]))
    dev = next(vae.parameters()).device
    if images:
        z = vae.encode(to_model_range(torch.from_numpy(np.stack([_fit(x) for x in images])[:, None])).to(dev))
        for (i, kind, slot, t0), zi in zip(image_owner, z):
            pieces[i].append(CondPiece(kind, zi, slot=slot, t0=t0))
    if videos:
        z = vae.encode(to_model_range(torch.from_numpy(np.stack(videos))).to(dev))
        for i, zi in zip(video_owner, z):
            pieces[i].append(CondPiece(VIDEO, zi))
    for i, r in enumerate(requests):
        if not drop_visual[i] and not r.annotations.is_empty():
            pieces[i].append(CondPiece(ANNOTATION, torch.from_numpy(rasterize_annotations(r.annotations))))
    for i, plan in enumerate(layouts or []):
        if plan is not None and not plan.is_empty():
            pieces[i].append(CondPiece(LAYOUT, torch.from_numpy(rasterize_layout(plan, frames, SIDE))))
            if grounding and not drop_text[i]:
                pieces[i].append(grounding_piece(plan, text_encoder, frames))
    return pieces


def generator_conditions(requests: list[MVLRequest], enhanced: list, vae, text_encoder, generator_config,
                         frames: int = 16) -> list[list[CondPiece]]:
    """The condition pieces a generator reads at inference, from the requests and their enhancements
    (prompt, layout plan): the plan where the generator has a layout path, its grounding where it has that
    one. Shared by the pipeline, distillation and DPO, so they build the same conditions."""
    use_layout = getattr(generator_config, "layout_channels", 0) > 0
    return build_conditions(requests, [e.prompt for e in enhanced], vae, text_encoder,
                            layouts=[e.layout for e in enhanced] if use_layout else None, frames=frames,
                            grounding=getattr(generator_config, "grounding_channels", 0) > 0)


def pooled_text(text_encoder, texts: list[str]) -> torch.Tensor:
    """(len(texts), text_dim): the text encoder's states of each text averaged over its real tokens."""
    states, mask = text_encoder.encode(texts)
    m = mask[..., None].float()
    return (states.float() * m).sum(1) / m.sum(1).clamp_min(1)


def grounding_piece(plan: LayoutPlan, text_encoder, frames: int = 16) -> CondPiece:
    """The plan's subjects for the generator's phrase grounding: their box weights (model/layout.subject_masks)
    and the text encoder's states of each subject's label ("the striped red circle"), averaged over its tokens."""
    vectors = pooled_text(text_encoder, [s.label for s in plan.subjects])
    return CondPiece(GROUNDING, torch.from_numpy(subject_masks(plan, frames, SIDE)), vectors=vectors)


def without_text(pieces: list[CondPiece]) -> list[CondPiece]:
    """The pieces of the classifier-free guidance branch: the text and what is made of it (the grounding) left out."""
    return [p for p in pieces if p.kind not in (TEXT, GROUNDING)]


def _need_array(m, what: str) -> np.ndarray:
    if not isinstance(m, np.ndarray):
        raise ValueError(f"{what} is a media reference ({m!r}); load it from the media store before generating")
    return _fit(m) if m.ndim == 3 else m
