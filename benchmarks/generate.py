"""Generation speed of the embedded model: ms per 16-frame clip at 10, 50 and 150 steps on one
CPU thread, with and without the condition cache; the prompt enhancer's layout planner alone; and
the sampling dtype: this machine's probe choice and clips/s at 10 steps in fp32 and bf16.

    python -m benchmarks.generate [--model assets/models/omni-world] [--json OUT] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.generate")
    ap.add_argument("--model", default="assets/models/omni-world")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from model.pipeline import OmniPipeline
    from training.world import sample

    pipe = OmniPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    requests = {"t2v": sample("t2v", 1, "bench").request, "edit (video context)": sample("weather", 1, "bench").request}
    pipe(requests["t2v"], steps=2)  # warm up
    out: dict = {"model": args.model, "threads": args.threads, "ms_per_clip": {}, "ms_per_clip_edit": {},
                 "ms_per_clip_no_cache": {}}

    def timed(req, steps, **kw):
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            pipe(req, steps=steps, **kw)
            best = min(best, time.perf_counter() - t)
        return round(1000 * best, 1)

    from model.precision import choose_dtype, probe

    out["dtype_probe"] = probe()
    out["dtype_choice"] = choose_dtype()[1]
    out["clips_per_s_10_steps"] = {}
    for name in ("fp32", "bf16"):
        pipe.sample_dtype = name
        pipe(requests["t2v"], steps=2)
        out["clips_per_s_10_steps"][name] = round(1000 / timed(requests["t2v"], 10), 2)
    pipe.sample_dtype = "fp32"
    t = time.perf_counter()
    for _ in range(20):
        pipe.enhancer.enhance(requests["t2v"])
    out["planner_ms"] = round(1000 * (time.perf_counter() - t) / 20, 2)  # enhancer + layout plan, part of every clip
    for steps in (10, 50, 150):
        out["ms_per_clip"][str(steps)] = timed(requests["t2v"], steps)
        out["ms_per_clip_edit"][str(steps)] = timed(requests["edit (video context)"], steps)
    # without the cache: recompute the condition stream at every step
    gen = pipe.generator
    orig_forward = gen.forward
    gen.forward = lambda x, t, cond, cache=None: orig_forward(x, t, cond, None)
    try:
        out["ms_per_clip_no_cache"]["10"] = timed(requests["edit (video context)"], 10)
    finally:
        gen.forward = orig_forward
    print(f"{'steps':>6s} {'t2v ms/clip':>12s} {'edit ms/clip':>13s}")
    for steps in ("10", "50", "150"):
        print(f"{steps:>6s} {out['ms_per_clip'][steps]:12.1f} {out['ms_per_clip_edit'][steps]:13.1f}")
    print(f"edit at 10 steps without the condition cache: {out['ms_per_clip_no_cache']['10']:.1f} ms")
    print(f"prompt enhancer with its layout plan: {out['planner_ms']:.1f} ms (inside every clip's time above)")
    print(f"sampling dtype: {out['dtype_choice']}; clips/s at 10 steps: "
          + ", ".join(f"{k} {v}" for k, v in out["clips_per_s_10_steps"].items()) + " (the studio samples in fp32 "
          "unless OMNI_SAMPLE_DTYPE=auto|bf16)")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
