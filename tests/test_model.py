"""The Omni inference stack on tiny seeded components (CPU, seconds)."""

import numpy as np
import pytest
import torch

from model import flow_matching as fm
from model.conditioning import build_conditions, rasterize_annotations
from model.generator import TEXT, GeneratorConfig, OmniGenerator
from model.mvl import Annotations, Arrow, Box, MVLRequest, MVLValidationError
from model.pipeline import OmniPipeline, PipelineConfig
from model.prompt_enhancer import RuleEnhancer
from model.text_encoder import TextEncoderConfig, TinyTextEncoder
from model.vae import VAEConfig, VideoVAE, to_model_range
from training.world import sample
from training.world.vocab import enhancer_vocabulary


def tiny_sr(seed: int = 0):
    """A tiny 4x SR stage whose zero-initialised layers are random (its output is not just bicubic)."""
    from model.sr import SRConfig, SRStage

    torch.manual_seed(seed)
    m = SRStage(SRConfig(dim=32, depth=2, heads=2, rope_split=(4, 6, 6), window=(4, 4, 4), text_dim=0, cond_side=32))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ada" in name or name.startswith("final"):
                p.normal_(0, 0.02)
    return m.eval()


def tiny_pipeline(seed: int = 0, sr: bool = False) -> OmniPipeline:
    """A tiny random-weight pipeline; with `sr`, carrying a tiny super-resolution stage (upscale=True)."""
    torch.manual_seed(seed)
    vae = VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4))
    te = TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=32))
    gen = OmniGenerator(GeneratorConfig(latent_channels=4, dim=32, depth=2, heads=2, text_dim=32, rope_split=(4, 6, 6)))
    # adaLN-Zero starts every block as the identity; give the tiny model trained-like weights
    for m in [gen.final, gen.final_ada] + [b.ada for b in gen.blocks]:
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.05)
    pipe = OmniPipeline(vae, gen, te, RuleEnhancer(enhancer_vocabulary(), te), PipelineConfig(version="tiny"),
                        sr=tiny_sr(seed) if sr else None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_vae_is_causal_and_images_are_one_frame_videos():
    vae = VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4)).eval()
    clip = torch.rand(1, 16, 32, 32, 3) * 2 - 1
    z = vae.encode(clip)
    assert z.shape == (1, 4, 8, 8, 8)
    assert vae.decode(z, 16).shape == (1, 16, 32, 32, 3)
    # the first latent frame depends on the first frame only: an image encodes to it
    img = vae.encode(clip[:, :1])
    assert img.shape == (1, 4, 1, 8, 8)
    torch.testing.assert_close(img[:, :, 0], z[:, :, 0], atol=1e-5, rtol=1e-5)
    changed = clip.clone()
    changed[:, 8:] = 0
    z2 = vae.encode(changed)
    torch.testing.assert_close(z2[:, :, :4], z[:, :, :4], atol=1e-5, rtol=1e-5)  # the future does not leak back
    assert vae.decode(img, 1).shape == (1, 1, 32, 32, 3)


def test_a_2x_vae_keeps_half_the_resolution_and_is_causal_too(tmp_path):
    vae = VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4, spatial_down=2)).eval()
    clip = torch.rand(1, 16, 32, 32, 3) * 2 - 1
    z = vae.encode(clip)
    assert z.shape == (1, 4, 8, 16, 16) and vae.decode(z, 16).shape == (1, 16, 32, 32, 3)
    torch.testing.assert_close(vae.encode(clip[:, :1])[:, :, 0], z[:, :, 0], atol=1e-5, rtol=1e-5)
    vae.save_pretrained(tmp_path / "v")
    back = VideoVAE.from_pretrained(tmp_path / "v")
    assert back.config.spatial_down == 2 and torch.equal(back.encode(clip), z)
    with pytest.raises(ValueError, match="spatial_down=3"):
        VAEConfig(spatial_down=3)


def test_condition_tokens_never_see_target_tokens():
    pipe = tiny_pipeline()
    gen = pipe.generator
    s = sample("edit_replace", 0)
    pieces = build_conditions([s.request], [s.request.prompt], pipe.vae, pipe.text_encoder)
    cond = gen.embed_conditions(pieces)
    cache = gen.condition_cache(cond)
    x1 = torch.randn(1, 4, 8, 8, 8)
    x2 = torch.randn(1, 4, 8, 8, 8)
    t = torch.tensor([500.0])
    # the cache does not depend on the target, and using it gives the same output as recomputing
    torch.testing.assert_close(gen(x1, t, cond), gen(x1, t, cond, cache))
    # gradients: the condition keys of layer 1 get nothing from the noisy target
    cond_t = cond.tokens.clone().requires_grad_(True)
    from model.generator import Conditions

    c2 = Conditions(cond_t, cond.pos, cond.mask)
    k, _ = gen.condition_cache(c2)[1]
    xg = x2.clone().requires_grad_(True)
    (k.sum() + 0 * gen(xg, t, c2).sum()).backward()
    assert xg.grad is None or xg.grad.abs().sum() == 0
    # but the target output does depend on the conditions
    assert not torch.allclose(gen(x1, t, cond), gen(x1, t, gen.embed_conditions([[p for p in pieces[0] if p.kind != TEXT]])))


def test_pipeline_shapes_determinism_and_round_trip(tmp_path):
    pipe = tiny_pipeline()
    req = sample("i2v", 1).request
    a = pipe(req, steps=2)
    b = pipe(req, steps=2)
    assert a.frames.shape == (16, 32, 32, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    c = pipe(req, steps=2, seed=req.seed + 1)
    assert not np.array_equal(a.frames, c.frames)
    pipe.save_pretrained(tmp_path / "m")
    again = OmniPipeline.from_pretrained(tmp_path / "m")
    again.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(again(req, steps=2).frames, a.frames)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "enhancer", "generator", "model_index.json", "text_encoder", "vae"]
    assert list((tmp_path / "m" / "generator").glob("*.safetensors"))


@pytest.mark.parametrize("family", ["t2v", "subject_ref", "storyboard", "arrows", "boxes", "combined", "novel_view"])
def test_every_kind_of_request_is_accepted(family):
    pipe = tiny_pipeline()
    out = pipe(sample(family, 2).request, steps=1)
    assert out.frames.shape == (16, 32, 32, 3)


def test_callback_sees_every_step_and_interrupt_stops():
    pipe = tiny_pipeline()
    seen = []

    def cb(p, i, t, tensors):
        seen.append((i, t))
        if i == 2:
            p.interrupt = True
        return tensors

    pipe(sample("t2v", 0).request, steps=6, callback_on_step_end=cb)
    assert [i for i, _ in seen] == [0, 1, 2]
    assert seen[0][1] == pytest.approx(1000.0)  # the first step is at pure noise, timestep = s * 1000


def test_pipeline_refuses_what_it_cannot_make():
    pipe = tiny_pipeline()
    req = sample("t2v", 0).request
    req.width = req.height = 64
    with pytest.raises(MVLValidationError, match="makes 32x32 clips"):
        pipe(req)
    req = sample("t2v", 0).request
    req.prompt = "@Image_2 runs"
    with pytest.raises(MVLValidationError, match="@Image_2 is used but only 0 images"):
        pipe(req)


def test_flow_matching_convention_recovers_the_data_point():
    """With one data point x0 the exact velocity is (x - x0) / s; the sampler must land on x0."""
    x0 = torch.tensor([0.7, -1.3])
    noise = torch.tensor([0.2, 0.9])
    s = torch.tensor([0.25])
    xs = fm.add_noise(x0[None], noise[None], s)
    torch.testing.assert_close(xs[0], 0.75 * x0 + 0.25 * noise)
    torch.testing.assert_close((xs[0] - x0) / 0.25, fm.velocity_target(x0, noise))
    sig = fm.schedule(10, shift=3.0)
    assert sig[0] == 1.0 and sig[-1] == 0.0 and torch.all(sig[:-1] > sig[1:])
    x = torch.randn(2)
    for i in range(10):
        v = (x - x0) / sig[i]
        x = fm.euler_step(x, v, float(sig[i]), float(sig[i + 1]))
    torch.testing.assert_close(x, x0)


def test_stochastic_sampler_step_is_euler_at_zero_churn_and_lands_on_the_data_point():
    """flow_matching.sampler_step: churn 0 is the Euler step exactly; with one data point (exact velocity) any
    churn lands on x0 (the fresh noise only replaces noise); the fresh share keeps unit variance; and the
    pipeline refuses a churn outside [0, 1] and is deterministic for a seed with churn on."""
    x0 = torch.tensor([0.7, -1.3])
    x = torch.tensor([0.1, 0.4])
    v = (x - x0) / 0.6
    torch.testing.assert_close(fm.sampler_step(x, v, 0.6, 0.3, 0.0), fm.euler_step(x, v, 0.6, 0.3))
    g = torch.Generator().manual_seed(0)
    for churn in (0.5, 1.0):
        sig = fm.schedule(6, shift=3.0)
        y = torch.randn(2, generator=g)
        for i in range(6):
            y = fm.sampler_step(y, (y - x0) / sig[i], float(sig[i]), float(sig[i + 1]), churn, g)
        torch.testing.assert_close(y, x0)
    # fresh noise of unit variance, independent of the old: from pure noise with x0 = 0 (v = x), a fully
    # fresh step to s' = 0.5 gives 0.5 * new noise
    xx = torch.randn(200_000, generator=g)
    out = fm.sampler_step(xx, xx, 1.0, 0.5, 1.0, g)
    assert abs(float(out.std()) - 0.5) < 0.01 and abs(float(torch.corrcoef(torch.stack([out, xx]))[0, 1])) < 0.01
    pipe = tiny_pipeline()
    req = MVLRequest(prompt="a red circle moves right", frames=8, steps=3, seed=4)
    with pytest.raises(ValueError, match="churn 1.5"):
        pipe(req, churn=1.5)
    a, b = pipe(req, churn=0.7).frames, pipe(req, churn=0.7).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pipe(req, churn=0.0).frames)


def test_a_time_conditioned_tiny_model_learns_the_convention():
    """A tiny MLP trained with this module's loss samples near the two data modes."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64), torch.nn.SiLU(),
                              torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    modes = torch.tensor([-2.0, 2.0])
    for _ in range(1500):
        x0 = modes[torch.randint(0, 2, (256,))][:, None]
        noise = torch.randn(256, 1)
        s = fm.sample_training_s(256)
        xs = fm.add_noise(x0, noise, s)
        v = net(torch.cat([xs, fm.to_timestep(s)[:, None] / 1000], 1))
        loss = (v - fm.velocity_target(x0, noise)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(512, 1)
    sig = fm.schedule(20, 1.0)
    with torch.no_grad():
        for i in range(20):
            t = torch.full((512, 1), float(sig[i]))
            x = fm.euler_step(x, net(torch.cat([x, t], 1)), float(sig[i]), float(sig[i + 1]))
    near = (x - 2).abs().lt(0.5) | (x + 2).abs().lt(0.5)
    assert near.float().mean() > 0.85
    assert 0.3 < (x > 0).float().mean() < 0.7  # both modes, not one


def test_annotation_raster_marks_direction_and_box():
    r = rasterize_annotations(Annotations(arrows=[Arrow([(0.1, 0.5), (0.9, 0.5)])], boxes=[Box((0.5, 0.1, 0.75, 0.3))]))
    row = r[0, 16]
    xs = np.nonzero(row)[0]
    assert row[xs[0]] < row[xs[-1]]  # progress grows toward the arrow head
    assert r[2, 3:10, 16:24].all() and r[2].sum() == 7 * 8  # rows round(3.2)..round(9.6), cols 16..24


def test_masked_edit_keeps_every_pixel_outside_the_mask():
    from model.conditioning import _fit_video

    pipe = tiny_pipeline()
    src = sample("weather", 5).request.video
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[8:20, 10:26] = 255  # the region the edit may change
    req = MVLRequest(prompt="Make it snow in @Video.", video=src, mask=mask, steps=4)
    out = pipe(req, seed=3).frames
    fitted = _fit_video(src, 16)
    inside = np.zeros((32, 32), bool)
    inside[8:20, 10:26] = True
    assert np.array_equal(out[:, ~inside], fitted[:, ~inside])
    assert not np.array_equal(out[:, inside], fitted[:, inside])  # the model did draw there
    # the same request without the mask changes the whole frame
    free = pipe(MVLRequest(prompt="Make it snow in @Video.", video=src, steps=4), seed=3).frames
    assert not np.array_equal(free[:, ~inside], fitted[:, ~inside])
    # the mask travels through JSON, and is checked
    assert np.array_equal(MVLRequest.from_json(req.to_json()).mask, mask)
    with pytest.raises(MVLValidationError, match="give the context video"):
        MVLRequest(prompt="a red cat", mask=mask).validate()
    with pytest.raises(MVLValidationError, match="mask is empty"):
        MVLRequest(prompt="Make it snow in @Video.", video=src, mask=np.zeros_like(mask)).validate()


def test_image_to_video_anchors_the_first_latent_frame_on_the_image():
    from model.vae import to_model_range

    pipe = tiny_pipeline()
    case = sample("i2v", 2)
    out = pipe(case.request, seed=1, steps=3, return_latents=True)
    assert out.enhanced.task == "i2v"
    with torch.no_grad():
        z1 = pipe.vae.encode(to_model_range(torch.from_numpy(case.request.images[0][None, None])))
    assert torch.allclose(out.latents[:, :, 0], z1[:, :, 0], atol=1e-5)  # the first frame is the image's latent
    pipe.config.anchor_first_frame = False
    free = pipe(case.request, seed=1, steps=3, return_latents=True)
    assert not torch.allclose(free.latents[:, :, 0], z1[:, :, 0], atol=1e-3)
    # text-to-video is untouched by the option
    t2v = sample("t2v", 2).request
    a = pipe(t2v, seed=1, steps=3).frames
    pipe.config.anchor_first_frame = True
    assert np.array_equal(a, pipe(t2v, seed=1, steps=3).frames)
    # and the option is saved with the model
    assert "anchor_first_frame" in __import__("dataclasses").asdict(pipe.config)


def test_edit_strength_starts_a_video_edit_from_the_noised_source(tmp_path):
    from model.vae import to_model_range
    from training.tune_edit_strength import tune, write_choice

    pipe = tiny_pipeline()
    src = sample("weather", 5).request.video
    req = MVLRequest(prompt="Make it snow in @Video.", video=src, steps=4)
    assert pipe.enhancer.enhance(req).task == "weather"
    with torch.no_grad():
        z = pipe.vae.encode(to_model_range(torch.from_numpy(np.asarray(src)[None])))
    # a start level near 0 gives back the source's latents; 1 is the plain edit from pure noise
    near = pipe(req, seed=3, strength=1e-4, return_latents=True).latents
    assert torch.allclose(near, z, atol=1e-2)
    plain = pipe(req, seed=3, return_latents=True).latents
    assert torch.equal(pipe(req, seed=3, strength=1.0, return_latents=True).latents, plain)
    half = pipe(req, seed=3, strength=0.5, return_latents=True).latents
    assert (half - z).abs().mean() < (plain - z).abs().mean()  # closer to the source than a free edit
    from dataclasses import replace

    assert torch.equal(pipe(replace(req, strength=0.5), seed=3, return_latents=True).latents, half)  # as the request says
    # the model's per-task choice applies to that task only, and is saved with the model
    pipe.config.edit_strength = {"weather": 0.5}
    assert torch.equal(pipe(req, seed=3, return_latents=True).latents, half)
    t2v = sample("t2v", 2).request
    assert np.array_equal(pipe(t2v, seed=1, steps=3).frames, tiny_pipeline()(t2v, seed=1, steps=3).frames)
    pipe.save_pretrained(tmp_path / "m")
    assert OmniPipeline.from_pretrained(tmp_path / "m").config.edit_strength == {"weather": 0.5}
    # a masked edit keeps its own rule (the source outside the mask); out-of-range levels are refused
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[8:20, 10:26] = 255
    masked = MVLRequest(prompt="Make it snow in @Video.", video=src, mask=mask, steps=4)
    assert np.array_equal(pipe(masked, seed=3).frames, pipe(masked, seed=3, strength=1.0).frames)
    for bad in (0.0, 1.5):
        with pytest.raises(MVLValidationError, match="strength must be in"):
            pipe(req, seed=3, strength=bad)
    # the tuner scores each level on training-split cases and writes its choice into the model
    pipe.config.edit_strength = {}
    out = tune(pipe, cases=2, strengths=(1.0, 0.5), families=("weather",), progress=False)
    assert set(out["table"]) == {"weather"} and set(out["table"]["weather"]) == {"1", "0.5"}
    assert out["table"]["weather"]["1"]["cases"] == 2
    assert all(0 < v < 1 for v in out["edit_strength"].values())
    write_choice(tmp_path / "m", {"weather": 0.7})
    assert OmniPipeline.from_pretrained(tmp_path / "m").config.edit_strength == {"weather": 0.7}


def test_preserve_unchanged_keeps_the_source_where_the_output_matches_its_reconstruction():
    from model.pipeline import preserve_unchanged

    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    rec = np.clip(source.astype(int) + rng.integers(-20, 21, source.shape), 0, 255).astype(np.uint8)  # VAE error
    out = rec.copy()
    out[1, 6, 7] = (rec[1, 6, 7].astype(int) + 128) % 256  # the edit changed one pixel of frame 1 by 128 levels
    kept = preserve_unchanged(out, source, rec, 0.2, grow=0)
    changed = np.zeros((2, 16, 16), bool)
    changed[1, 6, 7] = True
    assert np.array_equal(kept[changed], out[changed]) and np.array_equal(kept[~changed], source[~changed])
    grown = preserve_unchanged(out, source, rec, 0.2, grow=1)  # and its 3x3 neighbourhood is the output's too
    near = np.zeros((2, 16, 16), bool)
    near[1, 5:8, 6:9] = True
    assert np.array_equal(grown[near], out[near]) and np.array_equal(grown[~near], source[~near])
    # a level above the change keeps the source everywhere
    assert np.array_equal(preserve_unchanged(out, source, rec, 0.6, grow=1), source)


def test_paste_back_applies_to_mask_free_video_edits_only(tmp_path):
    from model.pipeline import preserve_unchanged
    from training.tune_edit_strength import tune_preserve, write_choice

    pipe = tiny_pipeline()
    src = sample("weather", 5).request.video
    req = MVLRequest(prompt="Make it snow in @Video.", video=src, steps=3)
    raw = pipe(req, seed=3).frames
    assert np.array_equal(pipe(req, seed=3, preserve=0).frames, raw)  # 0 = off, and off is the default
    source, rec = pipe.source_and_reconstruction(req)
    kept = pipe(req, seed=3, preserve=0.1).frames
    assert np.array_equal(kept, preserve_unchanged(raw, source, rec, 0.1, pipe.config.preserve_grow))
    assert not np.array_equal(kept, raw)  # the untrained model's output is near its reconstruction somewhere
    assert np.all((kept == raw).all(-1) | (kept == source).all(-1))  # every pixel is the output's or the source's
    # the model's per-task choice, saved with the model
    pipe.config.preserve_threshold = {"weather": 0.1}
    assert np.array_equal(pipe(req, seed=3).frames, kept)
    pipe.save_pretrained(tmp_path / "m")
    assert OmniPipeline.from_pretrained(tmp_path / "m").config.preserve_threshold == {"weather": 0.1}
    # not for text-to-video or masked edits; bad levels are refused
    t2v = sample("t2v", 2).request
    assert np.array_equal(pipe(t2v, seed=1, steps=3, preserve=0.1).frames, pipe(t2v, seed=1, steps=3).frames)
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[8:20, 10:26] = 255
    masked = MVLRequest(prompt="Make it snow in @Video.", video=src, mask=mask, steps=3)
    assert np.array_equal(pipe(masked, seed=3, preserve=0.1).frames, pipe(masked, seed=3, preserve=0).frames)
    for bad in (-0.1, 1.0):
        with pytest.raises(MVLValidationError, match="preserve must be in"):
            pipe(req, seed=3, preserve=bad)
    # the tuner generates each case once and scores every level on it
    pipe.config.preserve_threshold = {}
    out = tune_preserve(pipe, cases=2, levels=(0.0, 0.5, 0.1), families=("weather",), progress=False)
    assert set(out["table"]["weather"]) == {"0", "0.5", "0.1"} and out["table"]["weather"]["0"]["cases"] == 2
    assert all(0 < v < 1 for v in out["preserve_threshold"].values())
    write_choice(tmp_path / "m", {"weather": 0.3}, "preserve_threshold")
    m = OmniPipeline.from_pretrained(tmp_path / "m")
    assert m.config.preserve_threshold == {"weather": 0.3} and m.config.edit_strength == pipe.config.edit_strength


def test_the_input_path_carries_the_noise_a_narrow_token_cannot(tmp_path):
    """Patch 4 on 4 channels is 64 numbers per token and the tiny model is 32 wide: with x0 = 0 the
    velocity is the noise itself, which the transformer cannot pass through; the input path can."""
    from model.generator import CondPiece
    from training.train_omni import TrainConfig, with_input_skip

    def train(skip: bool) -> tuple[OmniGenerator, float]:
        torch.manual_seed(0)
        gen = OmniGenerator(GeneratorConfig(latent_channels=4, patch=4, dim=32, depth=1, heads=2, text_dim=32,
                                            rope_split=(4, 6, 6), input_skip=skip))
        opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(150):
            text = CondPiece(kind=TEXT, data=torch.randn(3, 32, generator=g), mask=torch.ones(3, dtype=torch.bool))
            cond = gen.embed_conditions([[text]] * 8)
            noise = torch.randn(8, 4, 1, 8, 8, generator=g)
            s = 0.2 + 0.8 * torch.rand(8, generator=g)
            v = gen(s.view(-1, 1, 1, 1, 1) * noise, s * 1000, cond)
            loss = ((v - noise) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return gen, float(np.mean(losses[-20:]))

    _, plain = train(False)
    with_skip, skipped = train(True)
    assert plain > 0.4  # half the noise cannot get through 32 numbers
    assert skipped < 0.5 * plain, (skipped, plain)
    # added to a trained generator, the path changes nothing until training opens it
    narrow, _ = train(False)
    widened = with_input_skip(narrow, TrainConfig(input_skip=True))
    text = CondPiece(kind=TEXT, data=torch.randn(3, 32), mask=torch.ones(3, dtype=torch.bool))
    x, t = torch.randn(2, 4, 1, 8, 8), torch.tensor([300.0, 800.0])
    with torch.no_grad():
        torch.testing.assert_close(widened(x, t, widened.embed_conditions([[text]] * 2)),
                                   narrow(x, t, narrow.embed_conditions([[text]] * 2)))
    assert with_input_skip(narrow, TrainConfig()) is narrow
    with_skip.save_pretrained(tmp_path / "g")
    back = OmniGenerator.from_pretrained(tmp_path / "g")
    assert back.config.input_skip and torch.equal(back.skip_ada.weight, with_skip.skip_ada.weight)


def test_the_latent_head_draws_what_a_token_cannot_and_starts_as_no_change(tmp_path):
    """Patch 4 on 4 channels and 32 wide: a token cannot carry the 64 numbers of a layout-shaped clean latent
    (random boxes, cell-sharp, inside and across tokens), so the velocity's x0 part stays blurred; the
    latent-resolution head sees the layout per cell and draws it. Added to a trained generator it changes
    nothing until trained; it survives save / load, and the condition cache still equals no cache."""
    from model.generator import LAYOUT, CondPiece
    from training.train_omni import TrainConfig, with_refine

    def boxes(g, n):  # (n, 4, 1, 32, 32) layout rasters: occupancy of a random box (channel 3), colour 0-2
        r = torch.zeros(n, 4, 1, 32, 32)
        for i in range(n):
            x0, y0 = torch.randint(0, 24, (2,), generator=g).tolist()
            w, hh = torch.randint(4, 9, (2,), generator=g).tolist()
            r[i, :, :, y0:y0 + hh, x0:x0 + w] = 1.0
        return r

    def train(head: int) -> tuple[OmniGenerator, float]:
        torch.manual_seed(0)
        gen = OmniGenerator(GeneratorConfig(latent_channels=4, patch=4, dim=32, depth=1, heads=2, text_dim=32,
                                            rope_split=(4, 6, 6), input_skip=True, layout_channels=4,
                                            refine_channels=head))
        opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(150):
            lay = boxes(g, 8)
            text = CondPiece(kind=TEXT, data=torch.randn(3, 32, generator=g), mask=torch.ones(3, dtype=torch.bool))
            cond = gen.embed_conditions([[text, CondPiece(LAYOUT, lay[i])] for i in range(8)])
            x0 = 2 * torch.nn.functional.avg_pool3d(lay, (1, 4, 4)) - 1  # (8, 4, 1, 8, 8): the boxes, cell-sharp
            noise = torch.randn(8, 4, 1, 8, 8, generator=g)
            s = 0.2 + 0.6 * torch.rand(8, generator=g)
            xs = (1 - s.view(-1, 1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1, 1) * noise
            loss = ((gen(xs, s * 1000, cond) - (noise - x0)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return gen, float(np.mean(losses[-20:]))

    plain_gen, plain = train(0)
    headed, with_head = train(16)
    assert with_head < 0.5 * plain, (with_head, plain)
    # added to a trained generator, the head changes nothing until trained
    added = with_refine(plain_gen, TrainConfig(refine=16))
    assert added.config.refine_channels == 16 and with_refine(plain_gen, TrainConfig()) is plain_gen
    g = torch.Generator().manual_seed(5)
    lay = boxes(g, 2)
    text = CondPiece(kind=TEXT, data=torch.randn(3, 32, generator=g), mask=torch.ones(3, dtype=torch.bool))
    pieces = [[text, CondPiece(LAYOUT, lay[i])] for i in range(2)]
    x, t = torch.randn(2, 4, 1, 8, 8, generator=g), torch.tensor([300.0, 800.0])
    with torch.no_grad():
        torch.testing.assert_close(added(x, t, added.embed_conditions(pieces)),
                                   plain_gen(x, t, plain_gen.embed_conditions(pieces)))
        cond = headed.embed_conditions(pieces)
        torch.testing.assert_close(headed(x, t, cond, headed.condition_cache(cond)), headed(x, t, cond))
    headed.save_pretrained(tmp_path / "g")
    back = OmniGenerator.from_pretrained(tmp_path / "g").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x, t, back.embed_conditions(pieces)), headed.eval()(x, t, cond))
