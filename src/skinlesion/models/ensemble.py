"""An ensemble of classifiers that behaves like one: same inputs, and "logits" whose probabilities are
the members' mean probabilities, so every consumer (predict, serve, evaluate, ONNX) treats it alike."""
from __future__ import annotations

import torch
from torch import nn

from .task import get_task
from .classifier import LesionClassifier, class_probabilities

EPS = 1e-7
COMBINE = ("mean_probability", "mean_logit")


class EnsembleClassifier(nn.Module):
    """``members`` (same task and input) combined by ``combine``:

    - ``mean_probability``: the mean of the members' class probabilities, returned as logit(p) (binary) or
      log(p) (7-class) so that sigmoid / softmax of the output gives that mean back;
    - ``mean_logit``: the mean of the members' logits.
    """

    def __init__(self, members: list[LesionClassifier], task: str, combine: str = "mean_probability"):
        super().__init__()
        if combine not in COMBINE:
            raise ValueError(f"unknown ensemble combination {combine!r} ({', '.join(COMBINE)})")
        self.members = nn.ModuleList(members)
        self.task, self.combine = task, combine
        self.meta_dim = members[0].meta_dim

    @property
    def backbone(self) -> nn.Module:
        """The first member's backbone (for code that inspects layer names; Grad-CAM averages all members)."""
        return self.members[0].backbone

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        outs = [m(x, meta) for m in self.members]
        if self.combine == "mean_logit":
            return torch.stack(outs).mean(0)
        p = torch.stack([class_probabilities(o, self.task) for o in outs]).mean(0)
        return get_task(self.task).logits_from_probabilities(p, EPS)
