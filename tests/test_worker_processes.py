"""Worker processes on other hosts (python -m studio_backend.worker): two of them on one PostgreSQL
database and one media folder take the studio's queued Wan jobs; each job runs exactly once and
records the worker that ran it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from model.mvl import MVLRequest
from studio_backend.studio import Studio
from tests.postgres_server import new_database
from tests.wan_tiny import save_tiny_wan

ROOT = Path(__file__).resolve().parents[1]


def _start(name: str, home: Path, url: str, model: str, nice: int = 0) -> subprocess.Popen:
    env = dict(os.environ, OMNI_WAN_MAX_SEQUENCE_LENGTH="16", PYTHONPATH=str(ROOT))
    env.pop("OMNI_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "studio_backend.worker", "--home", str(home), "--database-url", url,
                             "--backend", "wan", "--model", model, "--kinds", "generate", "--name", name,
                             "--poll", "0.05", "--threads", "1", "--exit-when-idle", "3", "--nice", str(nice)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(proc: subprocess.Popen, lines: list[str], timeout: float = 600) -> None:
    """Until the worker says it is ready (importing torch and diffusers takes 12 s on a quiet machine,
    minutes under the shared machine's load at nice 10)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("worker exited before it was ready:\n" + "".join(lines))
        lines.append(line)
        if " ready:" in line:
            return
    raise AssertionError("worker not ready in time:\n" + "".join(lines))


def test_two_worker_processes_on_one_postgres_database_run_each_job_once(tmp_path, postgres):
    import torch

    torch.set_num_threads(1)
    url = new_database(postgres)
    home = tmp_path / "shared-home"  # the media folder every host mounts
    model = str(save_tiny_wan(tmp_path / "tiny-wan"))
    studio = Studio.open(home, database_url=url)
    v = studio.registry.register("wan:tiny", model, status="active", backend="wan")
    user = studio.users.ensure("maker", "creator")
    procs, logs = [], []
    try:
        for name, nice in (("gpu-host-1", 0), ("gpu-host-2", 5)):  # the second one behind a host's pages
            logs.append([])
            procs.append(_start(name, home, url, model, nice))
        for p, log in zip(procs, logs):
            _wait_ready(p, log)
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, p.pid) - base for p in procs] == [0, 5]
        jobs = [studio.jobs.submit(user, "generate", MVLRequest(f"a red circle {k}", frames=5, height=16, width=16,
                                                                steps=2, guidance=1.0).to_dict(), seed=k)
                for k in range(6)]
        for p, log in zip(procs, logs):
            out, _ = p.communicate(timeout=600)
            log.append(out)
            assert p.returncode == 0, "".join(log)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    text = "".join("".join(x) for x in logs)
    done = [studio.jobs.get(j.id) for j in jobs]
    assert all(j.status == "succeeded" for j in done), [(j.id, j.status, j.message) for j in done]
    for j in done:
        assert text.count(f"job {j.id} succeeded on ") == 1  # taken and run by exactly one worker
        assert j.worker in ("gpu-host-1", "gpu-host-2") and j.model_version_id == v.id
        assert studio.media.load_video(j.result_asset_id).shape == (5, 16, 16, 3)
    with studio.db.session() as s:
        from studio_backend.models import Job

        assert [s.get(Job, j.id).attempts for j in done] == [1] * len(done)
    print("jobs per worker:", {w: sum(j.worker == w for j in done) for w in ("gpu-host-1", "gpu-host-2")})
    assert len(studio.registry.list()) == 1  # the workers found the version, registered nothing
    assert not np.array_equal(*(studio.media.load_video(j.result_asset_id) for j in done[:2]))  # seeds differ
