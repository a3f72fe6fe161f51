"""A pixel-space generator for the planned families (issue 18): a (2+1)D U-Net that renders the layout plan.

Why it exists beside the latent Omni-Generator: the latent DiT, given the plan, puts each subject's colour in
its box but never chooses the shape from the words at high noise (its one-step x0 estimate is a blob at
s = 0.9), and sampled from pure noise it draws speckled clouds: after 7+ CPU hours, t2v success 0.00 and
shape at chance. This body reads everything that says where and what pixel-aligned: the plan's raster
(palette colour + occupancy per box, model/layout.rasterize_layout) and each planned subject's phrase, pooled
from the text encoder and painted into the pixels its box covers (the GLIGEN / Layout2Vid grounding, as
model/conditioning.grounding_piece); the whole prompt, pooled, and the noise level modulate every block
(FiLM). Its convolutions make a shape inside a box a local pattern; there is no VAE (no latent ceiling, no
off-manifold speckle); skips at full resolution keep low noise a local denoising problem.

Not the silhouette, pattern or eyes from the plan: those come from the words, as for the latent generator.
Flow matching as everywhere (model/flow_matching.py). A model directory may hold it as `pixel_generator/`;
the pipeline runs it for the task families in `config.tasks` and the latent generator for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import flow_matching as fm
from .component import Component
from .generator import timestep_embedding
from .layout import (FIRST_FRAME_TASKS, LAYOUT_CHANNELS, MOTION_SOURCE_TASKS, SHOT_TASKS, LayoutPlan, camera_warp,
                     find_colour, keyframes, rasterize_layout, subject_cutout)

SIDE, FRAMES = 32, 16


@dataclass
class PixelGeneratorConfig:
    width: int = 24  # channels at full resolution (x2, x4 at the two coarser levels)
    blocks: int = 2  # residual blocks per level on the way down (up: the same, on concatenated skips)
    text_dim: int = 384  # text encoder width
    ground: int = 16  # channels of the phrase-grounding map (each subject's phrase projected, painted in its box)
    temb: int = 128  # timestep / text embedding width
    tasks: tuple[str, ...] = ("t2v",)  # task families the pipeline sends here (what it was trained and measured on)
    # pixel-aligned context channels (0: text-to-video only; CONTEXT_CHANNELS: the context and the appearance
    # guide of pixel_context, for first-frame, reference and edit families)
    context: int = 0
    notes: dict = field(default_factory=dict)  # training recipe, provenance


class Block(nn.Module):
    """(2+1)D residual block on frames (B, C, T, H, W) run as (B T, C, H, W): 3x3 conv, FiLM from the
    embedding, a 3-frame temporal conv (depthwise), 3x3 conv (zero-initialised). 2D convolutions: far
    faster on CPU than 3D ones."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.ct = nn.Conv1d(cout, cout, 3, padding=1, groups=cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor, T: int) -> torch.Tensor:
        """x (B T, C, H, W), e (B, emb)."""
        BT, _, H, W = x.shape
        B = BT // T
        h = self.c1(F.silu(self.n1(x)))
        C = h.shape[1]
        scale, shift = self.film(e).repeat_interleave(T, 0)[:, :, None, None].chunk(2, 1)
        h = F.silu(self.n2(h) * (1 + scale) + shift)
        ht = h.view(B, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(B * H * W, C, T)  # (B H W, C, T)
        ht = self.ct(ht).view(B, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(BT, C, H, W)
        h = h + ht
        return self.skip(x) + self.c2(F.silu(h))


class PixelGenerator(Component):
    config_class = PixelGeneratorConfig

    def __init__(self, config: PixelGeneratorConfig):
        super().__init__(config)
        c = config
        w, e = c.width, c.temb
        self.t_mlp = nn.Sequential(nn.Linear(256, e), nn.SiLU(), nn.Linear(e, e))
        self.text = nn.Linear(c.text_dim, e)
        self.ground = nn.Linear(c.text_dim, c.ground)
        self.inp = nn.Conv2d(3 + LAYOUT_CHANNELS + c.ground + c.context, w, 3, padding=1)
        chans = [w, 2 * w, 4 * w]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        ch_now, skips = w, []
        for i, ch in enumerate(chans):
            level = nn.ModuleList()
            for _ in range(c.blocks):
                level.append(Block(ch_now, ch, e))
                ch_now = ch
                skips.append(ch_now)
            self.down.append(level)
            if i < len(chans) - 1:
                self.pool.append(nn.Conv2d(ch_now, ch_now, 3, stride=2, padding=1))
        self.mid = Block(ch_now, ch_now, e)
        self.up = nn.ModuleList()
        for ch in reversed(chans):
            level = nn.ModuleList()
            for _ in range(c.blocks):
                level.append(Block(ch_now + skips.pop(), ch, e))
                ch_now = ch
            self.up.append(level)
        self.out_norm = nn.GroupNorm(8, ch_now)
        self.out = nn.Conv2d(ch_now, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts predicting zero velocity
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, s: torch.Tensor, text_vec: torch.Tensor, layout: torch.Tensor,
                masks: torch.Tensor, phrases: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, T, H, W) noisy pixels in [-1, 1]; s (B,) noise levels; text_vec (B, text_dim) the pooled
        prompt (zeros when dropped); layout (B, 4, T, H, W); masks (B, N, T, H, W) box weights; phrases
        (B, N, text_dim); context (B, CONTEXT_CHANNELS, T, H, W) from pixel_context (models with
        config.context) -> the velocity (B, 3, T, H, W)."""
        B, _, T, H, W = x.shape
        e = self.t_mlp(timestep_embedding(fm.to_timestep(s), 256)) + self.text(text_vec)
        g = torch.einsum("bnthw,bnc->bcthw", masks, self.ground(phrases))  # each phrase painted in its box
        frames = lambda t: t.transpose(1, 2).reshape(B * T, t.shape[1], H, W)  # noqa: E731
        parts = [frames(x), frames(layout.to(x.dtype)), frames(g.to(x.dtype))]
        if self.config.context:
            if context is None:
                context = x.new_zeros(B, self.config.context, T, H, W)
            parts.append(frames(context.to(x.dtype)))
        h = self.inp(torch.cat(parts, 1))
        hs = []
        for i, level in enumerate(self.down):
            for blk in level:
                h = blk(h, e, T)
                hs.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, e, T)
        for i, level in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            for blk in level:
                h = blk(torch.cat([h, hs.pop()], 1), e, T)
        out = self.out(F.silu(self.out_norm(h)))  # (B T, 3, H, W)
        return out.view(B, T, 3, H, W).transpose(1, 2)


# ------------------------------------------------------------------ pixel-aligned context
CONTEXT_CHANNELS = 8  # context RGB, its weight; appearance guide RGB, its weight


def _crop_box(box: np.ndarray, side: int) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = (float(v) * side for v in box)
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(side, int(np.ceil(x1))), min(side, int(np.ceil(y1)))
    return (ix0, iy0, ix1, iy1) if ix1 - ix0 >= 2 and iy1 - iy0 >= 2 else None


def _paste(canvas: np.ndarray, weight: np.ndarray, patch: np.ndarray, alpha: np.ndarray, box: np.ndarray) -> None:
    """`patch` (h, w, 3) float and its `alpha` (h, w) resized into `box` (normalised x0, y0, x1, y1) of one frame's
    canvas (H, W, 3) and weight (H, W); what falls outside the frame is cut."""
    from PIL import Image

    side = canvas.shape[0]
    x0, y0, x1, y1 = (float(v) * side for v in box)
    w, h = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
    px, py = int(round(x0)), int(round(y0))
    rs = lambda a: np.asarray(Image.fromarray(a.astype(np.float32)).resize((w, h), Image.BILINEAR))  # noqa: E731
    pr = np.stack([rs(patch[..., c]) for c in range(3)], -1)
    ar = rs(alpha)
    cx0, cy0, cx1, cy1 = max(0, px), max(0, py), min(side, px + w), min(side, py + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sl = (slice(cy0, cy1), slice(cx0, cx1))
    src = (slice(cy0 - py, cy1 - py), slice(cx0 - px, cx1 - px))
    a = ar[src][..., None]
    canvas[sl] = canvas[sl] * (1 - a) + pr[src] * a
    weight[sl] = np.maximum(weight[sl], ar[src])


def _reference(label: str, images: list, subjects: list) -> tuple[str, int] | None:
    """("image", i) for a subject named @Image_{i+1}, ("subject", j) for @Subject_{j+1} (the enhancer's name for the
    request's (j+1)-th library subject), when the request has it; None otherwise."""
    import re

    m = re.fullmatch(r"@(image|subject)_(\d+)", label.strip().lower())
    if not m:
        return None
    k = int(m.group(2)) - 1
    pool = images if m.group(1) == "image" else subjects
    return (m.group(1), k) if 0 <= k < len(pool) else None


def pixel_context(images: list, video, plan: LayoutPlan | None, task: str, frames: int = FRAMES,
                  side: int = SIDE, subjects: list | None = None,
                  panels: list | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """What the request shows, pixel-aligned with the clip: (CONTEXT_CHANNELS, frames, side, side) float32 and
    the frames it gives exactly (kept by the sampler): (0,) for a first frame, a storyboard's keyframes, or ().

    - context RGB + weight: the context video on every frame (weight 1: edits read it and change what the plan
      says); a first frame (@Image_1 of i2v, arrows, boxes, reasoning) on frame 0 (weight 1) and as a still
      copy on the other frames (weight 0.5), seen through the plan's camera where it has one (a camera
      transfer: weight 0 where the camera reveals what the frame does not show); a storyboard's `panels` on
      their keyframes (layout.keyframes, weight 1) and each as a still copy until the next (0.5); for the shot
      after (before) @Video, the video's last (first) frame as a still copy (0.5); a motion transfer's @Video
      not at all (the planner reads its motion); a place's image ("in @Image_3") as a still copy (0.5).
      An edit's image that no subject takes (a new background, a style) goes in the guide at weight 0.5.
    - appearance guide RGB + weight: each planned subject's look carried along its planned boxes: the first
      frame's pixels inside the subject's frame-0 box (another shot: where the still frame shows its colour),
      or a reference's cut-out (@Image_k, or the first view of
      library subject k, @Subject_k; `subjects` holds each library subject's views), pasted into its box on
      every frame. The plan says where, this says what it looks like; the words say the rest.
    Pure function of the request's pixels and the plan (never of a benchmark truth)."""
    from .conditioning import _fit, _fit_video

    ctx = np.zeros((frames, side, side, 3), np.float32)
    cw = np.zeros((frames, side, side), np.float32)
    guide = np.zeros((frames, side, side, 3), np.float32)
    gw = np.zeros((frames, side, side), np.float32)
    imgs = [_fit(np.asarray(im)[..., :3].astype(np.uint8), side) for im in images
            if isinstance(im, np.ndarray) and im.ndim == 3]
    first = None
    kept: tuple[int, ...] = ()
    boards = [_fit(np.asarray(p)[..., :3].astype(np.uint8), side) / 255.0 for p in (panels or [])]
    if boards:
        kept = tuple(keyframes(len(boards), frames))
        for i, k in enumerate(kept):
            ctx[k:] = boards[i]
            cw[k:] = 0.5
        cw[list(kept)] = 1.0
        first = boards[0]
    elif video is not None and task in SHOT_TASKS:  # another shot of the same place: the video's nearest frame
        clip = _fit_video(np.asarray(video)[..., :3].astype(np.uint8), frames, side)
        first = clip[-1 if task == "next_shot" else 0] / 255.0
        ctx[:] = first
        cw[:] = 0.5
    elif video is not None and task not in MOTION_SOURCE_TASKS:  # (a motion source is read by the planner only)
        ctx[:] = _fit_video(np.asarray(video)[..., :3].astype(np.uint8), frames, side) / 255.0
        cw[:] = 1.0
    elif imgs and task in FIRST_FRAME_TASKS:
        first = imgs[0] / 255.0
        kept = (0,)
        ctx[:] = first
        cw[:] = 0.5
        cw[0] = 1.0
        if plan is not None and plan.camera != "static":  # a planned camera: the first frame seen through it
            # (warp and fill in: the model draws what the camera newly reveals, where the weight is 0)
            ctx[:], seen = camera_warp(first.astype(np.float32), plan.camera, frames)
            cw[:] = seen
            cw[0] = 1.0
    views = [_fit(np.asarray(v[0])[..., :3].astype(np.uint8), side) for v in (subjects or []) if len(v)]
    subs = plan.subjects if plan is not None else []
    used = set()
    for s in subs:
        ref = _reference(s.label, imgs, views)
        if ref is not None:
            if ref[0] == "image":
                used.add(ref[1])
            cut = subject_cutout(imgs[ref[1]] if ref[0] == "image" else views[ref[1]])
            if cut is not None:
                for t in range(min(frames, len(s.boxes))):
                    _paste(guide[t], gw[t], cut[0], cut[1], s.boxes[t])
        elif first is not None and s.source in ("image", "user", "truth", "video"):
            src = s.boxes[0]  # where the still frame shows the subject: its first box, or (another shot) its colour
            if task in SHOT_TASKS:
                seen = find_colour((first * 255).round().astype(np.uint8), s.rgb) if s.color else None
                src = None if seen is None else np.float32([seen[0] - seen[2] / 2, seen[1] - seen[2] / 2,
                                                            seen[0] + seen[2] / 2, seen[1] + seen[2] / 2]) / side
            b = _crop_box(src, side) if src is not None else None
            if b is not None:
                patch = first[b[1]:b[3], b[0]:b[2]]
                box0 = np.float32(b) / side  # the crop's own box: pasted at the same scale it was cut
                scale = (s.boxes[:, 2:] - s.boxes[:, :2]) / np.maximum(src[2:] - src[:2], 1e-6)
                for t in range(min(frames, len(s.boxes))):
                    c = (s.boxes[t, :2] + s.boxes[t, 2:]) / 2
                    half = (box0[2:] - box0[:2]) * scale[t] / 2
                    _paste(guide[t], gw[t], patch, np.ones(patch.shape[:2], np.float32),
                           np.concatenate([c - half, c + half]))
    place = next((im for i, im in enumerate(imgs) if i not in used), None)
    if place is not None and first is None:  # an image no subject took: a place (or a style) to show
        if video is None:
            ctx[:] = place / 255.0
            cw[:] = 0.5
        else:  # an edit's reference (a new background, a style): in the guide, at half weight where nothing is pasted
            free = gw == 0
            guide[free] = (place / 255.0)[None].repeat(frames, 0)[free]
            gw[free] = 0.5
    out = np.concatenate([ctx.transpose(3, 0, 1, 2) * 2 - 1, cw[None], guide.transpose(3, 0, 1, 2) * 2 - 1, gw[None]])
    out[:3] *= cw[None] > 0  # no context: zeros, not the -1 of black
    out[4:7] *= gw[None] > 0
    return out.astype(np.float32), kept


def request_context(gen: "PixelGenerator", request, plan: LayoutPlan | None,
                    task: str) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """The context a model reads for a request (None for a text-to-video-only model) and the frames it gives."""
    from .conditioning import storyboard_panels

    if not gen.config.context:
        return None, ()
    return pixel_context(list(request.images), request.video, plan, task, subjects=list(request.subjects.values()),
                         panels=storyboard_panels(request))


def grow_context(state: dict, context: int = CONTEXT_CHANNELS) -> dict:
    """A text-to-video pixel generator's weights for a model with `context` more input channels: the new
    channels' input weights start at zero, so the grown model is the trained one until training moves them."""
    w = state["inp.weight"]
    pad = torch.zeros(w.shape[0], context, *w.shape[2:], dtype=w.dtype)
    return {**state, "inp.weight": torch.cat([w, pad], 1)}


def plan_rasters(plan: LayoutPlan | None, frames: int = FRAMES, side: int = SIDE):
    """A plan's pixel-aligned inputs, made without the text encoder (a data worker's part): its raster
    (rasterize_layout), each subject's box weights (subject_masks) and the subjects' labels; None: no plan."""
    from .layout import subject_masks

    if plan is None or plan.is_empty():
        return None
    return rasterize_layout(plan, frames, side), subject_masks(plan, frames, side), [s.label for s in plan.subjects]


def pixel_conditions(text_encoder, prompts: list[str], plans: list[LayoutPlan | None] | None, drop: list[bool],
                     frames: int = FRAMES, side: int = SIDE, contexts: list[np.ndarray] | None = None,
                     rasters: list | None = None) -> dict:
    """The generator's inputs besides the noisy clip, for a batch: the pooled prompt, the plan's raster, and
    each planned subject's box weights and pooled phrase (its label; as the latent generator's grounding,
    conditioning.grounding_piece). Where `drop` (the guidance branch, or training's text dropout) the words go
    (prompt and phrases), the plan stays: the plan says where, the words what. `rasters` (plan_rasters per
    sample, made by data workers) stand for `plans`."""
    from .conditioning import pooled_text

    B = len(prompts)
    text = pooled_text(text_encoder, prompts)  # (B, text_dim)
    if rasters is None:
        rasters = [plan_rasters(p, frames, side) for p in plans]
    n = max([1] + [len(r[2]) for r in rasters if r is not None])
    layout = torch.zeros(B, LAYOUT_CHANNELS, frames, side, side)
    masks = torch.zeros(B, n, frames, side, side)
    phrases = torch.zeros(B, n, text.shape[1])
    labels = [label for r, d in zip(rasters, drop) if r is not None and not d for label in r[2]]
    vectors = iter(pooled_text(text_encoder, labels)) if labels else iter(())
    for i, r in enumerate(rasters):
        if r is None:
            continue
        layout[i] = torch.as_tensor(r[0])
        if not drop[i]:
            k = len(r[2])
            masks[i, :k] = torch.as_tensor(r[1])
            phrases[i, :k] = torch.stack([next(vectors) for _ in range(k)])
    text[torch.tensor(drop, dtype=torch.bool)] = 0
    out = {"text_vec": text, "layout": layout, "masks": masks, "phrases": phrases}
    if contexts is not None:  # the request's pixels (pixel_context): kept in the guidance branch, as the plan
        out["context"] = torch.as_tensor(np.stack([np.asarray(c) for c in contexts]))
    return out


@torch.no_grad()
def sample_pixels(gen: PixelGenerator, text_encoder, prompt: str, plan: LayoutPlan | None, seed: int,
                  steps: int = 20, guidance: float = 3.0, shift: float = 3.0, dtype: torch.dtype = torch.float32,
                  callback=None, interrupted=lambda: False, churn: float = 0.0, context: np.ndarray | None = None,
                  keep: tuple[int, ...] = (), init: np.ndarray | None = None, start: float = 1.0,
                  guidance_interval: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """One clip (T, H, W, 3) uint8: the flow-matching sampler on the shifted schedule from pure noise (Euler, or
    with `churn` fresh noise per step: flow_matching.sampler_step), classifier-free guidance on the words (the
    plan kept in both branches). `callback(i, s, x) -> x | None` after each step (progress, previews, cancel);
    `interrupted()` stops between steps. `context` (pixel_context) for a model with context channels; each frame in
    `keep` is the context's (a given first frame, a storyboard's keyframes): it follows that frame's own noising
    path at every step and is that frame exactly in the result. `init` (T, H, W, 3) uint8 with `start` < 1: denoising starts
    from that clip noised to level `start` (SDEdit), `steps` steps from there to 0. `guidance_interval` (lo, hi):
    the noise levels s with lo < s <= hi get classifier-free guidance, the others one conditional pass (guidance in
    a limited interval, Kynkaenniemi et al. 2024: half the cost of the steps outside it)."""
    use_cfg = guidance != 1.0
    n = 2 if use_cfg else 1
    c = pixel_conditions(text_encoder, [prompt] * n, [plan] * n, [False, True][:n],
                         contexts=[context] * n if context is not None and gen.config.context else None)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(1, 3, FRAMES, SIDE, SIDE, generator=g)
    keep = sorted(keep) if context is not None else []
    given = torch.from_numpy(context[None, :3, keep]).float() if keep else None
    given_noise = x[:, :, keep].clone()
    sig = fm.schedule(steps, shift) * start
    if init is not None and start < 1.0:
        x0 = torch.from_numpy(np.ascontiguousarray(init)).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        x = fm.add_noise(x0, x, torch.tensor([start]))
    for i in range(steps):
        if interrupted():
            break
        s = float(sig[i])
        both = use_cfg and guidance_interval[0] < s <= guidance_interval[1]
        xin = torch.cat([x, x]) if both else x
        ci = c if both or not use_cfg else {k: v[:1] for k, v in c.items()}
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            v = gen(xin, torch.full((xin.shape[0],), s), **ci).float()
        if both:
            v = v[1:] + guidance * (v[:1] - v[1:])
        x = fm.sampler_step(x, v, s, float(sig[i + 1]), churn, g)
        if given is not None:
            x[:, :, keep] = fm.add_noise(given, given_noise, torch.tensor([float(sig[i + 1])]))
        if callback is not None:
            upd = callback(i, s, x)
            if upd is not None:
                x = upd
    return ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
