"""NABLA (model/nabla.py): mask functions against hand-computed masks; block-sparse attention equal
to dense attention where the mask keeps everything and to masked dense attention otherwise."""

import math

import pytest
import torch
import torch.nn.functional as F

from model import nabla as nb


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- mask functions
def test_pool_blocks_partial_last_block():
    x = torch.arange(5.0).view(1, 1, 5, 1)  # tokens 0..4, blocks of 2: {0,1} {2,3} {4}
    means, count = nb.pool_blocks(x, 2)
    assert means.flatten().tolist() == [0.5, 2.5, 4.0]
    assert count.flatten().tolist() == [2, 2, 1]
    valid = torch.tensor([[True, False, True, True, True]])  # token 1 is padding
    means, count = nb.pool_blocks(x, 2, valid)
    assert means.flatten().tolist() == [0.0, 2.5, 4.0]
    assert count.flatten().tolist() == [1, 2, 1]


def test_cdf_mask_by_hand():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    # row 0 sorted 0.5 0.3 0.2, mass before each 0 0.5 0.8; row 1 sorted 0.6 0.3 0.1, before 0 0.6 0.9
    assert nb.cdf_mask(p, 0.3).tolist() == [[True, False, False], [False, True, False]]
    assert nb.cdf_mask(p, 0.55).tolist() == [[True, True, False], [False, True, False]]
    assert nb.cdf_mask(p, 0.7).tolist() == [[True, True, False], [False, True, True]]
    assert nb.cdf_mask(p, 0.85).tolist() == [[True, True, True], [False, True, True]]
    assert nb.cdf_mask(p, 0.95).tolist() == [[True, True, True], [True, True, True]]
    assert nb.cdf_mask(p, 1.0).all()


def _qk_with_pooled_probs(probs, block=2):
    """q, k (1, 1, L, 1) whose pooled map is softmax(log probs) = probs: one query block of ones, key
    block j two tokens log p_j -+ 0.25 (mean log p_j)."""
    logp = torch.tensor(probs).log()
    k = torch.stack([logp - 0.25, logp + 0.25], 1).view(1, 1, -1, 1)
    q = torch.ones(1, 1, block, 1)
    return q, k


def test_pooled_map_and_nabla_mask_by_hand():
    q, k = _qk_with_pooled_probs([0.1, 0.45, 0.15, 0.3])
    probs = nb.pooled_attention_map(q, k, 2)
    assert torch.allclose(probs.flatten(), torch.tensor([0.1, 0.45, 0.15, 0.3]), atol=1e-6)
    # sorted 0.45 (block 1), 0.3 (block 3), 0.15 (block 2), 0.1 (block 0); mass before 0 0.45 0.75 0.9
    assert nb.nabla_mask(q, k, 2, 0.4).flatten().tolist() == [False, True, False, False]
    assert nb.nabla_mask(q, k, 2, 0.5).flatten().tolist() == [False, True, False, True]
    assert nb.nabla_mask(q, k, 2, 0.8).flatten().tolist() == [False, True, True, True]
    assert nb.nabla_mask(q, k, 2, 0.95).flatten().tolist() == [True, True, True, True]
    # united with a sliding-tile mask that always keeps block 0
    sta = torch.tensor([[True, False, False, False]])
    assert nb.nabla_mask(q, k, 2, 0.4, sta).flatten().tolist() == [True, True, False, False]
    # a key block of padding only is never kept, even at threshold 1
    valid = torch.tensor([[True] * 6 + [False, False]])
    assert nb.nabla_mask(q, k, 2, 1.0, key_valid=valid).flatten().tolist() == [True, True, True, False]


def test_sliding_tile_mask_by_hand():
    # 4 tiles in a row, window 3: each sees itself and its neighbours
    m = nb.sliding_tile_mask((1, 1, 4), (1, 1, 3))
    assert m.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    # 2x2x2 tiles, window 1 in time, 3 in space: a tile sees exactly the tiles of its own frame
    m = nb.sliding_tile_mask((2, 2, 2), (1, 3, 3))
    frame = torch.arange(8) // 4
    assert torch.equal(m, frame[:, None] == frame[None, :])
    # 3 frames of one tile, window 3 in time
    assert nb.sliding_tile_mask((3, 1, 1), (3, 1, 1)).int().tolist() == [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="odd"):
        nb.sliding_tile_mask((2, 2, 2), (2, 3, 3))


def test_tile_permutation_by_hand():
    perm = nb.tile_permutation((1, 4, 4), (1, 2, 2))
    assert perm.tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    x = torch.arange(16)
    assert torch.equal(x[perm][perm.argsort()], x)
    with pytest.raises(ValueError, match="tile"):
        nb.tile_permutation((1, 5, 4), (1, 2, 2))


def test_expand_block_mask():
    m = torch.tensor([[True, False], [False, True]])
    tok = nb.expand_block_mask(m, 2, 3, 4)
    assert tok.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]


# ---------------------------------------------------------------- attention
def random_mask(B, H, nq, nk, p=0.4, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(B, H, nq, nk, generator=g) < p
    m[..., torch.arange(min(nq, nk)), torch.arange(min(nq, nk))] = True  # every row keeps a block
    return m


@pytest.mark.parametrize("L", [256, 200])  # 200: a partial last block of 8 tokens
def test_gathered_equals_dense_when_everything_kept(L):
    B, H, D, blk = 2, 3, 16, 64
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, D, seed=3)
    n = nb.n_blocks(L, blk)
    full = torch.ones(1, 1, n, n, dtype=torch.bool)
    out = nb.gathered_block_sparse_attention(q, k, v, full, blk)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


@pytest.mark.parametrize("Lq,Lk", [(256, 256), (150, 150), (100, 170)])  # padded last blocks; cross
def test_gathered_equals_masked_dense(Lq, Lk):
    B, H, D, blk = 2, 2, 8, 32
    q, k, v = rand(B, H, Lq, D, seed=4), rand(B, H, Lk, D, seed=5), rand(B, H, Lk, D, seed=6)
    mask = random_mask(B, H, nb.n_blocks(Lq, blk), nb.n_blocks(Lk, blk))
    ref = nb.masked_dense_attention(q, k, v, mask, blk)
    out = nb.gathered_block_sparse_attention(q, k, v, mask, blk)
    assert torch.allclose(out, ref, atol=1e-5)
    # a small working-set budget: many chunks, the same result
    out = nb.gathered_block_sparse_attention(q, k, v, mask, blk, chunk_bytes=1)
    assert torch.allclose(out, ref, atol=1e-5)
    # padding keys
    valid = torch.ones(B, Lk, dtype=torch.bool)
    valid[1, 3:40] = False
    ref = nb.masked_dense_attention(q, k, v, mask, blk, key_valid=valid)
    assert torch.allclose(nb.gathered_block_sparse_attention(q, k, v, mask, blk, key_valid=valid), ref, atol=1e-5)


def test_gathered_never_reads_dropped_blocks():
    """NaN values in a dropped key block leave the gathered output finite: that block is not computed
    (masked dense attention multiplies it by zero and returns NaN)."""
    B, H, L, D, blk = 1, 2, 128, 8, 32
    q, k, v = rand(B, H, L, D, seed=7), rand(B, H, L, D, seed=8), rand(B, H, L, D, seed=9)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 2] = False  # key block 2 dropped for every query block
    clean = nb.gathered_block_sparse_attention(q, k, v, mask, blk)
    v_nan = v.clone()
    v_nan[:, :, 2 * blk : 3 * blk] = float("nan")
    out = nb.gathered_block_sparse_attention(q, k, v_nan, mask, blk)
    assert torch.isfinite(out).all() and torch.allclose(out, clean)
    assert torch.isnan(nb.masked_dense_attention(q, k, v_nan, mask, blk)).any()


def test_gathered_gradients_match_masked_dense():
    B, H, L, D, blk = 1, 2, 96, 8, 32
    base = [rand(B, H, L, D, seed=s) for s in (10, 11, 12)]
    mask = random_mask(B, H, 3, 3, seed=2)
    grads = []
    for fn in (nb.gathered_block_sparse_attention, nb.masked_dense_attention):
        qkv = [t.clone().requires_grad_() for t in base]
        (fn(*qkv, mask, blk) ** 2).sum().backward()
        grads.append([t.grad for t in qkv])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_path_equals_masked_dense_on_cpu():
    """The CUDA path's code (flex attention + BlockMask) run eagerly on CPU: the same numbers."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    B, H, D, blk = 1, 2, 16, 32
    Lq = Lk = 150
    q, k, v = rand(B, H, Lq, D, seed=13), rand(B, H, Lk, D, seed=14), rand(B, H, Lk, D, seed=15)
    mask = random_mask(B, H, 5, 5, seed=3)
    out = nb.flex_block_sparse_attention(q, k, v, mask, blk)
    assert torch.allclose(out, nb.masked_dense_attention(q, k, v, mask, blk), atol=1e-5)
    ck, cv = rand(B, H, 20, D, seed=16), rand(B, H, 20, D, seed=17)
    out = nb.flex_block_sparse_attention(q, k, v, mask, blk, cond_k=ck, cond_v=cv)
    tok = torch.cat([torch.ones(B, H, Lq, 20, dtype=torch.bool), nb.expand_block_mask(mask, blk, Lq, Lk)], -1)
    ref = F.scaled_dot_product_attention(q, torch.cat([ck, k], 2), torch.cat([cv, v], 2), attn_mask=tok)
    assert torch.allclose(out, ref, atol=1e-5)


def test_dispatcher_dense_nabla_and_conditions():
    B, H, L, D = 1, 2, 200, 16
    q, k, v = rand(B, H, L, D, seed=18), rand(B, H, L, D, seed=19), rand(B, H, L, D, seed=20)
    dense = nb.attention(q, k, v, "dense")
    assert torch.allclose(dense, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    for gather_above in (0.4, 1.0):  # masked dense past 40% kept (the default), always gathered
        keep_all = nb.NablaSettings(block=32, threshold=1.0, dense_above=gather_above)
        assert torch.allclose(nb.attention(q, k, v, "nabla", settings=keep_all), dense, atol=1e-5)
    # sparse, with condition keys (two of them padding) every query sees
    ck, cv = rand(B, H, 12, D, seed=21), rand(B, H, 12, D, seed=22)
    cvalid = torch.ones(B, 12, dtype=torch.bool)
    cvalid[:, -2:] = False
    s = nb.NablaSettings(block=32, threshold=0.5, dense_above=1.0)  # always gathered
    out, mask = nb.attention(q, k, v, "nabla", cond_k=ck, cond_v=cv, cond_valid=cvalid, settings=s, return_mask=True)
    assert nb.sparsity(mask) > 0
    tok = torch.cat([cvalid[:, None, None, :].expand(B, H, L, 12), nb.expand_block_mask(mask, 32, L, L)], -1)
    ref = F.scaled_dot_product_attention(q, torch.cat([ck, k], 2), torch.cat([cv, v], 2), attn_mask=tok)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(nb.masked_dense_attention(q, k, v, mask, 32, cond_k=ck, cond_v=cv, cond_valid=cvalid),
                          ref, atol=1e-5)
    # dense with conditions = the concatenated keys; so is NABLA when it keeps more than dense_above
    out = nb.attention(q, k, v, "dense", cond_k=ck, cond_v=cv, cond_valid=cvalid)
    tok = torch.cat([cvalid, torch.ones(B, L, dtype=torch.bool)], 1)[:, None, None, :]
    assert torch.allclose(out, F.scaled_dot_product_attention(q, torch.cat([ck, k], 2), torch.cat([cv, v], 2),
                                                              attn_mask=tok), atol=1e-6)
    past = nb.NablaSettings(block=32, threshold=0.5, dense_above=0.0)
    assert torch.equal(nb.attention(q, k, v, "nabla", cond_k=ck, cond_v=cv, cond_valid=cvalid, settings=past), out)
    with pytest.raises(ValueError, match="mode"):
        nb.attention(q, k, v, "sparse")


def test_dispatcher_sliding_tiles_on_a_token_grid():
    """Tokens of a (4, 8, 8) grid in tile order, blocks of 2x4x4 (= 32 tokens): a (2, 2, 2) tile grid.
    A tiny threshold keeps only each block's top key block; the window (1, 3, 3) adds its frame's tiles."""
    T, Hh, W, D = 4, 8, 8, 16
    perm = nb.tile_permutation((T, Hh, W), (2, 4, 4))
    x = rand(1, 2, T * Hh * W, D, seed=23)[:, :, perm]
    s = nb.NablaSettings(block=32, threshold=1e-3, sta_window=(1, 3, 3), dense_above=1.0)
    out, mask = nb.attention(x, x, x, "nabla", settings=s, tiles=(2, 2, 2), return_mask=True)
    sta = nb.sliding_tile_mask((2, 2, 2), (1, 3, 3))
    assert (mask | ~sta).all()  # the window is always kept
    assert (mask.sum(-1) <= sta.sum(-1) + 1).all()  # plus at most the top block
    assert torch.allclose(out, nb.masked_dense_attention(x, x, x, mask, 32), atol=1e-5)
    with pytest.raises(ValueError, match="tiles"):
        nb.attention(x, x, x, "nabla", settings=s)


def test_group_query_blocks_by_hand():
    m = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
    # groups {0, 1} and {2}: the first two rows keep blocks 0 and 1, the last its own
    assert nb.group_query_blocks(m, 2).int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert torch.equal(nb.group_query_blocks(m, 1), m)


@pytest.mark.parametrize("group", [2, 3])
def test_gathered_query_groups_equal_masked_dense_with_the_union(group):
    B, H, D, blk, L = 1, 2, 8, 32, 230  # 8 query blocks, the last partial; groups of 3 leave one short
    q, k, v = rand(B, H, L, D, seed=24), rand(B, H, L, D, seed=25), rand(B, H, L, D, seed=26)
    mask = random_mask(B, H, 8, 8, p=0.2, seed=4)
    out = nb.gathered_block_sparse_attention(q, k, v, mask, blk, query_group=group)
    ref = nb.masked_dense_attention(q, k, v, nb.group_query_blocks(mask, group), blk)
    assert torch.allclose(out, ref, atol=1e-5)
    s = nb.NablaSettings(block=blk, threshold=0.6, query_group=group, dense_above=1.0)
    out, used = nb.attention(q, k, v, "nabla", settings=s, return_mask=True)
    assert torch.equal(used, nb.group_query_blocks(used, group))
    assert torch.allclose(out, nb.masked_dense_attention(q, k, v, used, blk), atol=1e-5)
