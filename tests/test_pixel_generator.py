"""model/pixel_generator.py in the pipeline: a tiny random pixel generator serves the families in its config
(a planned t2v request), the latent generator the rest; progress, cancel, upscale and save / load go through it."""

import numpy as np
import pytest
import torch

from model.mvl import MVLRequest, MVLValidationError
from model.pipeline import OmniPipeline
from model.pixel_generator import PixelGenerator, PixelGeneratorConfig
from model.vae import to_model_range
from tests.test_model import tiny_pipeline
from training.world import sample


def with_pixel(pipe: OmniPipeline, seed: int = 0) -> OmniPipeline:
    torch.manual_seed(seed)
    gen = PixelGenerator(PixelGeneratorConfig(width=8, ground=4, text_dim=32, temb=16))
    with torch.no_grad():  # trained-like: the zero-initialised output and residual convs made random
        for name, p in gen.named_parameters():
            if name.startswith("out.") or ".c2." in name:
                p.normal_(0, 0.05)
    pipe.pixel = gen.eval()
    return pipe


def test_planned_t2v_goes_to_the_pixel_generator_and_the_rest_to_the_latent_one():
    plain = tiny_pipeline()
    pipe = with_pixel(tiny_pipeline())
    req = MVLRequest(prompt="A red circle moves right in the desert.", frames=16, steps=3, seed=7)
    a, b = pipe(req).frames, pipe(req).frames
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # deterministic for a seed
    assert not np.array_equal(a, plain(req).frames)  # not the latent generator's clip
    assert not np.array_equal(a, pipe(MVLRequest(prompt=req.prompt, frames=16, steps=3, seed=8)).frames)
    churned = pipe(req, churn=0.7).frames  # the stochastic sampler serves this path too
    assert np.array_equal(churned, pipe(req, churn=0.7).frames) and not np.array_equal(churned, a)
    short = pipe(MVLRequest(prompt=req.prompt, frames=9, steps=3, seed=7)).frames
    assert short.shape == (9, 32, 32, 3)
    # a family it was not trained for (an image reference) stays with the latent generator
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:20, 8:20] = (220, 30, 30)
    ref = MVLRequest(prompt="@Image_1 moves right in the desert.", images=[img], frames=16, steps=3, seed=7)
    assert np.array_equal(pipe(ref).frames, plain(ref).frames)
    pipe.pixel.config.tasks = ()
    assert np.array_equal(pipe(req).frames, plain(req).frames)  # and nothing when it serves no family


def test_progress_cancel_and_upscale_go_through_the_pixel_path():
    pipe = with_pixel(tiny_pipeline(sr=True))
    seen = []

    def cb(p, i, t, tensors):
        seen.append((i, round(t)))
        if "latents" in tensors and i == 1:
            p.interrupt = True  # cancel after the second step
        return None

    req = MVLRequest(prompt="A blue square moves up at night.", frames=16, steps=5, seed=3)
    out = pipe(req, callback_on_step_end=cb)
    assert [i for i, _ in seen] == [0, 1] and seen[0][1] == 1000  # stopped: no third step
    assert out.frames.shape == (16, 32, 32, 3)
    calls = []
    up = pipe(MVLRequest(prompt=req.prompt, frames=16, steps=2, seed=3, upscale=True),
              callback_on_step_end=lambda p, i, t, tensors: calls.append((i, sorted(tensors))))
    assert up.frames.shape == (16, 128, 128, 3)
    assert calls == [(0, ["latents"]), (1, ["latents"]), (2, ["stage"])]  # the SR stage's progress call after the steps


def test_a_model_directory_keeps_its_pixel_generator(tmp_path):
    pipe = with_pixel(tiny_pipeline())
    req = MVLRequest(prompt="A green triangle moves left by the ocean.", frames=16, steps=2, seed=1)
    ref = pipe(req).frames
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "pixel_generator" / "model.safetensors").is_file()
    again = OmniPipeline.from_pretrained(tmp_path / "m")
    again.set_progress_bar_config(disable=True)
    assert again.pixel is not None and again.pixel.config.tasks == ("t2v",)
    assert np.array_equal(again(req).frames, ref)
    with pytest.raises(ValueError, match="churn"):
        again(req, churn=-1)


def test_a_guide_clip_starts_either_generator_from_it():
    """guide= (SDEdit from any clip, the source of DenseDPO's pairs): a level near 0 gives the guide back on the pixel
    path; on both paths a lower level lands closer to the guide than an unguided sample; bad guides are refused."""
    pipe = with_pixel(tiny_pipeline())
    t2v = sample("t2v", 2).request
    guide = sample("t2v", 2).target
    assert pipe._pixel_serves(t2v, pipe.enhancer.enhance(t2v))
    near = pipe(t2v, seed=1, steps=3, guide=guide, strength=1e-4).frames
    assert np.abs(near.astype(int) - guide.astype(int)).max() <= 2
    plain = pipe(t2v, seed=1, steps=3).frames.astype(int)
    half = pipe(t2v, seed=1, steps=3, guide=guide, strength=0.3).frames.astype(int)
    assert np.abs(half - guide).mean() < np.abs(plain - guide).mean()
    sketch = sample("sketch", 3).request  # the latent generator's: there the guide's latents are noised
    assert not pipe._pixel_serves(sketch, pipe.enhancer.enhance(sketch))
    with torch.no_grad():
        z = pipe.vae.encode(to_model_range(torch.from_numpy(guide[None])))
    plain = pipe(sketch, seed=1, steps=3, return_latents=True).latents
    half = pipe(sketch, seed=1, steps=3, guide=guide, strength=0.3, return_latents=True).latents
    assert (half - z).abs().mean() < (plain - z).abs().mean()
    for bad, match in ((1.0, "in \\(0, 1\\)"), (0.0, "in \\(0, 1\\)")):
        with pytest.raises(MVLValidationError, match=match):
            pipe(t2v, seed=1, steps=2, guide=guide, strength=bad)
    with pytest.raises(MVLValidationError, match="frames, height, width, 3"):
        pipe(t2v, seed=1, steps=2, guide=guide[0])
