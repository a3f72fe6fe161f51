"""The Omni-Generator: a diffusion transformer over one token sequence (DESIGN 3.3).

Condition tokens (text, reference images, subject views, context video, storyboard
panels, annotation rasters, and one learned null token) carry a type embedding, a slot
embedding (which @Image_N / @Subject_k they are) and 3D RoPE positions. They are clean:
plain LayerNorm, no timestep, and they attend only among themselves. The noisy target
tokens use adaLN-Zero from the timestep and attend to everything. Because no condition
token ever sees a target token, each layer's condition keys and values are the same at
every sampling step: `condition_cache()` computes them once per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .component import Component

# token types
TEXT, IMAGE, SUBJECT, VIDEO, ANNOTATION, STORYBOARD, NULL = range(7)
N_TYPES = 7
# not a token type: the layout plan's raster (model/layout.py), aligned with the target and added to
# each target token through its own zero-initialised path
LAYOUT = 7
# not a token type either: the plan's subjects grounded by their phrases (GLIGEN, Li et al. 2023; VideoDirectorGPT's
# Layout2Vid): per subject its box weights and the text encoder's pooled states of the words that name it
GROUNDING = 8


@dataclass
class GeneratorConfig:
    latent_channels: int = 16  # VAE latent channels
    patch: int = 2  # latent pixels per token side
    dim: int = 256  # model width
    depth: int = 8  # transformer blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384  # text encoder width
    max_slots: int = 16  # reference slots: @Image_1..8 -> 1..8, @Subject_1..6 -> 9..14, panels 15
    annotation_channels: int = 3  # arrow progress, arrow mask, box mask
    annotation_patch: int = 8  # raster pixels per annotation token side
    rope_theta: float = 100.0
    rope_split: tuple[int, int, int] = (16, 24, 24)  # head-dim channels for t, h, w (sum = dim / heads)
    # A time-gated diagonal path from each noisy input patch to its output patch. A token carries `dim`
    # numbers, a patch latent_channels * patch**2: when the patch is larger (patch 4 on 16 channels:
    # 256 > 192), the noise in x_s cannot pass through the transformer, yet v = (x_s - x0) / s carries
    # it in full. This path carries it (gain per channel from the timestep; zero at start, so a trained
    # model with the path added computes exactly what it did).
    input_skip: bool = False
    # The layout plan as a pixel-aligned input (model/layout.py): 0 = none; else the raster's channels.
    # Each target token gets the raster over its pixels and frames, average-pooled to
    # layout_patch x layout_patch, through a zero-initialised linear path: a trained generator with the
    # path added computes exactly what it did until training opens it.
    layout_channels: int = 0
    layout_patch: int = 4
    # A local head at latent resolution (0 = none; else its width): a token covers patch x patch latent cells
    # (8 x 8 pixels on the 2x VAE with patch 4), so two subjects in one token share one output projection and
    # their colours merge. The head sees, per latent cell, the transformer's velocity, the noisy latent and the
    # layout raster pooled to that cell, through convolutions that cross token edges (3 x 3 in space, 3 in
    # time in the middle layer), its width modulated by the timestep; its last layer starts at zero, so a
    # trained generator with the head added computes exactly what it did.
    refine_channels: int = 0
    # Phrase grounding (0 = none; else its channels): the colour in the layout raster is rendered where the plan
    # puts it, the shape and pattern words only reach a subject through attention to the whole prompt, which
    # must also work out which words belong to which box. Here each planned subject's phrase ("a striped red
    # circle": the text encoder's states, pooled) is projected to this many channels and painted into the
    # pixels its box wins, then enters each target token beside the layout raster through a zero-initialised
    # linear path. Text, not pixels: the silhouette and pattern are still the generator's to draw.
    grounding_channels: int = 0


@dataclass
class CondPiece:
    """One condition of one request before embedding."""

    kind: int  # TEXT, IMAGE, SUBJECT, VIDEO, ANNOTATION or STORYBOARD
    data: torch.Tensor  # text: (L, text_dim); visual: latents (C, T, h, w); annotation: raster (A, H, W);
    # layout: raster (LAYOUT_CHANNELS, frames, H, W); grounding: box weights (subjects, frames, H, W)
    slot: int = 0
    t0: int = 0  # time position of the first latent frame
    mask: torch.Tensor | None = None  # text: (L,) valid tokens
    vectors: torch.Tensor | None = None  # grounding: (subjects, text_dim) pooled phrase states


@dataclass
class Conditions:
    tokens: torch.Tensor  # (B, L, dim)
    pos: torch.Tensor  # (B, L, 3) long
    mask: torch.Tensor  # (B, L) bool, True = real token
    layout: torch.Tensor | None = None  # (B, channels, frames, H, W) layout rasters (zeros: no plan)
    grounding: torch.Tensor | None = None  # (B, grounding_channels, frames, H, W) phrase maps (zeros: none)


# ---------------------------------------------------------------- rotary positions
def rope_angles(pos: torch.Tensor, split: tuple[int, int, int], theta: float) -> torch.Tensor:
    """(B, L, 3) integer positions -> (B, L, head_dim / 2) rotation angles."""
    parts = []
    for axis, n in enumerate(split):
        freqs = theta ** (-torch.arange(0, n, 2, dtype=torch.float32, device=pos.device) / n)
        parts.append(pos[..., axis : axis + 1].float() * freqs)
    return torch.cat(parts, dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x: (B, H, L, Dh); angles: (B, L, Dh/2)."""
    cos, sin = angles.cos()[:, None], angles.sin()[:, None]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], dim=-1)


def dit_init(root: nn.Module, normals: list[torch.Tensor], zeros: list[nn.Module]) -> None:
    """DiT initialisation in one visible function (shared by the generator and the SR stage): Xavier
    linears with zero bias, N(0, 0.02) embeddings, and zero weights for the adaLN modulations and output
    layers listed in `zeros`, so every block starts as the identity."""
    for m in root.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for p in normals:
        nn.init.normal_(p, std=0.02)
    for m in zeros:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- the block
class OmniBlock(nn.Module):
    """Shared attention + MLP weights; LayerNorm for condition tokens, adaLN-Zero for targets."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        d = cfg.dim
        self.heads = cfg.heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.q_norm = nn.RMSNorm(d // cfg.heads)
        self.k_norm = nn.RMSNorm(d // cfg.heads)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.cond_norm1 = nn.LayerNorm(d)
        self.cond_norm2 = nn.LayerNorm(d)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.ada = nn.Linear(d, 6 * d)  # shift, scale, gate for attention and MLP

    def _qkv(self, h: torch.Tensor, angles: torch.Tensor):
        B, L, D = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, L, Dh)
        q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, angles), apply_rope(k, angles), v

    def cond_forward(self, c, c_angles, c_mask):
        """Condition stream: attends among conditions only; returns new c and its (k, v)."""
        q, k, v = self._qkv(self.cond_norm1(c), c_angles)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=c_mask[:, None, None, :])
        B, H, L, Dh = att.shape
        c = c + self.proj(att.transpose(1, 2).reshape(B, L, H * Dh))
        c = c + self.mlp(self.cond_norm2(c))
        return c, (k, v)

    def target_forward(self, x, x_angles, temb, ck, cv, c_mask):
        B, N, _ = x.shape

        def attend(q, k, v):  # every target token sees the condition tokens and all target tokens
            keys = torch.cat([ck, k], dim=2)
            vals = torch.cat([cv, v], dim=2)
            mask = torch.cat([c_mask, torch.ones(B, N, dtype=torch.bool, device=x.device)], dim=1)
            return F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask[:, None, None, :])

        return self.modulated_step(x, x_angles, temb, attend)

    def modulated_step(self, x, x_angles, temb, attend):
        """The target tokens' adaLN-Zero attention + MLP; `attend(q, k, v)` (each (B, H, N, Dh)) says which keys
        each query sees (the SR stage's blocks attend inside windows) and returns (B, H, N, Dh)."""
        B, N, D = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(temb)[:, None].chunk(6, dim=-1)
        q, k, v = self._qkv(self.norm1(x) * (1 + sc1) + sh1, x_angles)
        att = attend(q, k, v)
        x = x + g1 * self.proj(att.transpose(1, 2).reshape(B, N, D))
        x = x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + sh2)
        return x


class LatentRefiner(nn.Module):
    """GeneratorConfig.refine_channels: a residual on the velocity at latent resolution (B, C, T, h, w)."""

    def __init__(self, latent_channels: int, layout_channels: int, width: int, dim: int):
        super().__init__()
        self.layout_channels = layout_channels
        self.inp = nn.Conv3d(2 * latent_channels + layout_channels, width, (1, 3, 3), padding=(0, 1, 1))
        self.mid = nn.Conv3d(width, width, 3, padding=1)
        self.out = nn.Conv3d(width, latent_channels, (1, 3, 3), padding=(0, 1, 1))
        self.film = nn.Linear(dim, 2 * width)  # scale / shift of the middle features from the timestep

    def reset(self) -> None:
        for m in (self.inp, self.mid):
            m.reset_parameters()
        for m in (self.out, self.film):  # the head starts as no change; FiLM as identity
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, v, x, layout, temb, extra: torch.Tensor | None = None):
        """`extra`: (B, width, T, h, w) added to the first layer's features (the grounding's cells)."""
        parts = [v, x]
        if self.layout_channels:
            parts.append(layout if layout is not None else v.new_zeros(v.shape[0], self.layout_channels, *v.shape[2:]))
        h = self.inp(torch.cat(parts, 1))
        h = F.silu(h if extra is None else h + extra)
        scale, shift = self.film(temb).chunk(2, dim=-1)
        h = F.silu(self.mid(h) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None])
        return self.out(h)


class OmniGenerator(Component):
    config_class = GeneratorConfig

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        c = config
        d = c.dim
        assert sum(c.rope_split) == d // c.heads, "rope_split must add up to the head dimension"
        pdim = c.latent_channels * c.patch * c.patch
        self.x_embed = nn.Linear(pdim, d)  # noisy target patches
        self.latent_embed = nn.Linear(pdim, d)  # clean visual-condition patches
        self.text_embed = nn.Sequential(nn.LayerNorm(c.text_dim), nn.Linear(c.text_dim, d))
        self.ann_embed = nn.Linear(c.annotation_channels * c.annotation_patch ** 2, d)
        self.type_embed = nn.Embedding(N_TYPES, d)
        self.slot_embed = nn.Embedding(c.max_slots, d)
        self.null_token = nn.Parameter(torch.zeros(1, 1, d))
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([OmniBlock(c) for _ in range(c.depth)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Linear(d, 2 * d)
        self.final = nn.Linear(d, pdim)
        self.skip_ada = nn.Linear(d, pdim) if c.input_skip else None  # the input path's gain per channel
        self.layout_embed = nn.Linear(c.layout_channels * c.layout_patch ** 2, d) if c.layout_channels else None
        g = c.grounding_channels
        self.ground_proj = nn.Sequential(nn.LayerNorm(c.text_dim), nn.Linear(c.text_dim, g)) if g else None
        # pooled phrase states -> g channels
        self.ground_embed = nn.Linear(g * c.layout_patch ** 2, d) if g else None  # zero-initialised
        # with the latent head too: the phrase map per latent cell into the head's first layer (zero-initialised)
        self.ground_cell = nn.Conv3d(g, c.refine_channels, (1, 3, 3), padding=(0, 1, 1)) \
            if g and c.refine_channels else None
        self.refine = LatentRefiner(c.latent_channels, c.layout_channels, c.refine_channels, d) \
            if c.refine_channels else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation: every block starts as identity; the optional input and layout paths at zero."""
        zeros = [b.ada for b in self.blocks] + [self.final_ada, self.final]
        zeros += [m for m in (self.skip_ada, self.layout_embed, self.ground_embed, self.ground_cell) if m is not None]
        dit_init(self, [self.type_embed.weight, self.slot_embed.weight, self.null_token], zeros)
        if self.refine is not None:
            self.refine.reset()

    # ------------------------------------------------------------ patches
    def patchify(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, h, w) latents -> tokens (B, T*h'*w', C*p*p) and positions (T*h'*w', 3)."""
        B, C, T, h, w = z.shape
        p = self.config.patch
        x = z.view(B, C, T, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)  # (B, T, h', w', C, p, p)
        tokens = x.reshape(B, T * (h // p) * (w // p), C * p * p)
        tt, hh, ww = torch.meshgrid(torch.arange(T), torch.arange(h // p), torch.arange(w // p), indexing="ij")
        pos = torch.stack([tt, hh, ww], -1).view(-1, 3).to(z.device)
        return tokens, pos

    def unpatchify(self, tokens: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        C, T, h, w = shape
        p = self.config.patch
        B = tokens.shape[0]
        x = tokens.view(B, T, h // p, w // p, C, p, p).permute(0, 4, 1, 2, 5, 3, 6)  # (B, C, T, h', p, w', p)
        return x.reshape(B, C, T, h, w)

    # ------------------------------------------------------------ conditions
    def embed_conditions(self, batch: list[list[CondPiece]]) -> Conditions:
        """Embed and pad each request's condition pieces (plus the null token) into one batch."""
        c = self.config
        dev = self.null_token.device
        seqs, poss, layouts, groundings = [], [], [], []
        for pieces in batch:
            toks = [self.null_token[0] + self.type_embed.weight[NULL]]
            pos = [torch.zeros(1, 3, dtype=torch.long, device=dev)]
            layouts.append(next((pc.data for pc in pieces if pc.kind == LAYOUT), None))
            groundings.append(next((self.grounding_map(pc) for pc in pieces if pc.kind == GROUNDING), None))
            for pc in pieces:
                if pc.kind in (LAYOUT, GROUNDING):
                    continue
                if pc.kind == TEXT:
                    states = pc.data if pc.mask is None else pc.data[pc.mask]
                    t = self.text_embed(states.to(dev))
                    p = torch.zeros(t.shape[0], 3, dtype=torch.long, device=dev)
                elif pc.kind == ANNOTATION:
                    A, H, W = pc.data.shape
                    q = c.annotation_patch
                    r = pc.data.to(dev).view(A, H // q, q, W // q, q).permute(1, 3, 0, 2, 4).reshape(-1, A * q * q)
                    t = self.ann_embed(r)
                    hh, ww = torch.meshgrid(torch.arange(H // q), torch.arange(W // q), indexing="ij")
                    p = torch.stack([torch.zeros_like(hh), hh, ww], -1).view(-1, 3).to(dev)
                else:
                    t, p = self.patchify(pc.data[None].to(dev))
                    t, p = self.latent_embed(t[0]), p.clone()
                    p[:, 0] += pc.t0
                t = t + self.type_embed.weight[pc.kind] + self.slot_embed.weight[pc.slot]
                toks.append(t)
                pos.append(p)
            seqs.append(torch.cat(toks))
            poss.append(torch.cat(pos))
        L = max(s.shape[0] for s in seqs)
        B = len(seqs)
        tokens = torch.zeros(B, L, c.dim, device=dev, dtype=seqs[0].dtype)
        pos = torch.zeros(B, L, 3, dtype=torch.long, device=dev)
        mask = torch.zeros(B, L, dtype=torch.bool, device=dev)
        for i, (s, p) in enumerate(zip(seqs, poss)):
            tokens[i, : len(s)] = s
            pos[i, : len(s)] = p
            mask[i, : len(s)] = True
        layout = None
        if self.layout_embed is not None and any(r is not None for r in layouts):
            shape = next(r.shape for r in layouts if r is not None)
            layout = torch.stack([torch.zeros(shape) if r is None else r for r in layouts]).to(dev)
        grounding = None
        if self.ground_proj is not None and any(g is not None for g in groundings):
            ref = next(g for g in groundings if g is not None)
            grounding = torch.stack([ref.new_zeros(ref.shape) if g is None else g for g in groundings])
        return Conditions(tokens, pos, mask, layout, grounding)

    def grounding_map(self, piece: CondPiece) -> torch.Tensor | None:
        """A GROUNDING piece -> (grounding_channels, frames, H, W): each subject's projected phrase painted with
        its box weights; None when this generator has no grounding path."""
        if self.ground_proj is None:
            return None
        w = self.ground_proj[1].weight
        vec = self.ground_proj(piece.vectors.to(w.device, w.dtype))  # (S, g)
        return torch.einsum("sfhw,sg->gfhw", piece.data.to(w.device, vec.dtype), vec)

    def condition_cache(self, cond: Conditions) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer condition (keys, values): the same at every step, so computed once."""
        angles = rope_angles(cond.pos, self.config.rope_split, self.config.rope_theta)
        h = cond.tokens
        cache = []
        for blk in self.blocks:
            h, kv = blk.cond_forward(h, angles, cond.mask)
            cache.append(kv)
        return cache

    def layout_tokens(self, raster: torch.Tensor, latent_thw: tuple[int, int, int]) -> torch.Tensor:
        """(B, A, F, H, W) layout rasters -> (B, N, A * q * q): per target token, the raster over its frames
        and pixels average-pooled to q x q (q = layout_patch), in the order patchify gives the tokens."""
        T, h, w = latent_thw
        p, q = self.config.patch, self.config.layout_patch
        B, A = raster.shape[:2]
        r = F.adaptive_avg_pool3d(raster.float(), (T, h // p * q, w // p * q))  # (B, A, T, h'q, w'q)
        r = r.view(B, A, T, h // p, q, w // p, q).permute(0, 2, 3, 5, 1, 4, 6)  # (B, T, h', w', A, q, q)
        return r.reshape(B, T * (h // p) * (w // p), A * q * q)

    # ------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, timestep: torch.Tensor, cond: Conditions,
                cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """Predict the flow velocity v = noise - x0 for noisy latents x (B, C, T, h, w)."""
        B, C, T, h, w = x.shape
        tokens, pos = self.patchify(x)
        xt = self.x_embed(tokens)
        if self.layout_embed is not None and cond.layout is not None:
            xt = xt + self.layout_embed(self.layout_tokens(cond.layout, (T, h, w)).to(xt.dtype))
        if self.ground_embed is not None and cond.grounding is not None:
            xt = xt + self.ground_embed(self.layout_tokens(cond.grounding, (T, h, w)).to(xt.dtype))
        temb = self.t_embed(timestep_embedding(timestep, 256))
        x_angles = rope_angles(pos[None].expand(B, -1, -1), self.config.rope_split, self.config.rope_theta)
        if cache is None:
            cache = self.condition_cache(cond)
        for blk, (ck, cv) in zip(self.blocks, cache):
            xt = blk.target_forward(xt, x_angles, temb, ck, cv, cond.mask)
        shift, scale = self.final_ada(temb)[:, None].chunk(2, dim=-1)
        out = self.final(self.final_norm(xt) * (1 + scale) + shift)
        if self.skip_ada is not None:
            out = out + self.skip_ada(temb)[:, None] * tokens
        v = self.unpatchify(out, (C, T, h, w))
        if self.refine is not None:
            lay = None
            if self.refine.layout_channels and cond.layout is not None:
                lay = F.adaptive_avg_pool3d(cond.layout.float(), (T, h, w)).to(v.dtype)
            extra = None
            if self.ground_cell is not None and cond.grounding is not None:
                extra = self.ground_cell(F.adaptive_avg_pool3d(cond.grounding.float(), (T, h, w)).to(v.dtype))
            v = v + self.refine(v, x, lay, temb, extra)
        return v
