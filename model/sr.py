"""The multimodal super-resolution stage (Kling-Omni's third stage; DESIGN 3.3): base clip
16 x 32 x 32 -> 16 x 128 x 128, conditioned on the request's reference images at full resolution
and its text.

The blocks are the generator's (`OmniBlock`: shared attention + MLP weights, LayerNorm for clean
condition tokens, adaLN-Zero for the target tokens). The target tokens are 8 x 8 pixel patches of
the bicubic-upsampled base clip (16 x 16 x 16 = 4096 tokens); each layer attends inside local
windows of the (T, H, W) token grid, shifted by half a window on odd layers (Swin-style, cyclic),
and every target token also sees all condition tokens. Condition tokens attend among themselves
only, so their keys / values are computed once per request (`condition_cache`). Attention goes
through `model.nabla.attention`: dense, or NABLA block-sparse inside each window.

Objective: the stage predicts the residual over bicubic upsampling, with a zero-initialised output,
so an untrained stage is exactly bicubic and the output never starts from an invented scene; the
adaLN-Zero modulation comes from the base clip's degradation level (noise augmentation, as cascaded
diffusion models condition on it), which training draws and inference sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import nabla
from .component import Component
from .generator import IMAGE, N_TYPES, NULL, SUBJECT, TEXT, OmniBlock, dit_init, rope_angles, timestep_embedding


@dataclass
class SRConfig:
    scale: int = 4  # output side / input side
    patch: int = 8  # output pixels per token side
    dim: int = 192  # model width
    depth: int = 6  # blocks
    heads: int = 3
    mlp_ratio: float = 4.0
    window: tuple[int, int, int] = (8, 16, 16)  # attention window in tokens (t, h, w); odd layers shift by half
    text_dim: int = 384  # text encoder width (0: no text condition)
    max_slots: int = 16  # reference slots, as the generator's
    cond_side: int = 128  # reference images are fitted to this side, then cut into patch x patch tokens
    rope_theta: float = 100.0
    rope_split: tuple[int, int, int] = (16, 24, 24)  # head-dim channels for t, h, w (sum = dim / heads)
    attention: str = "dense"  # "dense" or "nabla" (model.nabla)
    nabla_tile: tuple[int, int, int] = (1, 8, 8)  # tokens (t, h, w) per NABLA block: a tile of the window
    nabla_threshold: float = 0.9
    nabla_query_group: int = 1
    nabla_dense_above: float = 0.4  # kept fraction past which a window's attention runs dense (model.nabla)
    refine: int = 0  # > 0: a small per-frame conv stack (this many channels) on the output, zero-initialised
    # residual: it joins the 8 x 8 patches seamlessly and sharpens edges across them (0 = none)
    base_conv: int = 0  # > 0: a convolutional path of this width on the base clip at its own resolution, (2+1)D
    # residual blocks across frames, out through a pixel shuffle to scale x scale sub-pixels per base pixel,
    # zero-initialised; it sees the clip's neighbouring frames, where an edge's sub-pixel place shows (0 = none)
    base_conv_depth: int = 4  # residual blocks of that path
    snap: float = 0.0  # > 0: an output pixel within this RGB distance (0-255 units) of a colour the base clip has in
    # the 3 x 3 base pixels around its place takes that colour exactly (snap_to_base; 0 = off): flat colours come out
    # flat where the stage is already near them, and the stage's hedges between two colours are left as they are
    notes: dict = field(default_factory=dict)  # training recipe, provenance


@dataclass
class SRConditions:
    tokens: torch.Tensor  # (B, L, dim)
    pos: torch.Tensor  # (B, L, 3) long
    mask: torch.Tensor  # (B, L) bool, True = real token


# ---------------------------------------------------------------- window order
def window_permutation(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool,
                       tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Raster order over the token grid -> window order: each run of prod(window) tokens is one window,
    windows in raster order; `shifted` starts the windows half a window further on every axis
    (cyclically, so the last window wraps around). Inside a window the tokens are in raster order, or
    in `tile` order (each run of prod(tile) tokens one tile) for NABLA's blocks."""
    T, H, W = grid
    wt, wh, ww = window
    if T % wt or H % wh or W % ww:
        raise ValueError(f"token grid {grid} is not a whole number of {window} windows: pick a window dividing it")
    idx = torch.arange(T * H * W).view(T, H, W)
    if shifted:
        idx = idx.roll((-(wt // 2), -(wh // 2), -(ww // 2)), dims=(0, 1, 2))
    idx = idx.view(T // wt, wt, H // wh, wh, W // ww, ww).permute(0, 2, 4, 1, 3, 5)  # (nT, nH, nW, wt, wh, ww)
    idx = idx.reshape(-1, wt, wh, ww)
    if tile is not None:
        inner = nabla.tile_permutation(window, tile)
        return idx.reshape(idx.shape[0], -1)[:, inner].reshape(-1)
    return idx.reshape(-1)


class SRBlock(OmniBlock):
    """The generator's block with the target attention inside (shifted) windows."""

    def target_forward_windows(self, x, x_angles, temb, ck, cv, c_mask, perm, inv, n_windows, attend):
        B, N, _ = x.shape

        def windowed(q, k, v):  # (B, H, N, Dh) -> attention inside each window (plus the conditions) -> back
            Hh, Dh = q.shape[1], q.shape[3]
            Lw = N // n_windows

            def to_windows(t):  # (B, H, N, Dh) -> (B * nW, H, Lw, Dh) in window order
                t = t[:, :, perm].view(B, Hh, n_windows, Lw, Dh)
                return t.transpose(1, 2).reshape(B * n_windows, Hh, Lw, Dh)

            def per_window(t):  # condition keys (B, H, Lc, Dh) -> every window of its clip
                return t[:, None].expand(B, n_windows, *t.shape[1:]).reshape(B * n_windows, *t.shape[1:])

            cm = c_mask[:, None].expand(B, n_windows, c_mask.shape[1]).reshape(B * n_windows, -1)
            att = attend(to_windows(q), to_windows(k), to_windows(v), per_window(ck), per_window(cv), cm)
            return att.view(B, n_windows, Hh, Lw, Dh).transpose(1, 2).reshape(B, Hh, N, Dh)[:, :, inv]

        return self.modulated_step(x, x_angles, temb, windowed)


class SRStage(Component):
    config_class = SRConfig

    def __init__(self, config: SRConfig):
        super().__init__(config)
        c = config
        d = c.dim
        if sum(c.rope_split) != d // c.heads:
            raise ValueError(f"rope_split {c.rope_split} must add up to the head dimension {d // c.heads}")
        if c.attention not in nabla.MODES:
            raise ValueError(f"attention {c.attention!r}: use one of {nabla.MODES}")
        pdim = 3 * c.patch * c.patch
        self.x_embed = nn.Linear(pdim, d)  # bicubic-upsampled base clip patches
        self.image_embed = nn.Linear(pdim, d)  # reference image patches at full resolution
        self.text_embed = nn.Sequential(nn.LayerNorm(c.text_dim), nn.Linear(c.text_dim, d)) if c.text_dim else None
        self.type_embed = nn.Embedding(N_TYPES, d)
        self.slot_embed = nn.Embedding(c.max_slots, d)
        self.null_token = nn.Parameter(torch.zeros(1, 1, d))
        self.level_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([SRBlock(c) for _ in range(c.depth)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Linear(d, 2 * d)
        self.final = nn.Linear(d, pdim)
        self.refine = _refiner(c.refine) if c.refine else None
        self.base_conv = BaseConvPath(c.base_conv, c.base_conv_depth, c.scale) if c.base_conv else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation (model/generator.dit_init): zero adaLN and output, so an untrained stage is bicubic."""
        dit_init(self, [self.type_embed.weight, self.slot_embed.weight, self.null_token],
                 [b.ada for b in self.blocks] + [self.final_ada, self.final])
        if self.refine is not None:  # conv layers as torch initialises them, the last one zero: starts as no-op
            for m in self.refine:
                if isinstance(m, nn.Conv2d):
                    m.reset_parameters()
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        if self.base_conv is not None:
            self.base_conv.initialize_weights()

    # ------------------------------------------------------------ patches
    def _patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, 3, T, H, W) -> (B, T*H'*W', 3*p*p) and the token grid (T, H', W')."""
        B, C, T, H, W = x.shape
        p = self.config.patch
        t = x.view(B, C, T, H // p, p, W // p, p).permute(0, 2, 3, 5, 1, 4, 6)  # (B, T, H', W', C, p, p)
        return t.reshape(B, T * (H // p) * (W // p), C * p * p), (T, H // p, W // p)

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        T, h, w = grid
        p = self.config.patch
        B = tokens.shape[0]
        x = tokens.view(B, T, h, w, 3, p, p).permute(0, 4, 1, 2, 5, 3, 6)  # (B, 3, T, h, p, w, p)
        return x.reshape(B, 3, T, h * p, w * p)

    @staticmethod
    def _grid_pos(grid, device) -> torch.Tensor:
        tt, hh, ww = torch.meshgrid(*(torch.arange(n, device=device) for n in grid), indexing="ij")
        return torch.stack([tt, hh, ww], -1).view(-1, 3)

    def upsample(self, base: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, h, w) in [-1, 1] -> bicubic x scale per frame."""
        B, C, T, h, w = base.shape
        s = self.config.scale
        frames = base.transpose(1, 2).reshape(B * T, C, h, w)
        up = F.interpolate(frames, scale_factor=s, mode="bicubic", align_corners=False)
        return up.view(B, T, C, h * s, w * s).transpose(1, 2)

    # ------------------------------------------------------------ conditions
    def embed_conditions(self, images: list[list[tuple[int, torch.Tensor]]],
                         text: list[torch.Tensor | None] | None = None) -> SRConditions:
        """Per request: reference images as (slot, (3, H, W) in [-1, 1]) (fitted to cond_side, kind IMAGE for
        slots 1-8 and SUBJECT above) and optional text states (L, text_dim); plus one null token."""
        c = self.config
        dev = self.null_token.device
        seqs, poss = [], []
        for b, pieces in enumerate(images):
            toks = [self.null_token[0] + self.type_embed.weight[NULL]]
            pos = [torch.zeros(1, 3, dtype=torch.long, device=dev)]
            states = None if text is None else text[b]
            if states is not None and self.text_embed is not None:
                toks.append(self.text_embed(states.to(dev)) + self.type_embed.weight[TEXT])
                pos.append(torch.zeros(states.shape[0], 3, dtype=torch.long, device=dev))
            for slot, img in pieces:
                img = F.interpolate(img[None].float().to(dev), size=(c.cond_side, c.cond_side), mode="bilinear",
                                    align_corners=False, antialias=True)
                t, grid = self._patchify(img[:, :, None])  # one-frame clip
                kind = IMAGE if slot <= 8 else SUBJECT
                toks.append(self.image_embed(t[0]) + self.type_embed.weight[kind] + self.slot_embed.weight[slot])
                pos.append(self._grid_pos(grid, dev))
            seqs.append(torch.cat(toks))
            poss.append(torch.cat(pos))
        L = max(s.shape[0] for s in seqs)
        B = len(seqs)
        tokens = torch.zeros(B, L, c.dim, device=dev, dtype=seqs[0].dtype)
        pos = torch.zeros(B, L, 3, dtype=torch.long, device=dev)
        mask = torch.zeros(B, L, dtype=torch.bool, device=dev)
        for i, (s, p) in enumerate(zip(seqs, poss)):
            tokens[i, : len(s)], pos[i, : len(s)], mask[i, : len(s)] = s, p, True
        return SRConditions(tokens, pos, mask)

    def condition_cache(self, cond: SRConditions) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer condition (keys, values): computed once per request (conditions never see targets)."""
        angles = rope_angles(cond.pos, self.config.rope_split, self.config.rope_theta)
        h, cache = cond.tokens, []
        for blk in self.blocks:
            h, kv = blk.cond_forward(h, angles, cond.mask)
            cache.append(kv)
        return cache

    # ------------------------------------------------------------ forward
    def _attend(self):
        c = self.config
        if c.attention == "dense":
            return lambda q, k, v, ck, cv, cm: nabla.attention(q, k, v, "dense", cond_k=ck, cond_v=cv, cond_valid=cm)
        block = c.nabla_tile[0] * c.nabla_tile[1] * c.nabla_tile[2]
        s = nabla.NablaSettings(block=block, threshold=c.nabla_threshold, query_group=c.nabla_query_group,
                                dense_above=c.nabla_dense_above)
        return lambda q, k, v, ck, cv, cm: nabla.attention(q, k, v, "nabla", cond_k=ck, cond_v=cv, cond_valid=cm,
                                                           settings=s)

    def forward(self, base: torch.Tensor, cond: SRConditions, level: torch.Tensor | None = None,
                cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """base (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, h * scale, w * scale): bicubic + the predicted residual.
        `level` (B,) is the base clip's degradation level in [0, 1] (0 when not given)."""
        c = self.config
        B = base.shape[0]
        up = self.upsample(base)
        tokens, grid = self._patchify(up)
        x = self.x_embed(tokens)
        level = torch.zeros(B, device=base.device) if level is None else level.to(base.device)
        temb = self.level_embed(timestep_embedding(level * 1000.0, 256))
        pos = self._grid_pos(grid, base.device)[None].expand(B, -1, -1)
        angles = rope_angles(pos, c.rope_split, c.rope_theta)
        if cache is None:
            cache = self.condition_cache(cond)
        window = tuple(min(w, g) for w, g in zip(c.window, grid))
        n_windows = (grid[0] // window[0]) * (grid[1] // window[1]) * (grid[2] // window[2])
        tile = c.nabla_tile if c.attention == "nabla" else None  # NABLA's blocks: tiles of a window
        perms = []
        for shifted in (False, True):
            perm = window_permutation(grid, window, shifted, tile).to(base.device)
            perms.append((perm, perm.argsort()))
        attend = self._attend()
        for i, (blk, (ck, cv)) in enumerate(zip(self.blocks, cache)):
            perm, inv = perms[i % 2]
            x = blk.target_forward_windows(x, angles, temb, ck, cv, cond.mask, perm, inv, n_windows, attend)
        shift, scale = self.final_ada(temb)[:, None].chunk(2, dim=-1)
        out = self.final(self.final_norm(x) * (1 + scale) + shift)
        y = up + self._unpatchify(out, grid)
        if self.base_conv is not None:
            y = y + self.base_conv(base, level)
        if self.refine is not None:  # per frame: (B, 3, T, H, W) -> (B T, 3, H, W) and back
            Bq, C, T, H, W = y.shape
            f = y.transpose(1, 2).reshape(Bq * T, C, H, W)
            y = (f + self.refine(f)).view(Bq, T, C, H, W).transpose(1, 2)
        return y


class BaseConvPath(nn.Module):
    """Sub-pixel detail from the base clip itself: (B, 3, T, h, w) and the degradation level ->
    a (B, 3, T, h * scale, w * scale) residual. Convolutions at the base resolution are 16x cheaper than at
    the output's; each residual block is a 3 x 3 spatial then a 3-frame temporal convolution ((2+1)D), so an
    edge's sub-pixel position, which the renderer's rounding hides in one frame and shows across a moving
    subject's frames, can be read; the last layer gives scale x scale values per base pixel (pixel shuffle)."""

    def __init__(self, ch: int, depth: int, scale: int):
        super().__init__()
        self.scale = scale
        self.inp = nn.Conv3d(4, ch, 3, padding=1)  # RGB + the degradation level as a constant channel
        self.spatial = nn.ModuleList([nn.Conv3d(ch, ch, (1, 3, 3), padding=(0, 1, 1)) for _ in range(depth)])
        self.temporal = nn.ModuleList([nn.Conv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0)) for _ in range(depth)])
        self.out = nn.Conv3d(ch, 3 * scale * scale, (1, 3, 3), padding=(0, 1, 1))

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                m.reset_parameters()
        nn.init.zeros_(self.out.weight)  # starts as no change
        nn.init.zeros_(self.out.bias)

    def zero_blocks_from(self, first: int) -> None:
        """Blocks `first`.. become identities (their temporal convolution zeroed): how a deeper path is grown
        into a trained one without changing what it computes."""
        for tp in self.temporal[first:]:
            nn.init.zeros_(tp.weight)
            nn.init.zeros_(tp.bias)

    def forward(self, base: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        B, C, T, h, w = base.shape
        s = self.scale
        lv = level.to(base.dtype).view(B, 1, 1, 1, 1).expand(B, 1, T, h, w)
        x = F.silu(self.inp(torch.cat([base, lv], 1)))  # (B, ch, T, h, w)
        for sp, tp in zip(self.spatial, self.temporal):
            x = x + tp(F.silu(sp(x)))
        r = self.out(F.silu(x))  # (B, 3 * s * s, T, h, w)
        r = r.view(B, 3, s, s, T, h, w).permute(0, 1, 4, 5, 2, 6, 3)  # (B, 3, T, h, s, w, s)
        return r.reshape(B, 3, T, h * s, w * s)


def _refiner(ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(ch, 3, 3, padding=1))


def snap_to_base(out: torch.Tensor, base: torch.Tensor, threshold: float, scale: int) -> torch.Tensor:
    """Palette snapping: out (T, H, W, 3) and base (T, h, w, 3) uint8 with H = h * scale; each output pixel whose
    nearest colour among the 3 x 3 base pixels around its base pixel (edges repeated) is closer than `threshold`
    (Euclidean, 0-255 units) becomes that colour; the others stay. The colours put in are the base clip's own, so
    snapping invents nothing; pixels between two candidates (an uncertain edge) keep the stage's blend, which is
    what the mean-squared error asks for there."""
    if threshold <= 0:
        return out
    T, h, w, _ = base.shape
    b = F.pad(base.permute(0, 3, 1, 2).float(), (1, 1, 1, 1), mode="replicate")  # (T, 3, h + 2, w + 2)
    cands = torch.stack([b[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], 1)  # (T, 9, 3, h, w)
    cands = cands.repeat_interleave(scale, -2).repeat_interleave(scale, -1)  # (T, 9, 3, H, W)
    o = out.permute(0, 3, 1, 2).float()[:, None]  # (T, 1, 3, H, W)
    d2 = ((cands - o) ** 2).sum(2)  # (T, 9, H, W)
    best, idx = d2.min(1)
    near = torch.gather(cands, 1, idx[:, None, None].expand(-1, 1, 3, -1, -1))[:, 0]  # (T, 3, H, W)
    snapped = torch.where((best < threshold**2)[:, None], near, o[:, 0])
    return snapped.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 3, T, H, W) -> area average over scale x scale pixels: what the output says about the base clip."""
    B, C, T, H, W = x.shape
    return F.avg_pool2d(x.transpose(1, 2).reshape(B * T, C, H, W), scale).view(B, T, C, H // scale, W // scale) \
        .transpose(1, 2)
