"""Arena statistics: GSB with bootstrap intervals, Bradley-Terry with ties (Davidson),
Krippendorff's alpha (ordinal) and annotators' accuracy on gold pairs.

Votes are dicts as `ArenaService.votes()` returns them: verdicts are for A against B.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Iterable

ORDINAL = {"B": 0, "S": 1, "G": 2}


def gsb(counts: dict[str, int]) -> float:
    """(G + S) / (B + S): above 1 means A is preferred. Infinite when A never ties or loses."""
    den = counts.get("B", 0) + counts.get("S", 0)
    return float("inf") if den == 0 else (counts.get("G", 0) + counts.get("S", 0)) / den


def _counts(verdicts: Iterable[str]) -> dict[str, int]:
    c = {"G": 0, "S": 0, "B": 0}
    for v in verdicts:
        c[v] += 1
    return c


def _wgsb(items: list[tuple[str, float]]) -> float:
    c = {"G": 0.0, "S": 0.0, "B": 0.0}
    for v, w in items:
        c[v] += w
    return gsb(c)


def bootstrap_ci(items: list[tuple[str, float]], reps: int = 1000, level: float = 0.95, seed: int = 0,
                 clusters: list | None = None) -> tuple[float, float]:
    """Percentile interval of (weighted) GSB over votes resampled with replacement. With `clusters` (one key per
    item, e.g. its comparison), whole clusters are resampled: the votes on one pair of clips share its clips, so
    counting them as independent draws would make the interval too narrow (two annotators agreeing on one pair
    are one piece of evidence about the models, not two)."""
    if not items:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    if clusters is None:
        groups = [[it] for it in items]
    else:
        by: dict = defaultdict(list)
        for key, it in zip(clusters, items):
            by[key].append(it)
        groups = list(by.values())
    vals = sorted(_wgsb([it for g in rng.choices(groups, k=len(groups)) for it in g]) for _ in range(reps))
    return vals[int((1 - level) / 2 * reps)], vals[min(reps - 1, int((1 + level) / 2 * reps))]


def gsb_table(votes: list[dict], weights: dict[int, float] | None = None, reps: int = 1000) -> list[dict]:
    """GSB per (version pair, dimension) and per (version pair, family) overall, with 95% intervals.

    Pairs are oriented so the lower version id is A. `weights` (annotator -> trust) weight each
    vote in the estimate; `counts` are the plain vote counts. The intervals resample comparisons (all the votes
    on one pair of clips together) where the votes name theirs."""
    flip = {"G": "B", "S": "S", "B": "G"}
    groups: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    keys: dict[tuple, list] = defaultdict(list)
    for n, v in enumerate(votes):
        a, b = v.get("version_a"), v.get("version_b")
        if a is None or b is None or a == b:
            continue
        w = 1.0 if weights is None else weights.get(v["annotator_id"], 1.0)
        pair = (min(a, b), max(a, b))
        orient = (lambda x: flip[x]) if a > b else (lambda x: x)
        cluster = v.get("comparison_id", ("vote", n))
        for dim, verdict in [("overall", v["overall"])] + list(v["verdicts"].items()):
            groups[(pair, dim, "all")].append((orient(verdict), w))
            keys[(pair, dim, "all")].append(cluster)
        if v.get("family"):
            groups[(pair, "overall", v["family"])].append((orient(v["overall"]), w))
            keys[(pair, "overall", v["family"])].append(cluster)
    rows = []
    for key, items in sorted(groups.items()):
        pair, dim, fam = key
        lo, hi = bootstrap_ci(items, reps, clusters=keys[key])
        rows.append({"a": pair[0], "b": pair[1], "dimension": dim, "family": fam, "gsb": _wgsb(items),
                     "ci_low": lo, "ci_high": hi, "counts": _counts(v for v, _ in items)})
    return rows


def eval_power(p_good: float, p_bad: float, requests: int, votes_per_request: int = 2, noise: float = 0.1,
               level: float = 0.95, trials: int = 200, reps: int = 400, seed: int = 0) -> float:
    """The chance that an evaluation round of `requests` comparisons promotes a candidate whose clips the judge
    finds better on a share `p_good` of requests and worse on `p_bad`, voted on by `votes_per_request` annotators who
    each give a random verdict with probability `noise`: the share of simulated rounds whose comparison-resampled
    interval (`bootstrap_ci`, as `rounds.promotion_decision` computes it) has its lower bound above 100%."""
    rng = random.Random(seed)
    hits = 0
    for t in range(trials):
        items, clusters = [], []
        for r in range(requests):
            u = rng.random()
            truth = "G" if u < p_good else "B" if u < p_good + p_bad else "S"
            for _ in range(votes_per_request):
                items.append((rng.choice("GSB") if rng.random() < noise else truth, 1.0))
                clusters.append(r)
        hits += bootstrap_ci(items, reps, level, seed=t, clusters=clusters)[0] > 1.0
    return hits / trials


def bradley_terry_ties(matches: list[tuple[int, int, str]], iters: int = 500, prior: float = 0.5) -> dict:
    """Davidson's Bradley-Terry model with ties, fitted by minorise-maximise.

    matches: (a, b, verdict of a against b: G/S/B). Returns {"strength": {item: pi}, "elo": {item: 400 log10 pi},
    "tie": nu}. A `prior` of pseudo-ties per observed pair keeps undefeated items finite."""
    items = sorted({m[0] for m in matches} | {m[1] for m in matches})
    if not items:
        return {"strength": {}, "elo": {}, "tie": 0.0}
    wins = defaultdict(float)
    ties = defaultdict(float)
    n = defaultdict(float)
    for a, b, v in matches:
        if a == b:
            continue
        key = (min(a, b), max(a, b))
        n[key] += 1
        if v == "S":
            ties[a] += 1
            ties[b] += 1
        else:
            wins[a if v == "G" else b] += 1
    for key in list(n):
        n[key] += prior
        ties[key[0]] += prior
        ties[key[1]] += prior
    total_ties = sum(ties.values()) / 2
    pi = {i: 1.0 for i in items}
    nu = 1.0
    for _ in range(iters):
        new = {}
        for i in items:
            den = 0.0
            for (a, b), nij in n.items():
                if i not in (a, b):
                    continue
                j = b if i == a else a
                d = pi[i] + pi[j] + nu * math.sqrt(pi[i] * pi[j])
                den += nij * (1 + 0.5 * nu * math.sqrt(pi[j] / pi[i])) / d
            new[i] = (wins[i] + 0.5 * ties[i]) / den if den > 0 else pi[i]
        g = math.exp(sum(math.log(max(v, 1e-12)) for v in new.values()) / len(new))
        pi = {i: v / g for i, v in new.items()}
        s = sum(nij * math.sqrt(pi[a] * pi[b]) / (pi[a] + pi[b] + nu * math.sqrt(pi[a] * pi[b])) for (a, b), nij in n.items())
        nu = total_ties / s if s > 0 else nu
    return {"strength": pi, "elo": {i: 400 * math.log10(p) for i, p in pi.items()}, "tie": nu}


def krippendorff_alpha_ordinal(units: dict[object, list[str]]) -> float:
    """Krippendorff's alpha with the ordinal metric over B < S < G; units with one rating are ignored."""
    cats = [0, 1, 2]
    o = [[0.0] * 3 for _ in cats]
    for ratings in units.values():
        vals = [ORDINAL[r] for r in ratings]
        m = len(vals)
        if m < 2:
            continue
        for x in range(m):
            for y in range(m):
                if x != y:
                    o[vals[x]][vals[y]] += 1.0 / (m - 1)
    nc = [sum(o[c]) for c in cats]
    n = sum(nc)
    if n <= 1:
        return float("nan")

    def delta(c: int, k: int) -> float:
        lo, hi = min(c, k), max(c, k)
        return (sum(nc[g] for g in range(lo, hi + 1)) - (nc[c] + nc[k]) / 2) ** 2

    d_o = sum(o[c][k] * delta(c, k) for c in cats for k in cats)
    d_e = sum(nc[c] * nc[k] * delta(c, k) for c in cats for k in cats) / (n - 1)
    return 1.0 if d_e == 0 else 1.0 - d_o / d_e


def gold_accuracy(votes: list[dict]) -> dict[int, dict]:
    """Per annotator: accuracy on gold pairs and the trust weight derived from it (0.5 with no gold yet)."""
    per: dict[int, list[bool]] = defaultdict(list)
    for v in votes:
        if v.get("gold"):
            per[v["annotator_id"]].append(v["overall"] == v["gold"])
    out = {}
    for a in {v["annotator_id"] for v in votes}:
        hits = per.get(a, [])
        acc = sum(hits) / len(hits) if hits else None
        out[a] = {"gold_votes": len(hits), "accuracy": acc, "weight": 0.5 if acc is None else acc}
    return out


def agreement(votes: list[dict]) -> float:
    """Inter-annotator agreement on the overall verdict, over comparisons with two or more votes."""
    units: dict[int, list[str]] = defaultdict(list)
    for v in votes:
        units[v["comparison_id"]].append(v["overall"])
    return krippendorff_alpha_ordinal(units)
