"""The super-resolution stage (issue 22) side by side with bicubic and nearest, on held-out OmniBench cases.

    python -m benchmarks.sr [--model assets/models/omni-world] [--sr DIR] [--cases 4] \
        [--json benchmarks/results/sr.json]

For `--cases` held-out cases of every OmniBench family (training.evaluate.bench_cases, the fixed seeds):
- `truth_base`: from the truth's own 32 x 32 clip (what a perfect generator would hand the stage);
- `generated`: from the model's clip for the case's MVL request (the whole stack: enhancer, generator,
  SR; the SR stage sees the request's reference images and subject views, never the truth),
each upscaled 4x by the SR stage, bicubic and nearest, scored against the world's 128 x 128 render of
the same scene: PSNR (dB, over the clip) and SSIM (luma, 11 px Gaussian window, mean over frames).
Identity: the world's checker (training.world.perceive) reads every truth subject's shape and pattern
off the 32 x 32 clip and off each 128 x 128 output; `kept` counts attributes right at both sizes,
`lost` attributes right in the base clip and wrong after upscaling (the target is none lost on the
generated clips), `gained` the other way round; `full_snap_psnr` / `full_snap_lost`: the same output with every
pixel snapped to a colour of the base clip around it (model.sr.snap_to_base, no threshold), what a flat-colour
output would score and lose. `--snap T` sets the stage's own snapping threshold for the run.
Speed on one CPU thread (process CPU time, best of --repeat): the base stack (enhancer + generator at
its default steps + VAE) per clip, the SR stage per clip, their ratio; and the SR stage with NABLA
attention against dense on the same weights (time, output difference, PSNR change).
The JSON: {"truth_base": {"sr_psnr", "bicubic_psnr", "nearest_psnr", "sr_ssim", ...}, "generated": {...},
"ms_per_clip": ..., "base_ms_per_clip": ..., "stack_ratio": ..., "nabla": {...}, "families": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) on luma, per frame, then averaged: (T, H, W, 3) uint8."""
    w = np.array([0.299, 0.587, 0.114])
    ya = torch.from_numpy((a.astype(np.float64) @ w)[:, None])
    yb = torch.from_numpy((b.astype(np.float64) @ w)[:, None])
    k = _gauss()
    mu_a, mu_b = F.conv2d(ya, k), F.conv2d(yb, k)
    saa = F.conv2d(ya * ya, k) - mu_a**2
    sbb = F.conv2d(yb * yb, k) - mu_b**2
    sab = F.conv2d(ya * yb, k) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(m.mean())


def bicubic(clip: np.ndarray, s: int = 4) -> np.ndarray:
    t = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1
    up = F.interpolate(t, scale_factor=s, mode="bicubic", align_corners=False)
    return ((up.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def nearest(clip: np.ndarray, s: int = 4) -> np.ndarray:
    return clip.repeat(s, 1).repeat(s, 2)


def area_down(clip: np.ndarray, s: int = 4) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the s x s area average: what a 128 x 128 render says at 32 x 32."""
    t = torch.from_numpy(clip).permute(0, 3, 1, 2).double()
    return F.avg_pool2d(t, s).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def consistency(hr: np.ndarray, base: np.ndarray) -> dict:
    """How far the 32 x 32 base clip is from the 128 x 128 target's own 4x area average, and what bicubic makes
    of that average. The world renders each size on its own (positions and sizes rounded per size, textures
    point-sampled), so the base clip is not the target's downsample: the gap between `downsampled_bicubic_psnr`
    and `bicubic_psnr` is what that costs before any stage sees the clip."""
    down = area_down(hr)
    return {"base_vs_downsampled_psnr": psnr(base, down), "downsampled_bicubic_psnr": psnr(bicubic(down), hr)}


def attributes(clip: np.ndarray, case) -> list[tuple[bool, bool]]:
    """Per truth subject: (shape right, pattern right) as the world's checker reads them off the clip."""
    from training.evaluate import FOUND_PASS
    from training.world.perceive import perceive

    subs = case.truth.subjects
    if not subs:
        return []
    p = perceive(clip, [s.color for s in subs], [s.size for s in subs], case.truth.camera)
    return [(sp.found_fraction >= FOUND_PASS and sp.shape == s.shape,
             sp.found_fraction >= FOUND_PASS and sp.pattern == s.pattern) for sp, s in zip(p.subjects, subs)]


def _cpu_ms(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best * 1000, out


class Side:
    """Running sums for one input kind (truth_base or generated); `snaps`: palette snapping thresholds whose
    PSNR and attributes lost are measured on the same SR output (snap{T}_psnr, snap{T}_lost)."""

    def __init__(self, snaps: tuple[float, ...] = ()):
        self.rows: list[dict] = []
        self.snaps = snaps

    def add(self, family: str, hr: np.ndarray, base: np.ndarray, sr_clip: np.ndarray, case) -> dict:
        row = {"family": family, **consistency(hr, base)}
        for name, clip in (("sr", sr_clip), ("bicubic", bicubic(base)), ("nearest", nearest(base))):
            row[f"{name}_psnr"] = psnr(clip, hr)
            row[f"{name}_ssim"] = ssim(clip, hr)
        a_base, a_sr, a_bic = attributes(base, case), attributes(sr_clip, case), attributes(bicubic(base), case)
        flat_b = [x for pair in a_base for x in pair]
        flat_s = [x for pair in a_sr for x in pair]
        flat_c = [x for pair in a_bic for x in pair]
        row["attributes"] = len(flat_b)
        row["bicubic_lost"] = sum(b and not c for b, c in zip(flat_b, flat_c))  # what upscaling alone costs
        row["kept"] = sum(b and s for b, s in zip(flat_b, flat_s))
        row["lost"] = sum(b and not s for b, s in zip(flat_b, flat_s))
        row["gained"] = sum(s and not b for b, s in zip(flat_b, flat_s))
        row["base_right"] = sum(flat_b)
        # the whole output snapped to the base clip's colours (model.sr.snap_to_base at no threshold): every pixel a
        # colour the base clip has around it, which the world's checker reads as its colour; the trade-off measured
        from model.sr import snap_to_base

        full = snap_to_base(torch.from_numpy(sr_clip), torch.from_numpy(np.ascontiguousarray(base)), 1e9, 4).numpy()
        row["full_snap_psnr"] = psnr(full, hr)
        flat_f = [x for pair in attributes(full, case) for x in pair]
        row["full_snap_lost"] = sum(b and not f for b, f in zip(flat_b, flat_f))
        for t in self.snaps:
            snapped = snap_to_base(torch.from_numpy(sr_clip), torch.from_numpy(np.ascontiguousarray(base)), t, 4).numpy()
            row[f"snap{t:g}_psnr"] = psnr(snapped, hr)
            flat_t = [x for pair in attributes(snapped, case) for x in pair]
            row[f"snap{t:g}_lost"] = sum(b and not f for b, f in zip(flat_b, flat_t))
        self.rows.append(row)
        return row

    def summary(self, rows: list[dict] | None = None) -> dict:
        rows = self.rows if rows is None else rows
        out = {"cases": len(rows)}
        for k in ("sr_psnr", "bicubic_psnr", "nearest_psnr", "sr_ssim", "bicubic_ssim", "nearest_ssim",
                  "base_vs_downsampled_psnr", "downsampled_bicubic_psnr", "full_snap_psnr"):
            if rows and k in rows[0]:
                out[k] = round(float(np.mean([r[k] for r in rows])), 3)
        if rows and "sr_psnr" in rows[0]:
            out["sr_gain_db"] = round(out["sr_psnr"] - out["bicubic_psnr"], 3)
        for k in ("attributes", "base_right", "kept", "lost", "gained", "bicubic_lost", "full_snap_lost"):
            if rows and k in rows[0]:
                out[k] = int(sum(r[k] for r in rows))
        for t in self.snaps:
            if rows:
                out[f"snap{t:g}_psnr"] = round(float(np.mean([r[f"snap{t:g}_psnr"] for r in rows])), 3)
                out[f"snap{t:g}_lost"] = int(sum(r[f"snap{t:g}_lost"] for r in rows))
        return out


def _written(path: str, report: dict) -> int:
    """Write the report as JSON where --json asks (nothing when it is empty); the command's exit code."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=1))
    return 0


def consistency_report(a) -> int:
    """`--consistency-only`: per family, bicubic from the world's base clip against bicubic from the target's
    own area average (a floor on what the renderer's size-by-size rounding costs), no model involved."""
    from training.evaluate import bench_cases
    from training.world import FAMILIES

    fams = [f for f in a.families.split(",") if f] or list(FAMILIES)
    from training.world.render import render

    rows, err_sub, err_all, px_sub, px_all = [], 0.0, 0.0, 0, 0
    for fam in fams:
        for case in bench_cases(fam, a.cases):
            r = render(case.scene, 4)
            hr = r.clip
            rows.append({"family": fam, "bicubic_psnr": psnr(bicubic(case.target), hr), **consistency(hr, case.target)})
            # where bicubic's error is: pixels within 3 px of a subject against the rest
            near = np.zeros(hr.shape[:3], bool)
            if len(r.masks):
                m = torch.from_numpy(r.masks.any(0)[:, None].astype(np.float32))
                near = (F.max_pool2d(m, 7, 1, 3)[:, 0] > 0).numpy()
            e = ((bicubic(case.target).astype(np.float64) - hr) ** 2).sum(-1)
            err_sub, err_all = err_sub + float(e[near].sum()), err_all + float(e.sum())
            px_sub, px_all = px_sub + int(near.sum()), px_all + near.size
    keys = ("bicubic_psnr", "downsampled_bicubic_psnr", "base_vs_downsampled_psnr")

    def mean(rs):
        return {k: round(float(np.mean([r[k] for r in rs])), 3) for k in keys} | {"cases": len(rs)}

    report = {"cases_per_family": a.cases, "all": mean(rows),
              "subject_pixels_share": round(px_sub / px_all, 4), "subject_error_share": round(err_sub / err_all, 4),
              "families": {f: mean([r for r in rows if r["family"] == f]) for f in fams}}
    print(f"{'family':16s} {'bicubic(base)':>14s} {'bicubic(down(HR))':>18s} {'base vs down(HR)':>17s}")
    for f, m in [*report["families"].items(), ("ALL", report["all"])]:
        print(f"{f:16s} {m['bicubic_psnr']:14.2f} {m['downsampled_bicubic_psnr']:18.2f} {m['base_vs_downsampled_psnr']:17.2f}")
    print(f"pixels within 3 px of a subject: {report['subject_pixels_share']:.0%} of the frame, "
          f"{report['subject_error_share']:.0%} of bicubic's squared error")
    return _written(a.json, report)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="assets/models/omni-world", help="the model directory (generator + sr/)")
    ap.add_argument("--sr", default="", help="an SR stage directory to use instead of the model's sr/")
    ap.add_argument("--cases", type=int, default=4, help="held-out cases per family")
    ap.add_argument("--families", default="", help="comma-separated (default: every OmniBench family)")
    ap.add_argument("--repeat", type=int, default=2, help="timing repeats (best of)")
    ap.add_argument("--no-nabla", action="store_true", help="skip the NABLA against dense rows")
    ap.add_argument("--level", type=float, default=None,
                    help="the degradation level the stage is told the generator's clips have (default: the model's "
                         "sr_level); the world's own base clips are clean renders, level 0")
    ap.add_argument("--snap", type=float, default=None,
                    help="the stage's palette snapping threshold (model.sr.snap_to_base; default: its config's, 0 = off)")
    ap.add_argument("--snap-thresholds", default="",
                    help="comma-separated palette snapping thresholds measured on the same SR outputs (columns "
                         "snap{T}_psnr / snap{T}_lost), e.g. 16,24,32")
    ap.add_argument("--json", default="", help="write the report here")
    ap.add_argument("--consistency-only", action="store_true",
                    help="only how far the world's 32 x 32 clips are from their 128 x 128 renders' downsample (no model)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.consistency_only:
        return consistency_report(a)

    from model.pipeline import OmniPipeline
    from model.sr import SRStage
    from training.evaluate import bench_cases
    from training.world import FAMILIES

    pipe = OmniPipeline.from_pretrained(a.model)
    pipe.set_progress_bar_config(disable=True)
    if a.sr:
        pipe.sr = SRStage.from_pretrained(a.sr).eval()
    if pipe.sr is not None and a.snap is not None:
        import dataclasses

        pipe.sr.config = dataclasses.replace(pipe.sr.config, snap=a.snap)
    if pipe.sr is None:
        raise SystemExit(f"{a.model} has no sr/ stage and no --sr was given: train one with python -m training.train_sr")
    fams = [f for f in a.families.split(",") if f] or list(FAMILIES)
    try:
        snaps = tuple(float(t) for t in a.snap_thresholds.split(",") if t.strip())
    except ValueError:
        raise SystemExit(f"--snap-thresholds {a.snap_thresholds!r}: numbers separated by commas, e.g. 16,24,32")
    if any(t <= 0 for t in snaps):
        raise SystemExit(f"--snap-thresholds {a.snap_thresholds!r}: each threshold above 0")
    truth, gen = Side(snaps), Side(snaps)
    sr_ms, base_ms = [], []
    nabla_rows = []
    nabla_pipe = None
    if not a.no_nabla:
        import copy
        import dataclasses

        nabla_sr = copy.deepcopy(pipe.sr)
        nabla_sr.config = dataclasses.replace(nabla_sr.config, attention="nabla")
        nabla_pipe = copy.copy(pipe)
        nabla_pipe.sr = nabla_sr
    for fam in fams:
        for case in bench_cases(fam, a.cases):
            hr = case.target_hr(4)
            req = case.request
            ms, sr_truth = _cpu_ms(lambda: pipe.upscale(case.target, req, level=0.0), a.repeat)
            sr_ms.append(ms)
            truth.add(fam, hr, case.target, sr_truth, case)
            bms, out = _cpu_ms(lambda: pipe(req), 1)
            base_ms.append(bms)
            gen.add(fam, hr, out.frames, pipe.upscale(out.frames, req, level=a.level), case)
            if nabla_pipe is not None and len(nabla_rows) < 8:  # a few clips are enough for the ratio
                d_ms, d_out = _cpu_ms(lambda: pipe.upscale(case.target, req), a.repeat)
                n_ms, n_out = _cpu_ms(lambda: nabla_pipe.upscale(case.target, req), a.repeat)
                nabla_rows.append({"dense_ms": d_ms, "nabla_ms": n_ms,
                                   "diff": float(np.abs(n_out.astype(float) - d_out.astype(float)).mean() / 255),
                                   "dense_psnr": psnr(d_out, hr), "nabla_psnr": psnr(n_out, hr)})
            print(f"{fam:16s} sr {truth.rows[-1]['sr_psnr']:.2f} dB (bicubic {truth.rows[-1]['bicubic_psnr']:.2f})"
                  f" | generated sr {gen.rows[-1]['sr_psnr']:.2f} (bicubic {gen.rows[-1]['bicubic_psnr']:.2f})",
                  file=sys.stderr, flush=True)
    report = {
        "model": a.model, "sr": a.sr or str(Path(a.model) / "sr"), "cases_per_family": a.cases,
        "threads": 1, "generated_level": pipe.config.sr_level if a.level is None else a.level, "sr_config": {k: v for k, v in vars(pipe.sr.config).items() if k != "notes"},
        "truth_base": truth.summary(), "generated": gen.summary(),
        "ms_per_clip": round(float(np.median(sr_ms)), 1),
        "base_ms_per_clip": round(float(np.median(base_ms)), 1),
    }
    report["stack_ratio"] = round((report["base_ms_per_clip"] + report["ms_per_clip"]) / report["base_ms_per_clip"], 3)
    report["families"] = {f: {"truth_base": truth.summary([r for r in truth.rows if r["family"] == f]),
                              "generated": gen.summary([r for r in gen.rows if r["family"] == f])} for f in fams}
    if nabla_rows:
        d = float(np.median([r["dense_ms"] for r in nabla_rows]))
        n = float(np.median([r["nabla_ms"] for r in nabla_rows]))
        report["nabla"] = {"clips": len(nabla_rows), "dense_ms": round(d, 1), "nabla_ms": round(n, 1),
                           "speedup": round(d / n, 3), "mean_abs_diff": round(float(np.mean([r["diff"] for r in nabla_rows])), 5),
                           "psnr_change_db": round(float(np.mean([r["nabla_psnr"] - r["dense_psnr"] for r in nabla_rows])), 3),
                           "settings": {k: getattr(pipe.sr.config, k) for k in ("nabla_tile", "nabla_threshold",
                                                                              "nabla_dense_above", "window")}}
    t, g = report["truth_base"], report["generated"]
    print(f"\nSR stage {report['sr']} on {t['cases']} held-out cases ({a.cases} per family), one CPU thread")
    print(f"{'input':12s} {'SR dB':>7s} {'bicubic':>8s} {'nearest':>8s} {'gain':>6s} {'SR ssim':>8s} {'bic ssim':>9s}"
          f" {'attrs':>6s} {'kept':>5s} {'lost':>5s} {'gained':>7s} {'bic lost':>9s}")
    for name, s in (("truth_base", t), ("generated", g)):
        print(f"{name:12s} {s['sr_psnr']:7.2f} {s['bicubic_psnr']:8.2f} {s['nearest_psnr']:8.2f} {s['sr_gain_db']:6.2f}"
              f" {s['sr_ssim']:8.3f} {s['bicubic_ssim']:9.3f} {s['base_right']:6d} {s['kept']:5d} {s['lost']:5d}"
              f" {s['gained']:7d} {s['bicubic_lost']:9d}")
    for name, s in (("truth_base", t), ("generated", g)):
        print(f"{name:12s} the whole output snapped to the base clip's colours: {s['full_snap_psnr']:.2f} dB, "
              f"{s['full_snap_lost']} attributes lost")
        for th in snaps:
            print(f"{name:12s} snapped within {th:g}: {s[f'snap{th:g}_psnr']:.2f} dB, {s[f'snap{th:g}_lost']} lost")
    print(f"speed: base stack {report['base_ms_per_clip']:.0f} ms/clip, SR {report['ms_per_clip']:.0f} ms/clip, "
          f"stack with SR / without = {report['stack_ratio']:.2f}x")
    if "nabla" in report:
        nb = report["nabla"]
        print(f"NABLA vs dense in the SR stage: {nb['dense_ms']:.0f} -> {nb['nabla_ms']:.0f} ms ({nb['speedup']:.2f}x), "
              f"mean |diff| {nb['mean_abs_diff']:.4f}, PSNR change {nb['psnr_change_db']:+.3f} dB")
    return _written(a.json, report)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
