"""How good are the DPO pairs of a studio? The judge's view of every winner / loser pair.

    python -m studio_backend.pair_quality --home DIR [--json OUT]

For each preference pair whose request came from OmniWorld (collection rounds record the
world family and seed), both stored clips are scored against the world's truth, per Kling-Omni
dimension. The table says how often the voted winner really is better, by how much, and on
which dimensions: the first thing to look at when DPO does not improve the model (noisy
votes, pairs that differ in nothing the benchmark checks, or too few pairs per family).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

import numpy as np

from training.evaluate import DIMENSIONS, score_case


def pair_quality(studio) -> dict:
    from studio_backend.export import preference_pairs
    from training.world import sample

    votes = [v for v in studio.arena.votes() if v["purpose"] == "dpo"]
    pairs = preference_pairs(votes)
    gaps: dict[str, list[float]] = defaultdict(list)
    families: Counter = Counter()
    for p in pairs:
        world = (p.get("request") or {}).get("_world")
        if not world:  # a project's own request: no truth to score against
            continue
        case = sample(world["family"], world["seed"], world["split"])
        uw = score_case(case, studio.media.load_video(p["winner_asset"])).utilities()
        ul = score_case(case, studio.media.load_video(p["loser_asset"])).utilities()
        families[world["family"]] += 1
        for d in ("overall",) + DIMENSIONS:
            if d in uw and d in ul:
                gaps[d].append(uw[d] - ul[d])
    table = {}
    for d, g in gaps.items():
        a = np.array(g)
        table[d] = {"pairs": len(a), "mean_gap": round(float(a.mean()), 4),
                    "winner_better": round(float(np.mean(a > 0)), 3), "winner_worse": round(float(np.mean(a < 0)), 3)}
    return {"comparisons": len({v["comparison_id"] for v in votes}), "votes": len(votes), "pairs": len(pairs),
            "scored_pairs": sum(families.values()), "pairs_per_family": dict(families), "dimensions": table}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio_backend.pair_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="the studio home with the votes")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args(argv)
    from studio_backend.studio import Studio

    r = pair_quality(Studio.open(a.home))
    print(f"{r['votes']} DPO votes on {r['comparisons']} comparisons -> {r['pairs']} pairs "
          f"({r['scored_pairs']} with world truth)")
    print(f"{'dimension':22s} {'pairs':>5s} {'mean gap':>9s} {'winner better':>14s} {'worse':>6s}")
    for d, t in r["dimensions"].items():
        print(f"{d:22s} {t['pairs']:5d} {t['mean_gap']:+9.3f} {t['winner_better']:14.2f} {t['winner_worse']:6.2f}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
