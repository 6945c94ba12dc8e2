"""A CNN (ensemble) stacked with gradient-boosted trees on its score and the patient metadata: what `cv
--stack gbdt` fits and bundles. The whole thing is one module: ``forward(x, meta)`` returns the stack's
logit, so every consumer of a bundle (predict, serve, evaluate, export) applies the stack unchanged."""
from __future__ import annotations

import torch
from torch import nn

from .classifier import tta_views
from .trees import TreeEnsemble

EPS = 1e-6


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.to(torch.float64).clamp(EPS, 1 - EPS)
    return torch.log(p / (1 - p)).reshape(-1, 1)


def stack_features(p: torch.Tensor, meta: torch.Tensor | None, p_tta: torch.Tensor | None = None) -> torch.Tensor:
    """The trees' inputs: the CNN's logit of p(malignant) (clamped to [1e-6, 1 - 1e-6]), with TTA the logit of
    its mean over the four views, then the encoded metadata fields (if any)."""
    cols = [_logit(p)] + ([_logit(p_tta)] if p_tta is not None else [])
    if meta is not None:
        cols.append(meta.to(torch.float64))
    return torch.cat(cols, 1)


class StackedClassifier(nn.Module):
    """``base`` (binary; fed ``meta`` only if it was trained with it) -> features -> ``trees`` -> logit. With
    ``tta`` the base also sees the flipped and rotated views, and their mean is a feature too."""

    def __init__(self, base: nn.Module, trees: TreeEnsemble, meta_dim: int, base_uses_meta: bool, tta: bool = False):
        super().__init__()
        self.base, self.trees, self.base_uses_meta, self.tta = base, trees, base_uses_meta, tta
        self.meta_dim = meta_dim
        self.register_buffer("missing_meta", torch.zeros(meta_dim))  # every field missing: the encoder's vector

    @property
    def backbone(self) -> nn.Module:
        return self.base.backbone

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if self.meta_dim and meta is None:
            meta = self.missing_meta.expand(x.shape[0], -1)
        call = lambda v: torch.sigmoid(self.base(v, meta if self.base_uses_meta else None)[:, -1].float())
        p = call(x)
        p_tta = torch.stack([p] + [call(v) for v in tta_views(x)[1:]]).mean(0) if self.tta else None
        raw = self.trees(stack_features(p, meta if self.meta_dim else None, p_tta))
        return raw.to(x.dtype).unsqueeze(1)
