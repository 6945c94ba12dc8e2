"""Recipe building blocks, taken from timm and torch: layer-wise LR decay groups, warmup + cosine,
mixup/cutmix, label smoothing and the losses that accept their soft targets. Pure functions of a
``TrainConfig`` (``t``); the LightningModule only calls them."""
from __future__ import annotations

import dataclasses
import math

import torch
from ..models.task import get_task


#: Default batch per device; with CUDA the recipe's lr (tuned at CPU_BATCH) is scaled by sqrt(batch ratio),
#: the square-root rule for Adam-type optimizers (Malladi et al. 2022; Granziol et al. 2022).
CPU_BATCH, CUDA_BATCH = 32, 128


def device_batch(t, cuda: bool):
    """``t`` with its batch size resolved: an explicit ``batch_size`` is kept as given (lr untouched);
    None becomes CPU_BATCH, or CUDA_BATCH with the lr scaled and the rule recorded in ``lr_scaling``."""
    if t.batch_size is not None:
        return t
    if not cuda:
        return dataclasses.replace(t, batch_size=CPU_BATCH)
    lr = t.lr * math.sqrt(CUDA_BATCH / CPU_BATCH)
    return dataclasses.replace(t, batch_size=CUDA_BATCH, lr=lr, lr_scaling=(
        f"sqrt rule: recipe lr {t.lr:g} x sqrt({CUDA_BATCH}/{CPU_BATCH}) = {lr:g} for the CUDA default batch {CUDA_BATCH}"))


def param_groups(model, weight_decay: float, layer_decay: float | None) -> list[dict]:
    """Trainable parameters as optimizer groups, each with an ``lr_scale``. With ``layer_decay`` the
    backbone's layers (timm's fine grouping, stem first) get ``layer_decay ** depth_from_top`` and the
    head 1.0; without it one group at scale 1.0."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not layer_decay or layer_decay >= 1.0 or not any(p.requires_grad for p in model.backbone.parameters()):
        return [{"params": trainable, "weight_decay": weight_decay, "lr_scale": 1.0}]
    from timm.optim import param_groups_layer_decay
    groups = param_groups_layer_decay(model.backbone, weight_decay=weight_decay, layer_decay=layer_decay,
                                      no_weight_decay_list=())
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    return [g for g in groups if g["params"]] + [{"params": head, "weight_decay": weight_decay, "lr_scale": 1.0}]


def build_optimizer(model, t, lr: float) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`. With the plateau schedule each group's lr is set to lr * lr_scale
    here; timm's schedulers apply ``lr_scale`` themselves at every update."""
    groups = param_groups(model, t.weight_decay, t.layer_decay)
    if t.schedule != "cosine":
        for g in groups:
            g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=t.weight_decay)


def build_scheduler(optimizer, t, lr: float, total_steps: int, epochs: int) -> dict:
    """Lightning's scheduler config: timm's CosineLRScheduler stepped per optimizer step (with a linear
    warmup from lr/100), or ReduceLROnPlateau on val PR-AUC per epoch."""
    if t.schedule == "cosine":
        from timm.scheduler import CosineLRScheduler
        total = max(1, int(total_steps))
        warmup = min(int(round(t.warmup_epochs * total / max(epochs, 1))), total - 1)
        scheduler = CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=lr * t.min_lr_factor, warmup_t=warmup,
                                      warmup_lr_init=lr / 100, warmup_prefix=True, t_in_epochs=False)
        return {"scheduler": scheduler, "interval": "step"}
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=t.lr_patience)
    return {"scheduler": scheduler, "monitor": "val/pr_auc", "interval": "epoch"}


def build_mixer(t, task: str):
    """timm's Mixup (mixup and/or cutmix, batch mode, with label smoothing folded into the targets), or
    None when both alphas are 0."""
    if not (t.mixup > 0 or t.cutmix > 0) or t.mix_prob <= 0:
        return None
    from timm.data import Mixup
    return Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, prob=t.mix_prob, mode="batch",
                 label_smoothing=t.label_smoothing, num_classes=len(get_task(task).class_names))


def smooth(y: torch.Tensor, task: str, label_smoothing: float) -> torch.Tensor:
    """Soft targets: binary p(malignant) in [ls/2, 1 - ls/2]; 7-class one-hot smoothed over 7 classes."""
    return get_task(task).smooth(y, label_smoothing)


def loss_on(loss_fn, logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """The task's loss for hard (class index) or soft (probability) targets; soft 2-class targets from
    Mixup become p(malignant) for the single binary logit."""
    return get_task(task).loss_on(loss_fn, logits, target)
