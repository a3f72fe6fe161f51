"""What could preference votes reward? How far apart the judge puts a model's own samples of one request.

    python -m benchmarks.sample_spread --model assets/models/omni-world [--cases 6] [--seeds 3] [--churn C]
        [--settings] [--vary-plan] [--json benchmarks/results/sample_spread.json]

For each task family, `--cases` train-split requests (never the benchmark's) are rendered with `--seeds`
seeds; the OmniBench judge scores each clip against the world's truth. A collection round shows annotators
two samples of one request (DPO pairs), so the figures that matter are how often two seeds differ by more
than the judge's margin (the pairs on which a vote can say anything: the others are Same) and how much the
best of the seeds gains over their mean (what a model that always drew its best sample would gain).
`--settings` also renders each request at other sampler settings (guidance 1.5 / 6, churn 0.5) on seed 0:
pairs may differ by sampler setting rather than by seed, which helps only where the settings change a score.
`--vary-plan`: each seed is also the request's own seed, so the planner's free choices (a subject's size and
start where the words leave them open) differ between samples, as they do between a creator's two seeds in the
studio; without it only the sampler's noise differs and the plan is the request's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

SETTINGS = {"guidance 1.5": {"guidance": 1.5}, "guidance 6": {"guidance": 6.0}, "churn 0.5": {"churn": 0.5}}
SPLIT_SEED = 900_000  # train-split world seeds of this measurement (collection rounds use seed * 100000 + k)


def spread(generate: Callable[..., np.ndarray], families: tuple[str, ...], cases: int, seeds: int,
           settings: dict[str, dict] | None = None, progress=None) -> dict:
    """generate(request, seed, **setting) -> (T, H, W, 3) uint8. Per family: mean utility, how often two seeds
    differ by more than the judge's margin, the best seed's gain over the mean, and per setting the mean utility
    and the share of requests it lifts by more than the margin over seed 0 at the defaults."""
    from training.evaluate import JUDGE_MARGIN, score_case
    from training.world import sample

    if seeds < 2:
        raise ValueError(f"seeds={seeds}: a spread needs at least 2 seeds per request")
    out = {}
    for fam in families:
        u, su = [], {name: [] for name in settings or {}}
        for k in range(cases):
            case = sample(fam, SPLIT_SEED + k, "train")
            u.append([score_case(case, generate(case.request, s)).utilities()["overall"] for s in range(seeds)])
            for name, kw in (settings or {}).items():
                su[name].append(score_case(case, generate(case.request, 0, **kw)).utilities()["overall"])
        u = np.asarray(u)
        i, j = np.triu_indices(seeds, 1)  # every pair of seeds once
        gaps = np.abs(u[:, i] - u[:, j])
        best = u.max(1) - u[:, 0]  # a model that always drew its best seed, judged against seed 0
        row = {"mean_utility": round(float(u.mean()), 4),
               "best_of_seeds_vs_seed0": {"G": int((best > JUDGE_MARGIN).sum()), "S": int((best <= JUDGE_MARGIN).sum()),
                                          "B": 0},
               "pairs_beyond_margin": round(float((gaps > JUDGE_MARGIN).mean()), 4),
               "mean_pair_gap": round(float(gaps.mean()), 4),
               "best_seed_gain": round(float((u.max(1) - u.mean(1)).mean()), 4)}
        for name, v in su.items():
            v = np.asarray(v)
            row[name] = {"mean_utility": round(float(v.mean()), 4),
                         "lifted": round(float((v - u[:, 0] > JUDGE_MARGIN).mean()), 4)}
        out[fam] = row
        if progress:
            progress(fam, row)
    fams = list(out.values())
    out["all"] = {"mean_utility": round(float(np.mean([r["mean_utility"] for r in fams])), 4),
                  "pairs_beyond_margin": round(float(np.mean([r["pairs_beyond_margin"] for r in fams])), 4),
                  "best_seed_gain": round(float(np.mean([r["best_seed_gain"] for r in fams])), 4),
                  "families_never_beyond_margin": [f for f, r in out.items() if r["pairs_beyond_margin"] == 0]}
    c = {k: sum(r["best_of_seeds_vs_seed0"][k] for r in fams) for k in "GSB"}
    # the ceiling of preference training on these samples: the judge's GSB of the best-of-seeds model
    out["all"]["best_of_seeds_vs_seed0"] = {**c, "gsb": round((c["G"] + c["S"]) / max(1, c["B"] + c["S"]), 4)}
    return out


def format_table(rep: dict, settings: tuple[str, ...]) -> str:
    head = ["family", "utility", "pairs > margin", "best-seed gain"] + [f"{s}: utility / lifted" for s in settings]
    lines = [" | ".join(head)]
    for fam, r in rep.items():
        if fam == "all":
            continue
        cells = [fam, f"{r['mean_utility']:.3f}", f"{100 * r['pairs_beyond_margin']:.0f}%",
                 f"{r['best_seed_gain']:+.3f}"]
        cells += [f"{r[s]['mean_utility']:.3f} / {100 * r[s]['lifted']:.0f}%" for s in settings]
        lines.append(" | ".join(cells))
    a = rep["all"]
    lines.append(f"all | {a['mean_utility']:.3f} | {100 * a['pairs_beyond_margin']:.0f}% | {a['best_seed_gain']:+.3f}")
    lines.append(f"never beyond the margin: {', '.join(a['families_never_beyond_margin']) or '-'}")
    b = a["best_of_seeds_vs_seed0"]
    lines.append(f"best of the seeds against seed 0 (the ceiling of preferring one's own samples): GSB "
                 f"{100 * b['gsb']:.1f}% (G {b['G']} / S {b['S']} / B {b['B']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sample_spread")
    ap.add_argument("--model", default="assets/models/omni-world")
    ap.add_argument("--cases", type=int, default=6, help="train-split requests per family")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--churn", type=float, default=None,
                    help="draw the seeds with this much fresh noise per sampler step (default: the model's own)")
    ap.add_argument("--settings", action="store_true", help="also other sampler settings (guidance, churn) on seed 0")
    ap.add_argument("--vary-plan", action="store_true",
                    help="draw the plan with each sample's seed too (the planner's free sizes and starts differ)")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args(argv)
    import torch

    from model.pipeline import OmniPipeline
    from training.world import FAMILIES

    torch.set_num_threads(1)
    if not (Path(a.model) / "model_index.json").is_file():
        raise SystemExit(f"--model {a.model!r}: not a model directory (no model_index.json)")
    unknown = sorted(set(a.family or ()) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--family {', '.join(unknown)}: unknown; known: {', '.join(FAMILIES)}")
    pipe = OmniPipeline.from_pretrained(a.model)
    pipe.set_progress_bar_config(disable=True)
    settings = SETTINGS if a.settings else {}
    t0 = time.time()
    if a.churn is not None and not 0.0 <= a.churn <= 1.0:
        raise SystemExit(f"--churn {a.churn}: the share of fresh noise per step must be in [0, 1]")
    def generate(req, seed, **kw):
        if a.vary_plan:  # the plan's free choices drawn with the sample's seed too
            req = dataclasses.replace(req, seed=int(seed))
        return pipe(req, seed=seed, **{"churn": a.churn, **kw}).frames

    rep = spread(generate, tuple(a.family or FAMILIES), a.cases, a.seeds, settings,
                 progress=lambda f, r: print(f, json.dumps(r), flush=True))
    print(format_table(rep, tuple(settings)))
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps({"model": a.model, "cases": a.cases, "seeds": a.seeds, "churn": a.churn,
                                                "vary_plan": a.vary_plan, "seconds": round(time.time() - t0, 1),
                                                "families": rep}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
