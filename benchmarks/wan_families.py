"""The Wan backend per task family on CPU: ms per 2-step generation of the tiny random-weight
WanVACEPipeline (16x16, 5 frames; the tests' model), best of N, one torch thread; and the
refused families with their reasons. On a GPU host, `--model DIR --size 480x832x81` times a real
checkpoint the same way (in bf16 on CUDA).

    python -m benchmarks.wan_families [--json benchmarks/results/wan_families.json] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.wan_families")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", help="a WanVACEPipeline directory (default: the tiny random-weight one, built here)")
    ap.add_argument("--size", default="16x16x5", help="HxWxF of every request")
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from model.backends import load_backend
    from model.backends.vace import REFUSED
    from model.backends.wan import WanSettings
    from tests.test_backends import SERVED
    from tests.wan_tiny import save_tiny_wan

    h, w, f = (int(x) for x in a.size.split("x"))
    model = a.model or str(save_tiny_wan(tempfile.mkdtemp() + "/tiny-wan"))
    settings = WanSettings.from_env(max_sequence_length=None if a.model else 16)
    backend = load_backend("wan", model, settings=settings)
    rows = {}
    backend(replace(SERVED["t2v"], height=h, width=w, frames=f, steps=a.steps), seed=0)  # warm up
    for family, req in SERVED.items():
        req = replace(req, height=h, width=w, frames=f, steps=a.steps)
        best = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = backend(req, seed=0)
            best = min(best, time.perf_counter() - t)
        rows[family] = {"ms": round(1000 * best, 1), "frames": int(out.frames.shape[0]), "how": out.info["notes"]}
    result = {"model": "tiny random-weight WanVACEPipeline" if not a.model else model, "size": a.size,
              "steps": a.steps, "threads": a.threads, "device": backend.device, "dtype": str(backend.dtype),
              "load_average": [round(x, 2) for x in os.getloadavg()], "served": rows, "refused": dict(REFUSED)}
    print(f"{'family':<16} {'ms':>8}  how")
    for k, r in rows.items():
        print(f"{k:<16} {r['ms']:>8.1f}  {'; '.join(r['how'])}")
    for k, why in REFUSED.items():
        print(f"{k:<16} {'refused':>8}  {why}")
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
