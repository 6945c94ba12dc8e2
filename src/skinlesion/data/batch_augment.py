"""Training augmentation as batched tensor ops on the device (GPU recipe), from uint8 cached squares.

One affine resampling per image does random resized crop, rotation and both flips; brightness,
contrast and saturation jitter follow; then normalisation. The same code runs on CPU or GPU, and is
deterministic for a given ``torch.Generator`` seed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAY = (0.299, 0.587, 0.114)


class BatchAugment:
    """uint8 (B, 3, R, R) -> normalised float (B, 3, S, S) with per-image random parameters."""

    def __init__(self, image_size: int, mean, std, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), degrees: float = 30.0,
                 brightness: float = 0.15, contrast: float = 0.15, saturation: float = 0.1):
        self.size, self.scale, self.ratio, self.degrees = image_size, scale, ratio, degrees
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def _uniform(self, n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
        return torch.rand(n, generator=g, device=device) * (hi - lo) + lo

    def affine(self, n: int, g: torch.Generator, device) -> torch.Tensor:
        """(n, 2, 3) matrices mapping output to input coordinates in [-1, 1]."""
        u = lambda lo, hi: self._uniform(n, lo, hi, g, device)
        area = u(*self.scale)
        log_r = u(math.log(self.ratio[0]), math.log(self.ratio[1]))
        w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)
        h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
        cx, cy = u(-1, 1) * (1 - w), u(-1, 1) * (1 - h)
        angle = u(-self.degrees, self.degrees) * math.pi / 180
        fx = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
        fy = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * w * fx, -sin * h * fy, cx], 1),
                             torch.stack([sin * w * fx, cos * h * fy, cy], 1)], 1)
        return theta

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, device = x.shape[0], x.device
        x = x.float() / 255.0
        grid = F.affine_grid(self.affine(n, generator, device), [n, 3, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        u = lambda amount: self._uniform(n, 1 - amount, 1 + amount, generator, device).view(n, 1, 1, 1)
        gray_w = torch.tensor(GRAY, device=device).view(1, 3, 1, 1)
        x = (x * u(self.brightness)).clamp(0, 1)
        mean_gray = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = ((x - mean_gray) * u(self.contrast) + mean_gray).clamp(0, 1)
        gray = (x * gray_w).sum(1, keepdim=True)
        x = ((x - gray) * u(self.saturation) + gray).clamp(0, 1)
        return (x - self.mean.to(device)) / self.std.to(device)
