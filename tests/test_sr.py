"""The SR stage (model/sr.py) on tiny configs: shapes, bicubic at initialisation, save / load, windows
shifted on odd layers, condition cache, NABLA against dense, and a few training steps on OmniWorld."""

import dataclasses

import numpy as np
import torch

from model import sr as srm
from model.sr import SRConfig, SRStage, window_permutation


def tiny(**kw) -> SRConfig:
    base = dict(dim=32, depth=2, heads=2, rope_split=(4, 6, 6), window=(2, 2, 2), text_dim=16, cond_side=32)
    base.update(kw)
    return SRConfig(**base)


def perturbed(cfg: SRConfig, seed: int = 0) -> SRStage:
    """A stage whose zero-initialised layers are random: its output is not just bicubic."""
    torch.manual_seed(seed)
    m = SRStage(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ada" in name or name.startswith("final"):
                p.normal_(0, 0.05)
    return m.eval()


def inputs(B=1, T=4, side=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(B, 3, T, side, side, generator=g) * 2 - 1
    images = [[(1, torch.rand(3, 20, 20, generator=g) * 2 - 1), (9, torch.rand(3, 32, 32, generator=g) * 2 - 1)]
              for _ in range(B)]
    text = [torch.randn(5, 16, generator=g) for _ in range(B)]
    return base, images, text


def test_shapes_and_bicubic_at_initialisation():
    m = SRStage(tiny()).eval()
    base, images, text = inputs(B=2)
    cond = m.embed_conditions(images, text)
    assert cond.tokens.shape == (2, 1 + 5 + 16 + 16, 32)  # null, text, two 32x32 images in 8x8 patches
    with torch.no_grad():
        out = m(base, cond)
    assert out.shape == (2, 3, 4, 32, 32)
    assert torch.equal(out, m.upsample(base))  # zero-initialised output: exactly bicubic


def test_save_load_round_trip(tmp_path):
    m = perturbed(tiny(attention="nabla", nabla_tile=(1, 2, 2), nabla_threshold=0.7))
    base, images, text = inputs()
    with torch.no_grad():
        ref = m(base, m.embed_conditions(images, text), level=torch.tensor([0.3]))
    m.save_pretrained(tmp_path / "sr")
    again = SRStage.from_pretrained(tmp_path / "sr")
    assert again.config == m.config
    with torch.no_grad():
        out = again(base, again.embed_conditions(images, text), level=torch.tensor([0.3]))
    assert torch.equal(out, ref)
    assert not torch.allclose(out, m.upsample(base))


def test_window_permutation_by_hand():
    # a 4 x 4 token grid in 2 x 2 windows
    plain = window_permutation((1, 4, 4), (1, 2, 2), shifted=False).view(4, 4)
    assert plain[0].tolist() == [0, 1, 4, 5] and plain[3].tolist() == [10, 11, 14, 15]
    shifted = window_permutation((1, 4, 4), (1, 2, 2), shifted=True).view(4, 4)
    assert shifted[0].tolist() == [5, 6, 9, 10]  # starts half a window further on each axis
    assert sorted(shifted[3].tolist()) == [0, 3, 12, 15]  # the last window wraps around the corners
    assert sorted(shifted.flatten().tolist()) == list(range(16))
    # tile order inside a window: (1, 2, 4) window of two 1 x 2 x 2 tiles
    tiled = window_permutation((1, 2, 4), (1, 2, 4), shifted=False, tile=(1, 2, 2))
    assert tiled.tolist() == [0, 1, 4, 5, 2, 3, 6, 7]


def test_odd_layers_attend_in_shifted_windows(monkeypatch):
    m = SRStage(tiny(depth=4)).eval()
    seen = []
    orig = srm.SRBlock.target_forward_windows

    def record(self, x, angles, temb, ck, cv, c_mask, perm, inv, n_windows, attend):
        seen.append(perm.clone())
        return orig(self, x, angles, temb, ck, cv, c_mask, perm, inv, n_windows, attend)

    monkeypatch.setattr(srm.SRBlock, "target_forward_windows", record)
    base, images, text = inputs()
    with torch.no_grad():
        m(base, m.embed_conditions(images, text))
    grid = (4, 4, 4)
    for i, perm in enumerate(seen):
        assert torch.equal(perm, window_permutation(grid, (2, 2, 2), shifted=i % 2 == 1))
    assert len(seen) == 4 and not torch.equal(seen[0], seen[1])


def test_condition_cache_equals_no_cache():
    m = perturbed(tiny())
    base, images, text = inputs()
    cond = m.embed_conditions(images, text)
    with torch.no_grad():
        cache = m.condition_cache(cond)
        assert torch.allclose(m(base, cond, cache=cache), m(base, cond), atol=1e-6)
        # the conditions matter: another reference image changes the output
        other = m.embed_conditions([[(1, -images[0][0][1]), images[0][1]]], text)
        assert not torch.allclose(m(base, other), m(base, cond))


def test_nabla_keeping_everything_equals_dense():
    dense = perturbed(tiny(window=(2, 4, 4)))
    sparse = SRStage(tiny(window=(2, 4, 4), attention="nabla", nabla_tile=(1, 2, 4), nabla_threshold=1.0)).eval()
    sparse.load_state_dict(dense.state_dict())
    base, images, text = inputs()
    with torch.no_grad():
        a = dense(base, dense.embed_conditions(images, text))
        b = sparse(base, sparse.embed_conditions(images, text))
    assert torch.allclose(a, b, atol=1e-5)
    lossy = SRStage(tiny(window=(2, 4, 4), attention="nabla", nabla_tile=(1, 2, 4), nabla_threshold=0.3,
                         nabla_dense_above=1.0)).eval()
    lossy.load_state_dict(dense.state_dict())
    with torch.no_grad():
        c = lossy(base, lossy.embed_conditions(images, text))
    assert not torch.allclose(a, c, atol=1e-5)  # blocks dropped: a different (close) result
    assert (a - c).abs().mean() < 0.1


def test_base_conv_path_starts_as_no_change_and_places_sub_pixels_by_hand(tmp_path):
    """The base-clip conv path: zero-initialised (the stage is still bicubic), its pixel shuffle puts channel
    c * s * s + i * s + j at sub-pixel (i, j) of every base pixel, it sees neighbouring frames, and it saves."""
    m = SRStage(tiny(base_conv=8, base_conv_depth=1)).eval()
    base, images, text = inputs()
    cond = m.embed_conditions(images, text)
    with torch.no_grad():
        assert torch.equal(m(base, cond), m.upsample(base))
        path = m.base_conv
        path.out.bias.copy_(torch.arange(48, dtype=torch.float32))  # 3 channels x 4 x 4 sub-pixels, weights zero
        r = path(base, torch.zeros(1))
    assert r.shape == (1, 3, 4, 32, 32)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    for c in range(3):
        want = (c * 16 + (ys % 4) * 4 + (xs % 4)).float()
        assert torch.equal(r[0, c, 2], want)
    # temporal reach: a change in frame 0 reaches frames 1 and 2 (through the (2+1)D blocks), not only frame 0
    with torch.no_grad():
        for p_ in path.parameters():
            p_.normal_(0, 0.2)
        a = path(base, torch.zeros(1))
        moved = base.clone()
        moved[:, :, 0] = -moved[:, :, 0]
        b = path(moved, torch.zeros(1))
    assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-4  # the input conv and one block: two frames each way
    assert torch.equal(a[:, :, 3], b[:, :, 3])  # three frames away: outside that reach
    with torch.no_grad():
        ref = m(base, cond, level=torch.tensor([0.5]))
    m.save_pretrained(tmp_path / "sr")
    again = SRStage.from_pretrained(tmp_path / "sr").eval()
    assert again.config.base_conv == 8 and again.config.base_conv_depth == 1
    with torch.no_grad():
        assert torch.equal(again(base, again.embed_conditions(images, text), level=torch.tensor([0.5])), ref)


def test_a_run_grows_the_base_conv_path_without_changing_what_it_computes(tmp_path):
    """train_sr: a resumed run given --base-conv adds the path at zero (the stage's output is unchanged at the
    step it is added), keeps the step count, and trains it."""
    import dataclasses

    from training import train_sr

    cfg = train_sr.TrainSRConfig(out=str(tmp_path / "run"), steps=2, batch=2, crop_frames=2, crop_side=8,
                                 lr=2e-3, families=("t2v",), log_every=1, save_every=2, dtype="fp32",
                                 model=tiny(window=(2, 4, 4), text_dim=0))
    train_sr.main(cfg)
    before = SRStage.from_pretrained(tmp_path / "run" / "ckpt").eval()
    cfg.steps, cfg.model = 4, tiny(window=(2, 4, 4), text_dim=0, base_conv=4, base_conv_depth=1)
    grown = train_sr.main(cfg)
    assert grown["start_step"] == 2 and len(grown["losses"]) == 2
    after = SRStage.from_pretrained(tmp_path / "run" / "final").eval()
    assert after.base_conv is not None and after.config.base_conv == 4
    assert after.base_conv.out.weight.abs().sum() > 0  # trained off its zero start
    fresh = SRStage(dataclasses.replace(before.config, base_conv=4, base_conv_depth=1)).eval()
    missing, _ = fresh.load_state_dict(before.state_dict(), strict=False)
    assert missing and all(k.startswith("base_conv.") for k in missing)
    base, images, _ = inputs(side=8)
    with torch.no_grad():
        assert torch.equal(fresh(base, fresh.embed_conditions(images)), before(base, before.embed_conditions(images)))


def test_a_run_deepens_the_base_conv_path_without_changing_what_it_computes(tmp_path):
    """train_sr: a resumed run given a larger --base-conv-depth adds blocks that start as identities (their
    temporal convolution zeroed), so at the step they are added the stage computes what it did (here at lr 0:
    the grown stage must equal its parent exactly; random new blocks would not)."""
    from training import train_sr

    cfg = train_sr.TrainSRConfig(out=str(tmp_path / "run"), steps=2, batch=2, crop_frames=2, crop_side=8,
                                 lr=2e-3, families=("t2v",), log_every=1, save_every=2, dtype="fp32",
                                 model=tiny(window=(2, 4, 4), text_dim=0, base_conv=4, base_conv_depth=1))
    train_sr.main(cfg)
    before = SRStage.from_pretrained(tmp_path / "run" / "ckpt").eval()
    assert before.base_conv.out.weight.abs().sum() > 0  # the path does something to keep
    cfg.steps, cfg.lr, cfg.min_lr = 3, 0.0, 0.0
    cfg.model = tiny(window=(2, 4, 4), text_dim=0, base_conv=4, base_conv_depth=3)
    assert train_sr.main(cfg)["start_step"] == 2
    after = SRStage.from_pretrained(tmp_path / "run" / "final").eval()
    assert after.config.base_conv_depth == 3 and len(after.base_conv.temporal) == 3
    assert all(float(t.weight.abs().sum()) == 0 for t in after.base_conv.temporal[1:])
    assert float(after.base_conv.spatial[2].weight.abs().sum()) > 0  # the new blocks' first convs are live
    base, images, _ = inputs(side=8)
    with torch.no_grad():
        assert torch.allclose(after(base, after.embed_conditions(images), level=torch.tensor([0.3])),
                              before(base, before.embed_conditions(images), level=torch.tensor([0.3])), atol=1e-6)


def test_a_few_training_steps_stay_close_to_the_input(tmp_path):
    """Training steps on OmniWorld pairs (real 128 x 128 targets, cropped) lower the loss and the output
    downsampled stays close to the base clip it was given."""
    from training import train_sr

    cfg = train_sr.TrainSRConfig(out=str(tmp_path / "run"), steps=6, batch=2, crop_frames=2, crop_side=16,
                                 lr=2e-3, families=("t2v", "image_ref"), log_every=1, save_every=3,
                                 model=tiny(window=(2, 4, 4), text_dim=0))
    result = train_sr.main(cfg)
    assert len(result["losses"]) == 6 and all(torch.isfinite(torch.tensor(result["losses"])))
    m = SRStage.from_pretrained(tmp_path / "run" / "final")
    batch = train_sr.make_batch(cfg, seed=999)
    with torch.no_grad():
        out = m(batch["base"], m.embed_conditions(batch["images"]), level=batch["level"])
    down = srm.downsample(out, 4)
    assert (down - batch["base"]).abs().mean() < 0.1
    # resumable: two more steps from the saved state continue the step count
    cfg.steps = 8
    again = train_sr.main(cfg)
    assert again["start_step"] == 6 and len(again["losses"]) == 2
    # the output refiner added to the run in progress: zero-initialised, so the stage computes what it did
    before = SRStage.from_pretrained(tmp_path / "run" / "ckpt").eval()
    cfg.steps, cfg.model = 9, tiny(window=(2, 4, 4), text_dim=0, refine=4)
    grown = train_sr.main(cfg)
    assert grown["start_step"] == 8 and len(grown["losses"]) == 1
    after = SRStage.from_pretrained(tmp_path / "run" / "final").eval()
    assert after.config.refine == 4 and after.refine is not None
    base, images, _ = inputs(side=8)
    import dataclasses

    fresh = SRStage(dataclasses.replace(before.config, refine=4))
    fresh.load_state_dict({**before.state_dict(), **{k: v for k, v in fresh.state_dict().items()
                                                     if k.startswith("refine.")}}, strict=False)
    fresh.eval()
    with torch.no_grad():  # before a step the refiner adds nothing
        torch.testing.assert_close(fresh(base, fresh.embed_conditions(images)), before(base, before.embed_conditions(images)),
                                   atol=1e-6, rtol=0)


def test_the_sr_benchmark_measures_how_far_a_base_clip_is_from_its_targets_downsample(tmp_path):
    """benchmarks.sr's consistency figures: a base clip that is its target's area average scores inf and
    bicubic from it is bicubic from the base; the world's own pairs are not (each size rendered on its own)."""
    import json

    import numpy as np

    from benchmarks import sr as bench

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    hr = bench.nearest(base)
    assert np.array_equal(bench.area_down(hr), base)
    c = bench.consistency(hr, base)
    assert c["base_vs_downsampled_psnr"] == float("inf")
    assert c["downsampled_bicubic_psnr"] == bench.psnr(bench.bicubic(base), hr)
    out = tmp_path / "c.json"
    assert bench.main(["--consistency-only", "--families", "t2v", "--cases", "1", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["all"]["cases"] == 1 and rep["all"]["base_vs_downsampled_psnr"] < 40
    assert rep["all"]["downsampled_bicubic_psnr"] > rep["all"]["bicubic_psnr"]


def test_clean_clips_are_the_render_itself_at_level_0_and_degraded_ones_say_so():
    """p_clean: that share of a batch is the world's base clip untouched, told level 0; every other clip carries a
    level of at least 0.05 (blur, noise, the VAE), so level 0 means a clean render at inference."""
    from training import train_sr
    from training.world import sample

    cfg = train_sr.TrainSRConfig(batch=12, crop_frames=16, crop_side=32, families=("t2v",), p_clean=0.5,
                                 p_vae=0.0, model=tiny(window=(2, 4, 4), text_dim=0))
    batch = train_sr.make_batch(cfg, seed=3)
    clean = batch["level"] == 0
    assert 0 < int(clean.sum()) < 12 and bool((batch["level"][~clean] >= 0.05).all())
    # a clean clip is the rendered base clip itself (the full crop: 16 frames, 32 x 32)
    rngs = [np.random.default_rng([cfg.seed, 3, b]) for b in range(cfg.batch)]
    for b in torch.nonzero(clean).flatten().tolist():
        ws = sample(str(rngs[b].choice(cfg.families)), int(rngs[b].integers(1 << 30)))
        torch.testing.assert_close(batch["base"][b], train_sr._to_model(ws.target), atol=0, rtol=0)
    # without p_clean the level is the noise's alone (the recipe of the runs so far): blurred clips at level 0
    old = train_sr.make_batch(dataclasses.replace(cfg, p_clean=0.0, noise_max=0.0), seed=3)
    assert bool((old["level"] == 0).all())


def test_snap_to_base_takes_a_near_colour_of_the_base_neighbourhood_and_leaves_blends():
    """Hand-computed: a 1 x 4 base row (black, red, green, blue) upscaled 2x; output pixels near a colour of the
    3 x 3 base pixels around their place take it exactly, a blend half-way between two stays, a colour that only
    lies outside the neighbourhood is never put in, and threshold 0 changes nothing."""
    from model.sr import snap_to_base

    base = torch.tensor([[[[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]]]], dtype=torch.uint8)  # (1, 1, 4, 3)
    out = torch.full((1, 2, 8, 3), 77, dtype=torch.uint8)
    out[0, 0, 0] = torch.tensor([10, 0, 0])  # 10 from black: snaps
    out[0, 0, 1] = torch.tensor([100, 0, 0])  # 100 from black and from red: a blend, stays
    out[0, 1, 0] = torch.tensor([0, 0, 190])  # near blue, but blue is 3 base pixels away: not a candidate
    out[0, 1, 6] = torch.tensor([5, 5, 190])  # under blue's own base pixel: snaps
    s = snap_to_base(out, base, threshold=20.0, scale=2)
    assert s.dtype == torch.uint8 and s.shape == out.shape
    assert s[0, 0, 0].tolist() == [0, 0, 0]
    assert s[0, 0, 1].tolist() == [100, 0, 0]
    assert s[0, 1, 0].tolist() == [0, 0, 190]
    assert s[0, 1, 6].tolist() == [0, 0, 200]
    everything = snap_to_base(out, base, threshold=1e9, scale=2)
    assert everything[0, 1, 0].tolist() in ([0, 0, 0], [200, 0, 0])  # the nearest of black, black, red
    assert torch.equal(snap_to_base(out, base, threshold=0.0, scale=2), out)
