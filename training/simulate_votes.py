"""Simulated annotators for the world: they vote through the same arena service as a person
(the voting loop is studio_backend.preference.simulate; this module is the judge and the CLI).

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

import numpy as np

from training.evaluate import DIMENSIONS, score_case, vote
from training.world import sample

def judge_pair(world: dict, left: np.ndarray, right: np.ndarray) -> tuple[dict, str]:
    """The judge's verdicts for the left clip against the right one, per dimension and overall,
    for the world request `world` = {"family", "seed", "split"}."""
    case = sample(world["family"], int(world["seed"]), world.get("split", "train"))
    ul = score_case(case, left).utilities()
    ur = score_case(case, right).utilities()
    dims = {d: vote(ul[d], ur[d]) for d in DIMENSIONS if d in ul and d in ur}
    return dims, vote(ul["overall"], ur["overall"])


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
    ap.add_argument("--seeds-per-request", type=int, default=2,
                    help="with --collect: generate this many seeds per request and queue the two most different")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.seeds_per_request < 2:
        ap.error(f"--seeds-per-request {a.seeds_per_request}: a pair needs at least 2 seeds")
    from studio_backend.preference import simulate  # the CLI drives a studio home
    from studio_backend.rounds import collection_round
    from studio_backend.studio import Studio

    studio = Studio.open(a.home)
    if a.collect:
        collection_round(studio, pipeline_generator(), a.collect, seed=a.seed, seeds_per_request=a.seeds_per_request)
    print(json.dumps(simulate(studio, a.votes, a.noise, a.position_bias, a.annotators, a.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
