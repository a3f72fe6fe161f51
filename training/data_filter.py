"""The three-tier data filter of Kling-Omni, for any folder of captioned videos.

    python -m training.data_filter DIR --report OUT.json [--min-side 32] [--min-frames 8]

Each video (mp4, webm, avi or gif, recognised by its bytes) is kept or dropped with the
tier and the reason:

1. basic: unreadable or disguised files, resolution and duration thresholds, and
   near-duplicates (frame fingerprints + a temporal fingerprint; the first copy is kept);
2. temporal: frozen clips, too little motion, blur, camera jitter, scene cuts (a flash
   that returns to the same content is not a cut);
3. cross-modal: the caption against the content, exact for clips in the world's visual
   language through the perception checker (a sidecar `NAME.world.json` gives scale and
   camera; without one the caption is still parsed and checked at scale H/32); the
   reference images and the edit source named in the sidecar, when given.

Captions come from `NAME.txt` beside the video, or a `captions.jsonl` of {"file", "caption"}.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.video_io import VideoError, read_video
from training.world import vocab as V
from training.world.export import load_sidecar
from training.world.perceive import perceive

VIDEO_SUFFIXES = {".mp4", ".webm", ".avi", ".gif", ".mov", ".mkv", ".m4v"}


@dataclass
class FilterConfig:
    min_side: int = 32  # pixels, shorter side
    min_frames: int = 8
    max_frames: int = 2000
    duplicate_bits: float = 0.08  # fingerprints closer than this fraction of bits are duplicates
    frozen_diff: float = 0.0005  # mean |frame difference| under which a pair is frozen
    frozen_fraction: float = 0.9  # ... and this share of pairs frozen drops the clip
    min_motion: float = 0.002  # mean |frame difference| of a clip that moves enough
    blur_ratio: float = 0.5  # edge steepness below which a clip is blurred (1 = crisp)
    jitter_reversals: float = 0.3  # share of frame pairs whose global shift reverses direction
    cut_jump: float = 0.03  # a frame difference this large (2.5x its neighbours'), that does not come back, is a cut


@dataclass
class Verdict:
    file: str
    keep: bool
    tier: str | None = None  # basic | temporal | cross_modal (None when kept)
    reason: str = ""
    caption: str = ""
    measures: dict = field(default_factory=dict)


# ---------------------------------------------------------------- fingerprints and measures
def _gray(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32).mean(-1) / 255.0


def _pool(g: np.ndarray, n: int) -> np.ndarray:
    """Area-average (..., H, W) down to (..., n, n)."""
    H, W = g.shape[-2:]
    ys = np.linspace(0, H, n + 1).astype(int)
    xs = np.linspace(0, W, n + 1).astype(int)
    out = np.empty(g.shape[:-2] + (n, n), np.float32)
    for i in range(n):
        for j in range(n):
            out[..., i, j] = g[..., ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean((-1, -2))
    return out


def fingerprint(frames: np.ndarray) -> np.ndarray:
    """Bits: 8x8 average hashes of 4 evenly spaced frames + signs of their temporal change."""
    T = len(frames)
    idx = np.linspace(0, T - 1, 4).round().astype(int)
    small = _pool(_gray(frames[idx]), 8)  # (4, 8, 8)
    spatial = (small > small.mean((1, 2), keepdims=True)).ravel()
    temporal = (np.diff(small, axis=0) > 0).ravel()
    return np.concatenate([spatial, temporal])


def frame_diffs(frames: np.ndarray) -> np.ndarray:
    """Mean |difference| of consecutive frames over pixels and channels, 0..1."""
    f = frames.astype(np.float32) / 255.0
    return np.abs(np.diff(f, axis=0)).mean((1, 2, 3))


def _maxfilter(g: np.ndarray, k: int) -> np.ndarray:
    """k x k maximum filter of (T, H, W) (edges clamped), separable."""
    r = k // 2
    out = g
    for axis in (1, 2):
        p = np.pad(out, [(0, 0)] + [(r, r) if ax == axis else (0, 0) for ax in (1, 2)], mode="edge")
        n = out.shape[axis]
        out = np.max([np.take(p, range(i, i + n), axis=axis) for i in range(k)], axis=0)
    return out


def blur_ratio(frames: np.ndarray) -> float:
    """Edge steepness: the steepest one-pixel step near an edge over the edge's contrast in a
    9 px window. About 1 for crisp edges, 1/w for edges smeared over w pixels; independent of
    contrast, so a flat but sharp scene is not mistaken for a blurred one."""
    g = _gray(frames)
    if g.shape[1] > 128:
        g = _pool(g, 128)
    rng9 = _maxfilter(g, 9) + _maxfilter(-g, 9)  # local max - local min
    grad = np.zeros_like(g)
    grad[:, :, :-1] = np.abs(np.diff(g, axis=2))
    grad[:, :-1, :] = np.maximum(grad[:, :-1, :], np.abs(np.diff(g, axis=1)))
    edges = rng9 > 0.1
    if edges.sum() < 16:
        return 1.0  # no edges at all: nothing to call blurred (a flat clip is caught as frozen)
    return float(np.median(_maxfilter(grad, 9)[edges] / rng9[edges]))


def global_shifts(frames: np.ndarray, r: int = 3) -> np.ndarray:
    """(T-1, 2) integer shift (dx, dy) that best aligns each frame with the next, at 64 px."""
    g = _gray(frames)
    H = g.shape[1]
    if H > 64:
        g = _pool(g, 64)
    out = []
    for a, b in zip(g[:-1], g[1:]):
        # a shift must explain the change clearly better than no shift (moving rain is not shake)
        best, best_e = (0, 0), 0.7 * np.abs(a - b).mean()
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                aa = a[max(0, dy):a.shape[0] + min(0, dy), max(0, dx):a.shape[1] + min(0, dx)]
                bb = b[max(0, -dy):b.shape[0] + min(0, -dy), max(0, -dx):b.shape[1] + min(0, -dx)]
                e = np.abs(aa - bb).mean()
                if e < best_e - 1e-6:
                    best, best_e = (dx, dy), e
        out.append(best)
    return np.array(out)


def jitter_score(frames: np.ndarray) -> float:
    s = global_shifts(frames)
    if len(s) < 3:
        return 0.0
    rev = 0
    for axis in (0, 1):
        v = s[:, axis]
        nz = v[v != 0]
        rev += int((np.sign(nz[1:]) != np.sign(nz[:-1])).sum()) if len(nz) > 1 else 0
    return rev / (len(s) - 1)


def scene_cut(frames: np.ndarray, jump: float) -> int | None:
    """Index of the first frame after a cut: a big change whose content does not come back."""
    f = frames.astype(np.float32) / 255.0
    d = frame_diffs(frames)
    for t, v in enumerate(d):
        near = [d[i] for i in (t - 1, t + 1) if 0 <= i < len(d)]
        if v > max(jump, 2.5 * max(near, default=0.0)):  # a spike, not steady motion
            after = min(t + 2, len(f) - 1)
            if np.abs(f[after] - f[t]).mean() > 0.5 * v:  # not a flash: the old content is gone
                return t + 1
    return None


# ---------------------------------------------------------------- captions
_MOTION_PHRASES = {v: k for k, v in V.MOTION_WORDS.items()}
_BG_PHRASES = {v.split(" ", 1)[1] if " " in v else v: k for k, v in V.BACKGROUND_WORDS.items()}
_SUBJECT_RE = re.compile(r"\b(?:a|an|the)\s+((?:(?:plain|striped|checkered)\s+)?)(%s)\s+(%s)\b" % (
    "|".join(V.COLORS), "|".join(V.SHAPES)))


def parse_caption(caption: str) -> dict:
    """World attributes a caption claims: subjects (colour, shape, pattern?, motion?) and background."""
    text = caption.lower()
    subjects = []
    for m in _SUBJECT_RE.finditer(text):
        pattern = m.group(1).strip() or None
        rest = text[m.end():m.end() + 60]
        motion = None
        for phrase, name in sorted(_MOTION_PHRASES.items(), key=lambda kv: -len(kv[0])):
            if rest.lstrip().startswith(phrase):
                motion = name
                break
        subjects.append({"color": m.group(2), "shape": m.group(3), "pattern": pattern, "motion": motion})
    background = None
    for phrase, name in _BG_PHRASES.items():
        if phrase in text:
            background = name
    return {"subjects": subjects, "background": background}


def read_captions(folder: Path) -> dict[str, str]:
    caps: dict[str, str] = {}
    jl = folder / "captions.jsonl"
    if jl.is_file():
        for line in jl.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
                caps[str(rec["file"])] = str(rec["caption"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    for txt in folder.glob("*.txt"):
        caps.setdefault(txt.stem, txt.read_text(errors="replace").strip())
    return caps


# ---------------------------------------------------------------- the tiers
def check_cross_modal(frames: np.ndarray, caption: str, side: dict | None) -> tuple[bool, str, dict]:
    """Caption (or world truth) against content. With a sidecar the truth is checked exactly and
    a describing caption must name only what the truth holds; without one the caption is parsed."""
    claims = parse_caption(caption)
    if side is not None and side.get("subjects"):
        if side.get("describes", True):
            named = {(s["color"], s["shape"]) for s in claims["subjects"]}
            truth = {(s["color"], s["shape"]) for s in side["subjects"]}
            if named and not named <= truth:
                missing = sorted(named - truth)
                return False, f"caption names {' and '.join(c + ' ' + s for c, s in missing)}, which the clip does not show", {}
        if not side.get("perceivable", True):
            return True, "stylised world clip: subjects not read back", {"checked": False}
        claims = {"subjects": side["subjects"], "background": side.get("background")}
    if not claims["subjects"]:
        return True, "caption not in the world vocabulary: unchecked", {"checked": False}
    H = frames.shape[1]
    if H % 32 or frames.shape[2] != H:
        return True, "not a square multiple of 32 px: caption unchecked", {"checked": False}
    camera = (side or {}).get("camera", "static")
    colors = [s["color"] for s in claims["subjects"]]
    sizes = [float(s.get("size") or 12.0) for s in claims["subjects"]]
    p = perceive(frames[: 64], colors, sizes, camera, lossy=True)
    for claim, sp in zip(claims["subjects"], p.subjects):
        what = f"{claim['color']} {claim['shape']}"
        if sp.found_fraction < 0.75:
            return False, f"caption says a {what}, but no {claim['color']} subject is visible", {}
        if sp.shape != claim["shape"]:
            return False, f"caption says a {what}, the clip shows a {claim['color']} {sp.shape}", {}
        if claim.get("pattern") and sp.pattern != claim["pattern"]:
            return False, f"caption says the {what} is {claim['pattern']}, it is {sp.pattern}", {}
        if claim.get("motion") and claim["motion"] in V.MOTIONS and sp.motion != claim["motion"]:
            return False, f"caption says the {what} {V.MOTION_WORDS[claim['motion']]}, it {V.MOTION_WORDS.get(sp.motion, 'does not move clearly')}", {}
    bg = claims.get("background")
    if bg and p.background != bg:
        return False, f"caption says the background is {bg}, it looks like {p.background}", {}
    return True, "caption matches the clip", {"checked": True}


def check_references(frames: np.ndarray, side: dict, folder: Path) -> tuple[bool, str]:
    """Sidecar `references`: [{"image": "x.png", "color": "red"}] must show that subject's identity."""
    from PIL import Image

    for ref in side.get("references", []):
        path = (folder / str(ref.get("image", ""))).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            return False, f"reference image {ref.get('image')!r} is missing or outside the folder"
        img = np.asarray(Image.open(path).convert("RGB"))
        color = ref.get("color")
        r = perceive(img[None], [color], [14.0], background="studio", lossy=True).subjects[0]
        c = perceive(frames[:64], [color], [float(ref.get("size", 12.0))], side.get("camera", "static"), lossy=True).subjects[0]
        if r.shape is None:
            return False, f"reference {path.name} shows no {color} subject"
        if c.shape != r.shape or c.pattern != r.pattern:
            return False, (f"reference {path.name} shows a {r.pattern} {color} {r.shape}; the clip shows "
                           f"a {c.pattern} {color} {c.shape}")
    return True, ""


def check_edit(frames: np.ndarray, side: dict, folder: Path) -> tuple[bool, str]:
    """Sidecar `edit`: {"source": "src.mp4", "instruction": "..."}: the result must be that edit."""
    edit = side.get("edit") or {}
    path = (folder / str(edit.get("source", ""))).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        return False, f"edit source {edit.get('source')!r} is missing or outside the folder"
    src, _ = read_video(path, max_frames=len(frames))
    if src.shape != frames.shape:
        return False, f"edit result {frames.shape} and source {src.shape} differ in size"
    instr = str(edit.get("instruction", "")).lower()
    changed = np.abs(src.astype(np.int16) - frames).max(-1) > 24
    if changed.mean() < 0.002:
        return False, f"the result is the source unchanged; the instruction was {instr!r}"
    m = re.search(r"remove the (%s) (%s)" % ("|".join(V.COLORS), "|".join(V.SHAPES)), instr)
    if m:
        sp = perceive(frames[:64], [m.group(1)], [12.0], side.get("camera", "static"), lossy=True).subjects[0]
        if sp.found_fraction > 0.25:
            return False, f"the {m.group(1)} {m.group(2)} is still there after 'remove'"
    return True, ""


def filter_folder(folder: str | Path, cfg: FilterConfig | None = None, progress: bool = False) -> list[Verdict]:
    folder = Path(folder)
    cfg = cfg or FilterConfig()
    if not folder.is_dir():
        raise SystemExit(f"{folder}: not a folder of videos")
    captions = read_captions(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    verdicts: list[Verdict] = []
    kept_prints: list[tuple[str, np.ndarray]] = []
    for i, path in enumerate(files):
        if progress:
            print(f"[{i + 1}/{len(files)}] {path.name}", file=sys.stderr)
        cap = captions.get(path.stem, captions.get(path.name, ""))
        v = Verdict(file=path.name, keep=False, caption=cap)
        verdicts.append(v)
        side = load_sidecar(path)
        # ---- tier 1: basic
        try:
            frames, meta = read_video(path, cfg.max_frames)
        except VideoError as e:
            v.tier, v.reason = "basic", str(e)
            continue
        T, H, W, _ = frames.shape
        v.measures.update(width=W, height=H, frames=T, fps=meta.fps)
        if min(H, W) < cfg.min_side:
            v.tier, v.reason = "basic", f"resolution {W}x{H} is below {cfg.min_side} px"
            continue
        if T < cfg.min_frames:
            v.tier, v.reason = "basic", f"{T} frames; at least {cfg.min_frames} are needed"
            continue
        fp = fingerprint(frames)
        dup = next((name for name, other in kept_prints if np.mean(fp != other) <= cfg.duplicate_bits), None)
        if dup is not None:
            v.tier, v.reason = "basic", f"near-duplicate of {dup}"
            continue
        # ---- tier 2: temporal
        d = frame_diffs(frames)
        still_by_truth = side is not None and all(s.get("motion") == "still" for s in side.get("subjects", [{}])) \
            and side.get("camera", "static") == "static"
        v.measures.update(motion=round(float(d.mean()), 5), blur=round(blur_ratio(frames), 4),
                          jitter=round(jitter_score(frames), 3))
        if not still_by_truth:
            if np.mean(d < cfg.frozen_diff) >= cfg.frozen_fraction:
                v.tier, v.reason = "temporal", "frozen: the frames do not change"
                continue
            if d.mean() < cfg.min_motion:
                v.tier, v.reason = "temporal", f"too little motion ({d.mean():.4f} < {cfg.min_motion})"
                continue
        if v.measures["blur"] < cfg.blur_ratio:
            v.tier, v.reason = "temporal", f"blurred (sharpness {v.measures['blur']:.3f} < {cfg.blur_ratio})"
            continue
        if v.measures["jitter"] >= cfg.jitter_reversals:
            v.tier, v.reason = "temporal", f"camera jitter (shift reverses in {v.measures['jitter']:.0%} of frames)"
            continue
        cut = scene_cut(frames, cfg.cut_jump)
        if cut is not None:
            v.tier, v.reason = "temporal", f"scene cut at frame {cut}"
            continue
        # ---- tier 3: cross-modal
        if not cap.strip():
            v.tier, v.reason = "cross_modal", "no caption (add NAME.txt or a captions.jsonl line)"
            continue
        ok, why, extra = check_cross_modal(frames, cap, side)
        v.measures.update(extra)
        if ok and side is not None and side.get("references"):
            ok, why = check_references(frames, side, folder)
        if ok and side is not None and side.get("edit"):
            ok, why = check_edit(frames, side, folder)
        if not ok:
            v.tier, v.reason = "cross_modal", why
            continue
        v.keep, v.reason = True, why
        kept_prints.append((path.name, fp))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.data_filter", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--report", required=True, help="JSON report: one verdict per file")
    for name, fdef in FilterConfig.__dataclass_fields__.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(fdef.default), default=fdef.default)
    args = ap.parse_args(argv)
    cfg = FilterConfig(**{k: getattr(args, k) for k in FilterConfig.__dataclass_fields__})
    verdicts = filter_folder(args.folder, cfg, progress=True)
    kept = sum(v.keep for v in verdicts)
    by_tier: dict[str, int] = {}
    for v in verdicts:
        if not v.keep:
            by_tier[v.tier] = by_tier.get(v.tier, 0) + 1
    for v in verdicts:
        print(f"{'KEEP' if v.keep else 'DROP'} {v.file:32s} {v.tier or '':12s} {v.reason}")
    print(f"{kept} kept, {len(verdicts) - kept} dropped " + " ".join(f"({k}: {n})" for k, n in by_tier.items()))
    Path(args.report).write_text(json.dumps({
        "folder": str(args.folder), "kept": kept, "dropped": len(verdicts) - kept, "dropped_by_tier": by_tier,
        "config": asdict(cfg), "clips": [asdict(v) for v in verdicts]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
