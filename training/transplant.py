"""Move a trained Omni-Generator into another VAE's latent space.

The generator's transformer works on tokens; only three linear layers touch latents: `x_embed`
(noisy target patches in), `latent_embed` (clean condition patches in) and `final` (velocity
patches out). When a new VAE covers the same pixels per token (a 2x VAE with patch 4 and a 4x VAE
with patch 2 both give one token per 8x8 pixels), everything else carries over unchanged, and the
three layers are composed with linear maps between the two latent spaces fitted on the same
world clips encoded by both VAEs:

    old patch ~= A new patch + a      (least squares; clean condition patches read through A)
    old patch ~= Q new patch          (Q Q^T = I, orthogonal Procrustes; noisy target patches in,
                                       velocity out through Q^T, so unit noise stays unit noise)

The fit's R^2 says how much of each space the other explains; training then adapts the rest
(`python -m training.sft --init OLD_MODEL --transplant-vae NEW_VAE --patch 4 ...`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from model.generator import OmniGenerator
from model.vae import VideoVAE, to_model_range

MOVED = ("x_embed.", "latent_embed.", "final.")  # not final_ada: it works on tokens


def world_clips(n: int, seed: int = 0) -> np.ndarray:
    """(n, T, H, W, 3) uint8 target clips of every family, training split."""
    from training.data import SFT_FAMILIES, sample_stream

    stream = sample_stream(tuple(SFT_FAMILIES), seed)
    return np.stack([next(stream).target for _ in range(n)])


@torch.no_grad()
def patch_tokens(vae: VideoVAE, gen: OmniGenerator, clips: np.ndarray, batch: int = 16) -> torch.Tensor:
    """Latent patches (N, C*p*p) of the clips, as `gen` tokenises them."""
    out = [gen.patchify(vae.encode(to_model_range(torch.from_numpy(clips[i:i + batch]))))[0]
           for i in range(0, len(clips), batch)]
    return torch.cat(out).flatten(0, 1).float()


def fit_affine(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Least squares dst ~= src @ M.T + m; returns (M, m, R^2 of dst)."""
    X = torch.cat([src.double(), torch.ones(len(src), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(X, dst.double()).solution  # (in + 1, out)
    pred = X @ sol
    r2 = 1.0 - float(((dst.double() - pred) ** 2).sum() / ((dst.double() - dst.double().mean(0)) ** 2).sum())
    return sol[:-1].T.float(), sol[-1].float(), r2


@torch.no_grad()
def transplant(gen: OmniGenerator, old_vae: VideoVAE, new_vae: VideoVAE, patch: int,
               clips: np.ndarray | None = None, mode: str = "procrustes") -> tuple[OmniGenerator, dict]:
    """A new generator for `new_vae` latents with `patch`, carrying over `gen`'s weights.

    mode "procrustes": the clean-condition layer through the least-squares map, the noisy-target
    input and the velocity output through the nearest map with orthonormal rows (noise stays unit
    noise; measured on sft-6800 into the 2x VAE, starting loss 1.39 against 2.12 for "fit" and 2.03
    for "fresh"); "fit": all three through the least-squares maps; "fresh": those layers newly
    initialised (the baseline).
    """
    oc = gen.config
    ratio_old = old_vae.config.spatial_down * oc.patch
    ratio_new = new_vae.config.spatial_down * patch
    if ratio_old != ratio_new:
        raise ValueError(f"a token covers {ratio_old} pixels with the old VAE and patch {oc.patch}, "
                         f"{ratio_new} with the new VAE and patch {patch}: choose --patch "
                         f"{ratio_old // new_vae.config.spatial_down} so the token grid stays the same")
    ncfg = dataclasses.replace(oc, latent_channels=new_vae.config.latent_channels, patch=patch)
    new = OmniGenerator(ncfg)
    state = {k: v for k, v in gen.state_dict().items() if not k.startswith(MOVED)}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(MOVED) for k in missing), (missing, unexpected)
    info = {"mode": mode, "carried": len(state), "refitted": sorted(missing)}
    if mode == "fresh":
        return new, info
    if mode not in ("fit", "procrustes"):
        raise ValueError(f"transplant mode must be 'fit', 'procrustes' or 'fresh', got {mode!r}")
    clips = world_clips(256) if clips is None else clips
    old_t = patch_tokens(old_vae, gen, clips)
    new_t = patch_tokens(new_vae, new, clips)
    A, a, r2_in = fit_affine(new_t, old_t)  # old ~= A new + a
    Bm, b, r2_out = fit_affine(old_t, new_t)  # new ~= B old + b
    # clean conditions: the least-squares map
    new.latent_embed.weight.copy_(gen.latent_embed.weight @ A)
    new.latent_embed.bias.copy_(gen.latent_embed.weight @ a + gen.latent_embed.bias)
    if mode == "procrustes":
        # noisy targets: a map with orthonormal rows (Q Q^T = I), so unit noise in the new space stays
        # unit noise in the old one; the output goes back through Q^T
        U, _, Vh = torch.linalg.svd(new_t.T.double() @ old_t.double(), full_matrices=False)
        Q = (U @ Vh).T.float()  # (old, new)
        new.x_embed.weight.copy_(gen.x_embed.weight @ Q)
        new.x_embed.bias.copy_(gen.x_embed.bias)
        new.final.weight.copy_(Q.T @ gen.final.weight)
        new.final.bias.copy_(Q.T @ gen.final.bias)
    else:
        new.x_embed.weight.copy_(gen.x_embed.weight @ A)
        new.x_embed.bias.copy_(gen.x_embed.weight @ a + gen.x_embed.bias)
        # velocity = noise - x0: the offset b belongs to x0, so it enters with a minus sign
        new.final.weight.copy_(Bm @ gen.final.weight)
        new.final.bias.copy_(Bm @ gen.final.bias - b)
    info.update({"r2_old_from_new": round(r2_in, 4), "r2_new_from_old": round(r2_out, 4), "clips": int(len(clips))})
    return new, info
