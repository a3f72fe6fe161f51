"""The causal video VAE: clips and images (one-frame clips) to latents and back.

Causal in time (each latent frame sees only the past; frame 0 is encoded alone), so an
image and a video's first frame share one latent. Compression 4x in space and 2x in time
with 16 latent channels: a 16x32x32 clip is 8x8x8x16 latents. The prototype's 4-channel 4x
autoencoder lost 3-6 px subjects; more channels keep the shape of our 9-15 px subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .component import Component


@dataclass
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 16  # channels per latent pixel
    channels: tuple[int, int, int] = (24, 48, 64)  # widths at full, 1/2 and 1/4 resolution
    scaling: float = 1.0  # latents are multiplied by this after encoding (set from data)
    spatial_down: int = 4  # 4 (the shipped model's) or 2: the last stage keeps the 1/2 resolution

    def __post_init__(self):
        if self.spatial_down not in (2, 4):
            raise ValueError(f"spatial_down={self.spatial_down}: the VAE compresses space 2x or 4x")


class CausalConv3d(nn.Module):
    """3D conv padded only on the past side in time (replicating the first frame)."""

    def __init__(self, cin: int, cout: int, kt: int = 3, ks: int = 3, stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv3d(cin, cout, (kt, ks, ks), stride=stride, padding=(0, ks // 2, ks // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.kt > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.kt - 1, -1, -1), x], dim=2)
        return self.conv(x)


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own: statistics over time would let the future leak
    into the past and break causality."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        B, C, T, H, W = x.shape
        y = super().forward(x.transpose(1, 2).reshape(B * T, C, H, W))
        return y.view(B, T, C, H, W).transpose(1, 2)


class ResBlock(nn.Module):
    """A spatial 3x3 conv then a causal temporal conv: most of a 3D conv's reach at a third of its cost."""

    def __init__(self, c: int):
        super().__init__()
        self.n1 = FrameNorm(8, c)
        self.c1 = CausalConv3d(c, c, kt=1)
        self.n2 = FrameNorm(8, c)
        self.c2 = CausalConv3d(c, c, kt=3, ks=1)

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return x + h


class VideoVAE(Component):
    config_class = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c0, c1, c2 = config.channels
        self.enc = nn.Sequential(
            CausalConv3d(config.in_channels, c0, kt=1),
            CausalConv3d(c0, c1, kt=1, stride=(1, 2, 2)), ResBlock(c1),
            CausalConv3d(c1, c2, kt=3, stride=(2, 2, 2) if config.spatial_down == 4 else (2, 1, 1)),
            ResBlock(c2), ResBlock(c2),
            FrameNorm(8, c2), nn.SiLU(), CausalConv3d(c2, 2 * config.latent_channels, kt=1, ks=1),
        )
        self.dec = nn.Sequential(CausalConv3d(config.latent_channels, c2, kt=1), ResBlock(c2), ResBlock(c2))
        self.dec_up1 = nn.Sequential(CausalConv3d(c2, c1, kt=3), ResBlock(c1), ResBlock(c1))  # after 2x time (+ space)
        self._up1 = (2, 2, 2) if config.spatial_down == 4 else (2, 1, 1)
        self.dec_up2 = nn.Sequential(CausalConv3d(c1, c0, kt=1), ResBlock(c0), FrameNorm(8, c0), nn.SiLU(),
                                     CausalConv3d(c0, config.in_channels, kt=1))  # after 2x space: edges, eyes

    # pixels are (B, T, H, W, 3) floats in [-1, 1]; latents are (B, C, T', h, w)
    def encode_dist(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = video.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        mean, logvar = self.enc(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, logvar = self.encode_dist(video)
        z = mean
        if sample:
            z = mean + torch.randn(mean.shape, generator=generator, device=mean.device) * (0.5 * logvar).exp()
        return z * self.config.scaling

    def decode(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.dec(z / self.config.scaling)  # (B, c2, T', h, w)
        h = self.dec_up1(F.interpolate(h, scale_factor=self._up1, mode="nearest"))
        x = self.dec_up2(F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest"))
        x = x[:, :, :frames]  # an image (T=1) decodes from its one latent frame
        return x.permute(0, 2, 3, 4, 1).clamp(-1, 1)

    @staticmethod
    def latent_frames(frames: int) -> int:
        return (frames + 1) // 2


def to_model_range(clip_uint8: torch.Tensor) -> torch.Tensor:
    return clip_uint8.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
