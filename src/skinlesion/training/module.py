"""LightningModule: loss with class weights, phase-aware forward, per-epoch validation metrics
gathered across ranks without duplicates."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import lightning as L
import numpy as np
import torch

from ..data.batch_augment import BatchAugment
from ..evaluation.metrics import epoch_metrics
from ..models.classifier import LesionClassifier, class_probabilities, frozen_eval_mode
from ..models.task import get_task
from . import recipe


class PhasePlan(NamedTuple):
    phase: int
    epochs: int
    lr: float
    unfreeze: int  # backbone groups to train (0: frozen)


@dataclass(frozen=True)
class Phase:
    """A phase as it runs: its plan, the epochs already run before it, and the backbone tensors it trains."""

    plan: PhasePlan
    offset: int
    trainable: list[str]


def class_weights(labels: np.ndarray, task: str) -> torch.Tensor:
    """Binary: ``pos_weight`` = benign/malignant count of the training split. 7-class: inverse
    frequency, normalised to mean 1 over the classes present."""
    return get_task(task).class_weights(labels)


class LesionModule(L.LightningModule):
    """Trains a :class:`LesionClassifier`.

    - Backbone fully frozen (phase 1): it runs under ``torch.no_grad()`` in eval mode; 2-D batches are
      precomputed backbone features (``--cache-features``) and go straight to the head.
    - ``batch_augment``: uint8 batches are augmented on the device after transfer (GPU recipe).
    - Validation outputs are gathered from all ranks and de-duplicated by sample index, so padding
      added by DistributedSampler never counts twice; ``val_predictions`` holds the last epoch's.
    """

    def __init__(self, model: LesionClassifier, t, phase: Phase, loss_weight: torch.Tensor | None = None,
                 batch_augment: BatchAugment | None = None):
        super().__init__()
        self.model, self.t, self.task, self.lr = model, t, t.task, phase.plan.lr
        self.channels_last, self.phase, self.epoch_offset = t.channels_last, phase.plan.phase, phase.offset
        self.batch_augment, self.seed = batch_augment, t.seed
        # kept outside the module tree so checkpoints hold plain (uncompiled) parameter names
        object.__setattr__(self, "_net", torch.compile(model) if t.compile else model)
        self.ema = None
        if t.ema:  # validated, checkpointed (ema.module.*) and saved as the model (see final_model)
            from timm.utils import ModelEmaV3
            self.ema = ModelEmaV3(model, decay=t.ema_decay, use_warmup=True)
            self.ema.requires_grad_(False)  # a copy, never trained: DDP must not wait for gradients of it
        object.__setattr__(self, "mixer", recipe.build_mixer(t, t.task))
        self.loss_fn = get_task(t.task).loss(loss_weight)
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []
        self.val_predictions: dict[str, np.ndarray] = {}

    def final_model(self) -> LesionClassifier:
        """The weights to keep: the EMA copy when EMA is on, else the trained model."""
        if self.ema is None:
            return self.model
        self.model.load_state_dict(self.ema.module.state_dict())
        return self.model

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.model.backbone.parameters())

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None, net=None) -> torch.Tensor:
        net = net if net is not None else self.model
        if x.dim() == 2:  # cached backbone features
            return net.forward_head(x, meta)
        if meta is None and net is self.model:
            return self._net(self._prep(x))
        return net(self._prep(x), meta)

    def set_metadata(self, train_meta: torch.Tensor, val_meta: torch.Tensor, slices: dict, missing: torch.Tensor) -> None:
        """Encoded metadata rows of the training and validation datasets (looked up by sample index), the
        per-field slices and the all-missing encoding used for field dropout."""
        self.meta_tables = {"train": train_meta, "val": val_meta}
        self.meta_slices, self.meta_missing = slices, missing

    def _meta(self, which: str, idx: torch.Tensor, device) -> torch.Tensor | None:
        tables = getattr(self, "meta_tables", None)
        if not tables:
            return None
        meta = tables[which][idx.cpu()].clone()
        if which == "train" and self.t.metadata_dropout > 0:  # drop whole fields so missing ones are handled
            for sl in self.meta_slices.values():
                drop = torch.rand(len(meta)) < self.t.metadata_dropout
                meta[drop, sl] = self.meta_missing[sl]
        return meta.to(device)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return recipe.loss_on(self.loss_fn, logits, y, self.task)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, idx = batch
        if self.batch_augment is not None and self.trainer.training and x.dtype == torch.uint8:
            g = torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + self.phase * 100_003 + self.global_step)
            x = self.batch_augment(x, g)
        return x, y, idx

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        meta = self._meta("train", idx, x.device)
        target = y
        if self.mixer is not None and x.dim() == 4 and len(x) % 2 == 0:  # timm's batch mixing needs pairs
            x, target = self.mixer(x, y.long())
        elif self.t.label_smoothing > 0:
            target = recipe.smooth(y, self.task, self.t.label_smoothing)
        if x.dim() == 4 and self.backbone_frozen:
            with torch.no_grad():
                features = self.model.backbone(self._prep(x))
            logits = self.model.forward_head(features, meta)
        else:
            logits = self(x, meta)
        loss = self._loss(logits, target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # dropout and drop-path drawn from (seed, phase, step): the same whatever the loader consumed from the
        # global RNG, so a resumed run repeats the original (the augmentation has its own batch seeds)
        torch.manual_seed((self.seed * 7 + self.phase * 100_003) * 1_000_003 + self.global_step)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def on_train_epoch_start(self) -> None:
        frozen_eval_mode(self.model)

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        frozen_eval_mode(self.model)

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        logits = self(x, self._meta("val", idx, x.device), net=self.ema.module if self.ema is not None else None)
        self.log("val/loss", self._loss(logits, y), on_epoch=True, batch_size=len(y), sync_dist=True)
        self._val_outputs.append((class_probabilities(logits, self.task).detach(), y.detach(), idx.detach()))

    def _gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample index, class probabilities, target) from every rank, one row per distinct index."""
        classes = torch.cat([o[0] for o in self._val_outputs])
        y = torch.cat([o[1] for o in self._val_outputs])
        idx = torch.cat([o[2] for o in self._val_outputs])
        self._val_outputs.clear()
        if self.trainer.world_size > 1:
            classes, y, idx = (t.reshape(-1, *t.shape[2:]) for t in self.all_gather((classes, y, idx)))
        idx_np = idx.cpu().numpy()
        _, first = np.unique(idx_np, return_index=True)
        return idx_np[first], classes.float().cpu().numpy()[first], y.cpu().numpy()[first]

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        idx, classes, y = self._gathered()
        task = get_task(self.task)
        prob = task.p_malignant(classes)
        self.val_predictions = {"index": idx, "probability": prob, "classes": classes, "target": y}
        binary = task.malignant(y)
        for name, value in epoch_metrics(binary, prob).items():
            self.log(f"val/{name}", 0.0 if math.isnan(value) else value, prog_bar=name in ("roc_auc", "pr_auc"),
                     sync_dist=True)  # identical on every rank (gathered); syncing only silences a warning

    def configure_optimizers(self):
        optimizer = recipe.build_optimizer(self.model, self.t, self.lr)
        return {"optimizer": optimizer,
                "lr_scheduler": recipe.build_scheduler(optimizer, self.t, self.lr, self.trainer.estimated_stepping_batches,
                                                       self.trainer.max_epochs)}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if hasattr(scheduler, "step_update"):  # timm: per optimizer step, by the number of updates so far
            scheduler.step_update(num_updates=self.global_step)
        elif metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skinlesion"] = {"phase": self.phase, "epoch_offset": self.epoch_offset}
