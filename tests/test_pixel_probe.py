"""training.pixel_probe (issue 18's pixel-space probe): the conditions it builds from a plan, the U-Net's
shapes and zero start, two resumable training steps, sampling and scoring on a tiny text encoder."""

import json

import numpy as np
import torch

from training import pixel_probe as P


def _plan():
    from model.prompt_enhancer import RuleEnhancer
    from model.mvl import MVLRequest
    from training.world.vocab import enhancer_vocabulary

    enh = RuleEnhancer(enhancer_vocabulary())
    e = enh.enhance(MVLRequest(prompt="A red circle moves right and a striped blue triangle stays still in the desert."))
    return e.prompt, e.layout


def test_conditions_paint_each_phrase_in_its_box_and_drop_with_the_text():
    prompt, plan = _plan()
    assert len(plan.subjects) == 2
    te = P._encoder("tiny")
    c = P.conditions(te, [prompt, prompt], [plan, plan], [False, True])
    assert c["layout"].shape == (2, 4, 16, 32, 32) and c["masks"].shape == (2, 2, 16, 32, 32)
    assert torch.equal(c["layout"][0], c["layout"][1])  # the layout stays in the guidance branch
    assert c["masks"][1].abs().sum() == 0 and c["text_vec"][1].abs().sum() == 0  # words dropped
    assert c["phrases"][0, 0].abs().sum() > 0 and not torch.equal(c["phrases"][0, 0], c["phrases"][0, 1])
    net = P.PixelUNet(P.PixelUNetConfig(width=8, ground=4, text_dim=384))
    g = torch.einsum("bnthw,bnc->bcthw", c["masks"], net.ground(c["phrases"]))
    outside = (c["masks"][0].sum(0) == 0)  # (T, H, W): pixels no box covers
    assert g[0][:, outside].abs().max() == 0 and g[0][:, ~outside].abs().max() > 0


def test_the_unet_starts_at_zero_and_keeps_the_clip_shape():
    net = P.PixelUNet(P.PixelUNetConfig(width=8, ground=4)).eval()
    B, N = 2, 3
    args = dict(text_vec=torch.randn(B, 384), layout=torch.rand(B, 4, 6, 32, 32), masks=torch.rand(B, N, 6, 32, 32),
                phrases=torch.randn(B, N, 384))
    with torch.no_grad():
        v = net(torch.randn(B, 3, 6, 32, 32), torch.rand(B), **args)
    assert v.shape == (B, 3, 6, 32, 32) and v.abs().max() == 0  # zero-initialised output
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        x, s = torch.randn(B, 3, 6, 32, 32), torch.full((B,), 0.5)
        a = net(x, s, **args)
        moved = dict(args, layout=args["layout"].roll(4, dims=-1))  # the plan's boxes elsewhere
        b = net(x, s, **moved)
    assert a.abs().max() > 0 and (a - b).abs().max() > 1e-4  # the layout is read


def test_two_steps_resume_sample_and_score(tmp_path):
    cfg = P.ProbeConfig(out=str(tmp_path / "run"), steps=2, batch=2, score_cases=1, sample_steps=2,
                        text_encoder="tiny", model=P.PixelUNetConfig(width=8, ground=4))
    assert P.train(cfg)["step"] == 2
    cfg.steps = 1
    assert P.train(cfg)["step"] == 3  # resumed from the checkpoint, one more step
    rep = P.score(cfg)
    assert rep["step"] == 3 and rep["t2v"]["cases"] == 1 and 0 <= rep["t2v"]["success"] <= 1
    assert set(rep["t2v"]) >= {"shape_acc", "color_acc", "motion_acc"}
    assert json.loads((tmp_path / "run" / "score_train.json").read_text())["step"] == 3
    clips = np.load(tmp_path / "run" / "clips_train_t2v.npy")
    assert clips.shape == (1, 16, 32, 32, 3) and clips.dtype == np.uint8
    st = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    net = P.PixelUNet(P.PixelUNetConfig(**st["config"]["model"])).eval()
    net.load_state_dict(st["ema"])
    prompt, plan = _plan()
    te = P._encoder("tiny")
    one = P.sample_pixels(net, te, prompt, plan, seed=5, steps=2)
    assert np.array_equal(one, P.sample_pixels(net, te, prompt, plan, seed=5, steps=2))  # deterministic for a seed


def test_a_call_anneals_its_learning_rate_and_a_resumed_call_takes_its_own(tmp_path):
    import math

    cfg = P.ProbeConfig(out=str(tmp_path / "run"), steps=4, batch=1, lr=1e-3, lr_final=1e-4, text_encoder="tiny",
                        model=P.PixelUNetConfig(width=8, ground=4))
    P.train(cfg)
    lr = lambda: torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["opt"]["param_groups"][0]["lr"]  # noqa: E731
    assert math.isclose(lr(), 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)), rel_tol=1e-6)  # the 4th step's
    cfg.steps, cfg.lr, cfg.lr_final = 1, 3e-4, 0.0
    P.train(cfg)
    assert lr() == 3e-4  # resumed: this call's rate, not the checkpoint's


def test_a_lost_run_resumes_from_the_committed_state(tmp_path):
    """The EMA weights in fp16 + step kept in the repository: a run whose OUT is gone goes on from them."""
    cfg = P.ProbeConfig(out=str(tmp_path / "run"), steps=2, batch=2, score_cases=1, sample_steps=2,
                        text_encoder="tiny", state_dir=str(tmp_path / "state"), model=P.PixelUNetConfig(width=8, ground=4))
    P.train(cfg)
    meta = json.loads((tmp_path / "state" / "state.json").read_text())
    assert meta["step"] == 2 and meta["config"]["model"]["width"] == 8
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(tmp_path / "state" / "model.safetensors")).values())
    cfg.out, cfg.steps = str(tmp_path / "new_machine"), 1
    assert P.train(cfg)["step"] == 3  # from step 2 of the committed state, not from 0
    import shutil

    shutil.rmtree(tmp_path / "new_machine")
    assert P.score(cfg)["step"] == 3  # scored from the committed state alone


def test_export_writes_a_model_directory_the_pipeline_runs_for_its_families(tmp_path):
    from model.mvl import MVLRequest
    from model.pipeline import OmniPipeline
    from tests.test_model import tiny_pipeline

    base = tiny_pipeline()
    base.save_pretrained(tmp_path / "base")
    cfg = P.ProbeConfig(out=str(tmp_path / "run"), steps=1, batch=1, text_encoder="tiny",
                        model=P.PixelUNetConfig(width=8, ground=4, text_dim=32, temb=16))
    P.train(cfg)
    out = P.export(cfg, str(tmp_path / "base"), str(tmp_path / "m"))
    pipe = OmniPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.pixel is not None and pipe.pixel.config.tasks == ("t2v", "reasoning")
    assert pipe.pixel.config.notes["step"] == 1
    clip = pipe(MVLRequest(prompt="A red circle moves right in the desert.", steps=2, seed=1)).frames
    assert clip.shape == (16, 32, 32, 3)


def test_a_context_model_grows_from_a_t2v_state_trains_on_pixel_families_and_scores_them(tmp_path):
    """--context --init-from: the text-to-video state's input weights grown with zeros (the grown model is the
    trained one on a request without pixels), two steps on first-frame and edit families, scored per family."""
    from model.pixel_generator import CONTEXT_CHANNELS

    small = dict(width=8, ground=4)
    t2v = P.ProbeConfig(out=str(tmp_path / "t2v"), steps=1, batch=1, text_encoder="tiny",
                        state_dir=str(tmp_path / "t2v_state"), model=P.PixelUNetConfig(**small))
    P.train(t2v)
    cfg = P.ProbeConfig(out=str(tmp_path / "ctx"), steps=2, batch=2, score_cases=1, sample_steps=2, text_encoder="tiny",
                        families="i2v:2,edit_remove", score_families="i2v,edit_remove",
                        init_from=str(tmp_path / "t2v_state"),
                        model=P.PixelUNetConfig(**small, context=CONTEXT_CHANNELS))
    assert P.train(cfg)["step"] == 3  # the t2v state's step carries on
    st = torch.load(tmp_path / "ctx" / "checkpoint.pt", weights_only=False)
    assert st["ema"]["inp.weight"].shape[1] == 3 + 4 + 4 + CONTEXT_CHANNELS
    rep = P.score(cfg)
    assert set(rep) >= {"i2v", "edit_remove"} and rep["i2v"]["cases"] == 1
    assert rep["i2v"]["first_frame_psnr"] == 1.0  # the given first frame is kept exactly


def test_worker_items_have_the_in_process_form_and_carry_tensors():
    """prepared_stream: with workers the items are the same kind (target, prompt, rasters, context) handed over as
    tensors (shared memory); the conditions built from either are the same shape."""
    from model.pixel_generator import CONTEXT_CHANNELS
    from model.text_encoder import TextEncoderConfig, TinyTextEncoder

    names, weights = ("i2v", "storyboard", "motion_transfer"), {"i2v": 1.0, "storyboard": 1.0, "motion_transfer": 1.0}
    local = P.prepared_stream(names, weights, 5, True, 0)
    pooled = P.prepared_stream(names, weights, 5, True, 2)
    a, b = [next(local) for _ in range(3)], [next(pooled) for _ in range(3)]
    assert all(isinstance(x["context"], np.ndarray) for x in a)
    assert all(isinstance(x["context"], torch.Tensor) and isinstance(x["rasters"][0], torch.Tensor) for x in b)
    assert all(x["context"].shape == (CONTEXT_CHANNELS, 16, 32, 32) and x["target"].shape == (16, 32, 32, 3) for x in a + b)
    te = TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=32))
    ca, cb = (P.conditions(te, [x["prompt"] for x in xs], None, [False, True, False], rasters=[x["rasters"] for x in xs],
                           contexts=[x["context"] for x in xs]) for xs in (a, b))
    assert {k: v.shape[0] for k, v in ca.items()} == {k: v.shape[0] for k, v in cb.items()}
    assert ca["phrases"][1].abs().max() == 0 and ca["phrases"][0].abs().max() > 0  # a dropped text drops its phrases


def test_the_gpu_recipe_runs_its_cpu_smoke_mode_end_to_end(tmp_path):
    """scripts/train_gpu.sh --smoke: the GPU command's whole path (the committed state resumed, worker batches,
    two steps, the state written back, the model directory exported with the shipped families)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from model.pipeline import OmniPipeline

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path / "gpu"), "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "scripts/train_gpu.sh", "--smoke"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    start = json.loads((root / "assets/train_state/pixel_omni/state.json").read_text())["step"]
    assert json.loads((tmp_path / "gpu" / "state" / "state.json").read_text())["step"] == start + 2
    shipped = OmniPipeline.from_pretrained(root / "assets/models/omni-world")
    pipe = OmniPipeline.from_pretrained(tmp_path / "gpu" / "model")
    assert pipe.pixel.config.tasks == shipped.pixel.config.tasks
    assert pipe.pixel.config.notes["step"] == start + 2
    assert list(pipe.config.pixel_guidance_interval) == list(shipped.config.pixel_guidance_interval)
