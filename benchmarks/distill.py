"""Few-step distillation: speed and quality of distilled students against their teacher.

    python -m benchmarks.distill --json benchmarks/results/distill.json [--teacher DIR] [--student DIR ...] \
        [--cases N] [--families t2v,i2v,...] [--teacher-steps 150,50,10] [--fewer 10,4,2]

Rows: the teacher at 150, 50 and 10 steps (with its guidance: two generator rows per step), and each
student (training/distill.py) at its own K steps and at each of --fewer below K (one row per step).
For every row, on the held-out OmniBench cases (training.evaluate.bench_cases; --cases limits the
cases per family): ms per clip on one CPU thread (the mean over the cases, the pipeline's whole
call: conditions, denoising, decoding), OmniBench success overall and per dimension, and the judge's
GSB of the row against the 150-step teacher case by case (1.0 = level; > 1 better).

    {"rows": [{"model": "teacher"|"student", "path": ..., "steps": N, "ms_per_clip": ..., "omnibench": ...,
               "dims": {...}, "gsb_vs_teacher150": ...}, ...], "cases_per_family": N, "families": [...]}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _steps(spec: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"step counts must be whole numbers separated by commas, got {spec!r}")


def run_row(pipe, families: tuple[str, ...], cases: int, steps: int) -> dict:
    """Every case of the row rendered once: timings, OmniBench family reports, and case utilities for the judge."""
    from training.evaluate import bench_cases, overall, score_case, summarize

    reports, seconds, clips = {}, 0.0, 0
    for fam in families:
        scores = []
        for case in bench_cases(fam)[:cases]:
            t = time.perf_counter()
            frames = pipe(case.request, steps=steps).frames
            seconds += time.perf_counter() - t
            clips += 1
            scores.append(score_case(case, frames))
        reports[fam] = summarize(scores)
    return {"families": reports, "overall": overall(reports), "ms_per_clip": round(1000 * seconds / clips, 1)}


def gsb_vs(row: dict, reference: dict, families: tuple[str, ...], cases: int) -> dict:
    """The judge (training.evaluate.compare) on two rows' case utilities: nothing is rendered again."""
    from training.evaluate import ReportSource, compare

    class RowUtilities(ReportSource):  # a ReportSource read from a row in memory instead of a report file
        def __init__(self, families: dict):
            self.path = "(this benchmark)"
            self.utilities = {fam: r["case_utilities"] for fam, r in families.items()}
            self.families = tuple(families)
            self.cases = min(len(u) for u in self.utilities.values())

    return compare(RowUtilities(row["families"]), RowUtilities(reference["families"]), families, limit=cases)


def format_table(rows: list[dict]) -> str:
    from training.evaluate import DIMENSIONS

    short = ["prompt", "dynamic", "identity", "consist.", "visual"]
    head = f"{'model':8s} {'steps':>5s} {'ms/clip':>9s} {'omnibench':>9s} " + " ".join(f"{s:>8s}" for s in short) \
        + f" {'GSB vs T150':>11s}"
    lines = [head]
    for r in rows:
        cells = " ".join(f"{r['dims'][d]:8.3f}" if d in r["dims"] else f"{'-':>8s}" for d in DIMENSIONS)
        g = r["gsb_vs_teacher150"]
        lines.append(f"{r['model']:8s} {r['steps']:5d} {r['ms_per_clip']:9.1f} {r['omnibench']:9.3f} {cells} "
                     f"{g if isinstance(g, str) else format(g, '11.3f'):>11s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.distill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", dest="json_out", required=True, help="where the rows are written")
    ap.add_argument("--teacher", default="assets/models/omni-world")
    ap.add_argument("--student", action="append", default=[], help="a distilled model directory (repeatable)")
    ap.add_argument("--cases", type=int, default=None, help="cases per family (default: all OmniBench cases)")
    ap.add_argument("--families", default="", help="comma-separated families (default: all)")
    ap.add_argument("--teacher-steps", default="150,50,10", help="the teacher's rows; the first is the GSB reference")
    ap.add_argument("--fewer", default="10,4,2", help="each student also at these step counts below its own")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from model.pipeline import OmniPipeline
    from training.evaluate import CASES_PER_FAMILY
    from training.world import FAMILIES

    families = tuple(f for f in a.families.split(",") if f) or FAMILIES
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise SystemExit(f"--families: unknown family {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    cases = min(a.cases or CASES_PER_FAMILY, CASES_PER_FAMILY)
    if cases < 1:
        raise SystemExit("--cases must be at least 1")

    def load(path: str) -> OmniPipeline:
        if not (Path(path) / "model_index.json").is_file():
            raise SystemExit(f"{path}: no model_index.json there; give a model directory")
        pipe = OmniPipeline.from_pretrained(path)
        pipe.set_progress_bar_config(disable=True)
        from training.evaluate import bench_cases

        pipe(bench_cases(families[0])[0].request, steps=1)  # warm up: the first call's set-up is not timed
        return pipe

    plan = [("teacher", a.teacher, s) for s in _steps(a.teacher_steps)]
    pipes = {}
    for path in a.student:
        k = pipes.setdefault(path, load(path)).config.default_steps
        plan += [("student", path, s) for s in [k] + [s for s in _steps(a.fewer) if s < k]]
    rows, raw = [], []
    for model, path, steps in plan:
        pipe = pipes.setdefault(path, load(path))
        t = time.perf_counter()
        r = run_row(pipe, families, cases, steps)
        raw.append(r)
        print(f"  {model} {path} at {steps} steps: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        rows.append({"model": model, "path": path, "steps": steps, "ms_per_clip": r["ms_per_clip"],
                     "omnibench": round(r["overall"]["success"], 4),
                     "dims": {d: round(v, 4) for d, v in r["overall"]["dimensions"].items()},
                     "guidance_passes": not pipe.config.guidance_distilled})
    for row, r in zip(rows, raw):
        g = gsb_vs(r, raw[0], families, cases)
        row["gsb_vs_teacher150"] = g["gsb"]["overall"]
        row["gsb_counts"] = g["counts"]["overall"]
    out = {"rows": rows, "reference": f"teacher at {plan[0][2]} steps", "cases_per_family": cases,
           "families": list(families), "threads": a.threads}
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(out, indent=1) + "\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
