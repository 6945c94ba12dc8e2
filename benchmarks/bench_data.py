"""Training-input throughput (decode + augment + collate): naive per-epoch JPEG decoding vs the
project's decoded uint8 cache, with 0, 1 and 2 DataLoader workers.

    python benchmarks/bench_data.py [--data ../shared/data/ham10000-fullres-sample] [--image-size 224] [--json out.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from _common import SHARED, machine, table, write_json


class NaiveJPEGs(torch.utils.data.Dataset):
    """What a hand-written script does: open and fully decode the JPEG every epoch, PIL transforms."""

    def __init__(self, paths, size, mean, std):
        self.paths = paths
        self.tf = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
                              v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomRotation(30),
                              v2.ColorJitter(0.15, 0.15, 0.1, 0.02), v2.ToDtype(torch.float32, scale=True),
                              v2.Normalize(list(mean), list(std))])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(Image.open(self.paths[i]).convert("RGB")), 0, i


def _identity(x):
    return x


def rate(loader, epochs: int) -> float:
    for _ in loader:  # warm-up epoch (worker start-up, page cache)
        break
    n, t = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ham10000-fullres-sample"))
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json")
    args = ap.parse_args()
    from skinlesion.data.batch_augment import BatchAugment
    from skinlesion.data.cache import AugmentedBatches, CachedImages, EpochSampler, build_cache
    from skinlesion.data.transforms import Preprocessing

    paths = sorted(str(p) for p in Path(args.data).rglob("*.jpg"))
    pre = Preprocessing(args.image_size, round(args.image_size / 0.875), (0.5,) * 3, (0.5,) * 3)
    t = time.perf_counter()
    cache = build_cache(paths, pre, tempfile.mkdtemp(), num_workers=max(args.workers), progress=False)
    build_s = time.perf_counter() - t
    print(f"{len(paths)} JPEGs from {args.data}; cache built once in {build_s:.1f}s "
          f"({len(paths) / build_s:.0f} img/s, {max(args.workers)} workers); {machine()}")
    rows, result = [], {"machine": machine(), "images": len(paths), "image_size": args.image_size,
                        "cache_build_s": build_s, "runs": []}
    for w in args.workers:
        kw = dict(batch_size=args.batch_size, num_workers=w, persistent_workers=w > 0)
        naive = rate(torch.utils.data.DataLoader(NaiveJPEGs(paths, args.image_size, pre.mean, pre.std), shuffle=True, **kw), args.epochs)
        ds = AugmentedBatches(cache, np.arange(len(paths)), np.zeros(len(paths)),
                              BatchAugment(args.image_size, pre.mean, pre.std), seed=0)
        cached = rate(torch.utils.data.DataLoader(ds, sampler=EpochSampler(len(paths), 0), **kw), args.epochs)
        # GPU recipe: workers only read and collate uint8 squares; augmentation runs on the device
        raw_ds = CachedImages(cache, np.arange(len(paths)), np.zeros(len(paths)), _identity, seed=0)
        raw = rate(torch.utils.data.DataLoader(raw_ds, sampler=EpochSampler(len(paths), 0), **kw), args.epochs)
        rows.append([w, naive, cached, f"{cached / naive:.1f}x", raw, f"{raw / naive:.0f}x"])
        result["runs"].append({"workers": w, "naive_images_per_s": naive, "cache_cpu_augment_images_per_s": cached,
                               "ratio_cpu_augment": cached / naive, "cache_uint8_images_per_s": raw,
                               "ratio_uint8": raw / naive})
    # device-side batch augmentation, here on the CPU (the GPU recipe's path), from uint8 batches
    raw = CachedImages(cache, np.arange(len(paths)), np.zeros(len(paths)), _identity)
    aug, g = BatchAugment(args.image_size, pre.mean, pre.std), torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(raw, batch_size=args.batch_size, num_workers=0)
    n, t = 0, time.perf_counter()
    for _ in range(args.epochs):
        for x, _, _ in loader:
            n += len(aug(x, g))
    batch_rate = n / (time.perf_counter() - t)
    result["batch_augment_cpu_images_per_s"] = batch_rate
    print(table(rows, ["workers", "naive JPEG img/s", "cache+CPU aug img/s", "ratio", "cache uint8 (GPU recipe) img/s", "ratio"]))
    print(f"batched tensor augmentation (GPU-recipe code) run on the CPU, 0 workers: {batch_rate:.0f} img/s "
          f"({batch_rate / result['runs'][0]['naive_images_per_s']:.1f}x naive with 0 workers)")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
