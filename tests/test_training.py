"""Two-step smoke runs of every training stage on tiny configs, resume, and DDP with two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.pipeline import OmniPipeline
from training import train_vae
from training.train_omni import TrainConfig, main

ROOT = str(Path(__file__).resolve().parents[1])
TINY = dict(vae="tiny", text_encoder="tiny", batch=3, dim=32, depth=2, heads=2, log_every=1, save_every=2, warmup=1)


def test_pretrain_then_sft_two_steps_each_and_resume(tmp_path):
    pre = TrainConfig(stage="pretrain", out=str(tmp_path / "pre"), families="t2v,i2v", steps=2, **TINY)
    last = main(pre)
    assert last["step"] == 2 and last["loss"] > 0
    model_dir = tmp_path / "pre" / "model"
    pipe = OmniPipeline.from_pretrained(model_dir)
    assert pipe.config.notes["stage"] == "pretrain" and pipe.config.notes["step"] == 2
    # resume: the checkpoint at step 2 continues to step 3
    pre.steps = 3
    assert main(pre)["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    sft = TrainConfig(stage="sft", out=str(tmp_path / "sft"), families="edit_remove,arrows,storyboard,subject_ref",
                      init=str(model_dir), steps=2, **TINY)
    assert main(sft)["step"] == 2
    assert OmniPipeline.from_pretrained(tmp_path / "sft" / "model").config.notes["stage"] == "sft"


def test_a_generator_in_a_2x_vae_latent_space_trains_and_generates(tmp_path):
    """A 2x VAE (16x16 latents) with patch 4 keeps the token count of the shipped 4x VAE with patch 2."""
    from model.mvl import MVLRequest
    from model.vae import VAEConfig, VideoVAE

    torch.manual_seed(0)
    VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4, spatial_down=2)).save_pretrained(tmp_path / "vae2x")
    cfg = TrainConfig(stage="pretrain", out=str(tmp_path / "pre"), families="t2v,i2v", steps=2,
                      **{**TINY, "vae": str(tmp_path / "vae2x")}, patch=4)
    assert main(cfg)["step"] == 2
    pipe = OmniPipeline.from_pretrained(tmp_path / "pre" / "model")
    assert pipe.vae.config.spatial_down == 2 and pipe.generator.config.patch == 4
    pipe.set_progress_bar_config(disable=True)
    out = pipe(MVLRequest(prompt="a red circle moves left on a meadow", seed=1), steps=2, return_latents=True)
    assert out.latents.shape == (1, 4, 8, 16, 16) and out.frames.shape == (16, 32, 32, 3)


def test_a_trained_generator_moves_into_a_2x_vae_latent_space(tmp_path):
    """training/transplant.py: the body carries over, the latent layers are mapped, training goes on."""
    from model.mvl import MVLRequest
    from model.vae import VAEConfig, VideoVAE
    from training.transplant import MOVED, transplant, world_clips

    torch.manual_seed(0)
    assert main(TrainConfig(stage="pretrain", out=str(tmp_path / "pre"), families="t2v,i2v", steps=2, **TINY))["step"] == 2
    old = OmniPipeline.from_pretrained(tmp_path / "pre" / "model")
    clips = world_clips(8)
    # into its own latent space the maps are the identity: the generator comes out unchanged
    for mode in ("procrustes", "fit"):
        same, info = transplant(old.generator, old.vae, old.vae, 2, clips, mode=mode)
        assert info["r2_old_from_new"] > 0.999 and info["refitted"] == sorted(
            f"{m}{w}" for m in MOVED for w in ("bias", "weight"))
        for k, v in old.generator.state_dict().items():
            assert torch.allclose(same.state_dict()[k], v, atol=1e-4), (mode, k)
    # into a 2x VAE: one token must still cover the same pixels, and the error says which patch does
    vae2 = VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4, spatial_down=2))
    vae2.save_pretrained(tmp_path / "vae2x")
    with pytest.raises(ValueError, match="choose --patch 4"):
        transplant(old.generator, old.vae, vae2, 2, clips)
    moved, info = transplant(old.generator, old.vae, vae2, 4, clips)
    body = {k: v for k, v in old.generator.state_dict().items() if not k.startswith(MOVED)}
    assert all(torch.equal(moved.state_dict()[k], v) for k, v in body.items())
    assert moved.x_embed.weight.shape == (32, 4 * 4 * 4) and moved.final.weight.shape == (4 * 4 * 4, 32)
    # the noisy-target map has orthonormal rows: unit noise in the new space is unit noise in the old
    Q = torch.linalg.lstsq(old.generator.x_embed.weight, moved.x_embed.weight).solution  # (16, 64)
    assert torch.allclose(Q @ Q.T, torch.eye(16), atol=1e-3)
    # the training stage: --init a model, --transplant-vae, --patch 4; the result is a 2x model that generates
    cfg = TrainConfig(stage="sft", out=str(tmp_path / "t2x"), families="t2v,i2v", steps=2,
                      init=str(tmp_path / "pre" / "model"), transplant_vae=str(tmp_path / "vae2x"), patch=4,
                      transplant_lr_mult=10.0, **TINY)
    assert main(cfg)["step"] == 2
    pipe = OmniPipeline.from_pretrained(tmp_path / "t2x" / "model")
    assert pipe.vae.config.spatial_down == 2 and pipe.generator.config.patch == 4
    assert pipe.config.notes["transplant"]["mode"] == "procrustes"
    pipe.set_progress_bar_config(disable=True)
    out = pipe(MVLRequest(prompt="a red circle moves left on a meadow", seed=1), steps=2, return_latents=True)
    assert out.latents.shape == (1, 4, 8, 16, 16) and out.frames.shape == (16, 32, 32, 3)
    with pytest.raises(SystemExit, match="--init DIR"):
        main(TrainConfig(out=str(tmp_path / "x"), transplant_vae=str(tmp_path / "vae2x"), patch=4, **TINY))
    with pytest.raises(SystemExit, match="no VAE there"):
        main(TrainConfig(out=str(tmp_path / "x"), init=str(tmp_path / "pre" / "model"),
                         transplant_vae=str(tmp_path / "nowhere"), patch=4, **TINY))
    with pytest.raises(ValueError, match="transplant mode"):
        transplant(old.generator, old.vae, vae2, 4, clips, mode="magic")


def test_vae_training_two_steps(tmp_path):
    cfg = train_vae.VAETrainConfig(out=str(tmp_path / "vae"), steps=2, batch=2, log_every=1, save_every=2,
                                   latent_channels=4)
    vae = train_vae.main(cfg)
    assert (tmp_path / "vae" / "final" / "model.safetensors").is_file()
    assert vae.config.scaling > 0
    # fine-tuning the decoder alone keeps the encoder, and so the latent space and its scale
    dec = train_vae.VAETrainConfig(out=str(tmp_path / "dec"), steps=2, batch=2, log_every=1, save_every=2,
                                   init=str(tmp_path / "vae" / "final"), decoder_only=True)
    tuned = train_vae.main(dec)
    before, after = vae.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("enc."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("dec"))
    assert tuned.config.scaling == vae.config.scaling
    cfg, _, into = train_vae.parse(["--init", "x", "--decoder-only", "--install-into", "m"])
    assert cfg.decoder_only and cfg.init == "x" and into == "m"
    assert not train_vae.parse([])[0].decoder_only
    # installing it into a model: only over the VAE whose encoder it kept
    from model.vae import VideoVAE

    model = tmp_path / "model"
    vae.save_pretrained(model / "vae")
    train_vae.install_decoder(tmp_path / "dec" / "final", model)
    assert torch.equal(VideoVAE.from_pretrained(model / "vae").state_dict()["dec.0.conv.weight"],
                       tuned.state_dict()["dec.0.conv.weight"])
    train_vae.main(train_vae.VAETrainConfig(out=str(tmp_path / "other"), steps=1, batch=2, latent_channels=4, seed=5))
    with pytest.raises(SystemExit, match="only a decoder fine-tune"):
        train_vae.install_decoder(tmp_path / "other" / "final", model)
    # what the decoder is trained on is exactly the inference path (encode, then decode), whatever the latent scale
    from model.vae import to_model_range

    tuned.config.scaling = 5.0
    x = to_model_range(torch.randint(0, 256, (1, 3, 16, 16, 3)))
    with torch.no_grad():
        _, info = train_vae.vae_loss(tuned, x, 0.0, frozen_encoder=True)
        assert info["mse"] == pytest.approx((tuned.decode(tuned.encode(x), 3) - x).pow(2).mean().item(), rel=1e-5)
    with pytest.raises(SystemExit, match="needs --init"):
        train_vae.main(train_vae.VAETrainConfig(out=str(tmp_path / "bad"), decoder_only=True))


def test_ddp_two_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "training.pretrain", "--out", str(out), "--vae", "tiny", "--text-encoder", "tiny", "--steps", "2",
           "--batch", "2", "--dim", "32", "--depth", "2", "--heads", "2", "--log-every", "1", "--save-every", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2
    assert (out / "model" / "model_index.json").is_file()


def test_a_sampler_failure_does_not_stop_a_training_stream(monkeypatch):
    from training import data
    from training.world import families

    real = families.SAMPLERS["t2v"]
    calls = {"n": 0}

    def flaky(rng, split):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("could not place 3 subjects")
        return real(rng, split)

    monkeypatch.setitem(families.SAMPLERS, "t2v", flaky)
    stream = data.sample_stream(("t2v",), seed=0)
    got = [next(stream) for _ in range(3)]
    assert calls["n"] == 4 and all(s.family == "t2v" for s in got)


def test_foreground_weights_cover_the_subjects_and_weight_the_loss():
    import numpy as np
    import torch

    from training.train_omni import build_components, foreground_weights, training_loss
    from training.world import sample
    from model.prompt_enhancer import RuleEnhancer
    from training.world.vocab import enhancer_vocabulary

    smp = sample("t2v", 3, "train")
    w = foreground_weights([smp], (8, 8, 8))
    assert w.shape == (1, 8, 8, 8) and 0 < w.mean() < 0.8
    # every latent position over a subject pixel is marked, and only those
    mask = np.zeros((16, 32, 32), bool)
    for sub in smp.truth.subjects:
        mask |= sub.mask
    expect = mask.reshape(8, 2, 8, 4, 8, 4).any(axis=(1, 3, 5))
    assert np.array_equal(w[0].numpy().astype(bool), expect)

    cfg = TrainConfig(**TINY)
    vae, gen, te, _ = build_components(cfg)
    enh = RuleEnhancer(enhancer_vocabulary())
    batch = [sample("t2v", k, "train") for k in range(3)]
    plain = training_loss(gen, vae, te, enh, batch, cfg, np.random.default_rng(0))
    cfg.fg_weight = 0.0
    again = training_loss(gen, vae, te, enh, batch, cfg, np.random.default_rng(0))
    assert torch.allclose(plain, again)
    cfg.fg_weight = 5.0
    weighted = training_loss(gen, vae, te, enh, batch, cfg, np.random.default_rng(0))
    assert torch.isfinite(weighted) and not torch.allclose(weighted, plain)
    cfg.fg_max_s = -1.0  # no noise level is low enough: the weighting is off
    assert torch.allclose(training_loss(gen, vae, te, enh, batch, cfg, np.random.default_rng(0)), plain)


def test_family_weights_are_parsed_and_checked():
    import pytest

    from training.train_omni import parse_families

    assert parse_families("t2v:3, i2v") == (("t2v", "i2v"), {"t2v": 3.0, "i2v": 1.0})
    for bad in ("t2v:x", "nope", "t2v:0", ""):
        with pytest.raises(SystemExit):
            parse_families(bad)


def test_training_curves_are_drawn_end_to_end(tmp_path):
    """`python -m training.plot_curves` lays stages end to end on cumulative hours, one colour each."""
    import json as _json

    import numpy as np

    from PIL import Image

    from training import plot_curves as P

    logs = []
    for i, (n, top) in enumerate([(30, 1.2), (20, 0.5)]):
        p = tmp_path / f"s{i}" / "log.jsonl"
        p.parent.mkdir()
        rows = [{"step": 20 * k, "loss": top / (1 + 0.1 * k), "hours": 0.05 * (k + 1)} for k in range(n)]
        rows.insert(5, dict(rows[4]))  # a resumed run logs a line twice: skipped
        p.write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
        logs.append(str(p))
    out = tmp_path / "curve.png"
    assert P.main(["--logs", *logs, "--labels", "pretrain", "sft", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (P.H, P.W, 3)
    area = img[P.T:P.H - P.B, P.L:P.W - P.R]
    for c in P.COLORS[:2]:  # both stages drawn
        assert (np.abs(area - np.array(c)).sum(-1) < 30).sum() > 50, c
    h, _ = P.read_stage(logs[0])
    assert len(h) == 30 and np.all(np.diff(h) > 0)
    with pytest.raises(SystemExit, match="no lines with 'loss' and 'hours'"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"step": 1}\n')
        P.read_stage(bad)
    with pytest.raises(SystemExit):
        P.main(["--logs", *logs, "--labels", "one", "--out", str(out)])
    # a preference round's loss and margin, side by side
    rnd = tmp_path / "round.json"
    rnd.write_text(_json.dumps({"curves": {"loss": [0.69, 0.6, 0.5, 0.4], "margin": [0.0, 0.5, 1.0, 2.0]}}))
    assert P.main(["--dpo", str(rnd), "--out", str(tmp_path / "dpo.png")]) == 0
    assert Image.open(tmp_path / "dpo.png").size == (2 * P.W, P.H)
    with pytest.raises(SystemExit, match="not a preference-round report"):
        P.main(["--dpo", str(logs[0]), "--out", str(tmp_path / "x.png")])


def test_layout_training_resumes_from_the_committed_state_when_its_run_folder_is_lost(tmp_path):
    """A new machine without runs/: the committed state (fp16 EMA + step + schedule) continues the run."""
    import shutil

    from safetensors.torch import load_file

    cfg = TrainConfig(stage="sft", out=str(tmp_path / "run"), families="t2v,arrows,i2v", steps=2, layout=True,
                      state_dir=str(tmp_path / "state"), **TINY)
    main(cfg)
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["step"] == 2 and state["schedule"]["steps"] == 2 and "--state-dir" in state["resume"]
    weights = load_file(str(tmp_path / "state" / "generator" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    pipe = OmniPipeline.from_pretrained(tmp_path / "state")  # the state is a model directory too
    assert pipe.generator.config.layout_channels == 4 and pipe.generator.layout_embed is not None
    shutil.rmtree(tmp_path / "run")  # runs/ lost with the machine
    cfg.steps = 3
    assert main(cfg)["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3]  # it went on from step 2, not from 0
    assert json.loads((tmp_path / "state" / "state.json").read_text())["step"] == 3


def test_a_layout_model_moved_into_a_2x_vae_resumes_from_its_state_without_runs_or_the_vae(tmp_path):
    """scripts/train_v2_2x.sh's path: a layout model transplanted into a 2x VAE with the input path; on a new
    machine (runs/ lost, the 2x VAE's run folder with it) the committed state alone continues the run."""
    import shutil

    from model.vae import VAEConfig, VideoVAE

    torch.manual_seed(0)
    main(TrainConfig(stage="sft", out=str(tmp_path / "v2"), families="t2v,boxes", steps=2, layout=True, **TINY))
    VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4, spatial_down=2)).save_pretrained(tmp_path / "vae2x")
    cfg = TrainConfig(stage="sft", out=str(tmp_path / "run"), families="t2v,boxes", steps=2, layout=True,
                      init=str(tmp_path / "v2" / "model"), transplant_vae=str(tmp_path / "vae2x"), patch=4,
                      input_skip=True, transplant_lr_mult=10.0, state_dir=str(tmp_path / "state"), **TINY)
    assert main(cfg)["step"] == 2
    pipe = OmniPipeline.from_pretrained(tmp_path / "state")
    g = pipe.generator.config
    assert pipe.vae.config.spatial_down == 2 and g.patch == 4 and g.layout_channels == 4 and g.input_skip
    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(tmp_path / "vae2x")  # the VAE it was moved into is gone too: the state carries it
    cfg.steps = 3
    assert main(cfg)["step"] == 3
    again = OmniPipeline.from_pretrained(tmp_path / "run" / "model")
    assert again.vae.config.spatial_down == 2 and again.generator.config.layout_channels == 4


def test_the_latent_gpu_recipe_runs_its_cpu_smoke_mode_end_to_end(tmp_path):
    """scripts/train_gpu_latent.sh --smoke: the GPU command's whole path (render workers, budget, export, state)."""
    env = {**os.environ, "OUT": str(tmp_path / "gpu"), "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "scripts/train_gpu_latent.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "gpu" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2] and all(x["loss"] > 0 for x in log)
    pipe = OmniPipeline.from_pretrained(tmp_path / "gpu" / "model")
    assert pipe.generator.config.layout_channels == 4
    # it continues the furthest committed state: the 2x-VAE path, its VAE inside
    assert "init: assets/train_state/layout2x" in r.stdout and pipe.vae.config.spatial_down == 2
    assert json.loads((tmp_path / "gpu" / "state" / "state.json").read_text())["step"] == 2


def test_training_never_imports_the_studio():
    """The studio calls training; training never calls the studio (CONVENTIONS: which way the imports go)."""
    import re

    offenders = [str(p) for p in Path(ROOT, "training").rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+studio_backend", p.read_text(), re.M)]
    assert offenders == []
