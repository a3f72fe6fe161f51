"""One whole preference round from a model, reproducibly, with timings:

collection (requests x 2 seeds on the model) -> simulated votes (judge + noise) -> Flow-DPO ->
candidate version -> evaluation round (candidate vs parent, judged; `--eval-requests`, default 414) -> GSB of candidate
against parent by the OmniBench judge on held-out cases -> promotion decision.

    python -m studio_backend.dpo_round [--model assets/models/omni-world] --votes 500 --seed 0 --json OUT
    python -m studio_backend.dpo_round --reuse --home DIR --consistent 1 --json OUT   (DPO again on DIR's votes)

`--reuse` skips collection and voting: the DPO run, the judge and the evaluation round run on the
votes already in `--home` (a previous round's), from its active version, so that DPO settings can
be compared on the same preference data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from studio_backend.eval_round import DEFAULT_EVAL_REQUESTS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio_backend.dpo_round")
    ap.add_argument("--model", default="assets/models/omni-world")
    ap.add_argument("--votes", type=int, default=500)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--beta", type=float, default=100.0)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seeds-per-request", type=int, default=2,
                    help="seeds generated per request; the two most different are compared")
    ap.add_argument("--families", default="",
                    help="comma-separated task families to collect on (default: all); e.g. those whose samples differ "
                         "(python -m benchmarks.sample_spread)")
    ap.add_argument("--churn", type=float, default=None,
                    help="collection only: fresh noise per sampler step in [0, 1] (seeds of one request differ more); "
                         "the evaluation renders at the model's own setting")
    ap.add_argument("--guide-levels", default="",
                    help="collection only: pairs from one source (DenseDPO): each request's seeds start from its truth "
                         "clip noised to these levels in turn (1 = pure noise, the model's own sample), e.g. 0.5,1")
    ap.add_argument("--eval-limit", type=int, default=6, help="held-out cases per family for the judge's GSB")
    ap.add_argument("--eval-requests", type=int, default=DEFAULT_EVAL_REQUESTS,
                    help="requests in the evaluation round that decides promotion (default: 18 per family, enough to "
                         "promote a 106%% candidate 85%% of the time; python -m studio_backend.eval_round --power)")
    ap.add_argument("--judge-seeds", default="0,1,2",
                    help="the judge votes on each held-out case's mean utility over these sampler seeds (one seed puts "
                         "one noise draw under every case; see training.evaluate --seeds)")
    ap.add_argument("--home", default=None)
    ap.add_argument("--reuse", action="store_true", help="use the votes already in --home (no collection, no voting)")
    ap.add_argument("--consistent", type=int, default=0, choices=(0, 1),
                    help="1: DPO only on pairs no vote found worse on any dimension")
    ap.add_argument("--segments", type=int, default=0, choices=(0, 1),
                    help="1: DenseDPO. The simulated annotators also judge each quarter of the clips, and DPO trains "
                         "one term per preferred quarter (pairs only a quarter prefers included)")
    ap.add_argument("--revote-from", default=None,
                    help="a previous round's home: copy it to --home, drop the copy's votes and vote again (with "
                         "--segments as set), so that two DPO variants compare on the same clips and vote budget; "
                         "the original keeps its votes")
    ap.add_argument("--sft-weight", type=float, default=0.0,
                    help="> 0: plus this weight times the winners' flow-matching error (an SFT anchor)")
    ap.add_argument("--json", dest="json_out", required=True)
    a = ap.parse_args(argv)
    import torch

    from studio_backend.eval_round import run_evaluation
    from studio_backend.rounds import collection_round
    from studio_backend.studio import Studio
    from training import evaluate as E
    from studio_backend.preference import simulate
    from studio_backend.train_jobs import read_log, run_dpo_here
    from training.simulate_votes import pipeline_generator
    from training.world import FAMILIES

    torch.set_num_threads(1)
    families = tuple(f.strip() for f in a.families.split(",") if f.strip()) or None
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--families {', '.join(unknown)}: unknown; known: {', '.join(FAMILIES)}")
    try:
        judge_seeds = E.parse_seeds(a.judge_seeds)
    except ValueError as e:
        raise SystemExit(f"--judge-seeds {e}")
    try:
        guide_levels = tuple(float(x) for x in a.guide_levels.split(",") if x.strip()) or None
    except ValueError:
        raise SystemExit(f"--guide-levels {a.guide_levels!r}: comma-separated noise levels in (0, 1], e.g. 0.5,1")
    if guide_levels and not all(0.0 < x <= 1.0 for x in guide_levels):
        raise SystemExit(f"--guide-levels {a.guide_levels}: each level must be in (0, 1] (1 = from pure noise)")
    if a.eval_requests < 1:
        raise SystemExit(f"--eval-requests {a.eval_requests}: at least 1")
    if a.churn is not None and not 0.0 <= a.churn <= 1.0:
        raise SystemExit(f"--churn {a.churn}: the share of fresh noise per step must be in [0, 1]")
    if a.reuse and not (a.home and (Path(a.home) / "studio.db").is_file()):
        raise SystemExit(f"--reuse needs --home with a studio that has votes; got {a.home!r}")
    if a.revote_from is not None:
        if a.reuse:
            raise SystemExit("--revote-from votes again on a copy; --reuse trains on the votes there: give one")
        if not (Path(a.revote_from) / "studio.db").is_file():
            raise SystemExit(f"--revote-from {a.revote_from}: no studio there (studio.db missing)")
        if not a.home or Path(a.home).exists():
            raise SystemExit(f"--revote-from needs a new --home to copy into; got {a.home!r}")
        copy_without_votes(Path(a.revote_from), Path(a.home))
    home = Path(a.home or tempfile.mkdtemp(prefix="omni-dpo-round-"))
    studio = Studio.open(home)
    admin = studio.users.ensure("round-admin", "admin")
    gen = pipeline_generator()
    times = {}
    if a.reuse or a.revote_from:
        parent = studio.registry.active()
        if parent is None:
            raise SystemExit(f"{home} has no active version to train from")
        if a.reuse:
            sim = {"votes": len(studio.arena.votes()), "reused": str(home)}
            if a.segments and not any(v.get("segments") for v in studio.arena.votes()):
                raise SystemExit(f"--segments 1 --reuse: no vote in {home} judged segments; vote again on a copy "
                                 "with --revote-from")
        else:
            t = time.time()
            sim = {**simulate(studio, a.votes, noise=a.noise, annotators=5, seed=a.seed, segments=bool(a.segments)),
                   "revoted_from": str(a.revote_from)}
            times["votes_s"] = round(time.time() - t, 1)
    else:
        parent = studio.registry.register(f"base-{int(time.time())}", str(Path(a.model).resolve()))
        studio.registry.promote(admin, parent.id)
        t = time.time()
        # each pair gets two votes (5 annotators), so votes / 2 requests
        collect = lambda path, req, seed, **kw: gen(path, req, seed, churn=a.churn, **kw)  # noqa: E731
        collection_round(studio, collect, max(1, a.votes // 2), seed=a.seed, families=families,
                         seeds_per_request=a.seeds_per_request, guide_levels=guide_levels)
        times["collection_s"] = round(time.time() - t, 1)
        t = time.time()
        sim = simulate(studio, a.votes, noise=a.noise, annotators=5, seed=a.seed, segments=bool(a.segments))
        times["votes_s"] = round(time.time() - t, 1)
    t = time.time()
    done = run_dpo_here(studio, admin, steps=a.steps, beta=a.beta, lora_rank=a.lora_rank, lr=a.lr, seed=a.seed,
                        consistent=a.consistent, sft_weight=a.sft_weight, segments=a.segments)
    if done.status != "succeeded":
        raise SystemExit(f"the DPO job {done.status}: {done.message}")
    log = read_log(studio, done.id)
    times["training_s"] = round(time.time() - t, 1)
    t = time.time()
    cand = studio.registry.get(done.model_version_id)
    report = E.compare(E.load_model(cand.path), E.load_model(parent.path), limit=a.eval_limit, seeds=judge_seeds)
    times["evaluation_s"] = round(time.time() - t, 1)
    t = time.time()
    decision = run_evaluation(studio, gen, cand.id, parent.id, a.eval_requests, a.noise, a.seed + 1)
    times["eval_round_s"] = round(time.time() - t, 1)
    out = {**report, "a": cand.name, "b": parent.name, "votes": sim, "times": times, "dpo_pairs": cand.metrics["dpo_pairs"],
           "seeds_per_request": a.seeds_per_request, "collection_families": list(families or ()), "churn": a.churn,
           "guide_levels": list(guide_levels or ()),
           "consistent": a.consistent, "sft_weight": a.sft_weight, "segments": a.segments,
           "segment_pairs": sum(1 for p in done_pairs(studio, done.id) if any(p.get("segments") or ())), "judge_seeds": list(judge_seeds),
           "curves": {"loss": [r["loss"] for r in log], "margin": [r["margin"] for r in log]},
           "promotion": decision, "home": str(home)}
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({"gsb": out["gsb"], "times": times, "promotion": decision}, indent=1, default=str))
    return 0


def copy_without_votes(src: Path, dst: Path) -> None:
    """A copy of a round's studio home (its collection's comparisons, clips, versions) whose arena has no votes yet,
    and no comparisons but the collection's (the source's evaluation round is its own). Only the copy changes."""
    import shutil
    import sqlite3

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("studio.db-wal", "studio.db-shm"))
    con = sqlite3.connect(src / "studio.db")  # the source's committed state, WAL included, into the copy's file
    with sqlite3.connect(dst / "studio.db") as out:
        con.backup(out)
    con.close()
    with sqlite3.connect(dst / "studio.db") as c:
        c.execute("DELETE FROM votes")
        c.execute("DELETE FROM comparisons WHERE purpose != 'dpo'")
        c.execute("UPDATE comparisons SET vote_count = 0")


def done_pairs(studio, job_id: int) -> list[dict]:
    """The pairs a DPO job trained on (frozen in its run folder); `segment_pairs` counts those with a preferred quarter."""
    from studio_backend.train_jobs import run_dir

    f = run_dir(studio, job_id) / "pairs.json"
    return json.loads(f.read_text()) if f.is_file() else []


if __name__ == "__main__":
    sys.exit(main())
