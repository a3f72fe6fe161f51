"""NABLA block-sparse attention (Kandinsky 5.0) and the one attention dispatcher.

NABLA decides, per query block, which key blocks are worth computing: queries and keys are
average-pooled over blocks of `block` tokens, a softmax over the pooled map says how the
block's attention mass spreads over key blocks, and a CDF threshold keeps the smallest set of
key blocks holding at least `threshold` of it; a sliding-tile mask over the (T, H, W) grid of
blocks may be united with it so every block always sees its neighbourhood. The mask is made by
pure functions (`pool_blocks`, `pooled_attention_map`, `cdf_mask`, `sliding_tile_mask`,
`nabla_mask`), tested against hand-computed masks.

Blocks only mean something when a block is a compact piece of the video: reorder the tokens
once before the transformer blocks so each run of `block` tokens is one (t, h, w) tile
(`tile_permutation`) and restore the order once after.

Two ways to run the masked attention, with one result:
- `gathered_block_sparse_attention` (CPU): per query block, its kept key / value blocks are
  gathered and attended with a batched matmul and a softmax over the kept keys only, so the
  dropped blocks cost nothing. torch's flex attention does not skip blocks on CPU (FACTS).
- `flex_block_sparse_attention` (CUDA): `torch.nn.attention.flex_attention` with a `BlockMask`,
  imported only when called (compiled on first use on CUDA, never at import).

`attention(q, k, v, mode="dense" | "nabla", ...)` is the dispatcher the models call. Condition
keys (clean tokens every query sees, DESIGN 3.3) can be passed beside the self keys: they are
never sparsified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

MODES = ("dense", "nabla")


@dataclass
class NablaSettings:
    block: int = 64  # tokens per block (one tile of the reordered token grid)
    threshold: float = 0.9  # CDF mass each query block keeps; >= 1 keeps every block
    sta_window: tuple[int, int, int] | None = None  # sliding-tile window in blocks (t, h, w), odd sizes; None = off
    backend: str = "auto"  # "auto" (flex on CUDA, gathered elsewhere), "gather" or "flex"
    query_group: int = 1  # runs of this many query blocks keep the union of their key blocks (group_query_blocks)
    # kept fraction of blocks above which the gathered path runs plain dense attention instead (every
    # block: exact, and faster): gathering a block costs about as much as attending to it, so below
    # about 60% sparsity the gathered path is slower than dense (benchmarks.nabla, kernel rows); masked
    # dense attention with the expanded mask is slower still on CPU
    dense_above: float = 0.4
    chunk_bytes: int = 64 << 20  # the gathered path's working-set budget per batched matmul


# ---------------------------------------------------------------- token order
def tile_permutation(grid: tuple[int, int, int], tile: tuple[int, int, int]) -> torch.Tensor:
    """Raster order (t, h, w) -> tile order: each run of tt*th*tw tokens is one tile, tiles in raster
    order over the (T/tt, H/th, W/tw) tile grid. Returns `perm` with `x[:, perm]` in tile order;
    `x_tiled[:, perm.argsort()]` restores it."""
    T, H, W = grid
    tt, th, tw = tile
    if T % tt or H % th or W % tw:
        raise ValueError(f"token grid {grid} is not a whole number of {tile} tiles: pick a tile dividing it")
    idx = torch.arange(T * H * W).view(T // tt, tt, H // th, th, W // tw, tw)
    return idx.permute(0, 2, 4, 1, 3, 5).reshape(-1)  # (T/tt, H/th, W/tw, tt, th, tw) flattened


# ---------------------------------------------------------------- mask functions
def n_blocks(length: int, block: int) -> int:
    return -(-length // block)


def pool_blocks(x: torch.Tensor, block: int, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, L, D) -> block means (B, H, n, D) and valid-token counts per block (B, 1, n).
    The last block may be partial (its mean is over its real tokens); `valid` (B, L) bool leaves
    padding tokens out of the means."""
    B, H, L, D = x.shape
    n = n_blocks(L, block)
    w = torch.ones(x.shape[0], L, dtype=x.dtype, device=x.device) if valid is None else valid.to(x.dtype)
    xs = F.pad(x * w[:, None, :, None], (0, 0, 0, n * block - L)).view(B, H, n, block, D).sum(-2)
    count = F.pad(w, (0, n * block - L)).view(w.shape[0], 1, n, block).sum(-1)  # (B, 1, n)
    return xs / count.clamp(min=1)[..., None], count


def pooled_attention_map(q: torch.Tensor, k: torch.Tensor, block: int, scale: float | None = None,
                         key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over key blocks of pooled queries . pooled keys: (B, H, nq, nk), rows sum to 1.
    Key blocks without a valid token get probability 0."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    qp, _ = pool_blocks(q, block)
    kp, kcount = pool_blocks(k, block, key_valid)
    logits = (qp @ kp.transpose(-1, -2)).float() * scale  # (B, H, nq, nk)
    logits = logits.masked_fill(kcount[:, :, None, :] == 0, float("-inf"))
    return logits.softmax(-1)


def cdf_mask(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per row, the smallest set of entries whose probability mass reaches `threshold`: entries are
    taken largest first while the mass taken before them is below the threshold (so the top entry is
    always kept). threshold >= 1 keeps everything."""
    if threshold >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)
    p, order = probs.sort(-1, descending=True)
    before = p.cumsum(-1) - p  # mass of the larger entries
    keep_sorted = before < threshold
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


@lru_cache(maxsize=32)
def _sliding_tile_mask(tiles: tuple[int, int, int], window: tuple[int, int, int]) -> torch.Tensor:
    T, H, W = tiles
    t, h, w = torch.meshgrid(torch.arange(T), torch.arange(H), torch.arange(W), indexing="ij")
    pos = torch.stack([t, h, w], -1).view(-1, 3)  # (n, 3) tile coordinates in raster order
    reach = torch.tensor([wi // 2 for wi in window])
    return ((pos[:, None, :] - pos[None, :, :]).abs() <= reach).all(-1)  # (n, n)


def sliding_tile_mask(tiles: tuple[int, int, int], window: tuple[int, int, int]) -> torch.Tensor:
    """Block mask (n, n), n = T*H*W tiles in raster order: tile i sees tile j when they are within
    window // 2 tiles of each other on every axis (sliding-tile attention, as Kandinsky 5's STA)."""
    if any(w % 2 == 0 or w < 1 for w in window):
        raise ValueError(f"sliding-tile window {window}: each size must be odd (1, 3, 5, ...)")
    return _sliding_tile_mask(tuple(tiles), tuple(window))


def nabla_mask(q: torch.Tensor, k: torch.Tensor, block: int, threshold: float,
               sta: torch.Tensor | None = None, key_valid: torch.Tensor | None = None,
               scale: float | None = None) -> torch.Tensor:
    """NABLA's block mask (B, H, nq, nk) bool: the CDF-threshold mask of the pooled attention map,
    united with `sta` ((nq, nk) bool) when given; key blocks without a valid token are never kept."""
    with torch.no_grad():  # a choice of blocks, not a function to differentiate
        probs = pooled_attention_map(q, k, block, scale, key_valid)
        mask = cdf_mask(probs, threshold)
    if sta is not None:
        mask = mask | sta.to(mask.device)
    return mask & (probs > 0) if key_valid is not None else mask


def group_query_blocks(mask: torch.Tensor, group: int) -> torch.Tensor:
    """Each run of `group` query blocks keeps the union of their key blocks: (..., nq, nk) -> the same
    shape. On CPU the gathered attention then copies each kept key block once per group instead of
    once per query block (the copies cost about as much as the attention on the kept blocks) and
    runs larger matmuls; every query still sees all its own blocks, so only more is computed."""
    if group <= 1:
        return mask
    nq = mask.shape[-2]
    ng = n_blocks(nq, group)
    padded = F.pad(mask, (0, 0, 0, ng * group - nq))
    union = padded.view(*mask.shape[:-2], ng, group, mask.shape[-1]).any(-2)
    return union.repeat_interleave(group, -2)[..., :nq, :]


def expand_block_mask(mask: torch.Tensor, block: int, lq: int, lk: int) -> torch.Tensor:
    """(..., nq, nk) block mask -> (..., lq, lk) token mask."""
    return mask.repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :lq, :lk]


def sparsity(mask: torch.Tensor) -> float:
    """The fraction of blocks dropped."""
    return 1.0 - mask.float().mean().item()


# ---------------------------------------------------------------- attention with a block mask
def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(x, (0, 0, 0, length - x.shape[-2]))


def _blocks_with_conditions(k, v, mask, block, key_valid, cond_k, cond_v, cond_valid):
    """Self keys padded to whole blocks, then the condition keys as blocks every query keeps:
    keys, values (B, H, (nk + nc) * block, D), token validity (B, (nk + nc) * block) and the block
    mask (B, H, nq, nk + nc)."""
    B, H, Lk, D = k.shape
    nk = n_blocks(Lk, block)
    valid = torch.zeros(B, nk * block, dtype=torch.bool, device=k.device)
    valid[:, :Lk] = True if key_valid is None else key_valid
    blocks = mask.expand(B, H, mask.shape[-2], nk)
    keys, vals = _pad_to(k, nk * block), _pad_to(v, nk * block)
    if cond_k is not None:
        Lc = cond_k.shape[2]
        nc = n_blocks(Lc, block)
        cv = torch.zeros(B, nc * block, dtype=torch.bool, device=k.device)
        cv[:, :Lc] = True if cond_valid is None else cond_valid
        valid = torch.cat([valid, cv], 1)
        seen = cv.view(B, 1, 1, nc, block).any(-1).expand(B, H, mask.shape[-2], nc)
        blocks = torch.cat([blocks, seen], -1)
        keys = torch.cat([keys, _pad_to(cond_k, nc * block)], 2)
        vals = torch.cat([vals, _pad_to(cond_v, nc * block)], 2)
    return keys, vals, valid, blocks


def gathered_block_sparse_attention(q, k, v, mask, block, *, key_valid=None, scale=None, cond_k=None, cond_v=None,
                                    cond_valid=None, query_group=1, chunk_bytes=64 << 20):
    """Attention of q (B, H, Lq, D) over k, v (B, H, Lk, D) where query block i sees key block j only
    when mask[b, h, i, j] ((B or 1, H or 1, nq, nk) bool), and over the condition keys cond_k, cond_v
    (B, H, Lc, D) in full. Dropped blocks are never computed: the rows (b, h, query block) are sorted
    by how many blocks they keep and batched in chunks; each chunk gathers its kept key / value blocks
    and runs one fused attention (a softmax over the kept keys only). `key_valid` (B, Lk) /
    `cond_valid` (B, Lc) bool mask padding keys; the last block may be partial. With query_group g,
    a row is g query blocks and keeps the union of their blocks (= group_query_blocks(mask, g))."""
    B, H, Lq, D = q.shape
    g = max(1, query_group)
    nq = n_blocks(n_blocks(Lq, block), g)  # rows per head
    qblock = g * block  # query tokens per row
    fine = F.pad(mask, (0, 0, 0, nq * g - mask.shape[-2]))  # (.., nq * g query blocks, nk)
    mask = fine.view(*fine.shape[:-2], nq, g, fine.shape[-1]).any(-2)  # (.., nq rows, nk)
    keys, vals, valid, blocks = _blocks_with_conditions(k, v, mask, block, key_valid, cond_k, cond_v, cond_valid)
    nk = blocks.shape[-1]
    qb = _pad_to(q, nq * qblock).reshape(B * H * nq, 1, qblock, D)  # (R, 1, qblock, D), R rows
    kb = keys.reshape(B * H, nk, block, D)  # (BH, nk, block, D)
    vb = vals.reshape(B * H, nk, block, D)
    validb = valid.view(B, nk, block)
    partial_keys = not bool(valid.all())
    m = blocks.reshape(B * H * nq, nk)
    counts = m.sum(-1)
    order = torch.argsort(counts, stable=True)
    kept = torch.sort(m.to(torch.uint8), dim=-1, descending=True, stable=True).indices  # kept blocks first
    out = q.new_zeros(B * H * nq, 1, qblock, D)
    c_sorted = counts[order].tolist()
    R = len(c_sorted)
    per_block = block * D * q.element_size() * 3 + qblock * block * 4  # k, v, their share of q / out, scores
    start = next((i for i, c in enumerate(c_sorted) if c > 0), R)  # rows that keep nothing stay zero
    while start < R:
        end = start + 1
        # a chunk holds rows that keep the same number of blocks: with every key valid it needs no mask,
        # and torch's fused CPU kernel (flash) runs only without one (a mask costs it 1.5-2x)
        while (end < R and (end + 1 - start) * c_sorted[end] * per_block <= chunk_bytes
               and (partial_keys or c_sorted[end] == c_sorted[start])):
            end += 1
        rows, kmax = order[start:end], c_sorted[end - 1]
        r = len(rows)
        idx = kept[rows, :kmax]  # (r, kmax) key block indices
        bh = rows // nq
        kg = kb[bh[:, None], idx].view(r, 1, kmax * block, D)  # (r, 1, kmax*block, D)
        vg = vb[bh[:, None], idx].view(r, 1, kmax * block, D)
        kval = None
        if partial_keys or c_sorted[start] != kmax:  # padding keys, or rows keeping fewer than kmax blocks
            slot = torch.arange(kmax, device=q.device)[None] < counts[rows][:, None]  # (r, kmax)
            kval = (validb[(bh // H)[:, None], idx] & slot[..., None]).view(r, 1, 1, kmax * block)
        out[rows] = F.scaled_dot_product_attention(qb[rows], kg, vg, attn_mask=kval, scale=scale)
        start = end
    return out.view(B, H, nq * qblock, D)[:, :, :Lq]


def masked_dense_attention(q, k, v, mask, block, *, key_valid=None, scale=None, cond_k=None, cond_v=None,
                           cond_valid=None):
    """The reference: dense attention with the block mask expanded to tokens (every score computed);
    condition keys, when given, come first and are seen by every query."""
    tok = expand_block_mask(mask, block, q.shape[2], k.shape[2])
    if key_valid is not None:
        tok = tok & key_valid[:, None, None, :]
    if cond_k is not None:
        B, H, Lq = q.shape[:3]
        cv = torch.ones(B, cond_k.shape[2], dtype=torch.bool, device=q.device) if cond_valid is None else cond_valid
        tok = torch.cat([cv[:, None, None, :].expand(B, H, Lq, -1), tok.expand(B, H, Lq, -1)], -1)
        k, v = torch.cat([cond_k, k], 2), torch.cat([cond_v, v], 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=tok, scale=scale)


_compiled_flex = None


def flex_block_sparse_attention(q, k, v, mask, block, *, key_valid=None, scale=None, cond_k=None, cond_v=None,
                                cond_valid=None):
    """The same attention through torch's flex attention with a BlockMask (sparse on CUDA, where it is
    compiled on first use; eager and dense elsewhere, so CPU tests can check it). Condition keys are
    appended after the self keys as blocks every query keeps."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, H, Lq, D = q.shape
    nq = n_blocks(Lq, block)
    keys, vals, valid, blocks = _blocks_with_conditions(k, v, mask, block, key_valid, cond_k, cond_v, cond_valid)
    blocks = blocks.contiguous()

    def mask_mod(b, h, qi, ki):  # eager flex ignores the block lists: the mask must say it too
        return blocks[b, h, qi // block, ki // block] & valid[b, ki]

    kv_num = blocks.sum(-1).to(torch.int32)
    kv_idx = torch.sort(blocks.to(torch.uint8), dim=-1, descending=True, stable=True).indices.to(torch.int32)
    bm = BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=block, mask_mod=mask_mod,
                                  seq_lengths=(nq * block, keys.shape[2]))
    fn = flex_attention
    if q.is_cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        fn = _compiled_flex
    out = fn(_pad_to(q, nq * block), keys, vals, block_mask=bm, scale=scale)
    return out[:, :, :Lq]


# ---------------------------------------------------------------- the dispatcher
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str = "dense", *,
              key_valid: torch.Tensor | None = None, cond_k: torch.Tensor | None = None,
              cond_v: torch.Tensor | None = None, cond_valid: torch.Tensor | None = None,
              settings: NablaSettings | None = None, tiles: tuple[int, int, int] | None = None,
              scale: float | None = None, return_mask: bool = False):
    """Attention of q (B, H, Lq, D) over the self keys k, v (B, H, Lk, D) and, when given, condition
    keys cond_k, cond_v (B, H, Lc, D) that every query sees. `key_valid` (B, Lk) / `cond_valid` (B, Lc)
    mark real tokens. mode "dense": every score; "nabla": the self part block-sparse by NABLA's mask
    (tokens must already be in tile order; `tiles` is the (T, H, W) grid of blocks for the
    sliding-tile window). With return_mask, (output, block mask or None)."""
    if mode not in MODES:
        raise ValueError(f"attention mode {mode!r}: use one of {MODES}")
    B, H, Lq, D = q.shape
    if mode == "dense":
        keys, vals, valid = k, v, key_valid
        if cond_k is not None:
            keys, vals = torch.cat([cond_k, k], 2), torch.cat([cond_v, v], 2)
            if key_valid is not None or cond_valid is not None:
                ones = lambda n: torch.ones(B, n, dtype=torch.bool, device=q.device)  # noqa: E731
                valid = torch.cat([ones(cond_k.shape[2]) if cond_valid is None else cond_valid,
                                   ones(k.shape[2]) if key_valid is None else key_valid], 1)
        out = F.scaled_dot_product_attention(q, keys, vals, scale=scale,
                                             attn_mask=None if valid is None else valid[:, None, None, :])
        return (out, None) if return_mask else out
    s = settings or NablaSettings()
    sta = None
    if s.sta_window is not None:
        if tiles is None:
            raise ValueError("a sliding-tile window needs the (T, H, W) grid of blocks: pass tiles=")
        sta = sliding_tile_mask(tiles, s.sta_window)
    mask = group_query_blocks(nabla_mask(q, k, s.block, s.threshold, sta, key_valid, scale), s.query_group)
    backend = s.backend if s.backend != "auto" else ("flex" if q.is_cuda else "gather")
    if backend == "flex":
        out = flex_block_sparse_attention(q, k, v, mask, s.block, key_valid=key_valid, scale=scale,
                                          cond_k=cond_k, cond_v=cond_v, cond_valid=cond_valid)
    elif backend == "gather" and mask.float().mean().item() > s.dense_above:
        out = attention(q, k, v, "dense", key_valid=key_valid, cond_k=cond_k, cond_v=cond_v, cond_valid=cond_valid,
                        scale=scale)
    elif backend == "gather":
        out = gathered_block_sparse_attention(q, k, v, mask, s.block, key_valid=key_valid, scale=scale,
                                              cond_k=cond_k, cond_v=cond_v, cond_valid=cond_valid,
                                              query_group=s.query_group, chunk_bytes=s.chunk_bytes)
    else:
        raise ValueError(f"NABLA backend {s.backend!r}: use 'auto', 'gather' or 'flex'")
    return (out, mask) if return_mask else out
