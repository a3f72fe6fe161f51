"""Train the causal video VAE on OmniWorld clips and images.

    python -m training.train_vae --out runs/vae [--steps 4000] [--batch 16] [--resume]
    python -m training.train_vae --out runs/vae_dec --init runs/vae/final --decoder-only --steps 1500 --lr 3e-4 \
        [--install-into runs/final]

Resumable (checkpoint every --save-every steps), bf16 autocast where this CPU runs bf16 natively (model/precision.py), one thread.
`--decoder-only` fine-tunes the decoder of an existing VAE (`--init`) with its encoder frozen: the
latent space, its scale, and so every generator trained on it, stay valid, while reconstructions
(and so every decoded clip) get sharper. `--install-into MODEL_DIR` then puts it into a model
directory, after checking that its encoder is the model's own.

At the end the latent scale is set so latents have unit standard deviation, and the
component is saved as `OUT/final` (config.json + model.safetensors).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model.precision import autocast, resolve_dtype
from model.vae import VAEConfig, VideoVAE, to_model_range
from training.data import SFT_FAMILIES, clip_batch, sample_stream
from training.train_omni import lr_at  # one learning-rate schedule (warm-up, cosine) for every stage


@dataclass
class VAETrainConfig:
    out: str = "runs/vae"
    steps: int = 4000
    batch: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    kl_weight: float = 1e-6
    save_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int = 1
    latent_channels: int = 16
    spatial_down: int = 4  # 2: latents at half resolution (16x16 for 32x32 clips), for a sharper VAE
    init: str = ""  # start from this VAE directory (config.json + model.safetensors)
    decoder_only: bool = False  # with init: train the decoder only; the latent space stays as it is
    dtype: str = "auto"  # compute dtype: auto (probe this machine, model/precision.py) | fp32 | bf16


def vae_loss(vae: VideoVAE, x: torch.Tensor, kl_weight: float, frozen_encoder: bool = False) -> tuple[torch.Tensor, dict]:
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_encoder):
        mean, logvar = vae.encode_dist(x)
    # a frozen encoder: the decoder learns to invert exactly what it will be given, the posterior
    # mean (what the generator is trained to produce); otherwise the usual reparameterised sample
    z = mean if frozen_encoder else mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    rec = vae.decode(z * vae.config.scaling, x.shape[1])  # decode() undoes the latent scale (1 until training ends)
    mse = (rec - x).pow(2).mean()
    l1 = (rec - x).abs().mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    return mse + 0.5 * l1 + kl_weight * kl, {"mse": mse.item(), "kl": kl.item()}


def main(cfg: VAETrainConfig, resume: bool = True) -> VideoVAE:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    compute, why = resolve_dtype(cfg.dtype)
    print(f"compute dtype: {why}", flush=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.decoder_only and not cfg.init:
        raise SystemExit("--decoder-only needs --init DIR: the VAE whose decoder to fine-tune")
    vae = VideoVAE.from_pretrained(cfg.init) if cfg.init else VideoVAE(VAEConfig(latent_channels=cfg.latent_channels,
                                                                          spatial_down=cfg.spatial_down))
    params = list(vae.parameters())
    if cfg.decoder_only:
        vae.enc.requires_grad_(False)
        params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        print(f"resumed at step {step}", flush=True)
    stream = sample_stream(SFT_FAMILIES, cfg.seed + step)
    rng = np.random.default_rng(cfg.seed + step)
    log = open(out / "log.jsonl", "a")
    t0 = time.time()
    vae.train()
    while step < cfg.steps:
        clips, images = clip_batch(stream, cfg.batch, rng=rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with autocast("cpu", compute):
            loss, info = vae_loss(vae, to_model_range(torch.from_numpy(clips)), cfg.kl_weight, cfg.decoder_only)
            if len(images):
                li, _ = vae_loss(vae, to_model_range(torch.from_numpy(images)), cfg.kl_weight, cfg.decoder_only)
                loss = loss + 0.5 * li
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0:
            psnr = -10 * math.log10(max(info["mse"] / 4, 1e-10))  # range [-1, 1] -> [0, 1]
            rec = {"step": step, "loss": round(loss.item(), 5), "psnr": round(psnr, 2), "kl": round(info["kl"], 3),
                   "lr": round(lr_at(step, cfg), 6), "s": round(time.time() - t0, 1)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.save_every == 0 or step == cfg.steps:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "config": asdict(cfg)},
                       out / "checkpoint.tmp")
            (out / "checkpoint.tmp").replace(ckpt)
    vae.eval()
    if not cfg.decoder_only:  # a frozen encoder keeps the scale the generator was trained with
        vae.config.scaling = latent_scale(vae, sample_stream(SFT_FAMILIES, 12_345))  # fixed clips: same scale on re-export
    vae.save_pretrained(out / "final")
    return vae


@torch.no_grad()
def latent_scale(vae: VideoVAE, stream, batches: int = 8) -> float:
    zs = []
    for _ in range(batches):
        clips, _ = clip_batch(stream, 16, image_fraction=0.0)
        zs.append(vae.encode(to_model_range(torch.from_numpy(clips))))
    return float(1.0 / torch.cat(zs).std().clamp_min(1e-3))


def install_decoder(vae_dir: str | Path, model_dir: str | Path) -> None:
    """Replace a model directory's VAE with a decoder fine-tune of it: refused unless the encoder
    (weights and latent scale) is exactly the model's, since the generator speaks its latents."""
    new, old = VideoVAE.from_pretrained(vae_dir), VideoVAE.from_pretrained(Path(model_dir) / "vae")
    a, b = new.state_dict(), old.state_dict()
    same = (a.keys() == b.keys() and new.config.scaling == old.config.scaling
            and all(torch.equal(a[k], b[k]) for k in a if k.startswith("enc.")))
    if not same:
        raise SystemExit(f"{vae_dir}: its encoder is not the one of {model_dir}/vae; only a decoder fine-tune "
                         "(--decoder-only --init MODEL/vae) can replace a model's VAE")
    new.save_pretrained(Path(model_dir) / "vae")


def parse(argv: list[str] | None = None) -> tuple[VAETrainConfig, bool, str | None]:
    """(config, resume, model directory to install the VAE into or None)."""
    ap = argparse.ArgumentParser(prog="python -m training.train_vae")
    for name, f in VAETrainConfig.__dataclass_fields__.items():
        if isinstance(f.default, bool):
            ap.add_argument("--" + name.replace("_", "-"), action="store_true")
        else:
            ap.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=f.default)
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--install-into", default=None, help="afterwards, put the VAE into this model directory")
    a = ap.parse_args(argv)
    cfg = VAETrainConfig(**{k: getattr(a, k) for k in VAETrainConfig.__dataclass_fields__})
    return cfg, not a.fresh, a.install_into


if __name__ == "__main__":
    c, r, into = parse()
    main(c, r)
    if into:
        install_decoder(Path(c.out) / "final", into)
        print(f"installed {c.out}/final into {into}/vae")
    sys.exit(0)
