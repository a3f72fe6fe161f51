"""Simulated annotators for the world: they vote through the same arena service as a person.

Each simulated annotator takes the next blind pair, scores the left and the right clip with
the OmniBench judge against the world truth of the request (re-created from the seed the
comparison stores), and votes Good / Same / Bad per dimension, with configurable noise (a
random verdict with probability P) and position bias (prefer the left clip with probability Q).

    python -m training.simulate_votes --home DIR --votes N [--noise 0.1] [--position-bias 0.0]
        [--collect K] [--annotators 5] [--seed 0]
(`--collect K` first runs a collection round of K requests on the active version.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import numpy as np

from studio_backend.services import DIMENSIONS
from training.evaluate import score_case, vote
from training.world import sample

def judge_pair(studio, comparison_request: dict, left_asset: str, right_asset: str) -> tuple[dict, str]:
    """The judge's verdicts for left against right: per dimension and overall."""
    w = comparison_request.get("_world")
    if not w:
        raise ValueError("this comparison has no world truth to judge by (it came from a project)")
    case = sample(w["family"], int(w["seed"]), w.get("split", "train"))
    ul = score_case(case, studio.media.load_video(left_asset)).utilities()
    ur = score_case(case, studio.media.load_video(right_asset)).utilities()
    dims = {d: vote(ul[d], ur[d]) for d in DIMENSIONS if d in ul and d in ur}
    return dims, vote(ul["overall"], ur["overall"])


def simulate(studio, votes: int, noise: float = 0.1, position_bias: float = 0.0, annotators: int = 5,
             seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
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
            from studio_backend.models import Comparison

            req = dict(s.get(Comparison, pair.comparison_id).request)
        dims, overall = judge_pair(studio, req, pair.left_asset, pair.right_asset)
        if rng.random() < noise:
            overall = str(rng.choice(["G", "S", "B"]))
        dims = {d: (str(rng.choice(["G", "S", "B"])) if rng.random() < noise else v) for d, v in dims.items()}
        if rng.random() < position_bias:
            overall = "G"  # the left clip wins whatever it shows
        studio.arena.vote(ann, pair.left_is_a_token, dims, overall, uuid.uuid4().hex, seconds=float(rng.uniform(3, 9)))
        cast += 1
    return {"votes": cast, "seconds": round(time.time() - t0, 2), "annotators": annotators, "noise": noise,
            "position_bias": position_bias}


def pipeline_generator(threads: int = 1):
    """generate(version_path, request, seed) with a cached pipeline per version."""
    import torch

    from model.pipeline import OmniPipeline

    torch.set_num_threads(threads)
    cache = {}

    def generate(path, request, seed):
        if path not in cache:
            cache[path] = OmniPipeline.from_pretrained(path)
            cache[path].set_progress_bar_config(disable=True)
        return cache[path](request, seed=seed).frames

    return generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.simulate_votes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--votes", type=int, required=True)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--position-bias", type=float, default=0.0)
    ap.add_argument("--annotators", type=int, default=5)
    ap.add_argument("--collect", type=int, default=0, help="first run a collection round of this many requests")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from studio_backend.rounds import collection_round
    from studio_backend.studio import Studio

    studio = Studio.open(a.home)
    if a.collect:
        collection_round(studio, pipeline_generator(), a.collect, seed=a.seed)
    print(json.dumps(simulate(studio, a.votes, a.noise, a.position_bias, a.annotators, a.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
