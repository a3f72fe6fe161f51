"""Flow-DPO on the Wan VACE transformer through a peft LoRA: the same loss as training/dpo.py
(`flow_dpo_loss`, the same noise-level distribution, the same per-step draws from (seed, step),
checkpoint and resume), on the studio's preference pairs of a Wan version.

Wan's flow matching is the project's convention (DESIGN 3.2): x_s = (1 - s) x0 + s noise, the
transformer predicts v = noise - x0 at timestep s * 1000 (FlowMatchEulerDiscreteScheduler steps
x += (s_next - s) v). The winner and the loser of a pair share the noise, the noise level, the
prompt embedding and VACE's control latents (the request mapped as at generation time); the
reference model is the same transformer with the adapter switched off, so no second copy of
the weights is held.

    adapter_dir, log = train_lora(backend, pairs, DPOConfig(lora_rank=16, steps=60), out="runs/job-7")

The result is a LoRA directory (`pytorch_lora_weights.safetensors`, diffusers' format): the
candidate version is the parent's model plus this adapter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model import flow_matching as fm
from .dpo import DPOConfig, RunCheckpoint, flow_dpo_loss

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # attention projections of every Wan block
DEFAULT_RANK = 8  # DPOConfig.lora_rank 0 means full fine-tuning for the embedded model; Wan trains LoRA only


def _normalise(pipe, z: torch.Tensor) -> torch.Tensor:
    cfg = pipe.vae.config
    mean = torch.tensor(cfg.latents_mean, device=z.device, dtype=torch.float32).view(1, cfg.z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.latents_std, device=z.device, dtype=torch.float32).view(1, cfg.z_dim, 1, 1, 1)
    return (z.float() - mean) * inv_std


@torch.no_grad()
def encode_clip(pipe, frames: np.ndarray, device) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> normalised Wan latents (1, C, T', h, w), as the pipeline's own latents."""
    from PIL import Image

    # PIL frames, as at generation: the processor scales PIL to [-1, 1] but takes arrays as [0, 1] already
    video = pipe.video_processor.preprocess_video([Image.fromarray(f) for f in frames], frames.shape[1],
                                                  frames.shape[2])  # (1, 3, T, H, W)
    z = pipe.vae.encode(video.to(device=device, dtype=pipe.vae.dtype)).latent_dist.mode()
    return _normalise(pipe, z)


@torch.no_grad()
def pair_conditions(backend, request, device, dtype):
    """Prompt embedding, VACE control latents and reference latents of a request, as at generation."""
    pipe = backend.pipe
    enhanced, _, inp = backend.prepare(request)  # the prompt and VACE inputs the generation used
    prompt_embeds, _ = pipe.encode_prompt(enhanced.prompt, do_classifier_free_guidance=False,
                                          max_sequence_length=backend.settings.max_sequence_length, device=device)
    video, mask, refs = pipe.preprocess_conditions(inp.video, inp.mask, inp.reference_images, 1, request.height,
                                                   request.width, request.frames, torch.float32, device)
    cond = pipe.prepare_video_latents(video, mask, refs, None, device)
    masks = pipe.prepare_masks(mask, refs, None)
    control = torch.cat([cond, masks], dim=1).to(dtype)
    n_ref = len(refs[0])
    ref_latents = cond[:, : pipe.vae.config.z_dim, :n_ref].float()  # the clean reference frames VACE prepends
    return prompt_embeds.to(dtype), control, ref_latents


def add_lora(transformer, rank: int):
    from peft import LoraConfig

    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, lora_dropout=0.0,
                                       init_lora_weights=True), adapter_name="dpo")
    for n, p in transformer.named_parameters():
        p.requires_grad_("lora_" in n)
    return [p for p in transformer.parameters() if p.requires_grad]


def lora_state(transformer) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer, adapter_name="dpo")


def train_lora(backend, pairs: list[dict], cfg: DPOConfig, out: str | Path, on_step=None,
               checkpoint: str | None = None, save_every: int = 0) -> tuple[Path | None, list[dict]]:
    """Flow-DPO through a LoRA on `backend`'s transformer (a private WanBackend: its transformer gains
    the adapter). Returns the saved adapter directory (None when canceled) and the log.

    `on_step(step, record) -> bool` stops the run when it returns True; with `checkpoint` the adapter,
    optimiser and log are saved every `save_every` steps and on a stop, and an existing checkpoint is
    continued (the same weights as a run straight through)."""
    pipe = backend.pipe
    tr = pipe.transformer
    device, dtype = tr.device, tr.dtype
    torch.manual_seed(cfg.seed)
    rank = cfg.lora_rank or DEFAULT_RANK
    params = add_lora(tr, rank)
    tr.train()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    log: list[dict] = []
    start = 0
    ckpt = RunCheckpoint(checkpoint, cfg, len(pairs))
    st = ckpt.load()
    if st is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(tr, st["lora"], adapter_name="dpo")
        opt.load_state_dict(st["opt"])
        start, log = int(st["step"]), list(st["log"])

    def save(step: int) -> None:
        ckpt.save(step, log, lora=lora_state(tr), opt=opt.state_dict())

    cache: dict[int, tuple] = {}  # per pair: conditions and clean latents (they do not change)

    def prepared(i: int):
        if i not in cache:
            p = pairs[i]
            emb, control, refs = pair_conditions(backend, p["request"], device, dtype)
            xw, xl = (torch.cat([refs, encode_clip(pipe, p[k], device)], dim=2) for k in ("winner", "loser"))
            cache[i] = (emb, control, xw, xl, float(p.get("weight", 1.0)))
        return cache[i]

    stopped = False
    for step in range(start + 1, cfg.steps + 1):
        rng = np.random.default_rng([cfg.seed, step])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        idx = rng.choice(len(pairs), size=min(cfg.batch, len(pairs)), replace=len(pairs) < cfg.batch)
        rows = []
        for i in idx:
            emb, control, xw, xl, w = prepared(int(i))
            noise = torch.randn(xw.shape, generator=g).to(device)  # shared by winner and loser
            s = fm.sample_training_s(1, g, cfg.time_shift).to(device)
            t = fm.to_timestep(s).to(dtype)
            xs_w, xs_l = fm.add_noise(xw, noise, s).to(dtype), fm.add_noise(xl, noise, s).to(dtype)

            def velocity(x):
                return tr(hidden_states=x, timestep=t, encoder_hidden_states=emb, control_hidden_states=control,
                          return_dict=False)[0]

            v_w, v_l = velocity(xs_w), velocity(xs_l)
            with torch.no_grad():
                tr.disable_adapters()  # the reference model: the parent's own weights
                ref_w, ref_l = velocity(xs_w), velocity(xs_l)
                tr.enable_adapters()
            rows.append((v_w, v_l, ref_w, ref_l, fm.velocity_target(xw, noise), fm.velocity_target(xl, noise), w))
        cat = [torch.cat([r[k] for r in rows]) for k in range(6)]
        loss, margin = flow_dpo_loss(*cat, cfg.beta, torch.tensor([r[6] for r in rows], device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec = {"step": step, "loss": round(loss.item(), 5), "margin": round(float(margin.mean()), 5),
               "accuracy": round(float((margin > 0).float().mean()), 3)}
        log.append(rec)
        stopped = on_step is not None and bool(on_step(step, rec))
        if stopped or (save_every and step % save_every == 0):
            save(step)
        if stopped:
            break
    tr.eval()
    if stopped:
        return None, log
    out = Path(out)
    type(pipe).save_lora_weights(out, transformer_lora_layers=lora_state(tr), safe_serialization=True)
    return out, log
