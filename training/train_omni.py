"""Train the Omni-Generator with flow matching on OmniWorld (pretraining and SFT share this loop).

    python -m training.pretrain --out runs/pretrain --vae runs/vae/final [--steps N] ...
    python -m training.sft --out runs/sft --init runs/pretrain/model [--steps N] ...
    torchrun --nproc_per_node 2 -m training.pretrain ...   (data parallel: gloo on CPU, nccl on GPU)

Resumable from `OUT/checkpoint.pt`; bf16 autocast where this machine runs bf16 natively
(model/precision.py decides and logs it); EMA of the weights; one log line per
interval in `OUT/log.jsonl`; the EMA model is exported as a model directory `OUT/model`
at every checkpoint, ready for `python -m training.evaluate --model OUT/model`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from model import flow_matching as fm
from model.conditioning import build_conditions
from model.generator import GeneratorConfig, OmniGenerator
from model.pipeline import OmniPipeline, PipelineConfig
from model.precision import autocast, resolve_dtype
from model.prompt_enhancer import RuleEnhancer
from model.text_encoder import TextEncoderConfig, TinyTextEncoder, build_text_encoder
from model.vae import VAEConfig, VideoVAE, to_model_range
from training.data import sample_stream, truth_layout, with_planned_labels
from training.transplant import MOVED, transplant
from training.world.vocab import enhancer_vocabulary


@dataclass
class TrainConfig:
    stage: str = "pretrain"  # pretrain | sft (names the run; the families decide the data)
    out: str = "runs/pretrain"
    families: str = "t2v,i2v"  # comma-separated task families, each optionally weighted: "t2v:3,i2v,edit_add"
    vae: str = "runs/vae/final"  # a VAE component directory ('tiny' = random tiny VAE, tests)
    init: str = ""  # a model directory to start from (SFT starts from pretraining)
    transplant_vae: str = ""  # with init: continue in this VAE's latent space (training/transplant.py; set patch)
    transplant_mode: str = "procrustes"  # how the latent layers start (training/transplant.py): procrustes | fit | fresh
    transplant_lr_mult: float = 1.0  # learning-rate multiplier of the transplanted latent layers
    text_encoder: str = "minilm"  # minilm | tiny
    steps: int = 20000
    batch: int = 32  # per process
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup: int = 200
    weight_decay: float = 0.0
    ema: float = 0.999
    p_drop_text: float = 0.1  # classifier-free guidance: text dropped
    p_drop_visual: float = 0.1  # ... and, independently, every visual reference dropped
    time_shift: float = 1.0  # training noise-level shift (flow_matching.sample_training_s)
    uniform_time: float = 0.0  # share of noise levels drawn uniformly (covers the schedule's ends)
    sample_shift: float = 3.0  # the sampler's schedule shift stored with the model
    fg_weight: float = 0.0  # extra loss weight on latent positions the target's subjects cover (0 = plain MSE)
    fg_max_s: float = 1.0  # ... only at noise levels up to this (above it the weighting biases the layout)
    log_every: int = 20
    save_every: int = 200
    seed: int = 0
    threads: int = 1
    dtype: str = "auto"  # compute dtype: auto (probe this machine, model/precision.py) | fp32 | bf16
    dim: int = 256
    depth: int = 8
    heads: int = 4
    patch: int = 2  # latent pixels per token side: 2 on a 4x VAE's 8x8 latents, 4 keeps the same tokens on a 2x VAE's 16x16
    input_skip: bool = False  # the generator's time-gated input path (model/generator.py); added to an --init model that lacks it
    layout: bool = False  # the layout plan as a pixel-aligned input (model/layout.py); added to an --init model that lacks it
    refine: int = 0  # > 0: the generator's latent-resolution head of this width (GeneratorConfig.refine_channels); added to an --init model that lacks it
    refine_lr_mult: float = 1.0  # learning-rate multiplier of the latent head
    grounding: int = 0  # > 0: phrase grounding of this many channels (GeneratorConfig.grounding_channels); added to an --init model that lacks it
    grounding_lr_mult: float = 20.0  # learning-rate multiplier of the (new, zero-initialised) grounding path, as the layout path's
    layout_lr_mult: float = 20.0  # learning-rate multiplier of the (new, zero-initialised) layout path: at the body's
    # fine-tuning lr, Adam moves it by about lr per step, far too slowly (measured: 600 steps at 1e-4 left its
    # weights at 1/20 of the input embedding's scale)
    p_drop_layout: float = 0.15  # share of samples trained without their layout (the model still draws without a plan)
    ema_warmup: int = 100  # EMA decay ramps up as min(ema, (1 + step) / (ema_warmup + step)): early EMA follows the model
    state_dir: str = ""  # a folder kept in the repository: EMA weights (fp16) + step + schedule, resumed when OUT is lost
    device: str = "cpu"  # cpu | cuda (one process per GPU under torchrun)
    workers: int = 0  # world-rendering worker processes feeding the batches (0 = render in the training process)
    max_minutes: float = 0.0  # stop (checkpoint, export) after this much wall-clock time; 0 = run all the steps

def lr_at(step: int, cfg) -> float:
    """Linear warm-up then cosine decay to min_lr (any config with lr, min_lr, warmup, steps)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p))


def _rope_split(head_dim: int) -> tuple[int, int, int]:
    t = (head_dim // 4) // 2 * 2
    rest = head_dim - t
    h = rest // 2 // 2 * 2
    return (t, h, rest - h)


def build_components(cfg: TrainConfig, resume_state: Path | None = None):
    if resume_state is not None:  # the committed state: a model directory of the EMA weights (its VAE inside:
        # a transplanted run resumes without the VAE it was moved into, nor a second transplant)
        pipe = OmniPipeline.from_pretrained(resume_state)
        return pipe.vae, pipe.generator.train(), pipe.text_encoder, json.loads((resume_state / "state.json").read_text())["earlier"]
    if cfg.transplant_vae and not cfg.init:
        raise SystemExit("--transplant-vae moves a trained generator: give the model to move with --init DIR "
                         "(to train from scratch in that VAE's space, use --vae DIR --patch P)")
    if cfg.transplant_vae and not (Path(cfg.transplant_vae) / "config.json").is_file():
        raise SystemExit(f"--transplant-vae {cfg.transplant_vae}: no VAE there (expected config.json and "
                         "model.safetensors, as python -m training.train_vae writes to OUT/final)")
    if cfg.init:
        pipe = OmniPipeline.from_pretrained(cfg.init)
        if cfg.transplant_vae:
            vae = VideoVAE.from_pretrained(cfg.transplant_vae).eval()
            gen, info = transplant(pipe.generator.eval(), pipe.vae.eval(), vae, cfg.patch, mode=cfg.transplant_mode)
            print("transplant:", json.dumps(info), flush=True)
            return vae, with_paths(gen, cfg).train(), pipe.text_encoder, \
                {**pipe.config.notes, "transplant": info}
        return pipe.vae, with_paths(pipe.generator, cfg).train(), pipe.text_encoder, \
            pipe.config.notes
    if cfg.vae == "tiny":
        vae = VideoVAE(VAEConfig(channels=(8, 8, 8), latent_channels=4))
    else:
        vae = VideoVAE.from_pretrained(cfg.vae)
    te = TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=32)) if cfg.text_encoder == "tiny" \
        else build_text_encoder(TextEncoderConfig())
    text_dim = te.config.dim
    from model.layout import LAYOUT_CHANNELS

    gcfg = GeneratorConfig(latent_channels=vae.config.latent_channels, patch=cfg.patch, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                           text_dim=text_dim, rope_split=_rope_split(cfg.dim // cfg.heads), input_skip=cfg.input_skip,
                           layout_channels=LAYOUT_CHANNELS if cfg.layout else 0, refine_channels=cfg.refine,
                           grounding_channels=cfg.grounding)
    return vae.eval(), OmniGenerator(gcfg), te, {}


def _with_path(gen: OmniGenerator, what: str, prefix: str, **change) -> OmniGenerator:
    """The generator with an optional path added (a config change that only adds zero-initialised
    parameters under `prefix`): the same weights, so it computes exactly what it did until training opens it."""
    new = OmniGenerator(replace(gen.config, **change))
    missing, unexpected = new.load_state_dict(gen.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(prefix) for k in missing), (missing, unexpected)
    n = sum(p.numel() for k, p in new.named_parameters() if k.startswith(prefix))
    print(f"{what} added: {n} parameters, starting as no change", flush=True)
    return new


def with_input_skip(gen: OmniGenerator, cfg: TrainConfig) -> OmniGenerator:
    """The generator with the time-gated input path when `cfg.input_skip` asks for it and it has none."""
    if not cfg.input_skip or gen.config.input_skip:
        return gen
    return _with_path(gen, "input skip", "skip_ada.", input_skip=True)


def with_layout(gen: OmniGenerator, cfg: TrainConfig) -> OmniGenerator:
    """The generator with the layout path when `cfg.layout` asks for it and it has none."""
    from model.layout import LAYOUT_CHANNELS

    if not cfg.layout or gen.config.layout_channels:
        return gen
    return _with_path(gen, "layout path", "layout_embed.", layout_channels=LAYOUT_CHANNELS)


def with_refine(gen: OmniGenerator, cfg: TrainConfig) -> OmniGenerator:
    """The generator with the latent-resolution head (GeneratorConfig.refine_channels) when `cfg.refine` asks
    for one and it has none."""
    if not cfg.refine or gen.config.refine_channels:
        return gen
    return _with_path(gen, "latent head", ("refine.", "ground_cell."), refine_channels=cfg.refine)


def with_grounding(gen: OmniGenerator, cfg: TrainConfig) -> OmniGenerator:
    """The generator with phrase grounding (GeneratorConfig.grounding_channels) when `cfg.grounding` asks for it
    and it has none."""
    if not cfg.grounding or gen.config.grounding_channels:
        return gen
    return _with_path(gen, "phrase grounding", "ground_", grounding_channels=cfg.grounding)


def with_paths(gen: OmniGenerator, cfg: TrainConfig) -> OmniGenerator:
    return with_grounding(with_refine(with_layout(with_input_skip(gen, cfg), cfg), cfg), cfg)


def training_loss(gen, vae, te, enhancer, samples, cfg: TrainConfig, rng: np.random.Generator,
                  gen_fwd=None) -> torch.Tensor:
    """Flow-matching loss of one batch of world samples (shared by the tests and every stage)."""
    B = len(samples)
    requests = [s.request for s in samples]
    enhanced = [enhancer.enhance(r) for r in requests]
    prompts = [e.prompt for e in enhanced]
    drop_t = list(rng.random(B) < cfg.p_drop_text)
    drop_v = list(rng.random(B) < cfg.p_drop_visual)
    base = gen.module if hasattr(gen, "module") else gen
    layouts = None
    if base.config.layout_channels:
        drop_l = rng.random(B) < cfg.p_drop_layout
        layouts = [None if d else truth_layout(smp) for smp, d in zip(samples, drop_l)]
        if base.config.grounding_channels:  # the phrases the planner gives at inference
            layouts = [with_planned_labels(lay, e.layout) for lay, e in zip(layouts, enhanced)]
    pieces = build_conditions(requests, prompts, vae, te, drop_text=drop_t, drop_visual=drop_v, layouts=layouts,
                              grounding=base.config.grounding_channels > 0)
    dev = next(base.parameters()).device
    with torch.no_grad():
        x0 = vae.encode(to_model_range(torch.from_numpy(np.stack([s.target for s in samples]))).to(dev))
    g = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    noise = torch.randn(x0.shape, generator=g).to(dev)  # drawn on the CPU: the same draws on any device
    s = fm.sample_training_s(B, g, cfg.time_shift, uniform_fraction=cfg.uniform_time).to(dev)
    xs = fm.add_noise(x0, noise, s)
    model = gen_fwd or gen
    cond = base.embed_conditions(pieces)
    v = model(xs, fm.to_timestep(s), cond)
    err = (v.float() - fm.velocity_target(x0, noise)) ** 2
    if cfg.fg_weight <= 0:
        return err.mean()
    # A weight that depends on x0 moves the loss minimiser from E[v | x_s] towards the weighted mean:
    # where x_s says little about x0 (high noise), subjects get predicted everywhere (measured: after
    # 1,500 steps at fg_weight 3 on every level, background accuracy fell from 0.96 to 0.46 with
    # colour blobs all over the frame). So the weighting is kept to levels s <= fg_max_s.
    gate = (s <= cfg.fg_max_s).float().view(-1, 1, 1, 1)
    w = 1.0 + cfg.fg_weight * gate * foreground_weights(samples, x0.shape[2:]).to(dev)
    return (err.mean(1) * w).sum() / w.sum()


def foreground_weights(samples, latent_thw: tuple[int, int, int]) -> torch.Tensor:
    """(B, t, h, w) in {0, 1}: latent positions whose pixels show any subject of the target.

    Subjects are small (a few % of the pixels), so plain MSE is dominated by the background and
    a short run learns the background first and the subjects last; weighting the subject
    positions up (`fg_weight`) spends the loss where the prompt's colour, shape and motion are.
    """
    t, h, w = latent_thw
    masks = []
    for smp in samples:
        m = np.zeros(smp.target.shape[:3], bool)
        for sub in smp.truth.subjects:
            if sub.mask is not None and sub.mask.shape == m.shape:
                m |= sub.mask
        masks.append(m)
    m = torch.from_numpy(np.stack(masks)).float()[:, None]  # (B, 1, T, H, W)
    # latent frame k covers frames 2k and 2k+1, a latent pixel 4x4 (or 2x2) pixels: max-pool to that grid
    return F.adaptive_max_pool3d(m, (t, h, w))[:, 0]


def export_model(ema: OmniGenerator, vae, te, cfg: TrainConfig, step: int, out: Path, hours: float,
                 earlier: dict | None = None, name: str = "model") -> Path:
    """Save the EMA model as a model directory; `earlier` are the notes of the model this stage started from."""
    earlier = earlier or {}
    notes = {"stage": cfg.stage, "step": step, "train_config": asdict(cfg), "hours": round(hours, 3),
             "hours_total": round(hours + float(earlier.get("hours_total", earlier.get("hours", 0.0))), 3),
             "previous_stages": earlier.get("previous_stages", []) + ([{k: earlier[k] for k in ("stage", "step", "hours", "train_config") if k in earlier}] if earlier else [])}
    if cfg.transplant_vae:  # this stage moved the generator into another VAE's latent space
        notes["transplant"] = {**earlier.get("transplant", {}), "vae": cfg.transplant_vae}
    # the settings chosen for the model this stage started from (edit start and paste-back levels, tuned on
    # training-split cases) carry over: a stage that trains the generator does not re-tune them
    carried = {}
    if cfg.init and (Path(cfg.init) / "model_index.json").is_file():
        init_cfg = json.loads((Path(cfg.init) / "model_index.json").read_text()).get("config", {})
        carried = {k: init_cfg[k] for k in ("edit_strength", "preserve_threshold", "preserve_grow") if k in init_cfg}
        if cfg.transplant_vae:  # levels tuned for another VAE do not carry (re-tune: training.tune_edit_strength)
            carried = {}
    pipe = OmniPipeline(vae, ema, te, RuleEnhancer(enhancer_vocabulary(), te),
                        PipelineConfig(version=f"{cfg.stage}-{step}", shift=cfg.sample_shift, notes=notes, **carried))
    return pipe.save_replacing(out / name)


def main(cfg: TrainConfig, resume: bool = True) -> dict:
    torch.set_num_threads(cfg.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.manual_seed(cfg.seed)
    device = cfg.device
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    compute, why = resolve_dtype(cfg.dtype, device)
    if rank == 0:
        print(f"compute dtype: {why}", flush=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    state_dir = Path(cfg.state_dir) if cfg.state_dir else None
    resume_state = None
    if resume and not ckpt.is_file() and state_dir is not None and (state_dir / "state.json").is_file():
        resume_state = state_dir  # OUT was lost (a new machine): the committed EMA weights, step and schedule
    vae, gen, te, earlier = build_components(cfg, resume_state)
    vae.to(device)
    gen.to(device)
    if device != "cpu" and hasattr(te, "to"):
        te.to(device)
    for p in vae.parameters():
        p.requires_grad_(False)
    ema = copy.deepcopy(gen).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    def own_group(n: str) -> bool:
        return (cfg.transplant_vae and n.startswith(MOVED)) or n.startswith(("layout_embed.", "refine.", "ground_"))

    groups = [{"params": [p for n, p in gen.named_parameters() if not own_group(n)], "mult": 1.0}]
    if gen.layout_embed is not None:
        groups.append({"params": list(gen.layout_embed.parameters()), "mult": cfg.layout_lr_mult})
    if gen.ground_embed is not None:
        groups.append({"params": [p for n, p in gen.named_parameters() if n.startswith("ground_")],
                       "mult": cfg.grounding_lr_mult})
    if gen.refine is not None:  # the latent head starts at zero beside a trained body: it may learn faster
        groups.append({"params": list(gen.refine.parameters()), "mult": cfg.refine_lr_mult})
    if cfg.transplant_vae:  # the latent layers start far from trained: they may learn faster than the body
        groups.append({"params": [p for n, p in gen.named_parameters() if n.startswith(MOVED)],
                       "mult": cfg.transplant_lr_mult})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    step, hours_before = 0, 0.0
    if resume_state is not None:
        st = json.loads((resume_state / "state.json").read_text())
        step, hours_before = int(st["step"]), float(st["hours"])
        if rank == 0:
            print(f"resumed {cfg.out} at step {step} from the committed state {resume_state} "
                  "(EMA weights; the optimiser's moments start again)", flush=True)
    if resume and ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        gen.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        try:
            opt.load_state_dict(st["opt"])
        except ValueError:  # the parameter groups changed (a learning-rate group added): moments start again
            if rank == 0:
                print("optimiser groups changed since the checkpoint: its moments start again", flush=True)
        step, hours_before = int(st["step"]), float(st.get("hours", 0.0))
        if rank == 0:
            print(f"resumed {cfg.out} at step {step}", flush=True)
    # conditions differ per batch (no annotation, no video...), so some embeddings go unused in a step
    fwd = torch.nn.parallel.DistributedDataParallel(
        gen, find_unused_parameters=True, device_ids=[torch.device(device).index] if device.startswith("cuda") else None) \
        if world > 1 else gen
    families, weights = parse_families(cfg.families)
    stream = sample_stream(families, cfg.seed * 1_000_003 + step, rank, world, weights, workers=cfg.workers)
    rng = np.random.default_rng([cfg.seed, step, rank])
    enhancer = RuleEnhancer(enhancer_vocabulary())
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    t0, losses = time.time(), []
    gen.train()
    last = {}
    started = time.time()
    while step < cfg.steps:
        if cfg.max_minutes and time.time() - started > 60 * cfg.max_minutes:
            if rank == 0:
                print(f"time budget of {cfg.max_minutes} min reached at step {step}", flush=True)
            break
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, cfg) * grp.get("mult", 1.0)
        samples = [next(stream) for _ in range(cfg.batch)]
        with autocast(device, compute):
            loss = training_loss(gen, vae, te, enhancer, samples, cfg, rng, gen_fwd=fwd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (cfg.ema_warmup + step)) if cfg.ema_warmup else cfg.ema
        with torch.no_grad():
            for pe, pg in zip(ema.parameters(), gen.parameters()):
                pe.lerp_(pg, 1 - decay)
        step += 1
        losses.append(loss.item())
        if rank == 0 and step % cfg.log_every == 0:
            el = time.time() - t0
            last = {"step": step, "loss": round(float(np.mean(losses)), 5), "grad_norm": round(float(gn), 3),
                    "lr": round(lr_at(step, cfg), 7), "samples_per_s": round(cfg.batch * world * len(losses) / el, 2),
                    "hours": round(hours_before + (time.time() - t0) / 3600, 4), "dtype": str(compute)[6:]}
            print(json.dumps(last), flush=True)
            log.write(json.dumps(last) + "\n")
            log.flush()
            losses, t0, hours_before = [], time.time(), last["hours"]
        over = cfg.max_minutes and time.time() - started > 60 * cfg.max_minutes
        if rank == 0 and (step % cfg.save_every == 0 or step == cfg.steps or over):
            hours = hours_before + (time.time() - t0) / 3600
            torch.save({"model": gen.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                        "hours": hours, "config": asdict(cfg)}, out / "checkpoint.tmp")
            (out / "checkpoint.tmp").replace(ckpt)
            export_model(ema, vae, te, cfg, step, out, hours, earlier)
            if state_dir is not None:
                save_state(state_dir, ema, vae, te, cfg, step, hours, earlier)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return last


def save_state(state_dir: Path, ema: OmniGenerator, vae, te, cfg: TrainConfig, step: int, hours: float,
               earlier: dict) -> None:
    """What a new machine needs to go on (kept in the repository, small): the EMA model as a model
    directory with fp16 generator weights, and state.json with the step, hours, schedule and config."""
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    export_model(ema, vae, te, cfg, step, tmp.parent, hours, earlier, name=tmp.name)
    ema.save_pretrained(tmp / "generator", dtype=torch.float16)
    (tmp / "state.json").write_text(json.dumps({
        "step": step, "hours": round(hours, 4), "earlier": earlier, "config": asdict(cfg),
        "schedule": {"lr": cfg.lr, "min_lr": cfg.min_lr, "warmup": cfg.warmup, "steps": cfg.steps,
                     "lr_now": lr_at(step, cfg), "ema": cfg.ema, "ema_warmup": cfg.ema_warmup},
        "resume": f"python -m training.{cfg.stage} --out {cfg.out} --state-dir {state_dir} (same flags)"}, indent=1))
    if state_dir.exists():
        import shutil

        shutil.rmtree(state_dir)
    tmp.rename(state_dir)


def parse_families(spec: str) -> tuple[tuple[str, ...], dict[str, float]]:
    """"t2v:3,i2v,edit_add" -> (("t2v", "i2v", "edit_add"), {"t2v": 3.0, "i2v": 1.0, "edit_add": 1.0})."""
    from training.world import FAMILIES

    names, weights = [], {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, w = part.partition(":")
        if name not in FAMILIES:
            raise SystemExit(f"--families: unknown family {name!r}; known: {', '.join(FAMILIES)}")
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise SystemExit(f"--families: weight of {name!r} must be a number, got {w!r}")
        if weights[name] <= 0:
            raise SystemExit(f"--families: weight of {name!r} must be positive")
        names.append(name)
    if not names:
        raise SystemExit("--families: no family given")
    return tuple(names), weights


def parse(argv: list[str] | None, defaults: dict) -> tuple[TrainConfig, bool]:
    ap = argparse.ArgumentParser()
    base = TrainConfig(**defaults)
    for name, f in TrainConfig.__dataclass_fields__.items():
        d = getattr(base, name)
        kind = (lambda v: v.lower() in ("1", "true", "yes")) if isinstance(d, bool) else type(d)
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=d)
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    a = ap.parse_args(argv)
    return TrainConfig(**{k: getattr(a, k) for k in TrainConfig.__dataclass_fields__}), not a.fresh
