"""The preference loop on a studio: simulated annotators voting through the arena, and
preference pairs with their clips. The algorithms live in training (the judge, Flow-DPO); DPO
runs as a studio job (studio_backend.train_jobs), which registers the candidate version.

    python -m studio_backend.preference --home DIR --votes N [--noise 0.1] [--position-bias 0.0]
        [--collect K] [--annotators 5] [--seed 0]
(`--collect K` first runs a collection round of K requests on the active version.)
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from model.mvl import MVLRequest

from .export import preference_pairs
from .models import Comparison
from .studio import Studio


def simulate(studio: Studio, votes: int, noise: float = 0.1, position_bias: float = 0.0, annotators: int = 5,
             seed: int = 0, segments: bool = False) -> dict:
    """Simulated annotators judge blind pairs (left vs right) and vote through the arena service. `segments`: they
    also judge each quarter of the clips (training.simulate_votes.judge_segments, with the same noise, drawn apart:
    the whole-clip votes are those of a run without segments)."""
    from training.simulate_votes import judge_pair, judge_segments

    from .services import VOTE_SEGMENTS

    rng = np.random.default_rng(seed)
    seg_rng = np.random.default_rng([seed, 1])
    people = [studio.users.ensure(f"sim-annotator-{i}", "annotator") for i in range(annotators)]
    cast, turn, active = 0, 0, list(people)
    t0 = time.time()
    while cast < votes and active:
        ann = active[turn % len(active)]
        turn += 1
        pair = studio.arena.next_pair(ann)
        if pair is None:  # this annotator has rated every pair
            active.remove(ann)
            continue
        with studio.db.session(write=False) as s:
            req = dict(s.get(Comparison, pair.comparison_id).request)
        if not req.get("_world"):
            raise ValueError(f"comparison {pair.comparison_id} has no world truth to judge by (it came from a project)")
        left, right = studio.media.load_video(pair.left_asset), studio.media.load_video(pair.right_asset)
        dims, overall = judge_pair(req["_world"], left, right)
        seg = None
        if segments:
            seg = [str(seg_rng.choice(["G", "S", "B"])) if seg_rng.random() < noise else v
                   for v in judge_segments(req["_world"], left, right, VOTE_SEGMENTS)]
        if rng.random() < noise:
            overall = str(rng.choice(["G", "S", "B"]))
        dims = {d: (str(rng.choice(["G", "S", "B"])) if rng.random() < noise else v) for d, v in dims.items()}
        if rng.random() < position_bias:
            overall = "G"  # the left clip wins whatever it shows
        studio.arena.vote(ann, pair.left_is_a_token, dims, overall, uuid.uuid4().hex, seconds=float(rng.uniform(3, 9)),
                          segments=seg)
        cast += 1
    return {"votes": cast, "seconds": round(time.time() - t0, 2), "annotators": annotators, "noise": noise,
            "position_bias": position_bias}


def pairs_from_studio(studio: Studio, rows: list[dict] | None = None, segments: bool = False) -> list[dict]:
    """Preference pairs of the studio's votes (or the given `preference_pairs` rows), with the clips
    loaded from the media store; `segments`: with their segment labels (export.preference_pairs)."""
    out = []
    for r in (preference_pairs(studio.arena.votes(), segments=segments) if rows is None else rows):
        req = {k: v for k, v in r["request"].items() if not k.startswith("_")}
        out.append({"request": studio.media.resolve(MVLRequest.from_dict(req)),
                    "winner": studio.media.load_video(r["winner_asset"]),
                    "loser": studio.media.load_video(r["loser_asset"]), "weight": r["weight"]})
        if r.get("segments") is not None:
            out[-1].update(segments=r["segments"], overall_preferred=r.get("overall_preferred", True))
    return out


def main(argv: list[str] | None = None) -> int:
    """Simulated annotators vote on a studio home (after an optional collection round)."""
    import argparse
    import json

    from training.simulate_votes import pipeline_generator

    from .rounds import collection_round

    ap = argparse.ArgumentParser(prog="python -m studio_backend.preference",
                                 description="Simulated annotators vote through a studio's arena.")
    ap.add_argument("--home", required=True)
    ap.add_argument("--votes", type=int, required=True)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--position-bias", type=float, default=0.0)
    ap.add_argument("--annotators", type=int, default=5)
    ap.add_argument("--collect", type=int, default=0, help="first run a collection round of this many requests")
    ap.add_argument("--seeds-per-request", type=int, default=2,
                    help="with --collect: generate this many seeds per request and queue the two most different")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.seeds_per_request < 2:
        ap.error(f"--seeds-per-request {a.seeds_per_request}: a pair needs at least 2 seeds")
    studio = Studio.open(a.home)
    if a.collect:
        collection_round(studio, pipeline_generator(), a.collect, seed=a.seed, seeds_per_request=a.seeds_per_request)
    print(json.dumps(simulate(studio, a.votes, a.noise, a.position_bias, a.annotators, a.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
