"""Model versions of any backend (DESIGN 3.5): register a (backend, model directory or Hub id,
optional LoRA adapter) as a version, and load whatever a version names.

    register_version(studio, "wan", "Wan-AI/Wan2.1-VACE-1.3B-diffusers")     # made active unless one of
                                                                              # that backend already is
    loader = VersionLoader(studio, load_embedded, enhancer="models/qwen2.5-1.5b-instruct")
    Worker(studio, loader, load_backend=loader.load_backend)                 # the worker and the UI call it

The embedded model keeps app.register_model (its directory names its own version).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from .services import VersionRecord
from .studio import Studio


def model_reference(model: str) -> str:
    """A local directory as its absolute path; anything else is a Hub id, kept as given."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


def version_name(backend: str, model: str, adapter: str | None = None) -> str:
    name = f"{backend}:{Path(model).name or model}"
    if adapter:
        name += f"+{Path(adapter).name}"
    return name[:64]


ADAPTER_KEY = "#lora="


def version_key(v: VersionRecord) -> str:
    """The string path-keyed callers (a round's generate callback, the app's loader) use for a version: its
    path, and for a LoRA version its path and adapter (a candidate shares its parent's model)."""
    return f"{v.path}{ADAPTER_KEY}{v.adapter}" if v.adapter else v.path


def round_request(v: VersionRecord, request):
    """A round's (OmniWorld) request as v's backend serves it: sizes fitted; None when the backend refuses
    the family (Wan: motion / camera transfer, edits without a mask or a box)."""
    from model.backends import UnsupportedRequest, check_request, fit_request

    req = fit_request(v.backend or "embedded", request)
    try:
        check_request(v.backend or "embedded", req, v.path)
    except UnsupportedRequest:
        return None
    return req


def register_version(studio: Studio, backend: str, model: str, adapter: str | None = None,
                     activate: bool = True) -> VersionRecord:
    """The version of (backend, model, adapter), registered once; with `activate`, made the active one
    when there is none or the active one is another backend's (the studio was started to serve this)."""
    model = model_reference(model)
    adapter = model_reference(adapter) if adapter else None
    reg = studio.registry
    from .services import ServiceError

    def existing():
        return next((v for v in reg.list() if (v.backend, v.path, v.adapter) == (backend, model, adapter)), None)

    v = existing()
    if v is None:
        try:
            v = reg.register(version_name(backend, model, adapter), model, backend=backend, adapter=adapter,
                             metrics={"registered_by": "start-up"})
        except ServiceError:  # another process (a second worker) registered it a moment ago
            v = existing()
            if v is None:
                raise
    active = reg.active()
    if activate and (active is None or active.backend != backend):
        admin = studio.users.ensure("studio", "admin")
        v = reg.promote(admin, v.id)
    return v


class VersionLoader:
    """`loader(path)` for the app's context and the worker: the embedded loader for embedded
    directories, model.backends for the rest (found by the version that names the path); loaded once."""

    def __init__(self, studio: Studio, load_embedded: Callable[[str], object], enhancer: str | None = None,
                 **backend_options):
        self.studio = studio
        self.load_embedded = load_embedded
        self.enhancer_dir = enhancer
        self.options = backend_options
        self._cache: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def _enhancer(self):
        if not self.enhancer_dir:
            return None
        from model.llm_enhancer import LLMEnhancer

        return LLMEnhancer.from_pretrained(self.enhancer_dir)

    def load_backend(self, backend: str, model: str, adapter: str | None = None):
        key = (backend, model, adapter)
        with self._lock:  # the generation and the training worker may ask at once
            if key not in self._cache:
                from model.backends import load_backend

                opts = dict(self.options)
                if backend == "wan" and self.enhancer_dir:
                    opts["enhancer"] = self._enhancer()
                self._cache[key] = load_backend(backend, model, adapter, **opts)
            return self._cache[key]

    def __call__(self, key: str):
        """A version by its path, or by version_key (which names the adapter too)."""
        for v in self.studio.registry.list():
            if version_key(v) == key and (v.backend != "embedded" or v.adapter):
                return self.load_backend(v.backend, v.path, v.adapter)
        return self.load_embedded(key)


def run_backend_dpo(studio: Studio, job, parent: VersionRecord, pairs: list[dict], cfg, out: Path, on_step,
                    canceled: list, t0: float, resumed: bool, save_every: int, lost=None):
    """The DPO job of a non-embedded version (train_jobs.run_train_job hands it here): a LoRA trained on
    a private copy of the parent's model (generations keep their own), registered as parent model +
    adapter, a candidate with its parent. `lost` (an Event): set when the job's lease went to another
    trainer; the run then leaves the job as it is and registers nothing."""
    import time

    from model.backends import load_backend
    from training.dpo_wan import train_lora

    jobs = studio.jobs
    if parent.backend != "wan":
        return jobs.finish(job.id, "failed", f"DPO is not implemented for the {parent.backend} backend")
    if parent.adapter:
        return jobs.finish(job.id, "failed", f"version {parent.name} is already a LoRA candidate: DPO trains one "
                                             "adapter on a base model; train from its parent, or fuse the adapter "
                                             "into a model directory and register that")
    backend = load_backend(parent.backend, parent.path, None)
    adapter_dir = studio.home / "models" / f"job-{job.id}-lora"
    adapter, log = train_lora(backend, pairs, cfg, adapter_dir, on_step, checkpoint=str(out / "checkpoint.pt"),
                              save_every=save_every)
    if lost is not None and lost.is_set():  # another trainer holds the job now: it finishes it
        return jobs.get(job.id)
    if canceled or adapter is None:
        return jobs.finish(job.id, "canceled", f"canceled at step {log[-1]['step'] if log else 0}/{cfg.steps}")
    name = f"{parent.name}+dpo-job{job.id}"[:64]
    v = studio.registry.register(name, parent.path, parent_id=parent.id, run_job_id=job.id, backend=parent.backend,
                                 adapter=str(adapter),
                                 metrics={"dpo_pairs": len(pairs), "final_margin": log[-1]["margin"],
                                          "final_loss": log[-1]["loss"], "train_s": round(time.time() - t0, 1),
                                          "resumed": resumed, "lora_rank": cfg.lora_rank or 8})
    return jobs.finish(job.id, "succeeded", f"trained candidate {name} (version {v.id}): LoRA on {len(pairs)} pairs; "
                                            f"schedule an evaluation against version {parent.id}",
                       model_version_id=v.id)
