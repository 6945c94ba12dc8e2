"""Decoded-image cache: every image decoded and resized once into a memory-mapped uint8 array."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from .. import console
from ..errors import original_message
from .images import ImageDecodeError
from .transforms import Preprocessing

CACHE_VERSION = 2  # 2: full JPEG decode (no draft mode)


def default_num_workers(value: int | None = None) -> int:
    """``value``, or min(4, half the CPU cores) DataLoader workers when it is None."""
    return value if value is not None else min(4, (os.cpu_count() or 2) // 2)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SKINLESION_CACHE_DIR", Path.home() / ".cache" / "skinlesion"))


def cache_key(paths: list[str], pre: Preprocessing) -> str:
    """Hash of the files (path, size, mtime) and the resize size: any change makes a new cache."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{pre.resize_size}|".encode()
                       + (f"cc={pre.colour_constancy}|".encode() if pre.colour_constancy else b""))
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], pre: Preprocessing):
        self.paths, self.pre = paths, pre

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.pre.load(self.paths[i])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_orphans(cache_dir: Path) -> list[Path]:
    """Delete temp files of cache builds whose process is gone (killed mid-build): ``.<name>.<pid>.tmp.npy``."""
    removed = []
    for tmp in cache_dir.glob(".*.tmp.npy"):
        pid = tmp.name.rsplit(".", 3)[-3]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def build_cache(paths: list[str], pre: Preprocessing, cache_dir: str | Path | None = None,
                num_workers: int = 0, progress: bool = True) -> Path:
    """Return the path of an ``(N, 3, R, R)`` uint8 ``.npy`` holding ``paths`` in order; build it if absent."""

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cc = f"-{pre.colour_constancy}" if pre.colour_constancy else ""
    target = cache_dir / f"images-{pre.resize_size}px{cc}-{len(paths)}-{cache_key(paths, pre)}.npy"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    clean_orphans(cache_dir)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
    R = pre.resize_size
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, R, R))
        loader = torch.utils.data.DataLoader(_Decode(paths, pre), batch_size=32, num_workers=num_workers)
        i = 0
        with console.bar(total=len(paths), desc=f"cache images at {R}px", unit="img", disable=not progress) as bar:
            try:
                for batch in loader:
                    out[i:i + len(batch)] = batch.numpy()
                    i += len(batch)
                    bar.update(len(batch))
            except ImageDecodeError as exc:  # raised in the main process or re-raised from a worker
                from ..errors import DataError
                raise DataError(f"{original_message(exc)}. The run cannot use this image. Remedy: pass --verify to find "
                                "every unreadable image before training (with --allow-missing FRACTION to drop them), "
                                "or replace the file.") from None
        out.flush()
        del out
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def batch_seed(seed: int, first_key: int) -> int:
    """The augmentation seed of a batch: a function of the run's seed and the batch's first sampler key
    (``epoch * n + i``), so a batch is augmented alike by any number of workers, on any device, after
    ``--resume``."""
    return (seed * 1_000_003 + int(first_key)) % (2**63 - 1)


class CachedImages(torch.utils.data.Dataset):
    """Rows ``indices`` of a cache file with their targets; the memmap is opened lazily per worker.

    With ``seed`` set, item keys from :class:`EpochSampler` (``epoch * len + i``) seed the random
    augmentation of each sample, so augmentation is a function of (seed, epoch, sample): the same
    with any number of workers and after ``--resume``.
    """

    def __init__(self, cache_path: str | Path, indices, targets, transform, seed: int | None = None):
        self.cache_path = str(cache_path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = torch.as_tensor(np.asarray(targets))
        self.transform = transform
        self.seed = seed
        self._array = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int):
        i = key % len(self.indices)
        if self._array is None:
            self._array = np.load(self.cache_path, mmap_mode="r")
        if self.seed is not None:
            torch.manual_seed(batch_seed(self.seed, key))
        x = torch.from_numpy(np.array(self._array[self.indices[i]]))
        return self.transform(x), self.targets[i], i


class AugmentedBatches(CachedImages):
    """Training rows augmented a whole batch at a time by ``augment`` (a :class:`BatchAugment`) inside
    the DataLoader workers: the DataLoader hands ``__getitems__`` the batch's sampler keys."""

    def __init__(self, cache_path: str | Path, indices, targets, augment, seed: int):
        super().__init__(cache_path, indices, targets, None, seed)
        self.augment = augment

    def __getitem__(self, key: int):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[int]) -> list[tuple]:
        if self._array is None:
            self._array = np.load(self.cache_path, mmap_mode="r")
        i = np.asarray(keys, dtype=np.int64) % len(self.indices)
        rows = self.indices[i]
        order = np.argsort(rows, kind="stable")  # memmap reads in file order
        x = np.empty((len(rows), *self._array.shape[1:]), dtype=np.uint8)
        x[order] = self._array[rows[order]]
        out = self.augment(torch.from_numpy(x), torch.Generator().manual_seed(batch_seed(self.seed, keys[0])))
        return list(zip(out, self.targets[i], torch.from_numpy(i)))


class DeviceBatches:
    """The cache's rows ``indices`` as one uint8 tensor in device memory, served as whole batches with no
    per-sample Python: index gathering on the device, then ``transform``: a :class:`BatchAugment` (training,
    in :class:`EpochSampler` order, batch seeds as :class:`AugmentedBatches`) or a :class:`CenterBatch`
    (validation, in order). Under DDP each rank takes its own shard of the order (padded to equal length
    by repeating its start, as DistributedSampler; validation outputs are de-duplicated by index)."""

    def __init__(self, rows: CachedImages, batch_size: int, transform, sampler: "EpochSampler | None" = None,
                 device=None):
        """``rows``: the cache file, row indices, targets and seed (a :class:`CachedImages`; its own
        transform is not used)."""
        self.cache_path, self.indices, self.targets = rows.cache_path, rows.indices, rows.targets
        self.seed = rows.seed or 0
        self.batch_size, self.transform, self.sampler = batch_size, transform, sampler
        self.device, self._store = device, {}  # the device tensors, shared by copies (one per phase)
        self.batch_sampler = None  # Lightning reads sampler / batch_sampler (set_epoch, shuffle checks)

    @staticmethod
    def nbytes(cache_path: str | Path, n_rows: int) -> int:
        shape = np.load(cache_path, mmap_mode="r").shape
        return int(n_rows * np.prod(shape[1:]))

    def _shard(self) -> torch.Tensor:
        keys = torch.as_tensor(list(self.sampler) if self.sampler is not None else range(len(self.indices)))
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return keys
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        keys = torch.cat([keys, keys[:(-len(keys)) % world]])
        return keys[rank::world]

    def __len__(self) -> int:
        n = len(self.indices)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            n = -(-n // torch.distributed.get_world_size())
        return -(-n // self.batch_size)

    def __iter__(self):
        if "images" not in self._store:
            device = self.device or (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
                                     else torch.device("cpu"))
            order = np.argsort(self.indices)  # read the memmap in file order, then put rows in split order
            rows = torch.from_numpy(np.ascontiguousarray(np.load(self.cache_path, mmap_mode="r")[self.indices[order]]))
            images = torch.empty_like(rows)
            images[torch.from_numpy(order)] = rows
            self._store.update(images=images.to(device), targets=self.targets.to(device))
        images, targets = self._store["images"], self._store["targets"]
        for k in self._shard().split(self.batch_size):
            i = (k % len(self.indices)).to(images.device)
            if self.sampler is None:
                x = self.transform(images[i])
            else:
                g = torch.Generator(device=images.device).manual_seed(batch_seed(self.seed, k[0]))
                x = self.transform(images[i], g)
            yield x, targets[i], i


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled (or class-balanced, with ``weights``) order drawn from ``seed + epoch``; yields
    ``epoch * n + i`` keys for :class:`CachedImages`. Lightning calls ``set_epoch`` each epoch."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        offset = self.epoch * self.n
        return iter((offset + order).tolist())
