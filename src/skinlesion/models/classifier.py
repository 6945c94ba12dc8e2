"""Backbone + head classifier, task-aware probabilities, and freezing by parameter group."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import BackboneSpec
from .task import get_task
from .weights import create_backbone


def num_outputs(task: str) -> int:
    return get_task(task).outputs


META_WIDTH = 32


class LesionClassifier(nn.Module):
    """``backbone`` (pooled features) -> dropout -> linear: 1 logit (binary) or 7 logits (7class).

    With ``meta_dim > 0`` a small MLP encodes patient metadata (see ``data.tabular``) and its output is
    concatenated with the image features before the head; a call without metadata uses the stored
    all-missing encoding (``missing_meta``), so image-only callers (Grad-CAM, old clients) keep working."""

    def __init__(self, backbone: nn.Module, task: str = "binary", dropout: float = 0.3, meta_dim: int = 0):
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.dropout = nn.Dropout(dropout)
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features  # vgg: 4096 pre-logits
        self.meta_dim = meta_dim
        if meta_dim:
            self.meta = nn.Sequential(nn.Linear(meta_dim, META_WIDTH), nn.ReLU(), nn.Linear(META_WIDTH, META_WIDTH),
                                      nn.ReLU())
            self.register_buffer("missing_meta", torch.zeros(meta_dim))
        self.head = nn.Linear(width + (META_WIDTH if meta_dim else 0), num_outputs(task))

    def forward_head(self, features: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if self.meta_dim:
            if meta is None:
                meta = self.missing_meta.expand(len(features), -1)
            features = torch.cat([features, self.meta(meta.to(features.dtype))], dim=1)
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.backbone(x), meta)


@dataclass(frozen=True)
class ModelOptions:
    """The classifier's shape beyond its backbone: head dropout, stochastic depth (timm's drop-path) and the
    number of encoded metadata inputs fused into the head (0: image only)."""

    dropout: float = 0.3
    drop_path: float = 0.0
    meta_dim: int = 0


def build_model(spec: BackboneSpec, task: str = "binary", pretrained: bool = True, weights_file: str | None = None,
                opts: ModelOptions = ModelOptions()) -> LesionClassifier:
    return LesionClassifier(create_backbone(spec, pretrained, weights_file, drop_path=opts.drop_path), task,
                            opts.dropout, opts.meta_dim)


def tta_views(x: torch.Tensor, tta: bool = True) -> list[torch.Tensor]:
    """The test-time augmentation views: the batch itself, plus (with ``tta``) its horizontal flip, vertical
    flip and 90-degree rotation. Predictor, evaluate and the stacked model all average these."""
    if not tta:
        return [x]
    return [x, x.flip(-1), x.flip(-2), x.rot90(1, dims=(-2, -1))]


def malignant_probability(logits: torch.Tensor, task: str) -> torch.Tensor:
    """p(malignant): sigmoid of the single logit, or p(akiec) + p(bcc) + p(mel) for 7 classes."""
    return get_task(task).p_malignant(class_probabilities(logits, task))


def class_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Per-class probabilities: (N, 2) benign/malignant or (N, 7) dx."""
    return get_task(task).class_probabilities(logits)


def parameter_groups(backbone: nn.Module) -> list[list[str]]:
    """The backbone's parameter names grouped stem -> stages -> final norm (timm's coarse groups)."""
    from timm.models import group_parameters
    groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


def set_trainable(model: LesionClassifier, unfreeze_groups: int) -> list[str]:
    """Head always trainable; the last ``unfreeze_groups`` backbone groups trainable, the rest frozen.

    Returns the names of the trainable backbone parameters. ``unfreeze_groups=0`` freezes the backbone.
    """
    groups = parameter_groups(model.backbone)
    trainable = {n for g in (groups[-unfreeze_groups:] if unfreeze_groups > 0 else []) for n in g}
    for name, p in model.backbone.named_parameters():
        p.requires_grad = name in trainable
    for p in model.head.parameters():
        p.requires_grad = True
    if model.meta_dim:
        for p in model.meta.parameters():
            p.requires_grad = True
    return sorted(trainable)


def frozen_eval_mode(model: LesionClassifier) -> None:
    """Training mode for the model, except frozen backbone modules (BatchNorm statistics, dropout),
    which stay in eval mode: a module is in eval mode when none of its own parameters train."""
    model.train()
    for module in model.backbone.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()
    if not any(p.requires_grad for p in model.backbone.parameters()):
        model.backbone.eval()
