"""Few-step generation by Kling-Omni's two-stage distillation: a K-step student without guidance.

    python -m training.distill --teacher assets/models/omni-world --steps 4 --out runs/distill4 \
        [--stage trajectory|dmd|both] [--iters N] [--dmd-iters N] [--batch B] [--teacher-steps 50] [--requests 256] ...

The student starts as a copy of the teacher's generator and samples with K Euler steps on the
teacher's own schedule (`fm.schedule(K, shift)`), one generator pass per step: classifier-free
guidance is distilled into its weights (PipelineConfig.guidance_distilled), so it never runs the
unconditional row.

Stage 1, trajectory matching. For a fixed set of requests of every task family (OmniWorld,
training split), the teacher's ODE is solved by the teacher's own pipeline with many Euler steps
(--teacher-steps, rounded up to a multiple of K so that the student's boundaries lie on the fine
grid) WITH its guidance; the latents at the student's K + 1 boundaries s_0 > ... > s_K = 0 are
kept (cached under OUT/trajectories/, so a resumed run does not recompute them). The student
learns to make each of its steps land where the teacher's trajectory does: from x_{s_i}, one pass
(no CFG) is regressed onto the velocity (x_{s_{i+1}} - x_{s_i}) / (s_{i+1} - s_i).

Stage 2, distribution matching (DMD / DMD2, Yin et al. 2024, on the ODE few-step samples). The
student's own K-step samples are drawn as at inference (its pipeline, stopped at a random step i);
one pass with gradient gives its clean sample x0 = x_{s_i} - s_i v. That sample is noised to a
random level t and scored twice: by the teacher with its guidance (the real score) and by a
fake-score model (a copy of the teacher trained with the flow-matching loss on the student's
samples: the score of what the student makes now). The student is moved along the difference,
through its sample: grad_x0 = (x0_fake - x0_real) / mean|x0 - x0_real| (x0_* = x_t - t v_*),
applied as 0.5 * ||x0 - sg(x0 - grad)||^2. Stage 1's regression stays as a small regulariser
(--dmd-reg), which keeps the student on the teacher's trajectories while DMD sharpens them.

Resumable from OUT/checkpoint.pt (student, fake score, both optimisers, step, log); every step draws
its data from (seed, step) alone, so a stopped and resumed run ends with the same weights as one
that ran straight through. The student is written as a model directory to OUT/model (at every
checkpoint and at the end): PipelineConfig default_steps = K, guidance_distilled = True, the
teacher's other settings carried, and the recipe (teacher, stages, losses) in its notes.

This module is the algorithm and imports nothing of the studio; a distillation of a studio version
is a train job (studio_backend.train_jobs, algorithm "distill"), which registers the student as a
candidate with the teacher as its parent.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model import flow_matching as fm
from model.conditioning import generator_conditions, without_text
from model.generator import VIDEO, CondPiece, OmniGenerator
from model.mvl import MVLRequest
from model.pipeline import OmniPipeline
from training.data import SFT_FAMILIES

STAGES = ("trajectory", "dmd")
# settings a resumed run may change without becoming another run
RUNTIME_KEYS = ("out", "threads", "save_every", "log_every")


@dataclass
class DistillConfig:
    teacher: str = "assets/models/omni-world"  # the teacher's model directory
    out: str = "runs/distill"  # checkpoint, trajectory cache, log and OUT/model
    steps: int = 4  # K: the student's sampling steps
    stage: str = "both"  # trajectory | dmd | both (trajectory first, then dmd)
    iters: int = 400  # optimiser steps of stage 1 (and of stage 2 unless dmd_iters is set)
    dmd_iters: int = 0  # optimiser steps of stage 2; 0 = iters
    batch: int = 4  # (request, step) pairs per optimiser step
    teacher_steps: int = 50  # Euler steps of the teacher's ODE (rounded up to a multiple of K)
    guidance: float = 0.0  # the guidance distilled in; 0 = the teacher's default_guidance
    requests: int = 256  # requests in the trajectory set (families taken in turn, all of them)
    families: str = ",".join(SFT_FAMILIES)  # comma-separated task families of the requests
    lr: float = 5e-5  # student, stage 1
    dmd_lr: float = 1e-5  # student, stage 2
    fake_lr: float = 1e-4  # fake-score model, stage 2
    fake_updates: int = 1  # fake-score updates per student step (DMD2 uses 5 on large models)
    dmd_reg: float = 0.25  # weight of stage 1's regression in stage 2
    dmd_t_min: float = 0.02  # noise levels the student's samples are scored at: uniform in [min, max]
    dmd_t_max: float = 0.98
    seed: int = 0
    threads: int = 1
    save_every: int = 50  # checkpoint (and OUT/model) every this many steps
    log_every: int = 10


@dataclass
class TrajectoryItem:
    """One request of the trajectory set: what the teacher made of it at the student's boundaries."""

    family: str
    sample_seed: int  # the world sample (training split) the request comes from
    seed: int  # the noise seed of the teacher's run
    request: MVLRequest
    pieces: list[CondPiece]  # the request's condition pieces with text: what the student sees
    points: torch.Tensor  # (K + 1, C, T, h, w): the teacher's latents at s_0 .. s_K
    sigmas: torch.Tensor  # (K + 1,): s_0 (1, or the edit's start level) .. s_K = 0


def stages_of(cfg: DistillConfig) -> tuple[str, ...]:
    if cfg.stage == "both":
        return STAGES
    if cfg.stage not in STAGES:
        raise ValueError(f"--stage {cfg.stage!r}: use trajectory, dmd or both")
    return (cfg.stage,)


def stage_plan(cfg: DistillConfig) -> list[tuple[str, int]]:
    """(stage, optimiser steps) in the order they run; steps are numbered across them."""
    n = {"trajectory": cfg.iters, "dmd": cfg.dmd_iters or cfg.iters}
    return [(st, n[st]) for st in stages_of(cfg)]


def stage_at(cfg: DistillConfig, step: int) -> str:
    """The stage that step `step` (0-based, across the stages) belongs to."""
    for st, n in stage_plan(cfg):
        if step < n:
            return st
        step -= n
    raise IndexError("past the last stage")


def total_steps(cfg: DistillConfig) -> int:
    return sum(n for _, n in stage_plan(cfg))


def teacher_grid(steps: int, teacher_steps: int) -> int:
    """The teacher's Euler steps: at least `teacher_steps`, a multiple of the student's `steps`, so that
    schedule(steps) is a subset of schedule(grid) (the shift maps linspace points to linspace points)."""
    return steps * max(1, math.ceil(teacher_steps / steps))


def distilled_guidance(teacher: OmniPipeline, cfg: DistillConfig) -> float:
    return float(cfg.guidance or teacher.config.default_guidance)


# ---------------------------------------------------------------- the teacher's trajectories
def condition_pieces(pipe: OmniPipeline, request: MVLRequest) -> list[CondPiece]:
    """The request's condition pieces (with text) exactly as the pipeline builds them at inference."""
    return generator_conditions([request], [pipe.enhancer.enhance(request)], pipe.vae, pipe.text_encoder,
                                pipe.generator.config, frames=pipe.config.frames)[0]


def initial_latents(pipe: OmniPipeline, pieces: list[CondPiece], seed: int, start: float) -> torch.Tensor:
    """x at the first boundary, as the pipeline draws it: noise of `seed`, or for a mask-free video edit
    (start < 1) the source clip's latents noised to the start level with that noise. (1, C, T, h, w)"""
    C = pipe.vae.config.latent_channels
    h = pipe.config.size // pipe.vae.config.spatial_down
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(1, C, pipe.vae.latent_frames(pipe.config.frames), h, h, generator=g)  # (1, C, T, h, w)
    if start < 1.0:
        z = next(p.data for p in pieces if p.kind == VIDEO)[None]
        x = fm.add_noise(z, x, torch.tensor([start]))
    return x


def teacher_trajectory(teacher: OmniPipeline, request: MVLRequest, pieces: list[CondPiece], K: int,
                       teacher_steps: int, guidance: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's guided ODE solution of a request at the student's K-step boundaries: the teacher's own
    pipeline run with teacher_grid(K, teacher_steps) Euler steps (edit start, first-frame anchor and masks
    included), its latents kept at every (grid / K)-th step. Returns (points (K+1, C, T, h, w), sigmas (K+1,))."""
    M = teacher_grid(K, teacher_steps)
    every = M // K
    points, starts = [], []

    def keep(pipe, i, timestep, tensors):
        if "latents" not in tensors:  # the SR stage's report
            return None
        if i == 0:  # the level the pipeline starts from: 1, or a mask-free edit's start
            starts.append(timestep / fm.TIMESTEP_SCALE)
        if (i + 1) % every == 0:
            points.append(tensors["latents"][0].clone())
        return None

    teacher(request, steps=M, guidance=guidance, seed=seed, callback_on_step_end=keep)
    x0 = initial_latents(teacher, pieces, seed, starts[0])[0]
    # the student's boundaries as its pipeline will step them (the grid's every (M / K)-th level, up to rounding)
    return torch.stack([x0] + points), fm.schedule(K, teacher.config.shift) * starts[0]


def _request_spec(cfg: DistillConfig, k: int) -> tuple[str, int, int]:
    """(family, world sample seed, noise seed) of trajectory k: families in turn, seeds from (seed, k)."""
    families = [f for f in cfg.families.split(",") if f]
    rng = np.random.default_rng([cfg.seed, 1, k])
    return families[k % len(families)], int(rng.integers(2**31 - 1)), int(rng.integers(2**31 - 1))


def _world_sample(family: str, seed: int):
    from training.world import sample

    for attempt in range(100):  # a rare layout that does not fit the frame: the next seed
        try:
            return sample(family, seed + attempt, "train"), seed + attempt
        except RuntimeError:
            continue
    raise RuntimeError(f"no {family} sample from seed {seed}")


def trajectory_set(teacher: OmniPipeline, cfg: DistillConfig, on_progress: Callable[[int, int], bool] | None = None
                   ) -> list[TrajectoryItem] | None:
    """The trajectory set, computed once into OUT/trajectories/ (one file per request) and read back after.
    `on_progress(done, total) -> bool` may stop it (None is returned then)."""
    K, guidance = cfg.steps, distilled_guidance(teacher, cfg)
    folder = Path(cfg.out) / "trajectories"
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {"steps": K, "teacher_grid": teacher_grid(K, cfg.teacher_steps), "guidance": guidance}
    items = []
    for k in range(cfg.requests):
        family, sample_seed, seed = _request_spec(cfg, k)
        smp, sample_seed = _world_sample(family, sample_seed)
        pieces = condition_pieces(teacher, smp.request)
        path = folder / f"{k:05d}.pt"
        if path.is_file():
            st = torch.load(path, weights_only=False)
            if st["recipe"] != recipe or st["sample_seed"] != sample_seed:
                raise ValueError(f"{path} was made for another run ({st['recipe']}, now {recipe}): "
                                 "use another --out, or delete that folder to recompute")
            points, sigmas = st["points"], st["sigmas"]
        else:
            points, sigmas = teacher_trajectory(teacher, smp.request, pieces, K, cfg.teacher_steps, guidance, seed)
            tmp = path.with_suffix(".tmp")
            torch.save({"recipe": recipe, "family": family, "sample_seed": sample_seed, "seed": seed,
                        "points": points, "sigmas": sigmas}, tmp)
            tmp.replace(path)
        items.append(TrajectoryItem(family, sample_seed, seed, smp.request, pieces, points, sigmas))
        if on_progress is not None and on_progress(k + 1, cfg.requests):
            return None
    return items


# ---------------------------------------------------------------- stage 1: trajectory matching
def trajectory_loss(student: OmniGenerator, items: list[TrajectoryItem], picks: list[tuple[int, int]]) -> torch.Tensor:
    """One student pass (no CFG) per (item, step i) regressed onto the teacher's step from x_{s_i} to x_{s_{i+1}},
    as a velocity: (x_{s_{i+1}} - x_{s_i}) / (s_{i+1} - s_i)."""
    x = torch.stack([items[n].points[i] for n, i in picks])  # (B, C, T, h, w)
    x_next = torch.stack([items[n].points[i + 1] for n, i in picks])
    s = torch.stack([items[n].sigmas[i] for n, i in picks]).float()  # (B,)
    s_next = torch.stack([items[n].sigmas[i + 1] for n, i in picks]).float()
    target = (x_next - x) / (s_next - s).view(-1, 1, 1, 1, 1)
    v = student(x, fm.to_timestep(s), student.embed_conditions([items[n].pieces for n, _ in picks]))
    return F.mse_loss(v.float(), target)


# ---------------------------------------------------------------- stage 2: distribution matching
def student_latents_at(student_pipe: OmniPipeline, item: TrajectoryItem, K: int, i: int, seed: int) -> torch.Tensor:
    """The student's own x at its boundary i for a new noise seed, as at inference: its pipeline (one pass per
    step, anchors and masks included) stopped after step i - 1. (1, C, T, h, w)"""
    if i == 0:
        return initial_latents(student_pipe, item.pieces, seed, float(item.sigmas[0]))
    got = []

    def stop(pipe, step, timestep, tensors):
        if step == i - 1 and "latents" in tensors:
            got.append(tensors["latents"].clone())
            pipe.interrupt = True
        return None

    student_pipe(item.request, steps=K, seed=seed, callback_on_step_end=stop)
    return got[0]


def _guided_velocity(gen: OmniGenerator, x: torch.Tensor, t: torch.Tensor, pieces: list[list[CondPiece]],
                     guidance: float) -> torch.Tensor:
    """The teacher's velocity with classifier-free guidance, as the pipeline combines it."""
    uncond = [without_text(ps) for ps in pieces]
    v = gen(torch.cat([x, x]), torch.cat([t, t]), gen.embed_conditions(pieces + uncond))
    v_c, v_u = v.float().chunk(2)
    return v_u + guidance * (v_c - v_u)


def dmd_losses(student: OmniGenerator, fake: OmniGenerator, teacher: OmniGenerator, student_pipe: OmniPipeline,
               items: list[TrajectoryItem], picks: list[tuple[int, int, int]], cfg: DistillConfig, guidance: float,
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(student's DMD loss, the student's clean samples (detached) for the fake score's update).
    picks: (item, student step i, noise seed) per sample."""
    with torch.no_grad():
        x = torch.cat([student_latents_at(student_pipe, items[n], cfg.steps, i, sd) for n, i, sd in picks])
    s = torch.stack([items[n].sigmas[i] for n, i, _ in picks]).float()  # (B,)
    pieces = [items[n].pieces for n, _, _ in picks]
    v = student(x, fm.to_timestep(s), student.embed_conditions(pieces))
    x0 = x - s.view(-1, 1, 1, 1, 1) * v.float()  # the student's sample from x_{s_i} (its last step lands here)
    # (inside a kept region, the i2v anchor frame or outside an edit mask, x0 is scored like the rest: inference
    # overwrites those latents, so what DMD does to them there is harmless)
    B = x0.shape[0]
    t = cfg.dmd_t_min + (cfg.dmd_t_max - cfg.dmd_t_min) * torch.rand(B, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        xt = fm.add_noise(x0.detach(), noise, t)
        tt = t.view(-1, 1, 1, 1, 1)
        x0_real = xt - tt * _guided_velocity(teacher, xt, fm.to_timestep(t), pieces, guidance)
        x0_fake = xt - tt * fake(xt, fm.to_timestep(t), fake.embed_conditions(pieces)).float()
        # DMD's normaliser: the distance to the real score's estimate, per sample
        norm = (x0.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
        grad = (x0_fake - x0_real) / norm
    loss = 0.5 * F.mse_loss(x0, (x0 - grad).detach())
    return loss, x0.detach()


def fake_score_loss(fake: OmniGenerator, samples: torch.Tensor, pieces: list[list[CondPiece]],
                    g: torch.Generator) -> torch.Tensor:
    """The flow-matching loss of the fake-score model on the student's samples (what the student makes now)."""
    noise = torch.randn(samples.shape, generator=g)
    s = fm.sample_training_s(samples.shape[0], g)
    v = fake(fm.add_noise(samples, noise, s), fm.to_timestep(s), fake.embed_conditions(pieces))
    return F.mse_loss(v.float(), fm.velocity_target(samples, noise))


# ---------------------------------------------------------------- the run
def student_pipeline(teacher: OmniPipeline, generator: OmniGenerator, cfg: DistillConfig,
                     log: list[dict]) -> OmniPipeline:
    """The student as a pipeline: the teacher's VAE, text encoder, enhancer and SR stage; K default steps;
    guidance distilled; the teacher's other settings (edit start, paste-back) carried."""
    K, guidance = cfg.steps, distilled_guidance(teacher, cfg)
    notes = {**teacher.config.notes, "distill": {
        "teacher": teacher.config.version, "teacher_dir": cfg.teacher, "config": asdict(cfg),
        "teacher_grid": teacher_grid(K, cfg.teacher_steps), "guidance": guidance,
        "steps_done": log[-1]["step"] if log else 0, "final": log[-1] if log else None}}
    config = replace(copy.deepcopy(teacher.config), version=f"{teacher.config.version}-distill{K}", default_steps=K,
                     default_guidance=guidance, guidance_distilled=True, notes=notes)
    pipe = OmniPipeline(teacher.vae, generator, teacher.text_encoder, teacher.enhancer, config, sr=teacher.sr)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _same_run(saved: dict, cfg: DistillConfig) -> bool:
    now = asdict(cfg)
    return all(saved.get(k) == now[k] for k in now if k not in RUNTIME_KEYS)


def distill(teacher: OmniPipeline, cfg: DistillConfig, on_step: Callable[[int, dict], bool] | None = None,
            on_trajectories: Callable[[int, int], bool] | None = None,
            on_save: Callable[[OmniPipeline, int], None] | None = None) -> tuple[OmniPipeline, list[dict]]:
    """Distil `teacher` into a cfg.steps-step student; returns (student pipeline, log).

    Steps are numbered over the stages in turn (stage 1's cfg.iters, then stage 2's cfg.dmd_iters or iters).
    `on_step(step, record) -> bool` may stop the run by returning True, `on_trajectories(done, total) -> bool`
    likewise while the teacher's trajectories are computed; `on_save(student, step)` follows every checkpoint.
    A run started where OUT/checkpoint.pt exists continues from it."""
    stages = stages_of(cfg)
    total = total_steps(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    guidance = distilled_guidance(teacher, cfg)
    teacher_gen = teacher.generator.eval()
    for p in teacher_gen.parameters():
        p.requires_grad_(False)
    student = copy.deepcopy(teacher_gen)
    for p in student.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    fake, fake_opt = None, None
    if "dmd" in stages:
        fake = copy.deepcopy(teacher_gen)
        for p in fake.parameters():
            p.requires_grad_(True)
        fake_opt = torch.optim.AdamW(fake.parameters(), lr=cfg.fake_lr, weight_decay=0.0, betas=(0.9, 0.99))
    step, log = 0, []
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        if not _same_run(st["config"], cfg):
            raise ValueError(f"{ckpt} belongs to another run (different settings); use another --out or --fresh")
        student.load_state_dict(st["student"])
        opt.load_state_dict(st["opt"])
        if fake is not None:
            fake.load_state_dict(st["fake"])
            fake_opt.load_state_dict(st["fake_opt"])
        step, log = int(st["step"]), list(st["log"])

    def save(at: int) -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"student": student.state_dict(), "opt": opt.state_dict(), "step": at, "log": log,
                    "fake": fake.state_dict() if fake is not None else None,
                    "fake_opt": fake_opt.state_dict() if fake_opt is not None else None, "config": asdict(cfg)}, tmp)
        tmp.replace(ckpt)
        if on_save is not None:
            on_save(student_pipeline(teacher, copy.deepcopy(student).eval(), cfg, log), at)

    items = trajectory_set(teacher, cfg, on_trajectories)
    if items is None:  # stopped while the teacher's trajectories were computed (they are kept on disk)
        return student_pipeline(teacher, student.eval(), cfg, log), log
    spipe = student_pipeline(teacher, student, cfg, log)  # the student's rollouts (stage 2), sharing its weights
    K, N = cfg.steps, len(items)
    student.train()
    while step < total:
        stage = stage_at(cfg, step)
        rng = np.random.default_rng([cfg.seed, 2, step])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        picks = [(int(rng.integers(N)), int(rng.integers(K))) for _ in range(cfg.batch)]
        rec = {"step": step + 1, "stage": stage}
        if stage == "trajectory":
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr
            loss = trajectory_loss(student, items, picks)
            rec["traj_loss"] = round(loss.item(), 6)
        else:
            for grp in opt.param_groups:
                grp["lr"] = cfg.dmd_lr
            seeds = [int(rng.integers(2**31 - 1)) for _ in picks]
            dmd, samples = dmd_losses(student, fake, teacher_gen, spipe, items,
                                      [(n, i, sd) for (n, i), sd in zip(picks, seeds)], cfg, guidance, g)
            reg_picks = [(int(rng.integers(N)), int(rng.integers(K))) for _ in range(cfg.batch)]
            reg = trajectory_loss(student, items, reg_picks)
            loss = dmd + cfg.dmd_reg * reg
            rec.update(dmd_loss=round(dmd.item(), 6), traj_loss=round(reg.item(), 6))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        rec["grad_norm"] = round(float(torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)), 4)
        opt.step()
        if stage == "dmd":  # then the fake score follows the student's samples
            pieces = [items[n].pieces for n, _ in picks]
            for _ in range(cfg.fake_updates):
                fl = fake_score_loss(fake, samples, pieces, g)
                fake_opt.zero_grad(set_to_none=True)
                fl.backward()
                torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0)
                fake_opt.step()
            rec["fake_loss"] = round(fl.item(), 6)
        rec["loss"] = round(loss.item(), 6)
        step += 1
        log.append(rec)
        stop = on_step is not None and on_step(step, rec)
        if stop or step % cfg.save_every == 0 or step == total or stage_at(cfg, step) != stage:
            save(step)
        if stop:
            break
    student.eval()
    return student_pipeline(teacher, student, cfg, log), log


def main(cfg: DistillConfig, resume: bool = True) -> dict:
    """The command line's run: OUT/log.jsonl (one line per log_every steps), OUT/model at every checkpoint."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and (out / "checkpoint.pt").is_file():
        (out / "checkpoint.pt").unlink()
    teacher = OmniPipeline.from_pretrained(cfg.teacher)
    teacher.set_progress_bar_config(disable=True)
    log_path = out / "log.jsonl"
    t0, first, window = time.time(), [], []

    def on_trajectories(done, total):
        if done == total or done % 16 == 0:
            print(f"teacher trajectories {done}/{total} ({time.time() - t0:.0f} s)", flush=True)
        return False

    def on_step(step, rec):
        if not first:  # a resumed run: drop the lines logged after its checkpoint
            first.append(step)
            kept = [r for r in _read_jsonl(log_path) if r["step"] < step]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        window.append(rec)
        if step % cfg.log_every == 0 or step == total_steps(cfg):
            line = {**rec, "loss": round(float(np.mean([r["loss"] for r in window])), 6),
                    "s": round(time.time() - t0, 1)}
            print(json.dumps(line), flush=True)
            with log_path.open("a") as f:
                f.write(json.dumps(line) + "\n")
            window.clear()
        return False

    student, log = distill(teacher, cfg, on_step, on_trajectories, on_save=lambda p, step: p.save_replacing(out / "model"))
    path = student.save_replacing(out / "model")
    summary = {"model": str(path), "steps": cfg.steps, "iters_done": log[-1]["step"] if log else 0,
               "final": log[-1] if log else None, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary), flush=True)
    return summary


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return rows


def parse(argv: list[str] | None) -> tuple[DistillConfig, bool]:
    ap = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.split("\n\n")[0])
    base = DistillConfig()
    for f in fields(DistillConfig):
        d = getattr(base, f.name)
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(d), default=d)
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint (the trajectory cache is kept)")
    a = ap.parse_args(argv)
    cfg = DistillConfig(**{f.name: getattr(a, f.name) for f in fields(DistillConfig)})
    if cfg.steps < 1 or cfg.iters < 0 or cfg.dmd_iters < 0 or cfg.batch < 1 or cfg.requests < 1:
        raise SystemExit("--steps, --batch and --requests must be at least 1 (and --iters, --dmd-iters at least 0)")
    try:
        stages_of(cfg)
    except ValueError as e:
        raise SystemExit(str(e))
    from training.world import FAMILIES

    unknown = [f for f in cfg.families.split(",") if f and f not in FAMILIES]
    if unknown or not any(cfg.families.split(",")):
        raise SystemExit(f"--families: unknown family {unknown[0]!r}; known: {', '.join(FAMILIES)}" if unknown
                         else "--families: no family given")
    if not (Path(cfg.teacher) / "model_index.json").is_file():
        raise SystemExit(f"--teacher {cfg.teacher}: no model_index.json there; give a model directory")
    return cfg, not a.fresh


if __name__ == "__main__":
    import sys

    c, r = parse(sys.argv[1:])
    main(c, r)
