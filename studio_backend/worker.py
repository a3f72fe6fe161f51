"""The job worker: takes queued jobs and runs them on the active model version.

Training jobs (DPO from the votes) are handed to studio_backend.train_jobs.
Generation jobs run the Omni pipeline (any object with the pipeline's `__call__`), store
progress at every sampling step, honour cancel at every step, and store the result as a
video asset linked to the job, its seed and its model version. Jobs left `running` by a
dead process are put back in the queue when a worker starts.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable

from model.mvl import MVLRequest, MVLValidationError

from .services import JobRecord
from .studio import Studio


class Canceled(Exception):
    pass


class LeaseLost(Exception):
    """This worker's lease on the job ran out and another worker took it."""


class Worker:
    def __init__(self, studio: Studio, load_pipeline: Callable[[str], object], name: str = "worker-1",
                 kinds: tuple[str, ...] = ("generate", "train"),
                 load_backend: Callable[[str, str, str | None], object] | None = None):
        self.studio = studio
        self.kinds = kinds  # the app runs one worker for generations and one for training runs
        self.load_pipeline = load_pipeline  # model directory -> pipeline (cached by the caller if it wants)
        # (backend, model, adapter) -> backend, for versions that are not a plain embedded directory
        self.load_backend = load_backend
        self.name = name
        self._pipes: dict[tuple, object] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.studio.jobs.requeue_interrupted()

    def pipeline_for(self, job: JobRecord):
        reg = self.studio.registry
        version = reg.get(job.model_version_id) if job.model_version_id else reg.active()
        if version is None:
            raise RuntimeError("no active model version: register one with the model registry first")
        key = (version.backend, version.path, version.adapter)
        if key not in self._pipes:
            self._pipes[key] = self.load_version(version)
        return version, self._pipes[key]

    def load_version(self, version):
        """The embedded model's directory through the app's loader; any other backend (Wan VACE through
        diffusers, a LoRA on top) through model.backends: the worker does not know which it drives."""
        if version.backend == "embedded" and not version.adapter:
            return self.load_pipeline(version.path)
        if self.load_backend is not None:
            return self.load_backend(version.backend, version.path, version.adapter)
        from model.backends import load_backend

        return load_backend(version.backend, version.path, version.adapter)

    def resolve_media(self, request: dict) -> MVLRequest:
        """Asset ids in the stored request become arrays for the model."""
        return self.studio.media.resolve(MVLRequest.from_dict(request))

    def run_one(self) -> JobRecord | None:
        jobs = self.studio.jobs
        job = jobs.claim(self.name, self.kinds)
        if job is None:
            return None
        try:
            if job.kind == "train":
                from .train_jobs import run_train_job

                return run_train_job(self.studio, job, self.load_pipeline)
            if job.kind != "generate":
                return jobs.finish(job.id, "failed", f"unknown job kind {job.kind!r}")
            with jobs.keep_lease(job) as lost:  # renewed while it runs (DESIGN 3.7)
                version, pipe = self.pipeline_for(job)
                req = self.resolve_media(job.request)

                # one callback per denoising step, and one for the SR stage where the request upscales
                total = pipe.progress_steps(req) if hasattr(pipe, "progress_steps") else req.steps
                if req.upscale and hasattr(pipe, "progress_steps"):  # the first report says both stages are coming
                    jobs.progress(job.id, 0.0, f"step 0/{total - 1}, then super-resolution 4x")

                def on_step(p, i, t, tensors):
                    if lost.is_set():
                        raise LeaseLost()
                    if tensors.get("stage") == "super-resolution":
                        msg = "super-resolution 4x done"
                    elif req.upscale and total > req.steps:
                        msg = f"step {i + 1}/{total - 1}, then super-resolution 4x"
                    else:
                        msg = f"step {i + 1}/{total}"
                    if jobs.progress(job.id, (i + 1) / total, msg):
                        raise Canceled()
                    return tensors

                out = pipe(req, seed=job.seed, callback_on_step_end=on_step)
                if lost.is_set():
                    raise LeaseLost()
                asset = self.studio.media.put_video_array(out.frames, fps=req.fps, name=f"job-{job.id}.mp4")
                layout = getattr(getattr(out, "enhanced", None), "layout", None)  # the plan it was rendered from
                return jobs.finish(job.id, "succeeded", "done", result_asset=asset, model_version_id=version.id,
                                   plan=layout.to_dict() if layout is not None else None)
        except LeaseLost:  # another worker took the job back after this one's lease ran out: it is theirs now
            return jobs.get(job.id)
        except Canceled:
            return jobs.finish(job.id, "canceled", "canceled by the user")
        except MVLValidationError as e:
            return jobs.finish(job.id, "failed", f"invalid request: {e}")
        except Exception as e:  # the job fails, the worker lives on
            return jobs.finish(job.id, "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")

    def start(self, poll: float = 0.2) -> None:
        def loop():
            while not self._stop.is_set():
                if self.run_one() is None:
                    self._stop.wait(poll)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


if __name__ == "__main__":  # python -m studio_backend.worker --backend wan --model ... (studio_backend/worker_cli.py)
    from studio_backend.worker_cli import main

    raise SystemExit(main())
