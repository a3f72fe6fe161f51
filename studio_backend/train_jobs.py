"""Training runs as jobs (DESIGN 3.7): a DPO run (or a few-step distillation, `submit_distill`) is
queued like a generation, runs on its own worker thread, reports progress at every step, honours
cancel at every step, and survives a crash: the run saves a checkpoint every few steps under
`OMNI_HOME/runs/job-N/`, and a job taken back after a restart continues from it (a DPO run on the
same frozen set of preference pairs, a distillation on its cached teacher trajectories).
The finished run registers a candidate version with its parent; nothing is promoted here.

    python -m studio_backend.train_jobs --home DIR [--steps N] [--beta B] [--lora-rank R] ...  (a DPO job, run here)
    python -m studio_backend.train_jobs --home DIR --resume     (continue the studio's interrupted DPO job)

The job system is the studio's: it calls plain training functions (training.dpo.train), and
training/ imports nothing of studio_backend for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path

from .export import consistent_pairs, preference_pairs
from .services import JobRecord, ServiceError, UserRecord, require
from .studio import Studio

DPO_KEYS = ("steps", "beta", "lora_rank", "lr", "batch", "seed", "consistent", "sft_weight", "segments")
INT_KEYS = ("steps", "lora_rank", "batch", "seed", "consistent", "segments")
LIMITS = {"steps": (1, 5000), "beta": (1e-3, 1e5), "lora_rank": (0, 64), "lr": (1e-7, 1e-2), "batch": (1, 64),
          "seed": (0, 2**31 - 1), "consistent": (0, 1), "sft_weight": (0.0, 1e5), "segments": (0, 1)}


def training_pairs(studio: Studio, consistent: int = 0, segments: int = 0) -> list[dict]:
    """The DPO pairs of the studio's votes; `segments`: with their segment labels where votes judged segments, and
    the pairs only a segment prefers (export.preference_pairs)."""
    rows = preference_pairs(studio.arena.votes(), segments=bool(segments))
    return consistent_pairs(rows) if consistent else rows


def run_dir(studio: Studio, job_id: int) -> Path:
    return studio.home / "runs" / f"job-{job_id}"


def _checked_number(what: str, name: str, value, kind: type, limits: tuple) -> int | float:
    """A training setting as a number of its kind within its limits; the error names the setting and the range."""
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{what} {name} must be a number, got {value!r}")
    lo, hi = limits
    if not lo <= v <= hi:
        raise ServiceError(f"{what} {name}={v} is outside {lo}..{hi}")
    return v


def submit_dpo(studio: Studio, user: UserRecord, **settings) -> JobRecord:
    """Queue a DPO run on the active version's preference pairs; errors name the bad setting."""
    from training.dpo import DPOConfig

    require(user, "admin")
    parent = studio.registry.active()
    if parent is None:
        raise ServiceError("no active model version to train from: promote one first")
    unknown = set(settings) - set(DPO_KEYS)
    if unknown:
        raise ServiceError(f"unknown DPO setting {sorted(unknown)[0]!r}; settings: {', '.join(DPO_KEYS)}")
    defaults = asdict(DPOConfig())
    config = {}
    for k in DPO_KEYS:
        v = settings.get(k, defaults[k])
        config[k] = _checked_number("DPO setting", k, v, int if k in INT_KEYS else float, LIMITS[k])
    if not training_pairs(studio, config["consistent"], config["segments"]):
        if config["consistent"] and training_pairs(studio):
            raise ServiceError("no consistent preference pairs: every pair has a vote that found its winner worse "
                               "on some dimension; set consistent=0 to train on all pairs")
        raise ServiceError("no preference pairs yet: annotators must prefer one clip of a DPO comparison "
                           "(Same votes count in GSB, not in DPO)")
    return studio.jobs.submit(user, "train", {"algorithm": "dpo", "config": config}, seed=config["seed"],
                              model_version_id=parent.id)


DISTILL_KEYS = ("steps", "stage", "iters", "batch", "teacher_steps", "requests", "lr", "seed")
DISTILL_LIMITS = {"steps": (1, 50), "iters": (1, 100_000), "batch": (1, 64), "teacher_steps": (2, 500),
                  "requests": (1, 10_000), "lr": (1e-7, 1e-2), "seed": (0, 2**31 - 1)}


def submit_distill(studio: Studio, user: UserRecord, **settings) -> JobRecord:
    """Queue a few-step distillation (training.distill) of the active version; errors name the bad setting.
    The student is registered as a candidate with the active version as its parent."""
    from training.distill import STAGES, DistillConfig

    require(user, "admin")
    parent = studio.registry.active()
    if parent is None:
        raise ServiceError("no active model version to distil: promote one first")
    if parent.backend != "embedded" or parent.adapter:
        raise ServiceError(f"{parent.name} runs on the {parent.backend} backend: distillation trains the embedded "
                           "model; promote an embedded version first")
    unknown = set(settings) - set(DISTILL_KEYS)
    if unknown:
        raise ServiceError(f"unknown distillation setting {sorted(unknown)[0]!r}; settings: {', '.join(DISTILL_KEYS)}")
    defaults = asdict(DistillConfig())
    config = {}
    for k in DISTILL_KEYS:
        v = settings.get(k, defaults[k])
        if k == "stage":
            if v not in STAGES + ("both",):
                raise ServiceError(f"distillation stage {v!r}: use trajectory, dmd or both")
            config[k] = v
            continue
        config[k] = _checked_number("distillation setting", k, v, float if k == "lr" else int, DISTILL_LIMITS[k])
    return studio.jobs.submit(user, "train", {"algorithm": "distill", "config": config}, seed=config["seed"],
                              model_version_id=parent.id)


def read_log(studio: Studio, job_id: int) -> list[dict]:
    """The run's loss / margin records so far (for the Training tab's curve)."""
    path = run_dir(studio, job_id) / "log.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return out


def run_train_job(studio: Studio, job: JobRecord, load_pipeline, save_every: int = 10) -> JobRecord:
    """Run (or continue) one claimed train job to its end: succeeded with a candidate version,
    canceled, or failed with the reason. Its lease is renewed while it runs; should the lease be
    lost (taken back by another trainer after it ran out), the run stops at its next step and
    leaves the job, and registers nothing."""
    with studio.jobs.keep_lease(job) as lost:
        return _run_train_job(studio, job, load_pipeline, save_every, lost)


def _run_train_job(studio: Studio, job: JobRecord, load_pipeline, save_every, lost) -> JobRecord:
    import torch

    from training.dpo import DPOConfig, train

    from .preference import pairs_from_studio

    jobs = studio.jobs
    req = job.request or {}
    if req.get("algorithm") == "distill":
        return _run_distill_job(studio, job, load_pipeline, save_every, lost)
    if req.get("algorithm") != "dpo":
        return jobs.finish(job.id, "failed", f"unknown training algorithm {req.get('algorithm')!r}")
    known = {f.name for f in fields(DPOConfig)}
    out = run_dir(studio, job.id)
    out.mkdir(parents=True, exist_ok=True)
    cfg = DPOConfig(**{k: v for k, v in req.get("config", {}).items() if k in known}, out=str(out))
    parent = studio.registry.get(job.model_version_id) if job.model_version_id else studio.registry.active()
    frozen = out / "pairs.json"
    if frozen.is_file():  # a resumed run trains on the pairs it started with
        rows = json.loads(frozen.read_text())
    else:
        rows = training_pairs(studio, cfg.consistent, cfg.segments)
        frozen.write_text(json.dumps(rows))
    if not rows:
        return jobs.finish(job.id, "failed", "no preference pairs (every vote was Same or on gold pairs)")
    pairs = pairs_from_studio(studio, rows)
    log_path = out / "log.jsonl"
    resumed = (out / "checkpoint.pt").is_file()
    if not resumed and log_path.exists():
        log_path.unlink()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    first, canceled = [], []

    def on_step(step, rec):
        if not first:  # a resumed run: drop the records written after its checkpoint
            first.append(step)
            kept = [r for r in read_log(studio, job.id) if r["step"] < step]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with log_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if jobs.progress(job.id, step / cfg.steps,
                         f"step {step}/{cfg.steps}: loss {rec['loss']:.4f}, margin {rec['margin']:.3f}") \
                or lost.is_set():
            canceled.append(step)
        return bool(canceled)

    if parent.backend != "embedded" or parent.adapter:  # a LoRA on the backend's own model (training/dpo_wan.py)
        from .backend_versions import run_backend_dpo

        return run_backend_dpo(studio, job, parent, pairs, cfg, out, on_step, canceled, t0, resumed, save_every,
                               lost=lost)
    new, log = train(load_pipeline(parent.path), pairs, cfg, on_step, checkpoint=str(out / "checkpoint.pt"),
                     save_every=save_every)
    if lost.is_set():  # another trainer holds the job now: it finishes it
        return jobs.get(job.id)
    if canceled:
        return jobs.finish(job.id, "canceled", f"canceled at step {log[-1]['step'] if log else 0}/{cfg.steps}")
    return _register_candidate(studio, job, parent, new, f"{parent.name}+dpo-job{job.id}",
                               {"dpo_pairs": len(pairs), "final_margin": log[-1]["margin"],
                                "final_loss": log[-1]["loss"], "train_s": round(time.time() - t0, 1),
                                "resumed": resumed},
                               "trained candidate {name} (version {id}) on %d pairs" % len(pairs))


def _register_candidate(studio: Studio, job: JobRecord, parent, pipe, name: str, metrics: dict,
                        done: str) -> JobRecord:
    """A finished training job's model: saved under the studio's models/, registered as a candidate whose parent
    is `parent`, the job closed with `done` (its {name} and {id} filled in) and the next step named."""
    pipe.config.version = name
    path = pipe.save_pretrained(studio.home / "models" / f"job-{job.id}")
    v = studio.registry.register(name, str(path), parent_id=parent.id, run_job_id=job.id, metrics=metrics)
    return studio.jobs.finish(job.id, "succeeded", done.format(name=name, id=v.id)
                              + f"; schedule an evaluation against version {parent.id}", model_version_id=v.id)


def _run_distill_job(studio: Studio, job: JobRecord, load_pipeline, save_every, lost) -> JobRecord:
    """A distillation job: the teacher's trajectories (cached in the run folder), then the stages; progress and
    cancel at every step, a resumed job continues from the run's checkpoint. The student is registered as a
    candidate whose parent is the teacher."""
    import torch

    from training.distill import DistillConfig, distill, total_steps

    jobs = studio.jobs
    out = run_dir(studio, job.id)
    out.mkdir(parents=True, exist_ok=True)
    parent = studio.registry.get(job.model_version_id) if job.model_version_id else studio.registry.active()
    known = {f.name for f in fields(DistillConfig)}
    cfg = DistillConfig(**{k: v for k, v in (job.request or {}).get("config", {}).items() if k in known},
                        teacher=parent.path, out=str(out), save_every=save_every)
    total = total_steps(cfg)
    log_path = out / "log.jsonl"
    resumed = (out / "checkpoint.pt").is_file()
    if not resumed and log_path.exists():
        log_path.unlink()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    first, canceled = [], []
    share = 0.2  # of the progress bar: the teacher's trajectories, then the training steps

    def stopped() -> bool:
        return bool(canceled) or lost.is_set()

    def on_trajectories(done, n):
        if jobs.progress(job.id, share * done / n, f"teacher trajectories {done}/{n}") or lost.is_set():
            canceled.append(0)
        return stopped()

    def on_step(step, rec):
        if not first:  # a resumed run: drop the records written after its checkpoint
            first.append(step)
            kept = [r for r in read_log(studio, job.id) if r["step"] < step]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with log_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if jobs.progress(job.id, share + (1 - share) * step / total,
                         f"step {step}/{total} ({rec['stage']}): loss {rec['loss']:.4f}") or lost.is_set():
            canceled.append(step)
        return stopped()

    student, log = distill(load_pipeline(parent.path), cfg, on_step, on_trajectories)
    if lost.is_set():  # another trainer holds the job now: it finishes it
        return jobs.get(job.id)
    if canceled:
        return jobs.finish(job.id, "canceled", f"canceled at step {log[-1]['step'] if log else 0}/{total}")
    return _register_candidate(studio, job, parent, student, f"{parent.name}+distill{cfg.steps}-job{job.id}",
                               {"distilled_steps": cfg.steps, "stage": cfg.stage,
                                "final_loss": log[-1]["loss"] if log else None,
                                "train_s": round(time.time() - t0, 1), "resumed": resumed},
                               "distilled candidate {name} (version {id}): %d steps, no guidance pass" % cfg.steps)


def load_pipeline(path: str):
    """The embedded pipeline of a model directory, quiet (no progress bars)."""
    from model.pipeline import OmniPipeline

    pipe = OmniPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_dpo_here(studio: Studio, user: UserRecord, load=load_pipeline, **settings) -> JobRecord:
    """Queue a DPO job and run it in this process at once (command line, rounds, tests); the
    candidate version is registered exactly as when the studio's trainer worker runs it."""
    job = submit_dpo(studio, user, **settings)
    claimed = studio.jobs.claim("here", ("train",), job_id=job.id)
    if claimed is None:
        raise ServiceError(f"job {job.id} was taken by another trainer")
    return run_train_job(studio, claimed, load)


def main(argv: list[str] | None = None) -> int:
    """Queue a DPO job on the studio's active version and run it here (as the studio's trainer
    worker would), printing progress; `--resume` continues the studio's interrupted DPO job,
    unless a live trainer holds its lease."""
    import argparse
    import sys

    from training.dpo import DPOConfig

    ap = argparse.ArgumentParser(prog="python -m studio_backend.train_jobs",
                                 description="Run a DPO job of a studio home here (--resume: a DPO or distillation job).")
    ap.add_argument("--home", required=True, help="studio home with votes")
    ap.add_argument("--resume", action="store_true",
                    help="continue the studio's latest DPO job left running or queued (after a crash or Ctrl-C)")
    ap.add_argument("--admin", default="cli-admin", help="the admin the job is queued as")
    for name in DPO_KEYS:
        f = DPOConfig.__dataclass_fields__[name]
        ap.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=f.default)
    a = ap.parse_args(argv)
    studio = Studio.open(a.home)
    jobs = studio.jobs
    if a.resume:
        live = [j for j in jobs.list(limit=500) if j.kind == "train" and j.status in ("queued", "running")]
        if not live:
            raise SystemExit(f"no interrupted DPO job in {a.home}: start one without --resume")
        job_id = live[0].id
        jobs.requeue_interrupted()  # back to the queue only if its lease ran out or its process is gone
    else:
        try:
            admin = studio.users.sync(a.admin, "admin")  # the host's own command line
            job_id = submit_dpo(studio, admin, **{k: getattr(a, k) for k in DPO_KEYS}).id
        except ServiceError as e:
            raise SystemExit(str(e))
    job = jobs.claim("cli", ("train",), job_id=job_id)
    if job is None:
        raise SystemExit(f"job {job_id} is being run by a live trainer (its lease is renewed): not taken over")
    what = "distillation" if (job.request or {}).get("algorithm") == "distill" else f"DPO on the votes of {a.home}"
    print(f"job {job.id}: {what} ({'resumed' if a.resume else 'new'})", flush=True)
    real_progress = jobs.progress

    def progress(job_id, fraction, message=""):
        print(f"  {100 * fraction:5.1f}%  {message}", flush=True)
        return real_progress(job_id, fraction, message)

    jobs.progress = progress
    done = run_train_job(studio, job, load_pipeline)
    print(json.dumps({"job": done.id, "status": done.status, "message": done.message,
                      "version_id": done.model_version_id}))
    return 0 if done.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
