"""A job worker as its own process, on another host if need be (`python -m studio_backend.worker`):

    python -m studio_backend.worker --home /mnt/studio --database-url postgresql+psycopg://... \\
        --backend wan --model Wan-AI/Wan2.1-VACE-1.3B-diffusers --kinds generate,train --name gpu-1

It opens the studio's database (PostgreSQL for several hosts; SQLite only on the studio's own
machine) and media folder (a shared mount), registers its model as a version (made active when
there is none, or when the active one is another backend's: started to serve it), and takes jobs
of the given kinds until stopped. A job records the worker that took it. A studio page on a small
CPU host then hands its jobs to GPU hosts (start app.py with --external-workers).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio_backend.worker", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=os.environ.get("OMNI_HOME", "studio_data"),
                    help="studio home: the media folder (shared with the studio) and, without a URL, its SQLite file")
    ap.add_argument("--database-url", default=os.environ.get("OMNI_DATABASE_URL"),
                    help="the studio's database (OMNI_DATABASE_URL), e.g. postgresql+psycopg://user@host/db")
    ap.add_argument("--backend", choices=("embedded", "wan"), default=os.environ.get("OMNI_BACKEND", "embedded"))
    ap.add_argument("--model", default=os.environ.get("OMNI_MODEL"),
                    help="model directory or Hub id (embedded: default assets/models/omni-world)")
    ap.add_argument("--adapter", default=os.environ.get("OMNI_ADAPTER"), help="a LoRA adapter directory (wan)")
    ap.add_argument("--enhancer", default=os.environ.get("OMNI_ENHANCER"), help="a local chat model directory (wan)")
    ap.add_argument("--kinds", default="generate,train", help="job kinds to take: generate, train or both")
    ap.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}", help="worker name stored on its jobs")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between looks at an empty queue")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMNI_TORCH_THREADS", "0")),
                    help="torch CPU threads (0 = torch's choice)")
    ap.add_argument("--nice", type=int, default=0,
                    help="lower this process's CPU priority by N (Unix nice): pages and votes on the same host first")
    ap.add_argument("--exit-when-idle", type=float, default=0.0,
                    help="stop after this many seconds without a job (0 = run until stopped)")
    a = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("generate", "train")]
    if bad or not kinds:
        ap.error(f"--kinds takes generate, train or both (comma-separated), not {a.kinds!r}")
    if a.backend != "embedded" and not a.model:
        ap.error(f"--backend {a.backend} needs --model: a diffusers model directory or a Hub id")
    if a.nice > 0:
        os.nice(a.nice)  # the worker's torch threads, started below, inherit it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a Hub id must be in the local cache unless HF_HUB_OFFLINE=0
    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    from pathlib import Path

    from .backend_versions import VersionLoader, register_version
    from .studio import Studio
    from .train_jobs import load_pipeline
    from .worker import Worker

    studio = Studio.open(a.home, database_url=a.database_url)
    model = a.model or str(Path(__file__).resolve().parents[1] / "assets" / "models" / "omni-world")
    version = register_version(studio, a.backend, model, a.adapter, activate=True) if a.backend != "embedded" \
        else None
    loader = VersionLoader(studio, load_pipeline, enhancer=a.enhancer)
    worker = Worker(studio, loader, a.name, kinds=kinds, load_backend=loader.load_backend)
    if version is not None:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()  # a log line per job, not loading bars
        transformers_logging.disable_progress_bar()
        loader.load_backend(version.backend, version.path, version.adapter)  # load before taking jobs
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"{time.strftime('%H:%M:%S')} worker {a.name} ready: {a.backend} {model}, kinds {','.join(kinds)}",
          flush=True)
    idle_since = time.monotonic()
    while not stop:
        job = worker.run_one()
        if job is None:
            if a.exit_when_idle and time.monotonic() - idle_since > a.exit_when_idle:
                break
            time.sleep(a.poll)
            continue
        idle_since = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} job {job.id} {job.status} on {a.name}: "
              f"{job.message.splitlines()[0] if job.message else ''}", flush=True)
    print(f"worker {a.name} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
