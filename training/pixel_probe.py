"""Train, score and export the pixel-space text-to-video generator (issue 18; model/pixel_generator.py). It
began as a probe (can a pixel-space (2+1)D U-Net, given the layout plan and the plan's phrase grounding, draw
the shapes where the latent DiT draws colour clouds?) and is now how the shipped `pixel_generator/` is made.

Why: a one-step x0 estimate of the 2x-path DiT from a noised truth (truth layout, s <= 0.7) shows
every shape; at s = 0.9 it is a blob, and sampled from pure noise the subjects come out as speckled clouds:
the shape is never chosen from the words at high noise. Here every input that says where and what is pixel
aligned (the layout raster, and each subject's phrase painted into its box), the body is convolutional
(a shape inside a box is a local pattern), there is no VAE (no latent ceiling, no off-manifold speckle),
and skips at full resolution keep the low-noise regime a local denoising problem.

    python -m training.pixel_probe --out runs/pixel_probe --minutes 50          # train (resumable), then score
    python -m training.pixel_probe --out runs/pixel_probe --score-only          # score the saved model
    python -m training.pixel_probe --out runs/pixel_probe --export DIR          # a model directory with it

It trains on the t2v family (flow matching, model/flow_matching.py), one thread, and scores the EMA model
with the world's checker on training-split compositions (the planner's layout from the request, never the
truth), the figures the 2x-path DiT is compared on (`--split train --family t2v`). The studio loads what
`--export` writes (the pipeline sends it the families in its config's `tasks`).
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

from model import flow_matching as fm
from model.pixel_generator import CONTEXT_CHANNELS, FRAMES
from model.pixel_generator import PixelGenerator as PixelUNet
from model.pixel_generator import PixelGeneratorConfig as PixelUNetConfig
from model.pixel_generator import pixel_conditions as conditions
from model.pixel_generator import pixel_context, request_context, sample_pixels


@dataclass
class ProbeConfig:
    out: str = "runs/pixel_probe"
    minutes: float = 50.0  # wall-clock training budget of this call (resumes from OUT/checkpoint.pt)
    batch: int = 8
    lr: float = 5e-4
    lr_final: float = 0.0  # > 0: the learning rate falls from lr to this over the call (cosine, by steps or minutes)
    ema: float = 0.995
    p_drop_text: float = 0.1  # classifier-free guidance: the prompt and the phrases dropped together
    fg_weight: float = 3.0  # extra weight on pixels inside the subjects' boxes
    crop_frames: int = 8  # frames per training clip (a random run of the 16): half the compute of whole clips
    seed: int = 0
    steps: int = 0  # > 0: stop after this many steps of this call (tests)
    score_cases: int = 24
    sample_steps: int = 20
    guidance: float = 3.0
    text_encoder: str = "minilm"  # minilm | tiny (tests)
    state_dir: str = ""  # a folder kept in the repository (EMA weights fp16 + step + config), resumed when OUT is lost
    # the task families drawn (name:weight,...) and scored; with model.context the request's pixels are read
    # (model/pixel_generator.pixel_context)
    families: str = "t2v"
    score_families: str = "t2v"
    # start a context model from a text-to-video state (its input weights grown with zeros: grow_context)
    init_from: str = ""
    device: str = "cpu"  # cuda on a GPU host (scripts/train_gpu.sh)
    workers: int = 0  # data worker processes (0: the training process makes its batches)
    model: PixelUNetConfig = field(default_factory=PixelUNetConfig)


def _encoder(kind: str, dim: int = 384):
    from model.text_encoder import TextEncoderConfig, TinyTextEncoder, build_text_encoder

    return TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=dim)) if kind == "tiny" else \
        build_text_encoder(TextEncoderConfig())


def _load_committed(state_dir: str) -> tuple[dict, dict]:
    """The committed state: (EMA weights as fp32 tensors, state.json)."""
    from safetensors.torch import load_file

    d = Path(state_dir)
    weights = {k: v.float() for k, v in load_file(str(d / "model.safetensors")).items()}
    return weights, json.loads((d / "state.json").read_text())


def _to_pixels(clips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)


def train(cfg: ProbeConfig) -> dict:
    from model.precision import autocast, choose_dtype

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = cfg.device
    dtype, why = choose_dtype(dev)
    print(f"device {dev}, compute dtype: {why}", flush=True)
    net = PixelUNet(cfg.model)
    ema = copy.deepcopy(net).eval()
    step, hours = 0, 0.0
    ck = out / "checkpoint.pt"
    st = torch.load(ck, weights_only=False, map_location="cpu") if ck.is_file() else None
    if st is not None:
        net.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        step, hours = st["step"], st["hours"]
        print(f"resumed at step {step}", flush=True)
    elif cfg.state_dir and (Path(cfg.state_dir) / "state.json").is_file():  # OUT lost: the committed EMA weights
        sd, meta = _load_committed(cfg.state_dir)
        net.load_state_dict(sd)
        ema.load_state_dict(sd)
        step, hours = int(meta["step"]), float(meta["hours"])
        print(f"resumed at step {step} from the committed state {cfg.state_dir} (the optimiser's moments start "
              "again)", flush=True)
    elif cfg.init_from:  # a new run from a trained (text-to-video) state: its step and hours carry on
        from model.pixel_generator import grow_context

        sd, meta = _load_committed(cfg.init_from)
        if cfg.model.context and sd["inp.weight"].shape[1] + cfg.model.context == net.inp.weight.shape[1]:
            sd = grow_context(sd, cfg.model.context)
        net.load_state_dict(sd)
        ema.load_state_dict(sd)
        step, hours = int(meta["step"]), float(meta["hours"])
        print(f"started from {cfg.init_from} (step {step}, {hours:.2f} CPU h)", flush=True)
    net.to(dev)
    ema.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    if st is not None:
        opt.load_state_dict(st["opt"])  # (its moments move to the parameters' device)
        for group in opt.param_groups:  # this call's learning rate (a later call may anneal it)
            group["lr"] = cfg.lr
    te = _encoder(cfg.text_encoder, cfg.model.text_dim)
    if dev != "cpu" and hasattr(te, "to"):
        te.to(dev)
    from training.train_omni import parse_families

    names, weights = parse_families(cfg.families)
    stream = prepared_stream(names, weights, cfg.seed * 7919 + step, bool(cfg.model.context), cfg.workers)
    rng = np.random.default_rng([cfg.seed, step])
    g = torch.Generator().manual_seed(cfg.seed * 31 + step)
    print(f"parameters: {sum(p.numel() for p in net.parameters())}", flush=True)
    log = open(out / "log.jsonl", "a")
    t_start = t0 = time.time()
    losses = []
    first_step = step
    while True:
        if cfg.steps and step - first_step >= cfg.steps:
            break
        if not cfg.steps and time.time() - t_start > 60 * cfg.minutes:
            break
        if cfg.lr_final > 0:  # anneal within this call: the fraction of its steps (or minutes) done
            done = (step - first_step) / cfg.steps if cfg.steps else (time.time() - t_start) / (60 * cfg.minutes)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        items = [next(stream) for _ in range(cfg.batch)]
        drop = list(rng.random(cfg.batch) < cfg.p_drop_text)
        c = conditions(te, [it["prompt"] for it in items], None, drop, rasters=[it["rasters"] for it in items],
                       contexts=[it["context"] for it in items] if cfg.model.context else None)
        x0 = _to_pixels(np.stack([np.asarray(it["target"]) for it in items]))
        if cfg.crop_frames < FRAMES:  # a run of frames: the net has no absolute time, so it samples all 16 later
            # (with context, half the crops hold frame 0, where a first frame is given)
            f0 = 0 if cfg.model.context and rng.random() < 0.5 else int(rng.integers(0, FRAMES - cfg.crop_frames + 1))
            sl = slice(f0, f0 + cfg.crop_frames)
            x0 = x0[:, :, sl].contiguous()
            c = {**c, **{k: c[k][:, :, sl].contiguous() for k in ("layout", "masks", "context") if k in c}}
        noise = torch.randn(x0.shape, generator=g)
        s = fm.sample_training_s(cfg.batch, g, 1.0, uniform_fraction=0.3)
        if dev != "cpu":
            x0, noise, s = x0.to(dev, non_blocking=True), noise.to(dev, non_blocking=True), s.to(dev)
            c = {k: v.to(dev, non_blocking=True) for k, v in c.items()}
        xs = fm.add_noise(x0, noise, s)
        with autocast(dev, dtype):
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
            rec = {"step": step, "loss": round(float(np.mean(losses)), 5), "lr": float(f"{opt.param_groups[0]['lr']:.3g}"),
                   "clips_per_s": round(20 * cfg.batch / el, 2),
                   "hours": round(hours + el / 3600, 4)}
            hours, t0, losses = rec["hours"], time.time(), []
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % 200 == 0:
            _save(ck, net, ema, opt, step, hours + (time.time() - t0) / 3600, cfg)
        if step % 1000 == 0 and cfg.state_dir:  # what a new machine resumes from, kept as it goes
            save_state(Path(cfg.state_dir), ema, step, hours + (time.time() - t0) / 3600, cfg)
    hours += (time.time() - t0) / 3600
    _save(ck, net, ema, opt, step, hours, cfg)
    if cfg.state_dir:
        save_state(Path(cfg.state_dir), ema, step, hours, cfg)
    return {"step": step, "hours": round(hours, 4)}


def _prepare(smp, enh, context: bool) -> dict:
    """One training item from a world sample (in a data worker on a GPU host): the target clip, the enhanced
    prompt, the truth's layout named as the planner names it, rasterised (plan_rasters), and the request's
    pixels (pixel_context)."""
    from model.conditioning import storyboard_panels
    from model.pixel_generator import plan_rasters
    from training.data import truth_layout, with_planned_labels

    e = enh.enhance(smp.request)
    plan = with_planned_labels(truth_layout(smp), e.layout)
    ctx = pixel_context(list(smp.request.images), smp.request.video, plan, e.task,
                        subjects=list(smp.request.subjects.values()), panels=storyboard_panels(smp.request))[0] \
        if context else None
    return {"target": smp.target, "prompt": e.prompt, "rasters": plan_rasters(plan), "context": ctx}


def _prepared_local(names, weights, seed: int, context: bool, rank: int = 0, world: int = 1):
    from model.prompt_enhancer import RuleEnhancer
    from training.data import sample_stream
    from training.world.vocab import enhancer_vocabulary

    enh = RuleEnhancer(enhancer_vocabulary())
    for smp in sample_stream(names, seed, rank, world, weights=weights):
        yield _prepare(smp, enh, context)


def _shareable(item: dict) -> dict:
    """An item's arrays as tensors (zero-copy): a worker hands tensors over in shared memory, arrays by pickling."""
    r = item["rasters"]
    return {**item, "target": torch.from_numpy(item["target"]),
            "context": None if item["context"] is None else torch.from_numpy(item["context"]),
            "rasters": None if r is None else (torch.from_numpy(r[0]), torch.from_numpy(r[1]), r[2])}


def prepared_stream(names, weights, seed: int, context: bool, workers: int = 0):
    """Endless training items (_prepare); with `workers`, that many processes render, plan and rasterise them
    (torch's DataLoader, each worker its own seed sequence): a GPU step is faster than one core makes a batch."""
    if workers <= 0:
        return _prepared_local(names, weights, seed, context)
    import torch.utils.data as tud

    from training.data import _as_is

    class _Items(tud.IterableDataset):
        def __iter__(self):
            info = tud.get_worker_info()
            return map(_shareable, _prepared_local(names, weights, seed, context, info.id, info.num_workers))

    return iter(tud.DataLoader(_Items(), batch_size=None, num_workers=workers, prefetch_factor=32,
                               persistent_workers=True, collate_fn=_as_is))


def _save(path: Path, net, ema, opt, step: int, hours: float, cfg: ProbeConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "hours": hours, "config": asdict(cfg)}, tmp)
    tmp.replace(path)


def save_state(state_dir: Path, ema: PixelUNet, step: int, hours: float, cfg: ProbeConfig) -> None:
    """What a new machine needs to go on (small, committed): the EMA weights in fp16 and the step, hours, config."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().cpu().contiguous() for k, v in ema.state_dict().items()},
              str(state_dir / "model.safetensors"))
    (state_dir / "state.json").write_text(json.dumps({
        "step": step, "hours": round(hours, 4), "config": asdict(cfg),
        "resume": f"python -m training.pixel_probe --out {cfg.out} --state-dir {state_dir} --minutes M"}, indent=1))


def export(cfg: ProbeConfig, base_model: str, out_dir: str, tasks: tuple[str, ...] = ("t2v", "reasoning")) -> Path:
    """A model directory: `base_model` (copied) with the probe's EMA weights as its pixel_generator/ (fp16),
    the recipe and hours in the component's notes; the pipeline runs it for the families in `tasks`."""
    import shutil

    from model.pixel_generator import PixelGenerator

    st = torch.load(Path(cfg.out) / "checkpoint.pt", weights_only=False, map_location="cpu")
    gen = PixelGenerator(PixelUNetConfig(**{**st["config"]["model"], "tasks": tuple(tasks)}))
    gen.load_state_dict(st["ema"])
    gen.config.notes = {"trained_by": "training.pixel_probe", "step": st["step"], "cpu_hours": round(st["hours"], 3),
                        "recipe": {k: v for k, v in st["config"].items() if k != "model"}}
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base_model, out, ignore=shutil.ignore_patterns("*.json.tmp"))
    gen.save_pretrained(out / "pixel_generator", dtype=torch.float16)
    index = json.loads((out / "model_index.json").read_text())
    index["components"]["pixel_generator"] = "PixelGenerator"
    (out / "model_index.json").write_text(json.dumps(index, indent=1))
    return out


def score(cfg: ProbeConfig, split: str = "train") -> dict:
    """The EMA model on `score_cases` t2v compositions of `split`, the planner's layout from the request."""
    from model.prompt_enhancer import RuleEnhancer
    from training.evaluate import bench_cases, score_case, summarize
    from training.world.vocab import enhancer_vocabulary

    ck = Path(cfg.out) / "checkpoint.pt"
    if ck.is_file():
        st = torch.load(ck, weights_only=False, map_location="cpu")
        net = PixelUNet(PixelUNetConfig(**st["config"]["model"])).eval()
        net.load_state_dict(st["ema"])
    else:  # the committed state only
        sd, st = _load_committed(cfg.state_dir)
        net = PixelUNet(PixelUNetConfig(**st["config"]["model"])).eval()
        net.load_state_dict(sd)
    te = _encoder(cfg.text_encoder)
    enh = RuleEnhancer(enhancer_vocabulary())
    rep = {"step": st["step"], "hours": st["hours"], "split": split}
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    from training.train_omni import parse_families

    for fam in parse_families(cfg.score_families)[0]:
        scores, clips = [], []
        for case in bench_cases(fam, cfg.score_cases, split=split):
            e = enh.enhance(case.request)
            ctx, keep = request_context(net, case.request, e.layout, e.task)
            clip = sample_pixels(net, te, e.prompt, e.layout, case.request.seed, cfg.sample_steps, cfg.guidance,
                                 context=ctx, keep=keep)
            clips.append(clip)
            scores.append(score_case(case, clip))
        summ = summarize(scores)
        rep[fam] = {"cases": len(scores), "success": summ["success"],
                    **{k[:-5]: round(v, 4) for k, v in summ.items() if k.endswith("_pass")}}
        np.save(Path(cfg.out) / f"clips_{split}_{fam}.npy", np.stack(clips))
        print(json.dumps({fam: rep[fam]}), flush=True)
    (Path(cfg.out) / f"score_{split}.json").write_text(json.dumps(rep, indent=1))
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pixel_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=ProbeConfig.out)
    ap.add_argument("--minutes", type=float, default=ProbeConfig.minutes)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=ProbeConfig.batch)
    ap.add_argument("--lr", type=float, default=ProbeConfig.lr, help="learning rate of this call (also on resuming)")
    ap.add_argument("--lr-final", type=float, default=0.0, help="> 0: anneal from --lr to this over the call (cosine)")
    ap.add_argument("--width", type=int, default=PixelUNetConfig.width)
    ap.add_argument("--crop-frames", type=int, default=ProbeConfig.crop_frames)
    ap.add_argument("--cases", type=int, default=ProbeConfig.score_cases)
    ap.add_argument("--split", default="train", choices=("train", "bench"))
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--export", default="", help="write a model directory: --base (copied) with this run's EMA as "
                                                 "its pixel_generator/, then stop")
    ap.add_argument("--base", default="assets/models/omni-world", help="the model directory --export starts from")
    ap.add_argument("--tasks", default="t2v,reasoning", help="with --export: the families the pipeline sends it (measured: "
                                                              "text-only reasoning requests resolve to t2v-like prompts)")
    ap.add_argument("--state-dir", default="", help="committed state (EMA fp16 + step): written at the end, resumed "
                                                       "from when OUT is lost")
    ap.add_argument("--text-encoder", default="minilm", choices=("minilm", "tiny"))
    ap.add_argument("--families", default=ProbeConfig.families, help="families drawn in training, name:weight,...")
    ap.add_argument("--score-families", default="", help="families scored (default: those trained)")
    ap.add_argument("--context", action="store_true", help="a model that reads the request's pixels "
                                                            "(first frame, references, context video)")
    ap.add_argument("--init-from", default="", help="start from this committed state (a t2v one is grown)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU host")
    ap.add_argument("--workers", type=int, default=0, help="data worker processes (a GPU host's CPU cores)")
    ap.add_argument("--no-score", action="store_true", help="train only (no scoring after training)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = ProbeConfig(out=a.out, minutes=a.minutes, steps=a.steps, batch=a.batch, lr=a.lr, lr_final=a.lr_final, score_cases=a.cases,
                      crop_frames=a.crop_frames, state_dir=a.state_dir,
                      text_encoder=a.text_encoder, families=a.families, score_families=a.score_families or a.families,
                      init_from=a.init_from, device=a.device, workers=a.workers,
                      model=PixelUNetConfig(width=a.width, context=CONTEXT_CHANNELS if a.context else 0))
    if a.export:
        print(f"wrote {export(cfg, a.base, a.export, tuple(t for t in a.tasks.split(',') if t))}")
        return 0
    if not a.score_only:
        print(json.dumps(train(cfg)), flush=True)
    if not a.no_score:
        print(json.dumps(score(cfg, a.split)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
