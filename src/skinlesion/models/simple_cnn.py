"""A small custom CNN baseline (~0.5M parameters) with timm's feature-extractor interface."""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2))


class SimpleCNN(nn.Module):
    """Four conv blocks (32-64-96-128 channels) + global average pooling -> ``num_features`` vector."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        chans = (3, *widths)
        self.stages = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = widths[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x)).flatten(1)

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^stages\.0", "blocks": r"^stages\.(\d+)"}
