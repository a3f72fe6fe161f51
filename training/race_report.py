"""The report of a race on equal CPU time (scripts/race.sh): per arm its steps, its training loss on the
steps every arm logged, and the checker's figures on the training-split compositions (the decision) and
on the held-out benchmark (reported), with each arm judged case by case against a reference arm.

    python -m training.race_report runs/race plain ground [--against plain] [--json OUT]

An arm is a folder under the race's folder holding `log.jsonl`, `model/` and the evaluation reports
`train.json` / `bench.json` (scripts/race.sh writes them; `train_split.json` of the older
scripts/race_refine.sh is read too). Success rates are coarse at 24 cases a family, so the attribute
accuracies (t2v colour / shape / motion / pattern) and the case-by-case votes are reported beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.evaluate import gsb_ratio, vote

ATTRIBUTES = ("color_acc", "shape_acc", "motion_acc", "pattern_acc")
REPORTS = {"train": ("train.json", "train_split.json"), "bench": ("bench.json",)}


def _report(arm: Path, split: str) -> dict | None:
    for name in REPORTS[split]:
        if (arm / name).is_file():
            return json.loads((arm / name).read_text())
    return None


def _losses(arm: Path) -> dict[int, float]:
    path = arm / "log.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["step"]): float(r["loss"]) for r in rows if "loss" in r}


def _step(arm: Path) -> int | None:
    index = arm / "model" / "model_index.json"
    if not index.is_file():
        return None
    return json.loads(index.read_text()).get("config", {}).get("notes", {}).get("step")


def summary(rep: dict) -> dict:
    """Success per family and overall, the t2v attributes, and each dimension's mean over the families."""
    fams = rep["families"]
    out = {"overall": round(float(rep["overall"]["success"]), 4),
           "success": {f: round(float(r["success"]), 4) for f, r in fams.items()}}
    if "t2v" in fams:
        out["t2v"] = {a: round(float(fams["t2v"][a]), 4) for a in ATTRIBUTES if a in fams["t2v"]}
    dims: dict[str, list[float]] = {}
    for r in fams.values():
        for d, v in r.get("dimensions", {}).items():
            dims.setdefault(d, []).append(float(v))
    out["dimensions"] = {d: round(float(np.mean(v)), 4) for d, v in dims.items()}
    return out


def judge(a: dict, b: dict) -> dict:
    """A against B case by case on the 'overall' utility: counts and (G + S) / (B + S)."""
    counts = {"G": 0, "S": 0, "B": 0}
    for fam, ra in a["families"].items():
        rb = b["families"].get(fam)
        if rb is None:
            continue
        for ua, ub in zip(ra.get("case_utilities", []), rb.get("case_utilities", [])):
            counts[vote(ua["overall"], ub["overall"])] += 1
    r = gsb_ratio(counts)
    return {"counts": counts, "gsb": "inf" if r == float("inf") else round(r, 4)}


def race_report(race: Path, arms: list[str], against: str | None = None) -> dict:
    against = against or arms[0]
    losses = {a: _losses(race / a) for a in arms}
    common = sorted(set.intersection(*(set(v) for v in losses.values()))) if all(losses.values()) else []
    out = {"race": str(race), "against": against, "matched_steps": len(common), "arms": {}}
    for a in arms:
        arm = race / a
        row = {"step": _step(arm), "logged_steps": max(losses[a]) if losses[a] else 0,
               "mean_loss_matched": round(float(np.mean([losses[a][s] for s in common])), 4) if common else None}
        for split in REPORTS:
            rep = _report(arm, split)
            if rep is None:
                continue
            row[split] = summary(rep)
            ref = _report(race / against, split)
            if a != against and ref is not None:
                row[split]["judged_against_" + against] = judge(rep, ref)
        out["arms"][a] = row
    return out


def format_report(r: dict) -> str:
    lines = [f"race {r['race']}: {r['matched_steps']} logged steps in common; votes against {r['against']}"]
    head = f"{'arm':14s} {'step':>6s} {'loss':>7s} {'split':6s} {'succ.':>6s} {'colour':>7s} {'shape':>6s} " \
           f"{'motion':>7s} {'pattern':>8s} {'prompt':>7s} {'GSB':>7s}"
    lines.append(head)
    for a, row in r["arms"].items():
        for split in REPORTS:
            s = row.get(split)
            if s is None:
                continue
            t = s.get("t2v", {})
            g = s.get("judged_against_" + r["against"], {}).get("gsb", "-")
            lines.append(f"{a:14s} {row['step'] or 0:6d} {row['mean_loss_matched'] or 0:7.4f} {split:6s} "
                         f"{s['overall']:6.3f} {t.get('color_acc', 0):7.3f} {t.get('shape_acc', 0):6.3f} "
                         f"{t.get('motion_acc', 0):7.3f} {t.get('pattern_acc', 0):8.3f} "
                         f"{s['dimensions'].get('prompt_following', 0):7.3f} {g!s:>7s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.race_report")
    ap.add_argument("race", help="the race's folder (scripts/race.sh's OUT)")
    ap.add_argument("arms", nargs="+", help="arm folders under it")
    ap.add_argument("--against", help="the arm the others are judged against (default: the first)")
    ap.add_argument("--json", help="write the report here")
    a = ap.parse_args(argv)
    race = Path(a.race)
    missing = [x for x in a.arms if not (race / x).is_dir()]
    if missing:
        raise SystemExit(f"no arm folder {', '.join(missing)} under {race}")
    if a.against and a.against not in a.arms:
        raise SystemExit(f"--against {a.against!r} is not one of the arms {a.arms}")
    r = race_report(race, a.arms, a.against)
    print(format_report(r))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
