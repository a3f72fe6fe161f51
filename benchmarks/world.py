"""OmniWorld speed: clips rendered per second on one core, and samples drawn per second per family.

    python -m benchmarks.world [--json OUT] [--n 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.world")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--n", type=int, default=300, help="clips / samples per measurement")
    args = ap.parse_args(argv)
    from training.world import FAMILIES, render, sample

    scenes = [sample("t2v", k).scene for k in range(50)]
    out: dict = {"cpu_count": os.cpu_count()}
    for scale in (1, 4):
        for s in scenes[:5]:
            render(s, scale)  # warm the caches
        t = time.perf_counter()
        n = args.n if scale == 1 else max(20, args.n // 10)
        for k in range(n):
            render(scenes[k % len(scenes)], scale)
        dt = (time.perf_counter() - t) / n
        out[f"render_clips_per_s_scale{scale}"] = round(1 / dt, 1)
    fam = {}
    for f in FAMILIES:
        t = time.perf_counter()
        n = max(20, args.n // 5)
        for k in range(n):
            sample(f, 10_000 + k)
        fam[f] = round(n / (time.perf_counter() - t), 1)
    out["samples_per_s"] = fam
    out["samples_per_s_mean"] = round(float(np.mean(list(fam.values()))), 1)
    print(f"{'measure':34s} {'per second':>12s}")
    print(f"{'render 16x32x32 clip (t2v scenes)':34s} {out['render_clips_per_s_scale1']:12.1f}")
    print(f"{'render 16x128x128 clip (SR target)':34s} {out['render_clips_per_s_scale4']:12.1f}")
    for f, v in fam.items():
        print(f"{'sample ' + f:34s} {v:12.1f}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
