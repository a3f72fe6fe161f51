"""Simulated annotators for the world: they vote through the same arena service as a person
(the voting loop and its command line are studio_backend.preference; this module is the judge).

Each simulated annotator takes the next blind pair, scores the left and the right clip with
the OmniBench judge against the world truth of the request (re-created from the seed the
comparison stores), and votes Good / Same / Bad per dimension, with configurable noise (a
random verdict with probability P) and position bias (prefer the left clip with probability Q).

    python -m studio_backend.preference --home DIR --votes N [--noise 0.1] [--position-bias 0.0]
        [--collect K] [--annotators 5] [--seed 0]
(`--collect K` first runs a collection round of K requests on the active version.) This module
imports nothing of the studio.
"""

from __future__ import annotations

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


def judge_segments(world: dict, left: np.ndarray, right: np.ndarray, n: int) -> list[str]:
    """The judge's overall verdict on each of `n` equal runs of frames, left against right: the judge scores whole
    clips, so segment k is judged by what putting the left clip's frames there does to the right clip, against what
    putting the right clip's frames there does to the left one: the two changes' difference against the judge's margin
    (the whole-clip checker reads a quarter's loss as a small change, so both directions count). Two clips from one
    source, DenseDPO's pairs, differ in a few segments; elsewhere the swap changes nothing and the verdict is Same."""
    case = sample(world["family"], int(world["seed"]), world.get("split", "train"))
    T = min(len(left), len(right))
    bounds = np.linspace(0, T, n + 1).round().astype(int)
    ul, ur = (score_case(case, c[:T]).utilities()["overall"] for c in (left, right))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        r_with_l, l_with_r = right[:T].copy(), left[:T].copy()
        r_with_l[a:b], l_with_r[a:b] = left[a:b], right[a:b]
        gain = (score_case(case, r_with_l).utilities()["overall"] - ur) - (score_case(case, l_with_r).utilities()["overall"] - ul)
        out.append(vote(gain, 0.0))
    return out


def pipeline_generator(threads: int = 1):
    """generate(version_path, request, seed, churn=None, guide=None, strength=None) with a cached pipeline per
    version; `churn` (the share of fresh noise per sampler step, model/flow_matching.sampler_step) makes two seeds of
    one request differ more: the pipeline's own setting when None. `guide` and `strength`: denoising starts from that
    clip noised to that level (OmniPipeline.__call__)."""
    import torch

    from model.pipeline import OmniPipeline

    torch.set_num_threads(threads)
    cache = {}

    def generate(path, request, seed, churn=None, guide=None, strength=None):
        if path not in cache:
            cache[path] = OmniPipeline.from_pretrained(path)
            cache[path].set_progress_bar_config(disable=True)
        return cache[path](request, seed=seed, churn=churn, guide=guide, strength=strength).frames

    return generate


if __name__ == "__main__":
    sys.exit("the simulated annotators' command line is the studio's now: python -m studio_backend.preference "
             "--home DIR --votes N (same options)")
