"""Datasets and loaders for training: cached images, class balance, GPU-side augmentation, and
precomputed backbone features for the frozen phase (``--cache-features K``)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..models.task import get_task
from ..data.batch_augment import BatchAugment, CenterBatch
from ..data.cache import AugmentedBatches, CachedImages, DeviceBatches, EpochSampler, default_num_workers
from ..data.transforms import Preprocessing
from ..labels import label_for
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
    batch_augment: BatchAugment | None  # with device augmentation: applied to uint8 batches after transfer
    workers: int
    batch_size: int
    summary: str
    augmentation: dict  # what ran, for config.yaml and the bundle
    device_cache: tuple[DeviceBatches, DeviceBatches] | None = None  # (train, val) in device memory

    def loader(self, dataset, sampler=None) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                                           num_workers=self.workers, pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.workers > 0)

    def train_loader(self, seed: int, dataset=None) -> torch.utils.data.DataLoader:
        """Sampling order and CPU augmentation both drawn from ``seed`` (a phase's own seed, so phase 2
        does not replay phase 1's crops and flips)."""
        if dataset is None and self.device_cache is not None:
            train = copy.copy(self.device_cache[0])
            train.seed, train.sampler = seed, EpochSampler(len(self.train_idx), seed, self.sample_weights)
            return train
        ds = dataset if dataset is not None else self.train
        if isinstance(ds, CachedImages) and ds.seed is not None:
            ds = copy.copy(ds)
            ds.seed = seed
        return self.loader(ds, EpochSampler(len(self.train_idx), seed, self.sample_weights))

    def val_loader(self):
        return self.device_cache[1] if self.device_cache is not None else self.loader(self.val)


def build_data(split, cache, pre: Preprocessing, t, gpu_augment: bool, device_cache: bool | None = None) -> TrainData:
    """Train/val datasets over the cache; class weights or a balanced sampler; the policy's batched
    augmentation (one implementation, :mod:`skinlesion.data.batch_augment`) in the CPU workers, or with
    ``gpu_augment`` on the device: from a device-resident copy of the images when ``device_cache`` (None:
    when they fit in 40% of the free device memory), else after the uint8 batches are transferred."""
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
        summary = "class imbalance: " + get_task(t.task).weight_summary(weights)
    augment = BatchAugment(pre.image_size, pre.mean, pre.std, t.augment)
    val_ds = CachedImages(cache, val_idx, targets[val_idx], pre.eval_transform())
    if not gpu_augment:
        train_ds = AugmentedBatches(cache, train_idx, targets[train_idx], augment, seed=t.seed)
        return TrainData(train_ds, val_ds, train_idx, val_idx, loss_weight, sample_w, None,
                         default_num_workers(t.num_workers), t.batch_size, summary,
                         {**augment.describe(), "where": "DataLoader workers (CPU), a batch per call"})
    train_ds = CachedImages(cache, train_idx, targets[train_idx], _identity, seed=t.seed)
    if device_cache is None:
        device_cache = torch.cuda.is_available() and DeviceBatches.nbytes(cache, len(train_idx) + len(val_idx)) \
            < 0.4 * torch.cuda.mem_get_info()[0]
    resident = None
    if device_cache:
        resident = (DeviceBatches(train_ds, t.batch_size, augment),
                    DeviceBatches(val_ds, t.batch_size, CenterBatch(pre.image_size, pre.mean, pre.std)))
    where = "device, images held in device memory" if device_cache else "device, after transfer of uint8 batches"
    return TrainData(train_ds, val_ds, train_idx, val_idx, loss_weight, sample_w, augment,
                     default_num_workers(t.num_workers), t.batch_size, summary, {**augment.describe(), "where": where},
                     resident)


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
        if augment and data.batch_augment is not None and x.dtype == torch.uint8:
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
