"""An evaluation round between two model directories, in a fresh studio home, with the promotion decision:

    python -m studio_backend.eval_round --candidate DIR --parent DIR [--requests 414] [--noise 0.1]
        [--home DIR] --json OUT
    python -m studio_backend.eval_round --power --good 0.087 --bad 0.029 [--requests N ...]

The round renders the fixed held-out requests (`rounds.EVAL_SEED + k`, the families in turn) with both models on
one seed each, two simulated annotators vote on every pair (the judge plus `--noise` random verdicts), and the
candidate is promoted when the lower bound of its overall GSB interval against the parent is above 100%
(`rounds.promotion_decision`; the interval resamples comparisons, not votes).

How many requests: `--power` prints the chance that a round of each size promotes a candidate the judge finds
better on a share `--good` of requests and worse on `--bad`. A candidate at 106% (the judge's G 12 / S 122 / B 4)
is promoted by a 23-request round 13% of the time, by 414 requests (18 per family) 85% of the time: the default
(`DEFAULT_EVAL_REQUESTS`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_EVAL_REQUESTS = 414  # 18 per family: 85% power for a candidate at 106% (stats.eval_power)


def run_evaluation(studio, generate, candidate_id: int, parent_id: int, requests: int = DEFAULT_EVAL_REQUESTS,
                   noise: float = 0.1, seed: int = 1, progress=None) -> dict:
    """An evaluation round of `requests` comparisons, two simulated votes on each, and the promotion decision."""
    from .preference import simulate
    from .rounds import evaluation_round, promotion_decision

    ids = evaluation_round(studio, generate, candidate_id, parent_id, n_requests=requests, progress=progress)
    simulate(studio, 2 * len(ids), noise=noise, annotators=2, seed=seed)
    return {"requests": len(ids), **promotion_decision(studio, candidate_id, parent_id)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio_backend.eval_round")
    ap.add_argument("--candidate", help="the candidate's model directory")
    ap.add_argument("--parent", help="the parent's model directory (the version it would replace)")
    ap.add_argument("--requests", type=int, default=None, help=f"held-out requests (default {DEFAULT_EVAL_REQUESTS})")
    ap.add_argument("--noise", type=float, default=0.1, help="the simulated annotators' share of random verdicts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--home", default=None, help="a new studio home for the round (default: a temporary one)")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--power", action="store_true", help="print the promotion chance per round size and exit")
    ap.add_argument("--good", type=float, default=12 / 138)
    ap.add_argument("--bad", type=float, default=4 / 138)
    a = ap.parse_args(argv)
    if not 0.0 <= a.noise <= 1.0:
        raise SystemExit(f"--noise {a.noise}: a share in [0, 1]")
    if a.power:
        from .stats import eval_power

        if not (0 <= a.good and 0 <= a.bad and a.good + a.bad <= 1):
            raise SystemExit(f"--good {a.good} --bad {a.bad}: shares of requests, together at most 1")
        sizes = [a.requests] if a.requests else [23, 46, 138, 276, 414, 552]
        rows = [{"requests": n, "promotion_chance": eval_power(a.good, a.bad, n, noise=a.noise)} for n in sizes]
        for r in rows:
            print(f"{r['requests']:>5} requests: promoted in {100 * r['promotion_chance']:.0f}% of rounds")
        if a.json_out:
            Path(a.json_out).write_text(json.dumps({"good": a.good, "bad": a.bad, "noise": a.noise, "rows": rows},
                                                   indent=1))
        return 0
    for flag, d in (("--candidate", a.candidate), ("--parent", a.parent)):
        if not d or not (Path(d) / "model_index.json").is_file():
            raise SystemExit(f"{flag} {d!r}: not a model directory (no model_index.json)")
    n = a.requests or DEFAULT_EVAL_REQUESTS
    if n < 1:
        raise SystemExit(f"--requests {n}: at least 1")
    home = Path(a.home or tempfile.mkdtemp(prefix="omni-eval-round-"))
    if (home / "studio.db").exists():
        raise SystemExit(f"--home {home}: already a studio; an evaluation round starts from a fresh home "
                         "(earlier eval votes on the same versions would be counted twice)")
    import torch

    from training.simulate_votes import pipeline_generator

    from .studio import Studio

    torch.set_num_threads(1)
    studio = Studio.open(home)
    admin = studio.users.ensure("round-admin", "admin")
    stamp = int(time.time())
    parent = studio.registry.register(f"parent-{stamp}", str(Path(a.parent).resolve()))
    studio.registry.promote(admin, parent.id)
    cand = studio.registry.register(f"candidate-{stamp}", str(Path(a.candidate).resolve()))
    t = time.time()
    last = [0.0]

    def progress(f):
        if f - last[0] >= 0.1 or f >= 1:
            last[0] = f
            print(f"evaluation round {100 * f:.0f}%", flush=True)

    out = run_evaluation(studio, pipeline_generator(), cand.id, parent.id, n, a.noise, a.seed, progress)
    out.update({"candidate": str(a.candidate), "parent": str(a.parent), "noise": a.noise,
                "seconds": round(time.time() - t, 1), "home": str(home)})
    print(json.dumps(out, indent=1, default=str))
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
