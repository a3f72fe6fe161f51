"""A probe for issue 18: can a pixel-space (2+1)D U-Net, given the layout plan and the plan's phrase grounding,
draw the subjects' shapes where the latent DiT draws colour clouds?

Why this probe: a one-step x0 estimate of the 2x-path DiT from a noised truth (truth layout, s <= 0.7) shows
every shape; at s = 0.9 it is a blob, and sampled from pure noise the subjects come out as speckled clouds:
the shape is never chosen from the words at high noise. Here every input that says where and what is pixel
aligned (the layout raster, and each subject's phrase painted into its box), the body is convolutional
(a shape inside a box is a local pattern), there is no VAE (no latent ceiling, no off-manifold speckle),
and skips at full resolution keep the low-noise regime a local denoising problem.

    python -m training.pixel_probe --out runs/pixel_probe --minutes 50          # train (resumable), then score
    python -m training.pixel_probe --out runs/pixel_probe --score-only          # score the saved model

It trains on the t2v family (flow matching, model/flow_matching.py), one thread, and scores the EMA model
with the world's checker on training-split compositions (the planner's layout from the request, never the
truth), the figures the 2x-path DiT is compared on (`--split train --family t2v`). A probe, not a backend:
the studio does not load it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import flow_matching as fm
from model.generator import timestep_embedding
from model.layout import LAYOUT_CHANNELS, rasterize_layout, subject_masks

SIDE, FRAMES = 32, 16


@dataclass
class PixelUNetConfig:
    width: int = 24  # channels at full resolution (x2, x4 at the two coarser levels)
    blocks: int = 2  # residual blocks per level on the way down (up: the same, on concatenated skips)
    text_dim: int = 384  # text encoder width
    ground: int = 16  # channels of the phrase-grounding map (each subject's phrase projected, painted in its box)
    temb: int = 128  # timestep / text embedding width


class Block(nn.Module):
    """(2+1)D residual block on frames (B, C, T, H, W) run as (B T, C, H, W): 3x3 conv, FiLM from the
    embedding, a 3-frame temporal conv (depthwise), 3x3 conv. 2D convolutions: far faster on CPU than 3D ones."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.ct = nn.Conv1d(cout, cout, 3, padding=1, groups=cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, e, T: int):
        """x (B T, C, H, W), e (B, emb)."""
        BT, _, H, W = x.shape
        B = BT // T
        h = self.c1(F.silu(self.n1(x)))
        C = h.shape[1]
        scale, shift = self.film(e).repeat_interleave(T, 0)[:, :, None, None].chunk(2, 1)
        h = F.silu(self.n2(h) * (1 + scale) + shift)
        ht = h.view(B, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(B * H * W, C, T)  # (B H W, C, T)
        ht = self.ct(ht).view(B, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(BT, C, H, W)
        h = h + ht
        return self.skip(x) + self.c2(F.silu(h))


class PixelUNet(nn.Module):
    def __init__(self, cfg: PixelUNetConfig):
        super().__init__()
        self.cfg = cfg
        w, e = cfg.width, cfg.temb
        self.t_mlp = nn.Sequential(nn.Linear(256, e), nn.SiLU(), nn.Linear(e, e))
        self.text = nn.Linear(cfg.text_dim, e)
        self.ground = nn.Linear(cfg.text_dim, cfg.ground)
        self.inp = nn.Conv2d(3 + LAYOUT_CHANNELS + cfg.ground, w, 3, padding=1)
        chans = [w, 2 * w, 4 * w]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = w
        skips = []
        for i, ch in enumerate(chans):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(Block(c, ch, e))
                c = ch
                skips.append(c)
            self.down.append(level)
            if i < len(chans) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = Block(c, c, e)
        self.up = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(Block(c + skips.pop(), ch, e))
                c = ch
            self.up.append(level)
        self.out_norm = nn.GroupNorm(8, c)
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, s, text_vec, layout, masks, phrases):
        """x (B, 3, T, H, W) noisy pixels in [-1, 1]; s (B,); text_vec (B, text_dim) pooled prompt (zeros when
        dropped); layout (B, 4, T, H, W); masks (B, N, T, H, W) box weights; phrases (B, N, text_dim)."""
        B, _, T, H, W = x.shape
        e = self.t_mlp(timestep_embedding(fm.to_timestep(s), 256)) + self.text(text_vec)
        g = torch.einsum("bnthw,bnc->bcthw", masks, self.ground(phrases))  # each phrase painted in its box
        frames = lambda t: t.transpose(1, 2).reshape(B * T, t.shape[1], H, W)  # noqa: E731
        h = self.inp(torch.cat([frames(x), frames(layout), frames(g.to(x.dtype))], 1))
        hs = []
        for i, level in enumerate(self.down):
            for blk in level:
                h = blk(h, e, T)
                hs.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, e, T)
        for i, level in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            for blk in level:
                h = blk(torch.cat([h, hs.pop()], 1), e, T)
        out = self.out(F.silu(self.out_norm(h)))  # (B T, 3, H, W)
        return out.view(B, T, 3, H, W).transpose(1, 2)


@dataclass
class ProbeConfig:
    out: str = "runs/pixel_probe"
    minutes: float = 50.0  # wall-clock training budget of this call (resumes from OUT/checkpoint.pt)
    batch: int = 8
    lr: float = 5e-4
    ema: float = 0.995
    p_drop_text: float = 0.1  # classifier-free guidance: the prompt and the phrases dropped together
    fg_weight: float = 3.0  # extra weight on pixels inside the subjects' boxes
    crop_frames: int = 8  # frames per training clip (a random run of the 16): half the compute of whole clips
    seed: int = 0
    steps: int = 0  # > 0: stop after this many steps (tests)
    score_cases: int = 24
    sample_steps: int = 20
    guidance: float = 3.0
    text_encoder: str = "minilm"  # minilm | tiny (tests)
    state_dir: str = ""  # a folder kept in the repository (EMA weights fp16 + step + config), resumed when OUT is lost
    model: PixelUNetConfig = field(default_factory=PixelUNetConfig)


def _encoder(kind: str):
    from model.text_encoder import TextEncoderConfig, TinyTextEncoder, build_text_encoder

    return TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=384)) if kind == "tiny" else \
        build_text_encoder(TextEncoderConfig())


def conditions(te, prompts: list[str], plans: list, drop: list[bool]) -> dict:
    """Pooled prompt, layout raster, box weights and pooled phrases of a batch (zeros where dropped)."""
    B = len(prompts)
    states, mask = te.encode(prompts)
    m = mask[..., None].float()
    text = (states.float() * m).sum(1) / m.sum(1).clamp_min(1)
    n = max(1, max(len(p.subjects) if p is not None else 0 for p in plans))
    D = text.shape[1]
    layout = torch.zeros(B, LAYOUT_CHANNELS, FRAMES, SIDE, SIDE)
    masks = torch.zeros(B, n, FRAMES, SIDE, SIDE)
    phrases = torch.zeros(B, n, D)
    for i, plan in enumerate(plans):
        if plan is None or plan.is_empty():
            continue
        layout[i] = torch.from_numpy(rasterize_layout(plan, FRAMES, SIDE))
        if drop[i]:
            continue
        k = len(plan.subjects)
        masks[i, :k] = torch.from_numpy(subject_masks(plan, FRAMES, SIDE))
        ps, pm = te.encode([s.label for s in plan.subjects])
        pm = pm[..., None].float()
        phrases[i, :k] = (ps.float() * pm).sum(1) / pm.sum(1).clamp_min(1)
    text[torch.tensor(drop, dtype=torch.bool)] = 0
    return {"text_vec": text, "layout": layout, "masks": masks, "phrases": phrases}


def _to_pixels(clips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)


def train(cfg: ProbeConfig) -> dict:
    from model.precision import autocast, choose_dtype
    from model.prompt_enhancer import RuleEnhancer
    from training.data import sample_stream, truth_layout, with_planned_labels
    from training.world.vocab import enhancer_vocabulary

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype, why = choose_dtype()
    print(f"compute dtype: {why}", flush=True)
    net = PixelUNet(cfg.model)
    ema = copy.deepcopy(net).eval()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    step, hours = 0, 0.0
    ck = out / "checkpoint.pt"
    if ck.is_file():
        st = torch.load(ck, weights_only=False)
        net.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, hours = st["step"], st["hours"]
        print(f"resumed at step {step}", flush=True)
    elif cfg.state_dir and (Path(cfg.state_dir) / "state.json").is_file():  # OUT lost: the committed EMA weights
        from safetensors.torch import load_file

        sd = {k: v.float() for k, v in load_file(str(Path(cfg.state_dir) / "model.safetensors")).items()}
        net.load_state_dict(sd)
        ema.load_state_dict(sd)
        meta = json.loads((Path(cfg.state_dir) / "state.json").read_text())
        step, hours = int(meta["step"]), float(meta["hours"])
        print(f"resumed at step {step} from the committed state {cfg.state_dir} (the optimiser's moments start "
              "again)", flush=True)
    te = _encoder(cfg.text_encoder)
    enh = RuleEnhancer(enhancer_vocabulary())
    stream = sample_stream(("t2v",), cfg.seed * 7919 + step)
    rng = np.random.default_rng([cfg.seed, step])
    g = torch.Generator().manual_seed(cfg.seed * 31 + step)
    print(f"parameters: {sum(p.numel() for p in net.parameters())}", flush=True)
    log = open(out / "log.jsonl", "a")
    t_start = t0 = time.time()
    losses = []
    while True:
        if cfg.steps and step >= cfg.steps:
            break
        if not cfg.steps and time.time() - t_start > 60 * cfg.minutes:
            break
        samples = [next(stream) for _ in range(cfg.batch)]
        enhanced = [enh.enhance(s.request) for s in samples]
        plans = [with_planned_labels(truth_layout(s), e.layout) for s, e in zip(samples, enhanced)]
        drop = list(rng.random(cfg.batch) < cfg.p_drop_text)
        c = conditions(te, [e.prompt for e in enhanced], plans, drop)
        x0 = _to_pixels(np.stack([s.target for s in samples]))
        if cfg.crop_frames < FRAMES:  # a run of frames: the net has no absolute time, so it samples all 16 later
            f0 = int(rng.integers(0, FRAMES - cfg.crop_frames + 1))
            sl = slice(f0, f0 + cfg.crop_frames)
            x0 = x0[:, :, sl].contiguous()
            c = {**c, "layout": c["layout"][:, :, sl].contiguous(), "masks": c["masks"][:, :, sl].contiguous()}
        noise = torch.randn(x0.shape, generator=g)
        s = fm.sample_training_s(cfg.batch, g, 1.0, uniform_fraction=0.3)
        xs = fm.add_noise(x0, noise, s)
        with autocast("cpu", dtype):
            v = net(xs, s, **c)
        err = (v.float() - fm.velocity_target(x0, noise)) ** 2
        w = 1.0 + cfg.fg_weight * c["layout"][:, 3:4].clamp(0, 1)  # occupancy channel: inside the boxes
        loss = (err * w).mean() / w.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1 - decay)
        step += 1
        losses.append(loss.item())
        if step % 20 == 0:
            el = time.time() - t0
            rec = {"step": step, "loss": round(float(np.mean(losses)), 5), "clips_per_s": round(20 * cfg.batch / el, 2),
                   "hours": round(hours + el / 3600, 4)}
            hours, t0, losses = rec["hours"], time.time(), []
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % 200 == 0:
            _save(ck, net, ema, opt, step, hours + (time.time() - t0) / 3600, cfg)
    hours += (time.time() - t0) / 3600
    _save(ck, net, ema, opt, step, hours, cfg)
    if cfg.state_dir:
        save_state(Path(cfg.state_dir), ema, step, hours, cfg)
    return {"step": step, "hours": round(hours, 4)}


def _save(path: Path, net, ema, opt, step: int, hours: float, cfg: ProbeConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "hours": hours, "config": asdict(cfg)}, tmp)
    tmp.replace(path)


def save_state(state_dir: Path, ema: PixelUNet, step: int, hours: float, cfg: ProbeConfig) -> None:
    """What a new machine needs to go on (small, committed): the EMA weights in fp16 and the step, hours, config."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in ema.state_dict().items()}, str(state_dir / "model.safetensors"))
    (state_dir / "state.json").write_text(json.dumps({
        "step": step, "hours": round(hours, 4), "config": asdict(cfg),
        "resume": f"python -m training.pixel_probe --out {cfg.out} --state-dir {state_dir} --minutes M"}, indent=1))


@torch.no_grad()
def sample(net: PixelUNet, te, prompt: str, plan, seed: int, steps: int = 20, guidance: float = 3.0,
           shift: float = 3.0) -> np.ndarray:
    """One clip (T, H, W, 3) uint8 from the prompt and the plan: Euler on the shifted schedule, guidance on
    the prompt and the phrases (the layout kept in both branches, as the pipeline does)."""
    c = conditions(te, [prompt, prompt], [plan, plan], [False, True])
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(1, 3, FRAMES, SIDE, SIDE, generator=g)
    sig = fm.schedule(steps, shift)
    for i in range(steps):
        s = float(sig[i])
        v = net(torch.cat([x, x]), torch.full((2,), s), **c)
        v = v[1:] + guidance * (v[:1] - v[1:])
        x = fm.euler_step(x, v, s, float(sig[i + 1]))
    return ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()


def score(cfg: ProbeConfig, split: str = "train") -> dict:
    """The EMA model on `score_cases` t2v compositions of `split`, the planner's layout from the request."""
    from model.prompt_enhancer import RuleEnhancer
    from training.evaluate import bench_cases, score_case, summarize
    from training.world.vocab import enhancer_vocabulary

    ck = Path(cfg.out) / "checkpoint.pt"
    if ck.is_file():
        st = torch.load(ck, weights_only=False)
        net = PixelUNet(PixelUNetConfig(**st["config"]["model"])).eval()
        net.load_state_dict(st["ema"])
    else:  # the committed state only
        from safetensors.torch import load_file

        st = json.loads((Path(cfg.state_dir) / "state.json").read_text())
        net = PixelUNet(PixelUNetConfig(**st["config"]["model"])).eval()
        net.load_state_dict({k: v.float() for k, v in load_file(str(Path(cfg.state_dir) / "model.safetensors")).items()})
    te = _encoder(cfg.text_encoder)
    enh = RuleEnhancer(enhancer_vocabulary())
    scores, clips = [], []
    for case in bench_cases("t2v", cfg.score_cases, split=split):
        e = enh.enhance(case.request)
        clip = sample(net, te, e.prompt, e.layout, case.request.seed, cfg.sample_steps, cfg.guidance)
        clips.append(clip)
        scores.append(score_case(case, clip))
    summ = summarize(scores)
    rep = {"step": st["step"], "hours": st["hours"], "split": split, "cases": len(scores),
           "success": summ["success"],
           "t2v": {k[:-5]: round(v, 4) for k, v in summ.items() if k.endswith("_pass")}}
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / f"score_{split}.json").write_text(json.dumps(rep, indent=1))
    np.save(Path(cfg.out) / f"clips_{split}.npy", np.stack(clips))
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pixel_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=ProbeConfig.out)
    ap.add_argument("--minutes", type=float, default=ProbeConfig.minutes)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=ProbeConfig.batch)
    ap.add_argument("--width", type=int, default=PixelUNetConfig.width)
    ap.add_argument("--crop-frames", type=int, default=ProbeConfig.crop_frames)
    ap.add_argument("--cases", type=int, default=ProbeConfig.score_cases)
    ap.add_argument("--split", default="train", choices=("train", "bench"))
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--state-dir", default="", help="committed state (EMA fp16 + step): written at the end, resumed "
                                                       "from when OUT is lost")
    ap.add_argument("--text-encoder", default="minilm", choices=("minilm", "tiny"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = ProbeConfig(out=a.out, minutes=a.minutes, steps=a.steps, batch=a.batch, score_cases=a.cases,
                      crop_frames=a.crop_frames, state_dir=a.state_dir,
                      text_encoder=a.text_encoder, model=PixelUNetConfig(width=a.width))
    if not a.score_only:
        print(json.dumps(train(cfg)), flush=True)
    print(json.dumps(score(cfg, a.split)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
