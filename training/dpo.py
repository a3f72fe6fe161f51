"""Flow-DPO: Diffusion-DPO (Wallace et al. 2023) on the flow-matching velocity.

For a preference pair (winner x_w, loser x_l of the same request) the winner and the loser
share the noise and the noise level; the policy's and a frozen reference model's velocity
errors give

    d = (err_w - ref_err_w) - (err_l - ref_err_l)       (errors mean-reduced per sample)
    loss = -log sigmoid(-beta * d),   implicit reward margin = -beta * d

weighted per pair (annotator trust x agreement). Noise levels come from the same
distribution as pretraining (flow_matching.sample_training_s). The generator is trained in
full or through LoRA adapters (peft), which can be merged back for shipping.

A model with a pixel-space generator (model/pixel_generator.py) renders the families it serves there: the pairs
of those requests train the pixel generator (the same loss on pixels, its conditions and context as at
inference), the other pairs the latent generator; a round changes whichever generator rendered its pairs.

This module is the algorithm and imports nothing of the studio; DPO on a studio's votes is a
studio job (studio_backend.train_jobs, which calls `train`):

    python -m studio_backend.train_jobs --home DIR [--steps N] [--beta B] [--lora-rank R]   (a DPO job, run here)
    python -m studio_backend.train_jobs --home DIR --resume                                  (continue it after a crash)
"""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model import flow_matching as fm
from model.conditioning import generator_conditions
from model.pipeline import OmniPipeline
from model.vae import to_model_range

LORA_TARGETS = ["qkv", "proj", "mlp.0", "mlp.2"]


@dataclass
class DPOConfig:
    out: str = "runs/dpo"
    steps: int = 60  # these defaults ran the measured round (README); 150 steps, beta 500, lr 5e-5 overfit
    batch: int = 8  # pairs per step
    lr: float = 2e-5
    beta: float = 100.0  # the errors are small per element; beta sets the scale of the margin
    lora_rank: int = 0  # 0 = full fine-tuning
    # 1 = train only on pairs that no vote contradicts on any dimension (the overall winner was
    # not voted worse on prompt, motion, identity, ...): DPO then cannot trade one dimension for another
    consistent: int = 0
    # > 0: plus this weight times the flow-matching error on each pair's winner (an SFT anchor on the preferred
    # clips, as RPO / "DPO + SFT" regularise preference training); beta / 2 pulls as hard as DPO does at the start
    sft_weight: float = 0.0
    # 1 = DenseDPO (Wu et al. 2025): where a pair's votes judged segments (quarters of the clips), one DPO term per
    # preferred segment on that segment's frames (the pixel generator's pairs; the others, and pairs without segment
    # labels, keep the whole-clip term)
    segments: int = 0
    time_shift: float = 1.0
    seed: int = 0
    log_every: int = 10
    threads: int = 1


def flow_dpo_loss(v_w, v_l, ref_v_w, ref_v_l, target_w, target_l, beta: float,
                  weights: torch.Tensor | None = None, sft_weight: float = 0.0,
                  segments: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-pair implicit reward margin). Tensors (B, ...); errors mean-reduced per pair. `sft_weight` adds
    that times the winner's own flow-matching error (DPOConfig.sft_weight).

    `segments` (B, S) in {-1, 0, 1}, for video tensors (B, C, T, H, W): DenseDPO's segment-level preferences. The
    frames are cut in S equal runs; a pair with any non-zero label gets one DPO term per labelled run (+1: the winner
    preferred there, -1: the loser), averaged, and its SFT anchor on the preferred clip's frames of those runs; its
    margin is the labelled runs' mean. A row of zeros keeps the whole-clip term."""
    dims = tuple(range(1, v_w.dim()))
    sq = lambda v, t: (v.float() - t).pow(2)  # noqa: E731
    e = [sq(v_w, target_w), sq(v_l, target_l), sq(ref_v_w, target_w), sq(ref_v_l, target_l)]
    err_w, err_l, ref_w, ref_l = (x.mean(dims) for x in e)
    margin = -beta * ((err_w - ref_w) - (err_l - ref_l))
    losses = -F.logsigmoid(margin) + sft_weight * err_w
    if segments is not None and bool((segments != 0).any()):
        lab = segments.to(margin.dtype)
        n_seg, T = lab.shape[1], v_w.shape[2]
        runs = torch.linspace(0, T, n_seg + 1).round().long().tolist()
        per = [torch.stack([x[:, :, a:b].mean(dim=(1, 2, 3, 4)) for a, b in zip(runs[:-1], runs[1:])], 1) for x in e]
        sw, sl, rw, rl = per  # (B, S): each run's error
        m_seg = -beta * ((sw - rw) - (sl - rl)) * lab  # positive where the labelled clip is favoured
        on = (lab != 0).to(margin.dtype)
        count = on.sum(1).clamp_min(1)
        preferred = torch.where(lab >= 0, sw, sl)
        seg_losses = ((-F.logsigmoid(m_seg) + sft_weight * preferred) * on).sum(1) / count
        has = on.sum(1) > 0
        losses = torch.where(has, seg_losses, losses)
        margin = torch.where(has, (m_seg * on).sum(1) / count, margin)
    if weights is not None:
        losses = losses * weights
        return losses.sum() / weights.sum().clamp_min(1e-8), margin.detach()
    return losses.mean(), margin.detach()


def add_lora(generator, rank: int, alpha: float | None = None):
    """Wrap the generator's attention and MLP linears with LoRA adapters (peft)."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=LORA_TARGETS, lora_dropout=0.0)
    model = inject_adapter_in_model(cfg, generator)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


def lora_state(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def merge_lora(model, base_config):
    """Fold the adapters into plain weights; returns an OmniGenerator with the merged weights."""
    from model.generator import OmniGenerator

    merged = OmniGenerator(base_config)
    sd = {}
    own = model.state_dict()
    for name, w in own.items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        sd[key] = w
    for name in list(own):
        if name.endswith("lora_A.default.weight"):
            stem = name[: -len(".lora_A.default.weight")]
            A = own[name]
            B = own[stem + ".lora_B.default.weight"]
            layer = dict(model.named_modules())[stem]
            scale = layer.scaling["default"]
            sd[stem + ".weight"] = sd[stem + ".weight"] + scale * (B @ A)
    merged.load_state_dict(sd)
    return merged.eval()


def pixel_pair_batch_loss(policy, ref, pipe: OmniPipeline, pairs: list[dict], cfg: DPOConfig, g: torch.Generator):
    """Flow-DPO on the pixel generator: the clips in [-1, 1] as they were rendered, the conditions (words, plan,
    context) the pipeline gives that request (model/pixel_generator.pixel_conditions, request_context)."""
    from model.pixel_generator import pixel_conditions, request_context

    requests = [p["request"] for p in pairs]
    enhanced = [pipe.enhancer.enhance(r) for r in requests]
    contexts = [request_context(policy, r, e.layout, e.task)[0] for r, e in zip(requests, enhanced)]
    c = pixel_conditions(pipe.text_encoder, [e.prompt for e in enhanced], [e.layout for e in enhanced],
                         [False] * len(pairs), contexts=contexts if policy.config.context else None)
    px = lambda key: torch.from_numpy(np.stack([p[key] for p in pairs])).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)  # noqa: E731
    xw, xl = px("winner"), px("loser")
    noise = torch.randn(xw.shape, generator=g)  # shared by winner and loser
    s = fm.sample_training_s(len(pairs), g, cfg.time_shift)
    xs_w, xs_l = fm.add_noise(xw, noise, s), fm.add_noise(xl, noise, s)
    v_w, v_l = policy(xs_w, s, **c), policy(xs_l, s, **c)
    with torch.no_grad():
        ref_w, ref_l = ref(xs_w, s, **c), ref(xs_l, s, **c)
    w = torch.tensor([float(p.get("weight", 1.0)) for p in pairs])
    seg = segment_tensor(pairs) if cfg.segments else None
    return flow_dpo_loss(v_w, v_l, ref_w, ref_l, fm.velocity_target(xw, noise), fm.velocity_target(xl, noise),
                         cfg.beta, w, cfg.sft_weight, seg)


def segment_tensor(pairs: list[dict]) -> torch.Tensor | None:
    """The pairs' segment labels as a (B, S) tensor (zeros for a pair without them); None when no pair has any."""
    labelled = [p["segments"] for p in pairs if p.get("segments")]
    if not labelled:
        return None
    n = len(labelled[0])
    return torch.tensor([list(p["segments"]) if p.get("segments") else [0] * n for p in pairs], dtype=torch.float32)


def pixel_served(pipe: OmniPipeline, pair: dict) -> bool:
    """Whether the pipeline renders this pair's request with its pixel generator."""
    r = pair["request"]
    return pipe.pixel is not None and pipe._pixel_serves(r, pipe.enhancer.enhance(r))


def pair_batch_loss(policy, ref, pipe: OmniPipeline, pairs: list[dict], cfg: DPOConfig, g: torch.Generator):
    """pairs: {"request": MVLRequest, "winner": (T,H,W,3) uint8, "loser": ..., "weight": float}."""
    requests = [p["request"] for p in pairs]
    enhanced = [pipe.enhancer.enhance(r) for r in requests]
    # a layout model (v2) is judged on what it renders from the plan: both clips of a pair were rendered from
    # the same plan (the planner is seeded by the request, the two clips differ in the noise seed), so the
    # conditions carry that plan, as they do at inference
    pieces = generator_conditions(requests, enhanced, pipe.vae, pipe.text_encoder, policy.config,
                                  frames=pipe.config.frames)
    with torch.no_grad():
        xw = pipe.vae.encode(to_model_range(torch.from_numpy(np.stack([p["winner"] for p in pairs]))))
        xl = pipe.vae.encode(to_model_range(torch.from_numpy(np.stack([p["loser"] for p in pairs]))))
    B = len(pairs)
    noise = torch.randn(xw.shape, generator=g)  # shared by winner and loser
    s = fm.sample_training_s(B, g, cfg.time_shift)
    t = fm.to_timestep(s)
    cond = policy.embed_conditions(pieces)
    xs_w, xs_l = fm.add_noise(xw, noise, s), fm.add_noise(xl, noise, s)
    v_w = policy(xs_w, t, cond)
    v_l = policy(xs_l, t, cond)
    with torch.no_grad():
        rcond = ref.embed_conditions(pieces)
        ref_w = ref(xs_w, t, rcond)
        ref_l = ref(xs_l, t, rcond)
    w = torch.tensor([float(p.get("weight", 1.0)) for p in pairs])
    return flow_dpo_loss(v_w, v_l, ref_w, ref_l, fm.velocity_target(xw, noise), fm.velocity_target(xl, noise),
                         cfg.beta, w, cfg.sft_weight)


class RunCheckpoint:
    """One DPO run's checkpoint file (None: no checkpointing): its weights, optimiser, step and log, tagged with
    the run's settings and pair count so that another run's file is refused rather than continued."""

    def __init__(self, path: str | None, cfg: DPOConfig, n_pairs: int):
        from pathlib import Path

        self.path = Path(path) if path else None
        self.tag = {"config": asdict(cfg), "pairs": n_pairs}

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        st = torch.load(self.path, weights_only=False)
        if st.get("config") != self.tag["config"] or st.get("pairs") != self.tag["pairs"]:
            raise ValueError(f"{self.path} belongs to another run (different settings or pairs); "
                             "delete it to start over")
        return st

    def save(self, step: int, log: list[dict], **state) -> None:
        """Write to a temporary file, then replace: a crash mid-save leaves the previous checkpoint whole."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "step": step, "log": log, **self.tag}, tmp)
        tmp.replace(self.path)


def train(pipe: OmniPipeline, pairs: list[dict], cfg: DPOConfig, on_step=None, checkpoint: str | None = None,
          save_every: int = 0) -> tuple[OmniPipeline, list[dict]]:
    """DPO on the given pairs; returns a new pipeline (merged weights) and the log.

    `on_step(step, record) -> bool` may stop the run (cancel) by returning True. With
    `checkpoint` (a file path) the policy, optimiser and log are saved there every `save_every`
    steps and when the run stops, and a run started with an existing checkpoint continues from
    it. Each step draws its pairs and noise from (seed, step) alone, so a run that was stopped
    and resumed ends with the same weights as one that ran straight through.
    """
    torch.manual_seed(cfg.seed)
    # a pair only its segments prefer trains by its segments, which only the pixel generator's term reads
    pairs = [p for p in pairs if p.get("overall_preferred", True) or pixel_served(pipe, p)]
    in_pixels = {i for i, p in enumerate(pairs) if pixel_served(pipe, p)}
    in_latents = len(pairs) > len(in_pixels)
    ref = copy.deepcopy(pipe.generator).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    policy = copy.deepcopy(pipe.generator).train()
    if cfg.lora_rank > 0:
        policy = add_lora(policy, cfg.lora_rank)
    params = [p for p in policy.parameters() if p.requires_grad] if in_latents else []
    pixel_policy = pixel_ref = None
    if in_pixels:  # the pixel generator's pairs train it in full (1.6M parameters: no adapters needed)
        pixel_ref = copy.deepcopy(pipe.pixel).eval().requires_grad_(False)
        pixel_policy = copy.deepcopy(pipe.pixel).train()
        params += list(pixel_policy.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    log: list[dict] = []
    start = 0
    ckpt = RunCheckpoint(checkpoint, cfg, len(pairs))
    st = ckpt.load()
    if st is not None:
        policy.load_state_dict(st["policy"])
        if pixel_policy is not None:
            pixel_policy.load_state_dict(st["pixel_policy"])
        opt.load_state_dict(st["opt"])
        start, log = int(st["step"]), list(st["log"])

    def save(step: int) -> None:
        extra = {"pixel_policy": pixel_policy.state_dict()} if pixel_policy is not None else {}
        ckpt.save(step, log, policy=policy.state_dict(), opt=opt.state_dict(), **extra)

    step = start
    for step in range(start + 1, cfg.steps + 1):
        rng = np.random.default_rng([cfg.seed, step])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        idx = rng.choice(len(pairs), size=min(cfg.batch, len(pairs)), replace=len(pairs) < cfg.batch)
        pix = [pairs[i] for i in idx if i in in_pixels]
        lat = [pairs[i] for i in idx if i not in in_pixels]
        parts = []  # (loss, margins, pairs) of each generator's share of the batch
        if lat:
            parts.append((*pair_batch_loss(policy, ref, pipe, lat, cfg, g), len(lat)))
        if pix:
            parts.append((*pixel_pair_batch_loss(pixel_policy, pixel_ref, pipe, pix, cfg, g), len(pix)))
        loss = sum(l_ * n for l_, _, n in parts) / sum(n for _, _, n in parts)
        margin = torch.cat([m for _, m, _ in parts])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec = {"step": step, "loss": round(loss.item(), 5), "margin": round(float(margin.mean()), 5),
               "accuracy": round(float((margin > 0).float().mean()), 3)}
        log.append(rec)
        stop = on_step is not None and on_step(step, rec)
        if stop or (save_every and step % save_every == 0):
            save(step)
        if stop:
            break
    gen = merge_lora(policy, pipe.generator.config) if cfg.lora_rank > 0 else policy.eval()
    pixel = pixel_policy.eval() if pixel_policy is not None else pipe.pixel
    new = OmniPipeline(pipe.vae, gen, pipe.text_encoder, pipe.enhancer, copy.deepcopy(pipe.config), sr=pipe.sr,
                       pixel=pixel)
    new.config.notes = {**pipe.config.notes, "dpo": {"config": asdict(cfg), "pairs": len(pairs),
                                                     "pixel_pairs": len(in_pixels), "final": log[-1] if log else None}}
    return new, log


if __name__ == "__main__":
    sys.exit("the DPO command line is the studio's job system now: python -m studio_backend.train_jobs --home DIR "
             "[--resume] (same options)")
