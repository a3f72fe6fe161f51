"""Choose, per edit task, the noise level a mask-free video edit starts from (SDEdit), and the
level below which its pixels are the source's own (paste-back).

    python -m training.tune_edit_strength --model assets/models/omni-world [--cases 12] \
        [--strengths 1,0.9,0.8,0.7,0.6,0.5] [--preserve-levels 0,0.3,0.2,0.12,0.08] \
        [--stage both|strength|preserve] [--write] [--json OUT]

Starting from the source clip noised to a level below 1 keeps what the edit should leave alone
(layout, background, the other subjects) and leaves the model less to redraw; too low a level
and the edit itself cannot happen. The right level differs per task (a background swap
changes most of the frame, a material change a few cells), so it is chosen per task the
prompt enhancer infers, by OmniBench's own metrics but on **training-split** cases (seeds of
their own, never the benchmark's held-out compositions), so the benchmark stays a test.
`--write` stores the choice in the model directory's model_index.json (PipelineConfig.edit_strength).

Paste-back (PipelineConfig.preserve_threshold) is chosen the same way, after the start level and
with it: each case is generated once and every level applied to that one output (0 = off).
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
PRESERVATION = "unedited_psnr"  # the metric paste-back serves; every other one measures the edit
TUNE_SEED = 7_000_000  # training-split cases of their own, far from the training streams' seeds


def tune_cases(family: str, n: int) -> list:
    return [sample(family, TUNE_SEED + 1000 * FAMILIES.index(family) + k, split="train") for k in range(n)]


def cases_by_task(pipe, cases: int, families: tuple[str, ...]) -> list[tuple[str, list]]:
    """Training-split cases of the families, grouped by the task the prompt enhancer infers."""
    by_task: dict[str, list] = defaultdict(list)
    for fam in families:
        for case in tune_cases(fam, cases):
            by_task[pipe.enhancer.enhance(case.request).task].append(case)
    return sorted(by_task.items())


def tune(pipe, cases: int = 12, strengths: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
         families: tuple[str, ...] = EDIT_FAMILIES, progress: bool = True) -> dict:
    """Score every strength on the same cases; per inferred task, the strength with the highest
    success rate (ties: mean utility, then the larger strength). Returns the table and the choice."""
    table: dict[str, dict[str, dict]] = {}
    choice: dict[str, float] = {}
    for task, group in cases_by_task(pipe, cases, families):
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


def tune_preserve(pipe, cases: int = 12, levels: tuple[float, ...] = (0.0, 0.3, 0.2, 0.12, 0.08),
                  families: tuple[str, ...] = EDIT_FAMILIES, progress: bool = True) -> dict:
    """Per inferred task, the paste-back level with the highest success; on ties the highest mean
    utility among the levels that keep the edit (the mean utility of every metric but
    unedited_psnr no lower than with paste-back off: a level high enough to paste the whole source
    back scores on preservation by undoing the edit, and is not taken), then the lowest level (the
    most of the model's own output). 0 = off is a candidate."""
    from model.pipeline import preserve_unchanged

    table: dict[str, dict[str, dict]] = {}
    choice: dict[str, float] = {}
    for task, group in cases_by_task(pipe, cases, families):
        t0 = time.time()
        raw = []  # (case, output without paste-back, source, its reconstruction)
        for c in group:
            frames = pipe(c.request, preserve=0).frames
            source, rec = pipe.source_and_reconstruction(c.request)
            raw.append((c, frames, source[: len(frames)], rec[: len(frames)]))
        gen_s = round(time.time() - t0, 1)
        table[task] = {}
        for lv in levels:
            scores = [score_case(c, f if lv == 0 else preserve_unchanged(f, src, rec, lv, pipe.config.preserve_grow))
                      for c, f, src, rec in raw]
            table[task][f"{lv:g}"] = {
                "cases": len(group),
                "success": float(np.mean([s.success for s in scores])),
                "utility": float(np.mean([s.utilities()["overall"] for s in scores])),
                "edit_utility": float(np.mean([np.mean([m.utility for k, m in s.metrics.items() if k != PRESERVATION]
                                                       or [1.0]) for s in scores])),
                "metrics": {k: float(np.mean([s.metrics[k].utility for s in scores if k in s.metrics]))
                            for k in sorted({k for s in scores for k in s.metrics})},
                "generation_seconds": gen_s,
            }
            if progress:
                r = table[task][f"{lv:g}"]
                print(f"{task:14s} preserve {lv:<4g} success {r['success']:.2f} utility {r['utility']:.3f} "
                      f"edit utility {r['edit_utility']:.3f} ({len(group)} cases)", flush=True)
        rows = {lv: table[task][f"{lv:g}"] for lv in levels}
        off = rows[0.0]["edit_utility"] if 0.0 in rows else -1.0
        best = max(levels, key=lambda lv: (rows[lv]["success"], rows[lv]["edit_utility"] >= off - 1e-9,
                                           rows[lv]["utility"], -lv))
        if best > 0:
            choice[task] = best
    return {"table": table, "preserve_threshold": choice}


def write_choice(model_dir: str | Path, choice: dict[str, float], key: str = "edit_strength") -> None:
    idx_path = Path(model_dir) / "model_index.json"
    index = json.loads(idx_path.read_text())
    index.setdefault("config", {})[key] = choice
    idx_path.write_text(json.dumps(index, indent=1))


def _levels(text: str, flag: str, ok, rule: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"{flag} {text!r}: give numbers separated by commas, e.g. {rule}")
    if not vals or not all(ok(v) for v in vals):
        raise SystemExit(f"{flag} {text!r}: every value must be in {rule}")
    return vals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.tune_edit_strength", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="an Omni model directory")
    ap.add_argument("--cases", type=int, default=12, help="training-split cases per edit family")
    ap.add_argument("--strengths", default="1,0.9,0.8,0.7,0.6,0.5")
    ap.add_argument("--preserve-levels", default="0,0.3,0.2,0.12,0.08")
    ap.add_argument("--stage", choices=("both", "strength", "preserve"), default="both",
                    help="tune the start level, the paste-back level (with the model's start levels), or both in turn")
    ap.add_argument("--write", action="store_true", help="store the choice in the model's model_index.json")
    ap.add_argument("--json", help="write the table and the choice here")
    a = ap.parse_args(argv)
    strengths = _levels(a.strengths, "--strengths", lambda v: 0 < v <= 1, "(0, 1]")
    levels = _levels(a.preserve_levels, "--preserve-levels", lambda v: 0 <= v < 1, "[0, 1), 0 = off")
    import torch

    torch.set_num_threads(1)
    from model.pipeline import OmniPipeline

    pipe = OmniPipeline.from_pretrained(a.model)
    pipe.set_progress_bar_config(disable=True)
    out = {}
    if a.stage in ("both", "strength"):
        out["strength"] = tune(pipe, a.cases, strengths)
        print("chosen start levels:", json.dumps(out["strength"]["edit_strength"]))
        pipe.config.edit_strength = out["strength"]["edit_strength"]
        if a.write:
            write_choice(a.model, out["strength"]["edit_strength"])
    if a.stage in ("both", "preserve"):
        out["preserve"] = tune_preserve(pipe, a.cases, levels)
        print("chosen paste-back levels:", json.dumps(out["preserve"]["preserve_threshold"]))
        if a.write:
            write_choice(a.model, out["preserve"]["preserve_threshold"], "preserve_threshold")
    if a.write:
        print(f"written to {Path(a.model) / 'model_index.json'}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0

if __name__ == "__main__":
    sys.exit(main())
