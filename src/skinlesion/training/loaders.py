"""Datasets and loaders for training: cached images, class balance, GPU-side augmentation, and
precomputed backbone features for the frozen phase (``--cache-features K``)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..data.batch_augment import BatchAugment
from ..data.cache import CachedImages, EpochSampler, default_num_workers
from ..data.transforms import Preprocessing
from ..labels import DX_CODES, label_for
from .module import class_weights


def _identity(x):
    return x


@dataclass
class TrainData:
    """Everything the phases share: datasets, targets, sampling weights and the loss weight."""

    train: CachedImages
    val: CachedImages
    train_idx: np.ndarray
    val_idx: np.ndarray
    loss_weight: torch.Tensor | None
    sample_weights: np.ndarray | None
    batch_augment: BatchAugment | None
    workers: int
    batch_size: int
    summary: str

    def loader(self, dataset, sampler=None) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                                           num_workers=self.workers, pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.workers > 0)

    def train_loader(self, seed: int, dataset=None) -> torch.utils.data.DataLoader:
        """Sampling order and CPU augmentation both drawn from ``seed`` (a phase's own seed, so phase 2
        does not replay phase 1's crops and flips)."""
        ds = dataset if dataset is not None else self.train
        if isinstance(ds, CachedImages) and ds.seed is not None:
            ds = copy.copy(ds)
            ds.seed = seed
        return self.loader(ds, EpochSampler(len(self.train_idx), seed, self.sample_weights))


def build_data(split, cache, pre: Preprocessing, t, gpu_augment: bool) -> TrainData:
    """Train/val datasets over the cache; class weights or a balanced sampler; augmentation on the
    CPU workers (torchvision presets) or, with ``gpu_augment``, as batched ops on the device."""
    targets = np.array([label_for(dx, t.task) for dx in split["dx"]])
    train_idx = np.flatnonzero(split["split"].to_numpy() == "train")
    val_idx = np.flatnonzero(split["split"].to_numpy() == "val")
    weights = class_weights(targets[train_idx], t.task)
    if t.balanced_sampler:
        counts = np.bincount(targets[train_idx])
        sample_w, loss_weight = 1.0 / counts[targets[train_idx]], None
        summary = "class imbalance: balanced sampler (no loss weight)"
    else:
        sample_w, loss_weight = None, weights
        summary = "class imbalance: " + (
            f"pos_weight = benign/malignant = {weights.item():.3f}" if t.task == "binary" else
            "class weights " + ", ".join(f"{d}={w:.2f}" for d, w in zip(DX_CODES, weights.tolist())))
    augment = BatchAugment(pre.image_size, pre.mean, pre.std) if gpu_augment else None
    train_ds = CachedImages(cache, train_idx, targets[train_idx], _identity if gpu_augment else pre.train_transform(t.augment),
                            seed=t.seed)
    val_ds = CachedImages(cache, val_idx, targets[val_idx], pre.eval_transform())
    return TrainData(train_ds, val_ds, train_idx, val_idx, loss_weight, sample_w, augment,
                     default_num_workers(t.num_workers), t.batch_size, summary)


class FeatureViews(torch.utils.data.Dataset):
    """K precomputed feature views per training image; key ``epoch * n + i`` picks view ``epoch % K``."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets  # (K, N, F), (N,)

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, key: int):
        n = self.features.shape[1]
        return self.features[(key // n) % self.features.shape[0], key % n], self.targets[key % n], key % n


@torch.no_grad()
def _features(backbone, data: TrainData, dataset, keys, device, augment: bool) -> torch.Tensor:
    loader = data.loader(dataset, sampler=keys)
    out = []
    for step, (x, _, _) in enumerate(loader):
        x = x.to(device)
        if augment and data.batch_augment is not None:
            x = data.batch_augment(x, torch.Generator(device=device).manual_seed(int(keys[0]) * 7919 + step))
        out.append(backbone(x).float().cpu())
    return torch.cat(out)


def cache_features(model, data: TrainData, views: int, device: torch.device, echo=print):
    """(FeatureViews over ``views`` augmented passes of the training set, val feature dataset)."""
    backbone = model.backbone.to(device).eval()
    n = len(data.train_idx)
    echo(f"caching backbone features: {views} augmented view(s) of {n} training images + {len(data.val_idx)} val images")
    train = torch.stack([_features(backbone, data, data.train, list(range(v * n, (v + 1) * n)), device, True)
                         for v in range(views)])
    val = _features(backbone, data, data.val, list(range(len(data.val_idx))), device, False)
    val_ds = torch.utils.data.TensorDataset(val, data.val.targets, torch.arange(len(val)))
    return FeatureViews(train, data.train.targets), val_ds
