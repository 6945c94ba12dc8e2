"""A CNN (ensemble) stacked with gradient-boosted trees on its score and the patient metadata: what `cv
--stack gbdt` fits and bundles. The whole thing is one module: ``forward(x, meta)`` returns the stack's
logit, so every consumer of a bundle (predict, serve, evaluate, export) applies the stack unchanged."""
from __future__ import annotations

import torch
from torch import nn

from .trees import TreeEnsemble

EPS = 1e-6


def stack_features(base_logit: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
    """The trees' inputs: the CNN's logit of p(malignant) (clamped like the ensemble's), then the encoded
    metadata fields (if any)."""
    p = torch.sigmoid(base_logit.to(torch.float64)).clamp(EPS, 1 - EPS)
    cols = [torch.log(p / (1 - p)).reshape(-1, 1)]
    if meta is not None:
        cols.append(meta.to(torch.float64))
    return torch.cat(cols, 1)


class StackedClassifier(nn.Module):
    """``base`` (binary; fed ``meta`` only if it was trained with it) -> features -> ``trees`` -> logit."""

    def __init__(self, base: nn.Module, trees: TreeEnsemble, meta_dim: int, base_uses_meta: bool):
        super().__init__()
        self.base, self.trees, self.base_uses_meta = base, trees, base_uses_meta
        self.meta_dim = meta_dim
        self.register_buffer("missing_meta", torch.zeros(meta_dim))  # every field missing: the encoder's vector

    @property
    def backbone(self) -> nn.Module:
        return self.base.backbone

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if self.meta_dim and meta is None:
            meta = self.missing_meta.expand(x.shape[0], -1)
        base = self.base(x, meta if self.base_uses_meta else None)
        raw = self.trees(stack_features(base[:, -1], meta if self.meta_dim else None))
        return raw.to(base.dtype).unsqueeze(1)
