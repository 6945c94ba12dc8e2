"""LightningModule: loss with class weights, phase-aware forward, per-epoch validation metrics
gathered across ranks without duplicates."""
from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch import nn

from ..data.batch_augment import BatchAugment
from ..evaluation.metrics import epoch_metrics
from ..labels import MALIGNANT_CLASS_INDICES
from ..models.classifier import LesionClassifier, class_probabilities, frozen_eval_mode


def class_weights(labels: np.ndarray, task: str) -> torch.Tensor:
    """Binary: ``pos_weight`` = benign/malignant count of the training split. 7-class: inverse
    frequency, normalised to mean 1 over the classes present."""
    labels = np.asarray(labels)
    if task == "binary":
        pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
        if pos == 0 or neg == 0:
            raise ValueError(f"the training split needs both classes (benign {neg}, malignant {pos})")
        return torch.tensor([neg / pos], dtype=torch.float32)
    counts = np.bincount(labels, minlength=7).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


class LesionModule(L.LightningModule):
    """Trains a :class:`LesionClassifier`.

    - Backbone fully frozen (phase 1): it runs under ``torch.no_grad()`` in eval mode; 2-D batches are
      precomputed backbone features (``--cache-features``) and go straight to the head.
    - ``batch_augment``: uint8 batches are augmented on the device after transfer (GPU recipe).
    - Validation outputs are gathered from all ranks and de-duplicated by sample index, so padding
      added by DistributedSampler never counts twice; ``val_predictions`` holds the last epoch's.
    """

    def __init__(self, model: LesionClassifier, task: str, lr: float, weight_decay: float,
                 loss_weight: torch.Tensor | None, lr_patience: int = 2, channels_last: bool = True,
                 phase: int = 1, epoch_offset: int = 0, batch_augment: BatchAugment | None = None,
                 seed: int = 0, compile: bool = False):
        super().__init__()
        self.model, self.task, self.lr, self.weight_decay = model, task, lr, weight_decay
        self.lr_patience, self.channels_last, self.phase, self.epoch_offset = lr_patience, channels_last, phase, epoch_offset
        self.batch_augment, self.seed = batch_augment, seed
        # kept outside the module tree so checkpoints hold plain (uncompiled) parameter names
        object.__setattr__(self, "_net", torch.compile(model) if compile else model)
        if task == "binary":
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=loss_weight)
        else:
            self.loss_fn = nn.CrossEntropyLoss(weight=loss_weight)
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []
        self.val_predictions: dict[str, np.ndarray] = {}

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.model.backbone.parameters())

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # cached backbone features
            return self.model.forward_head(x)
        return self._net(self._prep(x))

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            return self.loss_fn(logits.reshape(-1).float(), y.float())
        return self.loss_fn(logits.float(), y.long())

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, idx = batch
        if self.batch_augment is not None and self.trainer.training and x.dtype == torch.uint8:
            g = torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + self.phase * 100_003 + self.global_step)
            x = self.batch_augment(x, g)
        return x, y, idx

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        if x.dim() == 4 and self.backbone_frozen:
            with torch.no_grad():
                features = self.model.backbone(self._prep(x))
            logits = self.model.forward_head(features)
        else:
            logits = self(x)
        loss = self._loss(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        frozen_eval_mode(self.model)

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        frozen_eval_mode(self.model)

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        logits = self(x)
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
        prob = classes[:, 1] if self.task == "binary" else classes[:, list(MALIGNANT_CLASS_INDICES)].sum(1)
        self.val_predictions = {"index": idx, "probability": prob, "classes": classes, "target": y}
        binary = y if self.task == "binary" else np.isin(y, MALIGNANT_CLASS_INDICES).astype(int)
        for name, value in epoch_metrics(binary, prob).items():
            self.log(f"val/{name}", 0.0 if math.isnan(value) else value, prog_bar=name in ("roc_auc", "pr_auc"),
                     sync_dist=True)  # identical on every rank (gathered); syncing only silences a warning

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=self.lr_patience)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/pr_auc", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skinlesion"] = {"phase": self.phase, "epoch_offset": self.epoch_offset}
