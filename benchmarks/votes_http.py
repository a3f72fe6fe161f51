"""Votes per second through a launched studio's HTTP API while a generation runs.

    python -m benchmarks.votes_http [--json OUT] [--sessions 64] [--seconds 20] [--model DIR] [--steps 150]

Starts `python app.py` on a fresh home (accounts made in the database first: one creator, N
annotators with passwords), signs in N annotator sessions over raw HTTP (/gradio_api/call, as
benchmarks/http_client.py does: two requests per event, a POST and its event stream), and lets
them vote back to back for a bounded time through `/arena_vote` (which stores the vote and
returns the next pair: served links to its two clips), or with `--path api` (the default) through
the JSON arena API beside the page (app/api.py: POST /studio-api/arena/vote, same services and
rules, without a Gradio event per vote). One vote in ten is submitted a second
time with the same pair handle (a double click). Meanwhile a creator session generates clips
back to back on the model (one generation at a time: the app's 'generation' group).
Latency is per vote request; votes/s counts stored votes over the wall time. Afterwards the
votes are recounted in the database: every acknowledged vote must be there once (lost,
duplicated), and nothing else.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1"


def prepare(home: Path, sessions: int, pairs: int) -> list[str]:
    from studio_backend.accounts import hash_password
    from studio_backend.models import User
    from studio_backend.studio import Studio

    st = Studio.open(home, gold_rate=0.0)
    a = st.media.put_video_array(np.zeros((16, 32, 32, 3), np.uint8))
    b = st.media.put_video_array(np.full((16, 32, 32, 3), 255, np.uint8))
    v1, v2 = st.registry.register("bench-a", "/a"), st.registry.register("bench-b", "/b")
    for k in range(pairs):
        st.arena.add_comparison("eval", {"prompt": f"case {k}"}, a, b, family="t2v", version_a=v1.id,
                                version_b=v2.id)
    names = [f"bench-ann-{i}" for i in range(sessions)]
    digest = hash_password(PASSWORD)  # one hash for all (each is salted when made through the CLI)
    with st.db.session() as s:
        for n in names:
            s.add(User(name=n, role="annotator", password_hash=digest))
        s.add(User(name="bench-maker", role="creator", password_hash=digest))
    return names


class ApiSession:
    """The JSON arena API (app/api.py) with the same calls as an http_client.Session on the page's events."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        self.headers: dict = {}

    def call(self, api: str, *data):
        from benchmarks.http_client import GradioError

        if api == "sign_in":
            r = self.http.post("studio-api/sign-in", json={"name": data[0], "password": data[1]})
            if r.status_code != 200:
                raise GradioError(r.text)
            self.headers = {"Authorization": f"Bearer {r.json()['token']}"}
            return []
        if api == "arena_next":
            r = self.http.post("studio-api/arena/next", headers=self.headers)
        else:
            handle, overall, *dims = data
            r = self.http.post("studio-api/arena/vote", headers=self.headers, json={
                "pair": handle, "overall": overall, "verdicts": {"dynamic_quality": dims[0], "visual_quality": dims[1]}})
        if r.status_code != 200:
            raise GradioError(f"{api}: HTTP {r.status_code} {r.text[:200]}")
        nxt = r.json()["next"]
        return [None, nxt["pair"] if nxt else ""]

    def close(self):
        self.http.close()


def annotate(url: str, names: list[str], deadline_box: dict, start: threading.Barrier, out: dict,
             seed: int, path: str = "page") -> None:
    """One thread per name: sign in, load a pair, then vote back to back until the deadline."""
    from benchmarks.http_client import GradioError, Session

    lock = threading.Lock()
    rng = np.random.default_rng(seed)

    def one(name: str) -> None:
        s = Session(url) if path == "page" else ApiSession(url)
        lat, acked, errors = [], [], []
        try:
            s.call("sign_in", name, PASSWORD)
            handle = s.call("arena_next")[1]
        except Exception as e:
            errors.append(f"{name}: {e!r}")
            start.wait()
            with lock:
                out["errors"] += errors
            return
        start.wait()
        k = 0
        while time.perf_counter() < deadline_box["t"] and handle:
            v = str(rng.choice(["G", "S", "B"]))
            try:
                t = time.perf_counter()
                nxt = s.call("arena_vote", handle, v, v, "S", "S", "S", "S")
                lat.append(time.perf_counter() - t)
                acked.append(handle)
                if k % 10 == 0:  # a double submit: the same pair's handle again, timed on its own
                    t = time.perf_counter()
                    s.call("arena_vote", handle, v, v, "S", "S", "S", "S")
                    lat.append(time.perf_counter() - t)
                handle = nxt[1]
            except GradioError as e:
                errors.append(f"{name}: {e}")
                break
            k += 1
        s.close()
        with lock:
            out["latencies"] += lat
            out["acked"] += [(name, h) for h in acked]
            out["errors"] += errors

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _client_process(url, names, seconds, seed, ready, go, q, path) -> None:
    box, out = {"t": float("inf")}, {"latencies": [], "acked": [], "errors": []}
    barrier = threading.Barrier(len(names) + 1)
    runner = threading.Thread(target=annotate, args=(url, names, box, barrier, out, seed, path))
    runner.start()
    barrier.wait()  # every session signed in with a pair on its page
    ready.set()
    go.wait()
    box["t"] = time.perf_counter() + seconds
    runner.join()
    q.put(out)


def generate_loop(url: str, stop: threading.Event, steps: int, box: dict) -> None:
    from benchmarks.http_client import Session

    s = Session(url, timeout=600)
    s.call("sign_in", "bench-maker", PASSWORD)
    k = 0
    while not stop.is_set():
        t = time.perf_counter()
        s.call("generate", "A red circle moves left on a meadow.", [], [], None, 16, steps, 3.0, k)
        box.setdefault("seconds", []).append(time.perf_counter() - t)
        k += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.votes_http")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=2, help="client processes the sessions are spread over")
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "omni-world"))
    ap.add_argument("--steps", type=int, default=150, help="sampling steps of the generation running meanwhile")
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--path", choices=("api", "page"), default="api",
                    help="api: the JSON arena API (app/api.py); page: the Arena tab's own Gradio events")
    ap.add_argument("--home", default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from studio_backend.studio import Studio
    from tests.launched import start_app, stop_app

    home = Path(args.home or tempfile.mkdtemp(prefix="omni-votes-http-")) / "home"
    per_session = int(args.seconds * 40) + 20  # more pairs than one session can rate in the time
    names = prepare(home, args.sessions, per_session)
    app = start_app(home, Path(args.model))
    try:
        ctx = mp.get_context("spawn")
        go, q = ctx.Event(), ctx.Queue()
        readies = [ctx.Event() for _ in range(args.clients)]
        procs = [ctx.Process(target=_client_process, args=(app.url, names[i::args.clients], args.seconds, i,
                                                           readies[i], go, q, args.path))
                 for i in range(args.clients)]
        for p in procs:
            p.start()
        for r in readies:
            r.wait(600)
        stop, gen = threading.Event(), {}
        g = None
        if not args.no_generation:
            g = threading.Thread(target=generate_loop, args=(app.url, stop, args.steps, gen), daemon=True)
            g.start()
            time.sleep(1.0)  # the first generation is under way (model loaded, sampling)
        t0 = time.perf_counter()
        go.set()
        results = [q.get() for _ in procs]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join()
        stop.set()
        if g is not None:
            g.join(600)
    finally:
        stop_app(app)
    latencies = [x for r in results for x in r["latencies"]]
    acked = [x for r in results for x in r["acked"]]
    errors = [e for r in results for e in r["errors"]]
    st = Studio.open(home)
    users = {u.name: u.id for u in (st.users.get(n) for n in names)}
    stored = [v for v in st.arena.votes() if v["annotator_id"] in users.values()]
    per_pair = {(v["comparison_id"], v["annotator_id"]) for v in stored}
    per_person = {}
    for name, _ in acked:
        per_person[name] = per_person.get(name, 0) + 1
    lost = sum(max(0, n - sum(1 for v in stored if v["annotator_id"] == users[name])) for name, n in per_person.items())
    lat = np.array(latencies) * 1000
    out = {
        "path": args.path, "sessions": args.sessions, "seconds": args.seconds, "client_processes": args.clients,
        "votes": len(stored), "acknowledged": len(acked), "wall_s": round(wall, 2),
        "votes_per_s": round(len(stored) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "max_ms": round(float(lat.max()), 1) if len(lat) else None,
        "lost": lost, "duplicated": (len(stored) - len(per_pair)) + max(0, len(stored) - len(acked)),
        "errors": len(errors), "generations_meanwhile": len(gen.get("seconds", [])),
        "generation_s": [round(x, 2) for x in gen.get("seconds", [])], "steps": args.steps,
        "model": Path(args.model).name,
    }
    print(f"{'measure':24s} {'value':>10s}")
    for k in ("path", "sessions", "client_processes", "votes", "acknowledged", "votes_per_s", "p50_ms", "p90_ms", "p99_ms",
              "max_ms", "lost", "duplicated", "errors", "generations_meanwhile"):
        print(f"{k:24s} {out[k]!s:>10}")
    if errors:
        print("first error:", errors[0], file=sys.stderr)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
