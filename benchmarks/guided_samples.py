"""How much a guide clip (the request's own truth, noised to a level: OmniPipeline(guide=, strength=)) lifts a model's
samples, per family, on train-split requests: what pairs from one source (dpo_round --guide-levels) can contain that
the model's own samples do not. Never on OmniBench cases (the truth of a benchmark case never reaches the model).

    python -m benchmarks.guided_samples [--model assets/models/omni-world] [--families effects,stylize,...]
        [--cases 4] [--levels 0.4,0.6,0.8] --json benchmarks/results/guided_samples_v4.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.guided_samples")
    ap.add_argument("--model", default="assets/models/omni-world")
    ap.add_argument("--families", default="effects,stylize,camera_transfer,combined,weather,material,background,i2v,"
                                          "arrows,edit_remove")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--levels", default="0.4,0.6,0.8")
    ap.add_argument("--json", dest="json_out", required=True)
    a = ap.parse_args(argv)
    import torch

    from model.pipeline import OmniPipeline
    from training.evaluate import score_case
    from training.world import FAMILIES, sample

    fams = [f.strip() for f in a.families.split(",") if f.strip()]
    unknown = sorted(set(fams) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--families {', '.join(unknown)}: unknown; known: {', '.join(FAMILIES)}")
    try:
        levels = [float(x) for x in a.levels.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--levels {a.levels!r}: comma-separated noise levels in (0, 1)")
    if not levels or not all(0.0 < x < 1.0 for x in levels):
        raise SystemExit(f"--levels {a.levels}: each level must be in (0, 1)")
    torch.set_num_threads(1)
    pipe = OmniPipeline.from_pretrained(a.model)
    pipe.set_progress_bar_config(disable=True)
    out = {"model": a.model, "cases": a.cases, "levels": levels, "families": {}}
    print(f"{'family':16s} {'own':>6s} " + " ".join(f"{'s=' + str(x):>6s}" for x in levels))
    for fam in fams:
        t = time.time()
        rows = []
        for k in range(a.cases):
            case = sample(fam, 950_000 + k, "train")
            u = [score_case(case, pipe(case.request, seed=0).frames).utilities()["overall"]]
            u += [score_case(case, pipe(case.request, seed=1, guide=case.target, strength=s).frames).utilities()["overall"]
                  for s in levels]
            rows.append(u)
        m = np.array(rows).mean(0)
        out["families"][fam] = {"own": round(float(m[0]), 4), **{f"guided_{s}": round(float(x), 4)
                                                                 for s, x in zip(levels, m[1:])},
                                "utilities": np.round(rows, 4).tolist(), "seconds": round(time.time() - t, 1)}
        print(f"{fam:16s} {m[0]:6.3f} " + " ".join(f"{x:6.3f}" for x in m[1:]), flush=True)
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
