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
from .layout import LAYOUT_CHANNELS, LayoutPlan, rasterize_layout

SIDE, FRAMES = 32, 16


@dataclass
class PixelGeneratorConfig:
    width: int = 24  # channels at full resolution (x2, x4 at the two coarser levels)
    blocks: int = 2  # residual blocks per level on the way down (up: the same, on concatenated skips)
    text_dim: int = 384  # text encoder width
    ground: int = 16  # channels of the phrase-grounding map (each subject's phrase projected, painted in its box)
    temb: int = 128  # timestep / text embedding width
    tasks: tuple[str, ...] = ("t2v",)  # task families the pipeline sends here (what it was trained and measured on)
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
        self.inp = nn.Conv2d(3 + LAYOUT_CHANNELS + c.ground, w, 3, padding=1)
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
                masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        """x (B, 3, T, H, W) noisy pixels in [-1, 1]; s (B,) noise levels; text_vec (B, text_dim) the pooled
        prompt (zeros when dropped); layout (B, 4, T, H, W); masks (B, N, T, H, W) box weights; phrases
        (B, N, text_dim) -> the velocity (B, 3, T, H, W)."""
        B, _, T, H, W = x.shape
        e = self.t_mlp(timestep_embedding(fm.to_timestep(s), 256)) + self.text(text_vec)
        g = torch.einsum("bnthw,bnc->bcthw", masks, self.ground(phrases))  # each phrase painted in its box
        frames = lambda t: t.transpose(1, 2).reshape(B * T, t.shape[1], H, W)  # noqa: E731
        h = self.inp(torch.cat([frames(x), frames(layout.to(x.dtype)), frames(g.to(x.dtype))], 1))
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


def pixel_conditions(text_encoder, prompts: list[str], plans: list[LayoutPlan | None], drop: list[bool],
                     frames: int = FRAMES, side: int = SIDE) -> dict:
    """The generator's inputs besides the noisy clip, for a batch: the pooled prompt, the plan's raster, and
    each planned subject's box weights and pooled phrase (conditioning.grounding_piece, as the latent
    generator's grounding). Where `drop` (the guidance branch, or training's text dropout) the words go
    (prompt and phrases), the plan stays: the plan says where, the words what."""
    from .conditioning import grounding_piece

    B = len(prompts)
    states, mask = text_encoder.encode(prompts)
    m = mask[..., None].float()
    text = (states.float() * m).sum(1) / m.sum(1).clamp_min(1)  # (B, text_dim) mean over real tokens
    n = max([1] + [len(p.subjects) for p in plans if p is not None])
    layout = torch.zeros(B, LAYOUT_CHANNELS, frames, side, side)
    masks = torch.zeros(B, n, frames, side, side)
    phrases = torch.zeros(B, n, text.shape[1])
    for i, plan in enumerate(plans):
        if plan is None or plan.is_empty():
            continue
        layout[i] = torch.from_numpy(rasterize_layout(plan, frames, side))
        if not drop[i]:
            piece = grounding_piece(plan, text_encoder, frames)
            k = len(plan.subjects)
            masks[i, :k], phrases[i, :k] = piece.data, piece.vectors
    text[torch.tensor(drop, dtype=torch.bool)] = 0
    return {"text_vec": text, "layout": layout, "masks": masks, "phrases": phrases}


@torch.no_grad()
def sample_pixels(gen: PixelGenerator, text_encoder, prompt: str, plan: LayoutPlan | None, seed: int,
                  steps: int = 20, guidance: float = 3.0, shift: float = 3.0, dtype: torch.dtype = torch.float32,
                  callback=None, interrupted=lambda: False, churn: float = 0.0) -> np.ndarray:
    """One clip (T, H, W, 3) uint8: the flow-matching sampler on the shifted schedule from pure noise (Euler, or
    with `churn` fresh noise per step: flow_matching.sampler_step), classifier-free guidance on the words (the
    plan kept in both branches). `callback(i, s, x) -> x | None` after each step (progress, previews, cancel);
    `interrupted()` stops between steps."""
    use_cfg = guidance != 1.0
    c = pixel_conditions(text_encoder, [prompt, prompt] if use_cfg else [prompt], [plan, plan] if use_cfg else [plan],
                         [False, True] if use_cfg else [False])
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(1, 3, FRAMES, SIDE, SIDE, generator=g)
    sig = fm.schedule(steps, shift)
    for i in range(steps):
        if interrupted():
            break
        s = float(sig[i])
        xin = torch.cat([x, x]) if use_cfg else x
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            v = gen(xin, torch.full((xin.shape[0],), s), **c).float()
        if use_cfg:
            v = v[1:] + guidance * (v[:1] - v[1:])
        x = fm.sampler_step(x, v, s, float(sig[i + 1]), churn, g)
        if callback is not None:
            upd = callback(i, s, x)
            if upd is not None:
                x = upd
    return ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
