"""Few-step distillation (training/distill.py) on tiny models: the teacher's trajectories, both stages,
the distilled model directory, and the studio's distillation job (CPU, seconds each)."""

import json

import numpy as np
import pytest
import torch

from model import flow_matching as fm
from model.generator import TEXT
from model.pipeline import OmniPipeline
from studio_backend.studio import Studio
from tests.test_model import tiny_pipeline
from training.distill import (DistillConfig, condition_pieces, distill, initial_latents, teacher_grid,
                              teacher_trajectory, trajectory_set)
from training.world import sample

SMALL = dict(steps=2, teacher_steps=4, requests=2, batch=2, iters=2, save_every=1)


def count_passes(gen):
    """Wrap a generator's forward: the list gets the batch size of every pass."""
    rows = []
    real = gen.forward

    def counted(x, *a, **k):
        rows.append(x.shape[0])
        return real(x, *a, **k)

    gen.forward = counted
    return rows


def test_trajectory_targets_are_the_teachers_own_ode_solution():
    teacher = tiny_pipeline()
    req = sample("t2v", 3, "train").request
    K, seed, g = 2, 11, 3.0
    M = teacher_grid(K, 5)
    assert M == 6 and teacher_grid(4, 50) == 52
    pieces = condition_pieces(teacher, req)
    points, sigmas = teacher_trajectory(teacher, req, pieces, K, 5, g, seed)
    # the teacher's sampler by hand: guided Euler steps on its 6-step schedule from the seed's noise
    gen = teacher.generator
    cond = gen.embed_conditions([pieces, [p for p in pieces if p.kind != TEXT]])
    sig = fm.schedule(M, teacher.config.shift)
    x = torch.randn(points.shape[1:], generator=torch.Generator().manual_seed(seed))[None]
    by_hand = [x]
    with torch.no_grad():
        for i in range(M):
            v_c, v_u = gen(torch.cat([x, x]), fm.to_timestep(sig[i]).repeat(2), cond).chunk(2)
            x = fm.euler_step(x, v_u + g * (v_c - v_u), float(sig[i]), float(sig[i + 1]))
            if (i + 1) % (M // K) == 0:
                by_hand.append(x)
    torch.testing.assert_close(points, torch.cat(by_hand), atol=1e-5, rtol=1e-5)
    # the kept points lie on the student's own schedule
    torch.testing.assert_close(sigmas, fm.schedule(K, teacher.config.shift))
    torch.testing.assert_close(sigmas[1], sig[M // K])
    # a mask-free edit starts from its source noised to the edit level, and an image-to-video request keeps its
    # first frame: the trajectory ends where the teacher's pipeline ends
    teacher.config.edit_strength = {"edit_add": 0.5}
    for fam in ("edit_add", "i2v"):
        r = sample(fam, 2, "train").request
        pcs = condition_pieces(teacher, r)
        pts, sg = teacher_trajectory(teacher, r, pcs, K, 5, g, seed)
        end = teacher(r, steps=M, guidance=g, seed=seed, return_latents=True).latents
        torch.testing.assert_close(pts[-1:], end, atol=1e-5, rtol=1e-5)
        start = 0.5 if fam == "edit_add" else 1.0
        assert float(sg[0]) == pytest.approx(start) and float(sg[-1]) == 0.0
        torch.testing.assert_close(pts[:1], initial_latents(teacher, pcs, seed, start))


def test_each_stage_trains_two_steps_and_the_trajectories_are_cached(tmp_path):
    teacher = tiny_pipeline()
    before = {k: v.clone() for k, v in teacher.generator.state_dict().items()}
    for stage in ("trajectory", "dmd"):
        cfg = DistillConfig(**SMALL, stage=stage, out=str(tmp_path / stage))
        student, log = distill(teacher, cfg)
        assert [r["step"] for r in log] == [1, 2] and all(r["stage"] == stage for r in log)
        assert all(np.isfinite(r["loss"]) for r in log)
        if stage == "dmd":
            assert all(np.isfinite(r[k]) for r in log for k in ("dmd_loss", "fake_loss", "traj_loss"))
        after = student.generator.state_dict()
        assert any(not torch.equal(after[k], before[k]) for k in after)
        assert all(torch.equal(v, teacher.generator.state_dict()[k]) for k, v in before.items())  # teacher untouched
        assert len(list((tmp_path / stage / "trajectories").glob("*.pt"))) == 2
    # a second pass over the set reads the cache: the teacher is not run again
    passes = count_passes(teacher.generator)
    items = trajectory_set(teacher, DistillConfig(**SMALL, out=str(tmp_path / "dmd")))
    assert passes == [] and len(items) == 2 and items[0].family != items[1].family
    # a finished run, started again, does nothing more; another recipe in the same folder is refused
    again, log = distill(teacher, DistillConfig(**SMALL, stage="dmd", out=str(tmp_path / "dmd")))
    assert len(log) == 2
    with pytest.raises(ValueError, match="another run"):
        distill(teacher, DistillConfig(**{**SMALL, "teacher_steps": 6}, stage="dmd", out=str(tmp_path / "dmd")))


def test_the_distilled_model_saves_loads_and_makes_k_steps_of_one_pass(tmp_path):
    from training.distill import main, parse

    tiny_pipeline().save_pretrained(tmp_path / "teacher")
    cfg, resume = parse(["--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"), "--steps", "2",
                         "--teacher-steps", "4", "--requests", "2", "--batch", "2", "--iters", "1", "--dmd-iters", "2",
                         "--log-every", "1"])
    summary = main(cfg, resume)
    assert summary["iters_done"] == 3
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines] == ["trajectory", "dmd", "dmd"]
    student = OmniPipeline.from_pretrained(tmp_path / "run" / "model")
    student.set_progress_bar_config(disable=True)
    c = student.config
    assert c.default_steps == 2 and c.guidance_distilled and c.default_guidance == 3.0
    assert c.notes["distill"]["teacher_dir"] == str(tmp_path / "teacher") and c.notes["distill"]["steps_done"] == 3
    req = sample("i2v", 1, "train").request
    req.guidance = 5.0  # asked for, and distilled away: still one pass per step
    passes = count_passes(student.generator)
    a = student(req, steps=c.default_steps).frames
    assert passes == [1, 1]
    np.testing.assert_array_equal(a, student(req, steps=c.default_steps).frames)
    # the teacher at the same step count runs two rows (guidance): the student's saving
    teacher = OmniPipeline.from_pretrained(tmp_path / "teacher")
    teacher.set_progress_bar_config(disable=True)
    tp = count_passes(teacher.generator)
    teacher(req, steps=2)
    assert tp == [2, 2]
    with pytest.raises(SystemExit, match="unknown family"):
        parse(["--teacher", str(tmp_path / "teacher"), "--families", "t2v,dance"])


def _studio(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "home")
    admin = st.users.ensure("root", "admin")
    base = st.registry.register("base", str(tmp_path / "m"))
    st.registry.promote(admin, base.id)
    return st, admin, base


def test_a_distillation_job_cancels_and_resumes_to_the_same_weights(tmp_path):
    from studio_backend.services import ServiceError
    from studio_backend.train_jobs import read_log, run_train_job, submit_distill

    st, admin, base = _studio(tmp_path)

    def loader(path):
        p = OmniPipeline.from_pretrained(path)
        p.set_progress_bar_config(disable=True)
        return p

    with pytest.raises(ServiceError, match="steps=0 is outside"):
        submit_distill(st, admin, steps=0)
    with pytest.raises(ServiceError, match="stage 'all'"):
        submit_distill(st, admin, stage="all")
    with pytest.raises(ServiceError, match="unknown distillation setting"):
        submit_distill(st, admin, gamma=1)
    settings = dict(steps=2, iters=3, batch=2, teacher_steps=4, requests=2, stage="both")
    # straight through
    submit_distill(st, admin, **settings)
    straight = run_train_job(st, st.jobs.claim("t", ("train",)), loader, save_every=2)
    assert straight.status == "succeeded", straight.message
    v_straight = st.registry.get(straight.model_version_id)
    assert v_straight.parent_id == base.id and v_straight.status == "candidate"
    assert v_straight.metrics["distilled_steps"] == 2 and "distill2" in v_straight.name
    assert loader(v_straight.path).config.default_steps == 2
    # the same run, killed at step 5 (in stage 2, after the checkpoint of step 4), taken back after a restart
    job = submit_distill(st, admin, **settings)
    real_progress = st.jobs.progress

    def power_cut(job_id, fraction, message=""):
        if message.startswith("step 5/"):
            raise KeyboardInterrupt("power cut")
        return real_progress(job_id, fraction, message)

    st.jobs.progress = power_cut
    with pytest.raises(KeyboardInterrupt):
        run_train_job(st, st.jobs.claim("t", ("train",)), loader, save_every=2)
    st.jobs.progress = real_progress
    restarted = Studio.open(st.home)
    assert restarted.jobs.requeue_interrupted() == 1
    again = restarted.jobs.claim("t2", ("train",))
    assert again.id == job.id
    resumed = run_train_job(restarted, again, loader, save_every=2)
    assert resumed.status == "succeeded", resumed.message
    assert [r["step"] for r in read_log(restarted, job.id)] == [1, 2, 3, 4, 5, 6]
    v = restarted.registry.get(resumed.model_version_id)
    assert v.metrics["resumed"] is True and v.parent_id == base.id
    a = loader(v_straight.path).generator.state_dict()
    b = loader(v.path).generator.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    moved = loader(base.path).generator.state_dict()
    assert any(not torch.allclose(a[k], moved[k]) for k in a)
    # cancel: asked while queued, honoured at the first report; nothing is registered
    n_versions = len(restarted.registry.list())
    job = submit_distill(restarted, admin, **settings)
    claimed = restarted.jobs.claim("t", ("train",))
    restarted.jobs.cancel(admin, job.id)
    done = run_train_job(restarted, claimed, loader)
    assert done.status == "canceled" and len(restarted.registry.list()) == n_versions


def test_training_tab_starts_a_distillation_of_the_active_version(tmp_path):
    from app.context import AppContext
    from app.training_tab import dpo_curve, start_distill

    st, admin, base = _studio(tmp_path)
    ctx = AppContext(st, OmniPipeline.from_pretrained)
    with pytest.raises(Exception, match="admin"):
        start_distill(ctx, {"name": "ann", "role": "annotator"}, 4)
    job = start_distill(ctx, {"name": "root", "role": "admin"}, 4)
    assert job.kind == "train" and job.request["algorithm"] == "distill" and job.request["config"]["steps"] == 4
    assert job.model_version_id == base.id
    # the curve of a distillation log: its loss (and the fake score's, in stage 2)
    from studio_backend.train_jobs import run_dir

    run_dir(st, job.id).mkdir(parents=True)
    (run_dir(st, job.id) / "log.jsonl").write_text(
        json.dumps({"step": 1, "stage": "trajectory", "loss": 0.5}) + "\n"
        + json.dumps({"step": 2, "stage": "dmd", "loss": 0.4, "fake_loss": 0.3}) + "\n")
    curve = dpo_curve(ctx, job.id)
    assert sorted(curve["series"]) == ["fake_loss", "loss", "loss"]
