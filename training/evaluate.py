"""OmniBench: exact, per-family evaluation of any video model on held-out OmniWorld cases,
and the judge that turns two models' scores into Good / Same / Bad votes (GSB).

    python -m training.evaluate --model oracle|noise|first_frame|PATH|vae:PATH|layout:PATH [--family F] [--limit N] [--jobs 2] --json OUT
    python -m training.evaluate --compare A B [--family F] [--limit N] --json OUT
    python -m training.evaluate --model PATH --split train ...   (the same families on training compositions)
    (A, B: models as for --model, or the JSON reports of earlier --model runs: no generation then)

Every case is a WorldSample of the bench split (a held-out composition). A model is a
function from (request, case) to a uint8 clip; the metrics compare that clip with the
world's truth: attributes read by the perception checker for open families, exact
pixels for determined ones (edits, transfers, storyboards). Each metric belongs to one
Kling-Omni dimension; a case succeeds when every metric that applies to it passes.

`vae:PATH` scores the truth itself after a round trip through that model's VAE (encode, decode):
the ceiling of any generator working in that latent space.

`--split train` scores the same families on cases of the training split (compositions the model
was trained on, other seeds): with the bench split it tells a model that has not learned a family
from one that has learned it and does not generalise to the held-out compositions. The judge
(`--compare`) works on the bench split only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from training.world import FAMILIES, WorldSample, sample
from training.world import vocab as V
from training.world.perceive import MOTION_TOLERANCE, perceive
from training.world.render import _dilate

DIMENSIONS = ("prompt_following", "dynamic_quality", "identity_consistency", "video_consistency", "visual_quality")
CASES_PER_FAMILY = 24
BENCH_SEED = 20_251_216  # the benchmark is fixed: case k of family f always has the same seed
TRAIN_SPLIT_OFFSET = 500_000  # training-split cases (`--split train`) use other seeds than the bench's
SPLITS = ("bench", "train")

PSNR_PASS = 22.0  # dB, a determined clip reproduced
FIRST_FRAME_PASS = 25.0  # dB, the given first frame kept
PRESERVE_PASS = 25.0  # dB, what an edit must leave alone
EDIT_PASS = 20.0  # dB, inside the edit region
TRAJECTORY_PASS = 1.5  # px, mean distance to the drawn path
FOUND_PASS = 0.75  # fraction of frames a subject must be visible in
STABLE_PASS = 0.9  # fraction of stable frames
JUDGE_MARGIN = 0.05  # utility difference below which the judge votes Same

Generator = Callable[["WorldSample"], np.ndarray]


# ---------------------------------------------------------------- cases
def case_seed(family: str, k: int, split: str = "bench") -> int:
    return BENCH_SEED + 1000 * FAMILIES.index(family) + k + (TRAIN_SPLIT_OFFSET if split == "train" else 0)


@lru_cache(maxsize=64)
def bench_cases(family: str, n: int = CASES_PER_FAMILY, split: str = "bench") -> tuple[WorldSample, ...]:
    """The fixed OmniBench cases of a family (held-out compositions), or with split="train" as
    many fixed cases of the training compositions."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {SPLITS}")
    return tuple(sample(family, case_seed(family, k, split), split=split) for k in range(n))


# ---------------------------------------------------------------- metrics
@dataclass
class Metric:
    value: float
    passed: bool
    dimension: str
    utility: float  # 0..1, how good (for the judge)


@dataclass
class CaseScore:
    family: str
    metrics: dict[str, Metric] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return all(m.passed for m in self.metrics.values())

    def dimensions(self) -> dict[str, float]:
        out = {}
        for d in DIMENSIONS:
            ms = [m for m in self.metrics.values() if m.dimension == d]
            if ms:
                out[d] = float(np.mean([m.passed for m in ms]))
        return out

    def utilities(self) -> dict[str, float]:
        out = {}
        for d in DIMENSIONS:
            ms = [m.utility for m in self.metrics.values() if m.dimension == d]
            if ms:
                out[d] = float(np.mean(ms))
        out["overall"] = float(np.mean([m.utility for m in self.metrics.values()])) if self.metrics else 0.0
        return out


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 clips (optionally over a (T, H, W) mask), capped at 60."""
    d = (a.astype(np.float32) - b.astype(np.float32)) / 255.0
    se = (d * d).mean(-1)
    mse = float(se[mask].mean()) if mask is not None else float(se.mean())
    return 60.0 if mse <= 1e-6 else min(60.0, -10.0 * math.log10(mse))


def mask_centroids(mask: np.ndarray) -> np.ndarray:
    """(T, 2) centroid (x, y) in base px of (T, H, W) masks, as the perception checker measures it."""
    T, H, W = mask.shape
    scale = H // 32
    ys, xs = np.mgrid[0:H, 0:W]
    n = np.maximum(mask.sum((1, 2)), 1)
    cx = (mask * xs).sum((1, 2)) / n
    cy = (mask * ys).sum((1, 2)) / n
    return np.stack([(cx + 0.5) / scale, (cy + 0.5) / scale], 1)


def _psnr_utility(db: float, passing: float) -> float:
    return float(np.clip((db - 10.0) / (passing + 8.0 - 10.0), 0.0, 1.0))


def _add(score: CaseScore, name: str, value: float, passed: bool, dim: str, utility: float | None = None) -> None:
    score.metrics[name] = Metric(float(value), bool(passed), dim, float(passed) if utility is None else utility)


OPEN_SIZE_FAMILIES = ("t2v", "reasoning")  # text only: the world draws the size at random and shows it nowhere
SIZE_WORD_RE = re.compile(r"\b(small|medium|large|tiny|big|huge|little|largest|smallest|biggest|tiniest)\b", re.I)


def score_case(case: WorldSample, clip: np.ndarray) -> CaseScore:
    """Score one model answer against the case's truth."""
    truth = case.truth
    score = CaseScore(case.family)
    target = case.target
    if clip.shape != target.shape or clip.dtype != np.uint8:
        raise ValueError(f"{case.family}: the model returned {clip.shape} {clip.dtype}; expected {target.shape} uint8")
    checks = set(truth.checks)
    subs = truth.subjects
    colors = [s.color for s in subs]
    sizes = [s.size for s in subs]
    if case.family in OPEN_SIZE_FAMILIES and "attributes" in checks and not SIZE_WORD_RE.search(case.request.prompt):
        # the request names no size and shows none (no reference at the subject's size): every size the
        # world could have drawn is right
        sizes = [(min(V.SIZES.values()), max(V.SIZES.values()))] * len(subs)

    if checks & {"attributes", "identity", "view", "motion", "stability"}:
        search_bg = "attributes" in checks
        p = perceive(clip, colors, sizes, truth.camera, background=None if search_bg else truth.background)
        found = [sp.found_fraction >= FOUND_PASS for sp in p.subjects]
        if "attributes" in checks:
            color_ok = np.mean(found)
            shape_ok = np.mean([f and sp.shape == s.shape for f, sp, s in zip(found, p.subjects, subs)])
            pattern_ok = np.mean([f and sp.pattern == s.pattern for f, sp, s in zip(found, p.subjects, subs)])
            bg_ok = p.background == truth.background and p.background_error <= 0.1
            _add(score, "color_acc", color_ok, color_ok == 1, "prompt_following", color_ok)
            _add(score, "shape_acc", shape_ok, shape_ok == 1, "prompt_following", shape_ok)
            _add(score, "pattern_acc", pattern_ok, pattern_ok == 1, "prompt_following", pattern_ok)
            _add(score, "background_acc", bg_ok, bg_ok, "prompt_following")
        if checks & {"attributes", "motion"}:
            motion_ok = np.mean([f and sp.motion == s.motion and sp.motion_error <= MOTION_TOLERANCE
                                 for f, sp, s in zip(found, p.subjects, subs)])
            _add(score, "motion_acc", motion_ok, motion_ok == 1, "dynamic_quality", motion_ok)
        if "identity" in checks:
            ident = np.mean([f and sp.shape == s.shape and sp.pattern == s.pattern
                             for f, sp, s in zip(found, p.subjects, subs)])
            _add(score, "identity_acc", ident, ident == 1, "identity_consistency", ident)
        if "view" in checks:
            view_ok = np.mean([f and sp.view == s.view for f, sp, s in zip(found, p.subjects, subs)])
            _add(score, "view_acc", view_ok, view_ok == 1, "prompt_following", view_ok)
        if "stability" in checks:
            T = clip.shape[0]
            _, zoom = V.camera_transform(truth.camera, T)
            per_frame = p.frame_ok & np.all([sp.found for sp in p.subjects], axis=0)
            steady = True
            for sp in p.subjects:
                a = sp.areas[sp.found] / (zoom[sp.found] ** 2)
                if a.size >= 2 and a.std() / max(a.mean(), 1e-6) > 0.35:
                    steady = False
            stable = float(per_frame.mean()) if steady else 0.0
            _add(score, "stability", stable, stable >= STABLE_PASS, "visual_quality", stable)

    if "reference" in checks:
        db = psnr(clip, target)
        _add(score, "psnr", db, db >= PSNR_PASS, "visual_quality", _psnr_utility(db, PSNR_PASS))
    if "first_frame" in checks:
        db = psnr(clip[:1], target[:1])
        _add(score, "first_frame_psnr", db, db >= FIRST_FRAME_PASS, "identity_consistency",
             _psnr_utility(db, FIRST_FRAME_PASS))
    if "keyframes" in checks:
        k = list(truth.keyframes)
        db = psnr(clip[k], target[k])
        _add(score, "keyframe_psnr", db, db >= PSNR_PASS, "identity_consistency", _psnr_utility(db, PSNR_PASS))
    if checks & {"trajectory", "box"}:
        s = subs[truth.focus]
        others = sum(o.size ** 2 for j, o in enumerate(subs) if j != truth.focus)
        p = perceive(clip, [s.color], [s.size], truth.camera, background=truth.background, extra_fg_area=others)
        sp = p.subjects[0]
        if "trajectory" in checks:
            if sp.found_fraction >= FOUND_PASS:
                truth_c = mask_centroids(s.mask)
                err = float(np.linalg.norm(sp.centers[sp.found] - truth_c[sp.found], axis=1).mean())
            else:
                err = float("inf")
            _add(score, "trajectory_err", min(err, 99.0), err <= TRAJECTORY_PASS, "dynamic_quality",
                 float(np.clip(1 - err / 8.0, 0, 1)) if math.isfinite(err) else 0.0)
        if "box" in checks:
            x0, y0, x1, y1 = truth.box
            last = slice(-4, None)
            c = sp.centers[last]
            inside = sp.found[last] & (c[:, 0] >= x0) & (c[:, 0] <= x1) & (c[:, 1] >= y0) & (c[:, 1] <= y1)
            frac = float(inside.mean())
            _add(score, "box_adherence", frac, frac >= 0.75, "prompt_following", frac)

    if "edit" in checks or "preserve" in checks:
        region = truth.edit_region
        src = truth.source
        if "edit" in checks and region.any():
            db = psnr(clip, target, region)
            d_out = np.mean(((clip.astype(np.float32) - target) / 255.0)[region] ** 2)
            d_src = np.mean(((src.astype(np.float32) - target) / 255.0)[region] ** 2)
            ok = db >= EDIT_PASS and d_out <= 0.5 * d_src
            _add(score, "edit_psnr", db, ok, "prompt_following", _psnr_utility(db, EDIT_PASS) * float(d_out <= 0.5 * d_src))
        keep = ~region
        if "preserve" in checks and keep.mean() >= 0.05:
            db = psnr(clip, target, keep)
            _add(score, "unedited_psnr", db, db >= PRESERVE_PASS, "video_consistency", _psnr_utility(db, PRESERVE_PASS))

    if "added" in checks:
        s = subs[truth.focus]
        others = sum(o.size ** 2 for j, o in enumerate(subs) if j != truth.focus)
        p = perceive(clip, [s.color], [s.size], truth.camera, background=truth.background, extra_fg_area=others)
        sp = p.subjects[0]
        ok = (sp.found_fraction >= FOUND_PASS and sp.shape == s.shape and sp.pattern == s.pattern
              and sp.motion == s.motion and sp.motion_error <= MOTION_TOLERANCE)
        parts = [sp.found_fraction >= FOUND_PASS, sp.shape == s.shape, sp.pattern == s.pattern, sp.motion == s.motion]
        _add(score, "added_acc", float(ok), ok, "prompt_following", float(np.mean(parts)))
        if "preserve_added" in checks:
            # the new subject may be anywhere: leave out where the truth put it and where the model did
            allowed = _dilate(s.mask, 1)
            T, H, W = allowed.shape
            for t in np.nonzero(sp.found)[0]:
                cx, cy = sp.centers[t]
                h = 0.8 * s.size
                allowed[t, max(0, int(cy - h)):int(cy + h) + 1, max(0, int(cx - h)):int(cx + h) + 1] = True
            db = psnr(clip, target, ~allowed)
            _add(score, "unedited_psnr", db, db >= PRESERVE_PASS, "video_consistency", _psnr_utility(db, PRESERVE_PASS))
    return score


# ---------------------------------------------------------------- models
def oracle(case: WorldSample) -> np.ndarray:
    return case.target.copy()


def noise(case: WorldSample) -> np.ndarray:
    rng = np.random.default_rng(case.request.seed + 7)
    return rng.integers(0, 256, case.target.shape, dtype=np.uint8)


def first_frame(case: WorldSample) -> np.ndarray:
    """The truth's first frame held still: shows which families need motion."""
    return np.repeat(case.target[:1], case.target.shape[0], axis=0)


BASELINES: dict[str, Generator] = {"oracle": oracle, "noise": noise, "first_frame": first_frame}


def vae_ceiling(model_dir: str) -> Generator:
    """The truth through a model's VAE: what a perfect generator in its latent space would score."""
    import torch

    from model.vae import VideoVAE, to_model_range, to_uint8

    if not (Path(model_dir) / "vae" / "config.json").is_file():
        raise SystemExit(f"--model vae:{model_dir}: no vae/config.json there; give a model directory")
    vae = VideoVAE.from_pretrained(Path(model_dir) / "vae").eval()

    def run(case: WorldSample) -> np.ndarray:
        x = to_model_range(torch.from_numpy(case.target))[None]
        with torch.no_grad():
            return to_uint8(vae.decode(vae.encode(x), x.shape[1]))[0].numpy()

    return run


def load_model(spec: str, steps: int | None = None, guidance: float | None = None,
               churn: float | None = None, seed: int | None = None) -> Generator:
    """A baseline by name, `vae:DIR` (the VAE ceiling), or a model directory (DESIGN 3.4) run through
    the Omni pipeline (at its own default steps and the request's guidance unless `steps` / `guidance`
    override them: a sampler study, not the model's score)."""
    if spec in BASELINES:
        return BASELINES[spec]
    if spec.startswith("vae:"):
        return vae_ceiling(spec[4:])
    given_layout = spec.startswith("layout:")  # a diagnostic: the truth's layout instead of the planner's
    path = Path(spec[7:] if given_layout else spec)
    if not (path / "model_index.json").is_file():
        raise SystemExit(f"--model {spec!r}: not a baseline ({', '.join(BASELINES)}) and not a model directory "
                         "with a model_index.json")
    try:
        from model.pipeline import OmniPipeline  # the embedded model's pipeline
    except ImportError as e:
        raise SystemExit(f"--model {spec!r}: model directories need the Omni pipeline (model/pipeline.py): {e}")
    pipe = OmniPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)

    fixed_seed = seed

    def run(case: WorldSample, seed: int | None = None) -> np.ndarray:
        """The clip for `case`; `seed`: the sampler's seed instead of the request's (the plan keeps the request's)."""
        seed = fixed_seed if seed is None else seed
        if given_layout:  # the truth's boxes, named as the planner names the subjects
            from training.data import truth_layout, with_planned_labels

            lay = with_planned_labels(truth_layout(case), pipe.enhancer.enhance(case.request).layout)
            return pipe(case.request, steps=steps, guidance=guidance, layout=lay, churn=churn, seed=seed).frames
        return pipe(case.request, steps=steps, guidance=guidance, churn=churn, seed=seed).frames

    run.takes_seed = True
    return run


# ---------------------------------------------------------------- reports
def evaluate(model: Generator, families=FAMILIES, limit: int | None = None, progress: bool = False,
             split: str = "bench") -> dict:
    t0 = time.perf_counter()
    report = {"families": {}, "overall": {}, "split": split}
    for fam in families:
        cases = bench_cases(fam, CASES_PER_FAMILY, split)[: limit or CASES_PER_FAMILY]
        report["families"][fam] = summarize([score_case(c, model(c)) for c in cases])
        if progress:
            print(f"  {fam:16s} success {report['families'][fam]['success']:.3f}", file=sys.stderr)
    report["overall"] = overall(report["families"])
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def overall(family_reports: dict) -> dict:
    """The benchmark's summary: every family counts the same."""
    fams = family_reports.values()
    return {
        "success": float(np.mean([f["success"] for f in fams])),
        "cases": int(sum(f["cases"] for f in fams)),
        "dimensions": {d: float(np.mean([f["dimensions"][d] for f in fams if d in f["dimensions"]]))
                       for d in DIMENSIONS if any(d in f["dimensions"] for f in fams)},
    }


def _family_reports(spec: str, families: tuple[str, ...], limit: int | None, split: str = "bench",
                    sampler: dict | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    return evaluate(load_model(spec, **(sampler or {})), families, limit, split=split)["families"]


def evaluate_parallel(spec: str, families=FAMILIES, limit: int | None = None, jobs: int = 2,
                      split: str = "bench", sampler: dict | None = None) -> dict:
    """The same report as evaluate(load_model(spec)), the families shared among `jobs` processes
    (one thread each): every case is scored exactly as in one process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    t0 = time.perf_counter()
    families = tuple(families)
    shares = [families[i::jobs] for i in range(jobs) if families[i::jobs]]
    with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as ex:
        n = len(shares)
        parts = list(ex.map(_family_reports, [spec] * n, shares, [limit] * n, [split] * n, [sampler] * n))
    found = {f: r for part in parts for f, r in part.items()}
    report = {"families": {f: found[f] for f in families}, "split": split}
    report["overall"] = overall(report["families"])
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def summarize(scores: list[CaseScore]) -> dict:
    out: dict = {"success": float(np.mean([s.success for s in scores])), "cases": len(scores)}
    names = sorted({n for s in scores for n in s.metrics})
    for n in names:
        vals = [s.metrics[n].value for s in scores if n in s.metrics]
        out[n] = float(np.mean(vals))
        out[n + "_pass"] = float(np.mean([s.metrics[n].passed for s in scores if n in s.metrics]))
    dims: dict[str, list[float]] = {}
    for s in scores:
        for d, v in s.dimensions().items():
            dims.setdefault(d, []).append(v)
    out["dimensions"] = {d: float(np.mean(v)) for d, v in dims.items()}
    out["case_utilities"] = [s.utilities() for s in scores]  # case by case, in bench order: what the judge compares
    return out


def vote(ua: float, ub: float) -> str:
    """The judge's verdict on A vs B from utilities: G (A better), S, or B (A worse)."""
    if ua - ub > JUDGE_MARGIN:
        return "G"
    if ub - ua > JUDGE_MARGIN:
        return "B"
    return "S"


def gsb_ratio(counts: dict[str, int]) -> float:
    """GSB = (G + S) / (B + S); infinite when A never loses or ties."""
    den = counts["B"] + counts["S"]
    return float("inf") if den == 0 else (counts["G"] + counts["S"]) / den


class ReportSource:
    """The judge's input read back from an evaluation report (`--model ... --json PATH`): OmniBench is
    deterministic (fixed cases, fixed seeds), so a model's case utilities need computing only once."""

    def __init__(self, path: str):
        self.path = path
        try:
            rep = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--compare {path!r}: not a readable evaluation report ({e})")
        fams = rep.get("families", {}) if isinstance(rep, dict) else {}
        if isinstance(rep, dict) and rep.get("split", "bench") != "bench":
            raise SystemExit(f"--compare {path!r}: this report is of the {rep['split']!r} split; the judge compares "
                             "bench-split reports (write one without --split)")
        if not fams or any("case_utilities" not in f for f in fams.values()):
            raise SystemExit(f"--compare {path!r}: this report has no case utilities; write it again with "
                             "`python -m training.evaluate --model MODEL --json OUT`")
        self.utilities = {fam: f["case_utilities"] for fam, f in fams.items()}
        self.families = tuple(fams)
        self.cases = min(len(u) for u in self.utilities.values())

    def __call__(self, fam: str, k: int) -> dict[str, float]:
        cases = self.utilities.get(fam, [])
        if k >= len(cases):
            raise SystemExit(f"--compare {self.path!r}: the report holds {len(cases)} cases of {fam}, case {k + 1} is "
                             "needed; evaluate with the same --family / --limit as the comparison")
        return cases[k]


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); ValueError naming the input when it holds no seed or something that is not an integer."""
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give integers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise ValueError(f"{text!r}: give at least one seed, e.g. 0,1,2")
    return seeds


def _utilities_of(model: Generator | ReportSource, seeds: tuple[int, ...] | None = None
                  ) -> Callable[[str, int], dict[str, float]]:
    """Per (family, case) the judge's utilities of `model`'s clip; with `seeds` (models from `load_model`), the mean
    over one clip per sampler seed: what the model does with the request, not with one noise draw."""
    if isinstance(model, ReportSource):
        return model
    if not seeds or not getattr(model, "takes_seed", False):
        return lambda fam, k: score_case(bench_cases(fam)[k], model(bench_cases(fam)[k])).utilities()

    def mean_over_seeds(fam: str, k: int) -> dict[str, float]:
        case = bench_cases(fam)[k]
        us = [score_case(case, model(case, seed=s)).utilities() for s in seeds]
        return {key: float(np.mean([u[key] for u in us])) for key in us[0] if all(key in u for u in us)}

    return mean_over_seeds


def compare(a, b, families=FAMILIES, limit: int | None = None, seeds: tuple[int, ...] | None = None) -> dict:
    """Judge A against B case by case. A and B are models (Generators) or ReportSources: the votes
    are the same either way. `seeds`: models are judged on their mean utility over these sampler seeds (every
    benchmark request has seed 0, so one seed puts one noise draw under all 552 cases: a model change moves many
    cases together, and a GSB at one seed measures that draw as much as the models)."""
    t0 = time.perf_counter()
    keys = ("overall",) + DIMENSIONS
    counts = {k: {"G": 0, "S": 0, "B": 0} for k in keys}
    per_family = {}
    sums = {k: [0.0, 0.0, 0] for k in keys}  # mean utility of A and of B per dimension
    util_a, util_b = _utilities_of(a, seeds), _utilities_of(b, seeds)
    for fam in families:
        fc = {"G": 0, "S": 0, "B": 0}
        for k in range(min(limit or CASES_PER_FAMILY, CASES_PER_FAMILY)):
            ua, ub = util_a(fam, k), util_b(fam, k)
            for key in keys:
                if key in ua and key in ub:
                    counts[key][vote(ua[key], ub[key])] += 1
                    sums[key][0] += ua[key]
                    sums[key][1] += ub[key]
                    sums[key][2] += 1
            fc[vote(ua["overall"], ub["overall"])] += 1
        per_family[fam] = {"gsb": _json_ratio(gsb_ratio(fc)), "counts": fc}
    return {
        "gsb": {k: _json_ratio(gsb_ratio(c)) for k, c in counts.items() if sum(c.values())},
        "counts": {k: c for k, c in counts.items() if sum(c.values())},
        "families": per_family,
        "mean_utility": {k: {"a": round(v[0] / v[2], 4), "b": round(v[1] / v[2], 4)} for k, v in sums.items() if v[2]},
        "seconds": round(time.perf_counter() - t0, 2),
        **({"seeds": list(seeds)} if seeds else {}),
    }


def _json_ratio(r: float) -> float | str:
    return "inf" if math.isinf(r) else round(r, 4)


def report_json(report: dict) -> str:
    """JSON text of a report, the summary first and each case's utilities on one line (a full
    report holds 552 of them), so that a reader finds the figures without scrolling through them."""
    def dump(x, ind: str) -> str:
        if not isinstance(x, dict) or not x:
            return json.dumps(x)
        inner = ind + " "
        items = []
        for k, v in sorted(x.items(), key=lambda kv: kv[0] != "overall"):
            if k == "case_utilities":
                rows = ",\n".join(inner + " " + json.dumps(u) for u in v)
                items.append(f"{inner}{json.dumps(k)}: [\n{rows}\n{inner}]")
            else:
                items.append(f"{inner}{json.dumps(k)}: {dump(v, inner)}")
        return "{\n" + ",\n".join(items) + "\n" + ind + "}"

    return dump(report, "") + "\n"


def format_table(report: dict) -> str:
    dims = ["prompt_following", "dynamic_quality", "identity_consistency", "video_consistency", "visual_quality"]
    short = ["prompt", "dynamic", "identity", "consist.", "visual"]
    lines = [f"{'family':16s} {'cases':>5s} {'success':>8s} " + " ".join(f"{s:>8s}" for s in short)]
    rows = list(report["families"].items()) + [("OVERALL", report["overall"])]
    for name, r in rows:
        d = r.get("dimensions", {})
        cells = " ".join(f"{d[k]:8.3f}" if k in d else f"{'-':>8s}" for k in dims)
        lines.append(f"{name:16s} {r['cases']:5d} {r['success']:8.3f} {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="oracle | noise | first_frame | path to a model directory | vae:PATH (the truth through that "
                         "model's VAE: the ceiling of its latent space) | layout:PATH (the model given the truth's layout "
                         "instead of its planner's: what a perfect planner would reach; a diagnostic, not its score)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="judge A against B; GSB per dimension. A and B: models, or reports (.json) written by --model")
    ap.add_argument("--family", action="append", choices=FAMILIES, help="only this family (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="cases per family (default all 24)")
    ap.add_argument("--json", dest="json_out", help="write the report here")
    ap.add_argument("--jobs", type=int, default=1, help="with --model: share the families among this many processes")
    ap.add_argument("--split", choices=SPLITS, default="bench",
                    help="with --model: bench (held-out compositions, the benchmark) or train (training compositions)")
    ap.add_argument("--steps", type=int, default=None,
                    help="with a model directory: sample at this many steps instead of its default (a sampler study: "
                         "use --split train to choose settings, never the benchmark)")
    ap.add_argument("--guidance", type=float, default=None,
                    help="with a model directory: this guidance instead of each request's own (a sampler study)")
    ap.add_argument("--churn", type=float, default=None,
                    help="with a model directory: this share of fresh noise per sampling step instead of the model's "
                         "own (0 = deterministic Euler; a sampler study)")
    ap.add_argument("--seed", type=int, default=None,
                    help="with a model directory: this sampler seed for every case instead of the request's own (0 for "
                         "every benchmark case; the plan keeps the request's): how much a score owes to one noise draw")
    ap.add_argument("--seeds", default=None,
                    help="with --compare of model directories: judge each case on the mean utility over these sampler "
                         "seeds, e.g. 0,1,2 (default: the request's own, 0 for every benchmark case)")
    args = ap.parse_args(argv)
    seeds = None
    if args.seeds is not None:
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as e:
            ap.error(f"--seeds {e}")
        if not args.compare or any(x.endswith(".json") for x in args.compare):
            ap.error("--seeds: only with --compare of two model directories")
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps {args.steps}: give 1 or more")
    from model.mvl import GUIDANCE_RANGE

    if args.guidance is not None and not GUIDANCE_RANGE[0] <= args.guidance <= GUIDANCE_RANGE[1]:
        ap.error(f"--guidance {args.guidance}: give {GUIDANCE_RANGE[0]}..{GUIDANCE_RANGE[1]}")
    if args.churn is not None and not 0.0 <= args.churn <= 1.0:
        ap.error(f"--churn {args.churn}: give 0..1")
    if (args.steps is not None or args.guidance is not None or args.churn is not None or args.seed is not None) and (
            not args.model or args.model in BASELINES or args.model.startswith("vae:")):
        ap.error("--steps / --guidance / --churn / --seed set a model directory's sampler: "
                 "give --model DIR (or layout:DIR)")
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: give 1 or more processes")
    families = tuple(args.family) if args.family else FAMILIES
    if bool(args.model) == bool(args.compare):
        ap.error("give exactly one of --model or --compare")
    if args.compare and args.split != "bench":
        ap.error("--split train: the judge (--compare) works on the bench split only")
    if args.model:
        sampler = {k: v for k, v in (("steps", args.steps), ("guidance", args.guidance), ("churn", args.churn),
                                     ("seed", args.seed)) if v is not None}
        if args.jobs > 1:
            load_model(args.model)  # a wrong --model fails here, once, with its message
            report = evaluate_parallel(args.model, families, args.limit, args.jobs, args.split, sampler)
        else:
            report = evaluate(load_model(args.model, **sampler), families, args.limit, progress=True, split=args.split)
        report["model"] = args.model
        if sampler:
            report["sampler"] = sampler
        print(format_table(report))
    else:
        sides = [ReportSource(x) if x.endswith(".json") else load_model(x) for x in args.compare]
        reports = [s for s in sides if isinstance(s, ReportSource)]
        if reports and not args.family:  # the families the reports hold
            families = tuple(f for f in families if all(f in r.families for r in reports))
        limit = args.limit or (min(r.cases for r in reports) if reports else None)  # and their cases
        report = compare(sides[0], sides[1], families, limit, seeds)
        report["a"], report["b"] = args.compare
        print(f"GSB of {args.compare[0]} against {args.compare[1]} (G+S)/(B+S):")
        for k, v in report["gsb"].items():
            c = report["counts"][k]
            print(f"  {k:22s} {v if isinstance(v, str) else f'{100 * v:7.1f}%':>8s}   G={c['G']} S={c['S']} B={c['B']}")
    if args.json_out:
        Path(args.json_out).write_text(report_json(report) if args.model else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
