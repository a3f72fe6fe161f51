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
import os
import subprocess
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
                nxt = s.call("arena_vote", handle, v, v, "S", "S", "S", "S", "S", "S", "S", "S")
                lat.append(time.perf_counter() - t)
                acked.append(handle)
                if k % 10 == 0:  # a double submit: the same pair's handle again, timed on its own
                    t = time.perf_counter()
                    s.call("arena_vote", handle, v, v, "S", "S", "S", "S", "S", "S", "S", "S")
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


class RawApiConnection:
    """One keep-alive HTTP/1.1 connection to the JSON arena API on asyncio streams: a load generator as lean
    as wrk's (about 0.3 ms of client CPU per request, against ~4 ms for httpx in 32 threads), so that on a
    two-core machine the clients leave the cores to the server they measure."""

    def __init__(self, url: str):
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.reader = self.writer = None
        self.headers = b""

    async def open(self, token: str) -> None:
        import asyncio

        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.headers = (f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                        "Content-Type: application/json\r\n").encode()

    async def post(self, path: str, body: dict | None = None) -> dict:
        from benchmarks.http_client import GradioError

        data = json.dumps(body or {}).encode()
        self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.headers
                          + b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        if b"content-length" in fields:
            payload = await self.reader.readexactly(int(fields[b"content-length"]))
        else:  # chunked
            payload = b""
            while True:
                n = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                payload += (await self.reader.readexactly(n + 2))[:n]
                if n == 0:
                    break
        if status != 200:
            raise GradioError(f"{path}: HTTP {status} {payload[:200]!r}")
        return json.loads(payload)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def annotate_async(url: str, names: list[str], seconds: float, seed: int, ready, go, out: dict) -> None:
    """Every name a session on its own keep-alive connection, all on one event loop: sign in (httpx, not
    timed), load a pair, then vote back to back until the deadline, one double submit in ten."""
    import asyncio

    import httpx

    from benchmarks.http_client import GradioError

    rng = np.random.default_rng(seed)
    tokens = {}
    with httpx.Client(base_url=url, timeout=120) as h:
        for n in names:
            r = h.post("studio-api/sign-in", json={"name": n, "password": PASSWORD})
            if r.status_code != 200:
                out["errors"].append(f"{n}: sign-in HTTP {r.status_code} {r.text[:200]}")
                continue
            tokens[n] = r.json()["token"]

    async def one(name: str, conn: RawApiConnection, first: str, box: dict) -> None:
        lat, acked, handle, k = [], [], first, 0
        while time.perf_counter() < box["t"] and handle:
            v = str(rng.choice(["G", "S", "B"]))
            body = {"pair": handle, "overall": v, "verdicts": {"dynamic_quality": "S", "visual_quality": "S"}}
            try:
                t = time.perf_counter()
                nxt = (await conn.post("/studio-api/arena/vote", body))["next"]
                lat.append(time.perf_counter() - t)
                acked.append(handle)
                if k % 10 == 0:  # a double submit: the same pair's handle again, timed on its own
                    t = time.perf_counter()
                    await conn.post("/studio-api/arena/vote", body)
                    lat.append(time.perf_counter() - t)
                handle = nxt["pair"] if nxt else ""
            except (GradioError, OSError, asyncio.IncompleteReadError) as e:
                out["errors"].append(f"{name}: {e}")
                break
            k += 1
        conn.close()
        out["latencies"] += lat
        out["acked"] += [(name, h) for h in acked]

    async def main() -> None:
        conns, firsts = {}, {}
        for n, tok in tokens.items():
            c = RawApiConnection(url)
            await c.open(tok)
            nxt = (await c.post("/studio-api/arena/next"))["next"]
            conns[n], firsts[n] = c, nxt["pair"] if nxt else ""
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        box = {"t": time.perf_counter() + seconds}
        out["cpu0"] = _own_cpu()
        await asyncio.gather(*(one(n, conns[n], firsts[n], box) for n in conns))

    asyncio.run(main())


def _own_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _client_process(url, names, seconds, seed, ready, go, q, path, client) -> None:
    box, out = {"t": float("inf")}, {"latencies": [], "acked": [], "errors": []}
    if client == "asyncio":
        annotate_async(url, names, seconds, seed, ready, go, out)
    else:
        barrier = threading.Barrier(len(names) + 1)
        runner = threading.Thread(target=annotate, args=(url, names, box, barrier, out, seed, path))
        runner.start()
        barrier.wait()  # every session signed in with a pair on its page
        ready.set()
        go.wait()
        box["t"] = time.perf_counter() + seconds
        out["cpu0"] = _own_cpu()
        runner.join()
    out["cpu_s"] = _own_cpu() - out["cpu0"]  # this client process's CPU while voting
    q.put(out)


def start_split(home: Path, model: Path, workers: int) -> tuple[str, list]:
    """The crowd topology beside a launched `app.py --external-workers`: a job worker process at lower CPU
    priority (generations) and the API server's processes; returns the API's URL and the processes."""
    import httpx

    from tests.launched import free_port

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    logs = Path(str(home) + ".split.log").open("w")
    procs = [subprocess.Popen([sys.executable, "-m", "studio_backend.worker", "--home", str(home), "--model", str(model),
                               "--kinds", "generate", "--nice", "10", "--threads", "1", "--name", "bench-worker"],
                              cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT),
             subprocess.Popen([sys.executable, "-m", "app.api_server", "--home", str(home), "--port", str(port),
                               "--workers", str(workers)], cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT)]
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            if httpx.get(url + "studio-api/health", timeout=2).status_code == 200:
                time.sleep(2.0)  # every worker process up (the first one answers first)
                return url, procs
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("the API server did not answer within 120 s: " + Path(logs.name).read_text()[-3000:])


def _tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers), from /proc."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    ap.add_argument("--client", choices=("asyncio", "threads"), default="asyncio",
                    help="asyncio: lean keep-alive connections on one event loop per process (api path only); "
                         "threads: an httpx client per session in its own thread")
    ap.add_argument("--topology", choices=("single", "split"), default="single",
                    help="single: `python app.py` alone (its job worker and its API in the studio's process); "
                         "split: app.py --external-workers, the generation in `python -m studio_backend.worker "
                         "--nice 10`, the API in `python -m app.api_server --workers N` (README, Hosting safely)")
    ap.add_argument("--api-workers", type=int, default=2, help="split: processes of the API server")
    ap.add_argument("--home", default=None)
    args = ap.parse_args(argv)
    if args.topology == "split" and args.path != "api":
        ap.error("--topology split serves the JSON API (--path api)")
    sys.path.insert(0, str(ROOT))
    from studio_backend.studio import Studio
    from tests.launched import start_app, stop_app

    home = Path(args.home or tempfile.mkdtemp(prefix="omni-votes-http-")) / "home"
    per_session = int(args.seconds * 40) + 20  # more pairs than one session can rate in the time
    names = prepare(home, args.sessions, per_session)
    split = args.topology == "split"
    app = start_app(home, Path(args.model), *(["--external-workers"] if split else []))
    helpers: list = []
    try:
        vote_url = app.url
        if split:
            vote_url, helpers = start_split(home, Path(args.model), args.api_workers)
        ctx = mp.get_context("spawn")
        go, q = ctx.Event(), ctx.Queue()
        readies = [ctx.Event() for _ in range(args.clients)]
        procs = [ctx.Process(target=_client_process, args=(vote_url, names[i::args.clients], args.seconds, i,
                                                           readies[i], go, q, args.path,
                                                           "threads" if args.path == "page" else args.client))
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
        server_pids = [app.proc.pid] + [q for h in helpers for q in _tree(h.pid)]
        server_cpu0 = sum(_cpu_seconds(q) for q in server_pids)
        t0 = time.perf_counter()
        go.set()
        results = [q.get() for _ in procs]
        wall = time.perf_counter() - t0
        server_cpu = sum(_cpu_seconds(q) for q in server_pids) - server_cpu0
        for p in procs:
            p.join()
        stop.set()
        if g is not None:
            g.join(600)
    finally:
        for h in helpers:
            h.terminate()
            try:
                h.wait(15)
            except subprocess.TimeoutExpired:
                h.kill()
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
        "path": args.path, "topology": args.topology,
        "api_workers": args.api_workers if split else 0, "client": "threads" if args.path == "page" else args.client, "sessions": args.sessions, "seconds": args.seconds, "client_processes": args.clients,
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
        # where the two cores went: the app (votes, and the generation meanwhile) and the load generators
        "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "server_cpu_ms_per_vote": round(1000 * server_cpu / max(1, len(stored)), 2),
    }
    print(f"{'measure':24s} {'value':>10s}")
    for k in ("path", "topology", "api_workers", "client", "sessions", "client_processes", "votes", "acknowledged", "votes_per_s", "p50_ms", "p90_ms", "p99_ms",
              "max_ms", "lost", "duplicated", "errors", "generations_meanwhile", "server_cpu_s", "client_cpu_s",
              "server_cpu_ms_per_vote"):
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
