"""Votes per second into the studio database under concurrent annotators, and job-queue overhead.

    python -m benchmarks.votes [--json OUT] [--threads 32] [--votes 4000] [--processes 1] [--home DIR] [--postgres]

--postgres runs the same load on a throw-away local PostgreSQL server (Debian's postgresql,
installed by `bash scripts/setup.sh --test`) instead of the SQLite file.

32 annotator threads each take a pair and vote through the service layer (ArenaService) on
a SQLite file, back to back (no think time: the load is as high as the threads can make
it); one vote in ten is submitted twice with the same idempotency key (a double-click).
Latency is per vote request (each submit on its own); votes/s counts stored votes over the
wall time. Afterwards the votes are recounted: none may be lost or duplicated.

--processes P spreads the same 32 threads over P studio processes on the one database (as P
app replicas behind a load balancer would be; each has its own engine and vote writer, the
database keeps every vote once). In one process the threads share one interpreter lock, so
one core; P processes use P cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import uuid

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.votes")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--votes", type=int, default=4000)
    ap.add_argument("--processes", type=int, default=1, help="studio processes sharing the threads and the database")
    ap.add_argument("--home", default=None)
    ap.add_argument("--postgres", action="store_true", help="a local throw-away PostgreSQL server instead of SQLite")
    args = ap.parse_args(argv)
    if args.postgres:
        from tests.postgres_server import new_database, postgres_server

        with postgres_server() as base:
            return run(args, new_database(base))
    return run(args, None)


def run(args, database_url: str | None) -> int:
    from studio_backend.studio import Studio

    home = args.home or tempfile.mkdtemp(prefix="omni-votes-")
    studio = Studio.open(home, database_url=database_url, gold_rate=0.0)
    a = studio.media.put_image_array(np.zeros((32, 32, 3), np.uint8))
    b = studio.media.put_image_array(np.full((32, 32, 3), 255, np.uint8))
    v1 = studio.registry.register(f"bench-a-{uuid.uuid4().hex[:6]}", "/a")
    v2 = studio.registry.register(f"bench-b-{uuid.uuid4().hex[:6]}", "/b")
    per_thread = args.votes // args.threads
    n_comparisons = per_thread + 10  # every annotator can vote on every pair once
    for k in range(n_comparisons):
        studio.arena.add_comparison("eval", {"prompt": f"case {k}"}, a, b, family="t2v",
                                    version_a=v1.id, version_b=v2.id)
    annotators = [studio.users.ensure(f"bench-ann-{i}", "annotator") for i in range(args.threads)]
    names = [a.name for a in annotators]
    if args.processes <= 1:
        barrier = threading.Barrier(2)
        box: dict = {}
        runner = threading.Thread(target=lambda: box.update(vote_threads(studio, names, per_thread, 0, barrier)))
        runner.start()
        barrier.wait()
        t0 = time.perf_counter()
        runner.join()
        results = [box]
    else:  # each process opens the studio, then all start together
        ctx = mp.get_context("spawn")
        barrier, out_q = ctx.Barrier(args.processes + 1), ctx.Queue()
        share = [names[i::args.processes] for i in range(args.processes)]
        procs = [ctx.Process(target=_process_main, args=(home, database_url, share[i], per_thread, i, barrier, out_q))
                 for i in range(args.processes)]
        for p in procs:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        results = [out_q.get() for _ in procs]
        for p in procs:
            p.join()
    latencies = [x for r in results for x in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    wall = time.perf_counter() - t0
    stored = studio.arena.votes()
    expected = args.threads * per_thread - len(errors)
    keys = {(v["comparison_id"], v["annotator_id"]) for v in stored}
    lat = np.array(latencies) * 1000
    # job queue overhead: submit, claim and finish an empty job
    admin = studio.users.ensure("bench-admin", "admin")
    t = time.perf_counter()
    n_jobs = 200
    for _ in range(n_jobs):
        j = studio.jobs.submit(admin, "generate", {"prompt": "x"})
        c = studio.jobs.claim("bench")
        studio.jobs.progress(c.id, 0.5)
        studio.jobs.finish(c.id, "succeeded")
    job_ms = (time.perf_counter() - t) / n_jobs * 1000
    out = {
        "threads": args.threads, "votes": len(stored), "wall_s": round(wall, 2),
        "votes_per_s": round(len(stored) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(lat.max()), 2),
        "lost": max(0, expected - len(stored)), "duplicated": len(stored) - len(keys) + max(0, len(stored) - expected),
        "errors": len(errors), "job_overhead_ms": round(job_ms, 2), "database": studio.db.url.split("://")[0],
        "processes": max(1, args.processes),
    }
    print(f"{'measure':24s} {'value':>10s}")
    for k in ("threads", "processes", "votes", "votes_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "lost", "duplicated", "errors", "job_overhead_ms"):
        print(f"{k:24s} {out[k]:>10}")
    if errors:
        print("first error:", errors[0], file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def vote_threads(studio, names: list[str], per_thread: int, index: int, barrier) -> dict:
    """One annotator thread per name, voting back to back once the barrier opens; one vote in ten
    submitted twice with the same key. Returns the per-request latencies (s) and the errors."""
    annotators = [studio.users.ensure(n, "annotator") for n in names]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    rng = np.random.default_rng(index)
    verdicts = rng.choice(["G", "S", "B"], size=(len(names), per_thread))
    go = threading.Event()

    def annotate(i: int) -> None:
        ann = annotators[i]
        mine = []
        go.wait()
        for k in range(per_thread):
            pair = studio.arena.next_pair(ann)
            key = uuid.uuid4().hex
            try:
                t = time.perf_counter()
                studio.arena.vote(ann, pair.left_is_a_token, {"prompt_following": verdicts[i, k]}, verdicts[i, k], key)
                mine.append(time.perf_counter() - t)
                if k % 10 == 0:  # a double submit: a second request with the same key, timed on its own
                    t = time.perf_counter()
                    studio.arena.vote(ann, pair.left_is_a_token, {"prompt_following": verdicts[i, k]}, verdicts[i, k], key)
                    mine.append(time.perf_counter() - t)
            except Exception as e:  # counted, not hidden
                with lock:
                    errors.append(repr(e))
                continue
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    barrier.wait()
    go.set()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors}


def _process_main(home, database_url, names, per_thread, index, barrier, out_q) -> None:
    from studio_backend.studio import Studio

    studio = Studio.open(home, database_url=database_url, gold_rate=0.0)
    out_q.put(vote_threads(studio, names, per_thread, index, barrier))


if __name__ == "__main__":
    sys.exit(main())
