"""Train the super-resolution stage (model/sr.py) on OmniWorld pairs: the base clip (32 x 32, degraded
the way the generator's outputs are: optionally through the VAE, then blur and noise) -> the same
scene rendered at 128 x 128, with the request's reference images and subject views as conditions.

    python -m training.train_sr --out runs/sr --steps 2000 [--vae assets/models/omni-world/vae]

Resumable: `OUT/ckpt` (config + safetensors) and `OUT/state.pt` (optimizer, step) every --save-every
steps, picked up again by the same command; the finished stage is `OUT/final`. `main(cfg)` runs the loop, so tests run a few steps of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.precision import autocast, resolve_dtype
from model.sr import SRConfig, SRStage


@dataclass
class TrainSRConfig:
    out: str = "runs/sr"  # run folder: ckpt/, state.pt, final/, log.jsonl
    steps: int = 2000  # optimizer steps in all (a resumed run continues to this count)
    batch: int = 4  # clips per step
    lr: float = 3e-4  # peak learning rate
    min_lr: float = 3e-5  # cosine floor
    warmup: int = 50  # linear warm-up steps
    families: tuple[str, ...] = ()  # task families to draw from; () = all of OmniWorld's
    crop_frames: int = 16  # frames per training clip (a random run of the 16)
    crop_side: int = 32  # base-clip pixels per side of a random crop (the target is scale x that)
    blur_max: float = 1.0  # degradation: Gaussian blur sigma of the base clip, drawn in [0, blur_max] px
    noise_max: float = 0.1  # degradation: noise std drawn in [0, noise_max]; std / noise_max is the level
    vae: str | None = None  # a VAE directory: base clips go through its round trip first (the generator's look)
    p_vae: float = 1.0  # fraction of clips that take the VAE round trip (the rest: the rendered base clip itself)
    # > 0: this fraction of clips is the rendered base clip untouched (no VAE, blur or noise) at level 0, and every
    # other clip's level says how degraded it is (the largest of noise / noise_max, blur / blur_max and 0.5 for the
    # VAE's round trip, at least 0.05): level 0 then means a clean render, and the stage may draw edges at full
    # sharpness there instead of hedging against a blur it cannot see (0 = the level is the noise's alone)
    p_clean: float = 0.0
    seed: int = 0
    dtype: str = "auto"  # compute dtype: auto (probe this machine, model/precision.py) | fp32 | bf16
    log_every: int = 10
    save_every: int = 200
    model: SRConfig = field(default_factory=SRConfig)


GROWABLE = ("refine", "base_conv", "base_conv_depth")  # SRConfig fields a resumed run may add (zero-initialised)


def learning_rate(step: int, cfg: TrainSRConfig) -> float:
    """Linear warm-up, then cosine from lr to min_lr over the remaining steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def _to_model(x: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float in [-1, 1], channels first: (3, ...) for clips (T, H, W, 3)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float() / 127.5 - 1
    return t.permute(-1, *range(t.ndim - 1))


def _blur(clip: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, T, h, w): a Gaussian blur per frame."""
    if sigma <= 0.05:
        return clip
    r = max(1, int(math.ceil(2 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma**2))
    k = k / k.sum()
    x = clip.transpose(0, 1)  # (T, 3, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.transpose(0, 1)


_vae_cache: dict = {}


def _vae_round_trip(clips: np.ndarray, vae_dir: str) -> np.ndarray:
    """(B, T, H, W, 3) uint8 clips through the VAE and back."""
    from model.vae import VideoVAE, to_model_range, to_uint8

    if vae_dir not in _vae_cache:
        _vae_cache[vae_dir] = VideoVAE.from_pretrained(vae_dir)
    vae = _vae_cache[vae_dir]
    with torch.no_grad():
        z = vae.encode(to_model_range(torch.from_numpy(clips)))
        return to_uint8(vae.decode(z, clips.shape[1])).numpy()


def make_batch(cfg: TrainSRConfig, seed: int) -> dict:
    """One batch of OmniWorld pairs: base (B, 3, T, h, w), target (B, 3, T, 4h, 4w) in [-1, 1], images
    [[(slot, (3, H, W))]] (reference images slots 1-8, subject views 9 on) and the degradation level (B,)."""
    from training.world import FAMILIES, sample

    families = cfg.families or FAMILIES
    s = cfg.model.scale
    rngs = [np.random.default_rng([cfg.seed, seed, b]) for b in range(cfg.batch)]
    drawn = []
    for rng in rngs:
        ws = sample(str(rng.choice(families)), int(rng.integers(1 << 30)))
        clean = cfg.p_clean > 0 and rng.random() < cfg.p_clean  # no draw without it: older runs' data stay the same
        drawn.append((ws, ws.target, bool(cfg.vae) and not clean and rng.random() < cfg.p_vae, clean))
    through = [i for i, d in enumerate(drawn) if d[2]]
    if through:  # one batched round trip (one clip at a time cost 80% of a batch's making)
        trips = _vae_round_trip(np.stack([drawn[i][1] for i in through]), cfg.vae)
        for i, clip in zip(through, trips):
            drawn[i] = (drawn[i][0], clip, True, False)
    bases, targets, images, levels = [], [], [], []
    for rng, (ws, lr_clip, vae_trip, clean) in zip(rngs, drawn):
        hr_clip = ws.target_hr(s)
        T, h = lr_clip.shape[0], lr_clip.shape[1]
        ft, side = min(cfg.crop_frames, T), min(cfg.crop_side, h)
        t0, y0, x0 = (int(rng.integers(0, n - m + 1)) for n, m in ((T, ft), (h, side), (h, side)))
        base = _to_model(lr_clip[t0 : t0 + ft, y0 : y0 + side, x0 : x0 + side])  # (3, ft, side, side)
        target = _to_model(hr_clip[t0 : t0 + ft, y0 * s : (y0 + side) * s, x0 * s : (x0 + side) * s])
        sigma, std = (0.0, 0.0) if clean else (float(rng.uniform(0, cfg.blur_max)),
                                               float(rng.uniform(0, cfg.noise_max)))
        base = _blur(base, sigma)
        noise = torch.from_numpy(rng.standard_normal(base.shape).astype(np.float32))
        bases.append((base + std * noise).clamp(-1, 1))
        targets.append(target)
        noise_part = std / cfg.noise_max if cfg.noise_max > 0 else 0.0
        if cfg.p_clean <= 0:
            levels.append(noise_part)
        else:
            blur_part = sigma / cfg.blur_max if cfg.blur_max > 0 else 0.0
            levels.append(0.0 if clean else max(0.05, noise_part, blur_part, 0.5 * vae_trip))
        req = ws.request
        refs = [(i + 1, _to_model(np.asarray(img))) for i, img in enumerate(req.images)]
        for j, views in enumerate(req.subjects.values()):
            refs += [(9 + j, _to_model(np.asarray(v))) for v in views]
        images.append(refs)
    return {"base": torch.stack(bases), "target": torch.stack(targets), "images": images,
            "level": torch.tensor(levels, dtype=torch.float32)}


def main(cfg: TrainSRConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    start, state_path = 0, out / "state.pt"
    if state_path.is_file() and (out / "ckpt" / "config.json").is_file():  # resume
        model = SRStage.from_pretrained(out / "ckpt")
        state = torch.load(state_path, weights_only=False)
        start = int(state["step"])
        grown_fields = {k: getattr(cfg.model, k) for k in GROWABLE if getattr(cfg.model, k) != getattr(model.config, k)}
        if grown_fields:  # a path added to a run in progress (the refiner, the base-clip conv path): zero-initialised,
            # so the stage computes what it did; the rest carried; the optimiser's moments start again
            grown = SRStage(dataclasses.replace(model.config, **grown_fields))
            missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
            assert not unexpected and all(k.startswith(("refine.", "base_conv.")) for k in missing), (missing, unexpected)
            if "base_conv_depth" in grown_fields and model.base_conv is not None:  # deeper: the new blocks start
                grown.base_conv.zero_blocks_from(model.config.base_conv_depth)  # as identities
            model, state = grown, {"step": start}
            print(f"added at step {start}: {grown_fields}", flush=True)
    else:
        model, state = SRStage(cfg.model), None
    model.train()
    compute, why = resolve_dtype(cfg.dtype)
    print(f"compute dtype: {why}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    if state is not None and "opt" in state:
        opt.load_state_dict(state["opt"])
    losses = []
    log = open(out / "log.jsonl", "a")
    t_last = time.time()
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        batch = make_batch(cfg, seed=step)
        with autocast("cpu", compute):
            cond = model.embed_conditions(batch["images"])
            pred = model(batch["base"], cond, level=batch["level"])
        loss = F.mse_loss(pred.float(), batch["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0:
            with torch.no_grad():
                bicubic = F.mse_loss(model.upsample(batch["base"]), batch["target"]).item()
            rec = {"step": step + 1, "loss": round(losses[-1], 6), "bicubic_loss": round(bicubic, 6),
                   "lr": learning_rate(step, cfg), "s_per_step": round((time.time() - t_last) / cfg.log_every, 3)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            t_last = time.time()
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            model.save_pretrained(out / "ckpt")
            torch.save({"opt": opt.state_dict(), "step": step + 1}, state_path)
    log.close()
    model.config.notes = {"trained_by": "training.train_sr", "steps": cfg.steps,
                          "recipe": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "model"}}
    model.save_pretrained(out / "final")
    return {"losses": losses, "start_step": start}


def parse_args(argv: list[str] | None = None) -> TrainSRConfig:
    d = TrainSRConfig()
    ap = argparse.ArgumentParser(prog="python -m training.train_sr")
    for f in dataclasses.fields(TrainSRConfig):
        if f.name in ("model", "families"):
            continue
        default = getattr(d, f.name)
        kind = type(default) if default is not None else str
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default)
    ap.add_argument("--families", default="", help="comma-separated task families (default: all)")
    ap.add_argument("--attention", default="dense", choices=("dense", "nabla"))
    ap.add_argument("--dim", type=int, default=SRConfig.dim)
    ap.add_argument("--depth", type=int, default=SRConfig.depth)
    ap.add_argument("--heads", type=int, default=SRConfig.heads)
    ap.add_argument("--window", default=",".join(map(str, SRConfig.window)), help="attention window in tokens: t,h,w")
    ap.add_argument("--refine", type=int, default=0, help="channels of the output's conv refiner (0: none)")
    ap.add_argument("--base-conv", type=int, default=0, help="width of the base-clip conv path (0: none)")
    ap.add_argument("--base-conv-depth", type=int, default=SRConfig.base_conv_depth, help="its residual blocks")
    a = ap.parse_args(argv)
    hd = a.dim // a.heads  # RoPE channels per axis: a quarter of the head for time, the rest split over h, w
    t_ch = 2 * (hd // 8)
    split = (t_ch, 2 * ((hd - t_ch) // 4), hd - t_ch - 2 * ((hd - t_ch) // 4))
    kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainSRConfig) if f.name not in ("model", "families")}
    fams = tuple(x for x in a.families.split(",") if x)
    return TrainSRConfig(**kw, families=fams, model=SRConfig(attention=a.attention, dim=a.dim, depth=a.depth,
                                                                 heads=a.heads, rope_split=split,
                                                                 window=tuple(int(x) for x in a.window.split(",")),
                                                                 refine=a.refine, base_conv=a.base_conv,
                                                                 base_conv_depth=a.base_conv_depth))


if __name__ == "__main__":
    r = main(parse_args())
    print(json.dumps({"steps": len(r["losses"]), "last_loss": r["losses"][-1] if r["losses"] else None}))
