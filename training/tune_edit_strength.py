"""Choose, per edit task, the noise level a mask-free video edit starts from (SDEdit).

    python -m training.tune_edit_strength --model assets/models/omni-world [--cases 12] \
        [--strengths 1,0.9,0.8,0.7,0.6,0.5] [--write] [--json OUT]

Starting from the source clip noised to a level below 1 keeps what the edit should leave alone
(layout, background, the other subjects) and leaves the model less to redraw; too low a level
and the edit itself cannot happen. The right level differs per task (a background swap
changes most of the frame, a material change a few cells), so it is chosen per task the
prompt enhancer infers, by OmniBench's own metrics but on **training-split** cases (seeds of
their own, never the benchmark's held-out compositions), so the benchmark stays a test.
`--write` stores the choice in the model directory's model_index.json (PipelineConfig.edit_strength).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.evaluate import score_case
from training.world import FAMILIES, sample

EDIT_FAMILIES = tuple(f for f in ("edit_add", "edit_remove", "edit_replace", "background", "stylize", "material",
                                  "effects", "weather", "combined") if f in FAMILIES)
TUNE_SEED = 7_000_000  # training-split cases of their own, far from the training streams' seeds


def tune_cases(family: str, n: int) -> list:
    return [sample(family, TUNE_SEED + 1000 * FAMILIES.index(family) + k, split="train") for k in range(n)]


def tune(pipe, cases: int = 12, strengths: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
         families: tuple[str, ...] = EDIT_FAMILIES, progress: bool = True) -> dict:
    """Score every strength on the same cases; per inferred task, the strength with the highest
    success rate (ties: mean utility, then the larger strength). Returns the table and the choice."""
    by_task: dict[str, list] = defaultdict(list)
    for fam in families:
        for case in tune_cases(fam, cases):
            by_task[pipe.enhancer.enhance(case.request).task].append(case)
    table: dict[str, dict[str, dict]] = {}
    choice: dict[str, float] = {}
    for task, group in sorted(by_task.items()):
        table[task] = {}
        for st in strengths:
            t0 = time.time()
            scores = [score_case(c, pipe(c.request, strength=st).frames) for c in group]
            table[task][f"{st:g}"] = {
                "cases": len(group),
                "success": float(np.mean([s.success for s in scores])),
                "utility": float(np.mean([s.utilities()["overall"] for s in scores])),
                "seconds": round(time.time() - t0, 1),
            }
            if progress:
                r = table[task][f"{st:g}"]
                print(f"{task:14s} strength {st:<4g} success {r['success']:.2f} utility {r['utility']:.3f} "
                      f"({len(group)} cases, {r['seconds']} s)", flush=True)
        best = max(strengths, key=lambda st: (table[task][f"{st:g}"]["success"], table[task][f"{st:g}"]["utility"], st))
        if best < 1.0:
            choice[task] = best
    return {"table": table, "edit_strength": choice}


def write_choice(model_dir: str | Path, choice: dict[str, float]) -> None:
    idx_path = Path(model_dir) / "model_index.json"
    index = json.loads(idx_path.read_text())
    index.setdefault("config", {})["edit_strength"] = choice
    idx_path.write_text(json.dumps(index, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.tune_edit_strength", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="an Omni model directory")
    ap.add_argument("--cases", type=int, default=12, help="training-split cases per edit family")
    ap.add_argument("--strengths", default="1,0.9,0.8,0.7,0.6,0.5")
    ap.add_argument("--write", action="store_true", help="store the choice in the model's model_index.json")
    ap.add_argument("--json", help="write the table and the choice here")
    a = ap.parse_args(argv)
    try:
        strengths = tuple(float(x) for x in a.strengths.split(","))
    except ValueError:
        raise SystemExit(f"--strengths {a.strengths!r}: give numbers in (0, 1] separated by commas, e.g. 1,0.8,0.6")
    if not strengths or any(not 0 < s <= 1 for s in strengths):
        raise SystemExit(f"--strengths {a.strengths!r}: every strength must be in (0, 1]")
    import torch

    torch.set_num_threads(1)
    from model.pipeline import OmniPipeline

    pipe = OmniPipeline.from_pretrained(a.model)
    pipe.set_progress_bar_config(disable=True)
    out = tune(pipe, a.cases, strengths)
    print("chosen:", json.dumps(out["edit_strength"]))
    if a.write:
        write_choice(a.model, out["edit_strength"])
        print(f"written to {Path(a.model) / 'model_index.json'}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
