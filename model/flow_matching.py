"""Flow matching: the one convention every part of Omni Studio uses (DESIGN 3.2).

    x_s = (1 - s) * x0 + s * noise,   s in [0, 1], s = 1 is pure noise
    the network predicts v = noise - x0 and receives timestep = s * 1000
    the sampler steps s from 1 to 0 with x += (s_next - s) * v on a shifted schedule

Training, DPO, distillation and the pipeline all import this module.
"""

from __future__ import annotations

import torch

TIMESTEP_SCALE = 1000.0


def add_noise(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x_s for per-sample s of shape (B,)."""
    s = s.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def to_timestep(s: torch.Tensor) -> torch.Tensor:
    return s * TIMESTEP_SCALE


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The SD3 / Wan time shift: spends more steps at high noise when shift > 1."""
    return shift * s / (1 + (shift - 1) * s)


def sample_training_s(batch: int, generator: torch.Generator | None = None, shift: float = 1.0,
                      device: torch.device | str = "cpu", uniform_fraction: float = 0.0) -> torch.Tensor:
    """Training noise levels: logit-normal (as SD3) then shifted; one distribution for all stages.
    `uniform_fraction` of the batch is drawn uniformly instead, so the ends of the schedule (pure
    noise, almost clean), which the sampler visits at every step count, are trained too."""
    u = torch.randn(batch, generator=generator, device=device)
    s = torch.sigmoid(u)
    if uniform_fraction > 0:
        flat = torch.rand(batch, generator=generator, device=device)
        pick = torch.rand(batch, generator=generator, device=device) < uniform_fraction
        s = torch.where(pick, flat, s)
    return shift_sigmas(s, shift)


def schedule(steps: int, shift: float = 3.0) -> torch.Tensor:
    """steps + 1 noise levels from 1 to 0 (the last is 0)."""
    s = torch.linspace(1.0, 0.0, steps + 1)
    return shift_sigmas(s, shift)


def euler_step(x: torch.Tensor, v: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    return x + (s_next - s) * v


def sampler_step(x: torch.Tensor, v: torch.Tensor, s: float, s_next: float, churn: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One sampler step from level s to s_next. The velocity implies a clean estimate x0 = x - s v and the
    noise in x, n = x + (1 - s) v; the step re-mixes them at s_next, with a share `churn` of that noise drawn
    afresh (variance kept: sqrt(1 - churn^2) n + churn * fresh). churn = 0 is exactly `euler_step`."""
    if churn <= 0.0 or s_next <= 0.0:
        return euler_step(x, v, s, s_next)
    x0 = x - s * v
    n = x + (1 - s) * v
    fresh = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return (1 - s_next) * x0 + s_next * ((1 - churn**2) ** 0.5 * n + churn * fresh)
