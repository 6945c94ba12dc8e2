"""How much of the device the training pipeline uses: the bare train/eval step against the project's own
training, on whatever device is present (CPU here, CUDA when there is one), in one run.

    python benchmarks/bench_pipeline.py [--data ../shared/data/ham10000-lowres] [--arch efficientnet_lite0]
        [--image-size 160] [--epochs 3] [--limit-train-batches 40] [--out benchmarks/results/pipeline_cpu]

1. bare step: the same model, batch size, precision and memory format as the project's default on this
   device; synthetic tensors already in device memory; AdamW + BCE, forward/backward/step (train) and a
   no_grad forward (eval); images/s after warm-up;
2. the project: ``skinlesion train`` with the default recipe on real images for ``--epochs`` epochs
   (``--limit-train-batches`` batches each, to keep a CPU run short), train and validation images/s of
   the steady epochs (2..E; epoch 1 also reported as the start-up) from its metrics.csv;
3. ratio = project / bare. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _common import SHARED, machine, table, write_json
from skinlesion.data.run import Run


def bare_rates(arch: str, image_size: int, batch: int, device: torch.device, min_time: float) -> dict:
    """Images/s of the bare train step and eval step, as the project's default configures them."""
    from skinlesion.config import load_config
    from skinlesion.models import build_model, get_spec
    from skinlesion.training import recipe
    from skinlesion.training.trainer import _precision
    t = recipe.device_batch(load_config().train, device.type == "cuda")  # the CLI's default recipe on this device
    precision = _precision(t.precision)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    model = build_model(get_spec(arch, image_size), "binary", pretrained=False).to(device)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = recipe.build_optimizer(model, t, t.lr)
    x = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,), device=device).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def train_step():
        with autocast():
            loss = loss_fn(model(x).float().squeeze(-1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        with autocast():
            model(x)

    def rate(step, train: bool) -> float:
        model.train(train)
        for _ in range(3):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_time or n < 3:
            step()
            n += 1
            if device.type == "cuda" and n % 10 == 0:
                torch.cuda.synchronize()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * batch / (time.perf_counter() - start)

    return {"precision": precision, "channels_last": t.channels_last, "batch_size": batch,
            "train_img_s": rate(train_step, True), "eval_img_s": rate(eval_step, False)}


def project_rates(data: Path, arch: str, image_size: int, epochs: int, limit: int | None, work: Path,
                  batch: int | None) -> dict:
    """Train with the default recipe; steady-state throughput from metrics.csv."""
    from skinlesion.config import load_config
    from skinlesion.training.fit import train
    from skinlesion.training.history import read_history
    cfg = load_config(overrides={"data.root": str(data), "train.arch": arch, "train.image_size": image_size,
                                 "train.epochs": epochs, "train.pretrained": False, "train.patience": epochs + 1,
                                 "train.limit_train_batches": limit, "train.cache_dir": str(work / "cache"),
                                 "train.batch_size": batch})
    start = time.perf_counter()
    train(cfg, Run.quiet(work / "run"))
    wall = time.perf_counter() - start
    h = read_history(work / "run" / "metrics.csv")
    steady = h.iloc[1:] if len(h) > 1 else h
    return {"epochs": int(len(h)), "batches_per_epoch": limit, "wall_s": wall,
            "train_img_s": float(steady["train_images_per_s"].median()),
            "eval_img_s": float(steady["val_images_per_s"].median()),
            "epoch1_train_s": float(h["train_seconds"].iloc[0]),
            "steady_train_s": float(steady["train_seconds"].median()),
            "val_roc_auc_last": float(h["val_roc_auc"].iloc[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "ham10000-lowres")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the project's default batch size")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit-train-batches", type=int, default=None, help="batches per training epoch (default: all)")
    ap.add_argument("--min-time", type=float, default=10.0, help="seconds per bare-step measurement")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    from skinlesion.config import load_config
    if not args.data.is_dir():
        raise SystemExit(f"no dataset at {args.data}: pass --data DIR (HAM10000 layout)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from skinlesion.training.recipe import device_batch
    batch = args.batch_size or device_batch(load_config().train, device.type == "cuda").batch_size
    print(f"device: {device}; {args.arch} at {args.image_size}px, batch {batch}")
    bare = bare_rates(args.arch, args.image_size, batch, device, args.min_time)
    print(f"bare step: train {bare['train_img_s']:.1f} img/s, eval {bare['eval_img_s']:.1f} img/s ({bare['precision']})")
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        proj = project_rates(args.data, args.arch, args.image_size, args.epochs, args.limit_train_batches, work,
                             args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = {"train": proj["train_img_s"] / bare["train_img_s"], "eval": proj["eval_img_s"] / bare["eval_img_s"]}
    rows = [["train", bare["train_img_s"], proj["train_img_s"], f"{ratio['train']:.2f}"],
            ["eval", bare["eval_img_s"], proj["eval_img_s"], f"{ratio['eval']:.2f}"]]
    text = table(rows, ["step", "bare img/s", "project img/s", "ratio"])
    text += (f"\n\nproject: {proj['epochs']} epochs, epoch-1 training {proj['epoch1_train_s']:.1f}s vs steady "
             f"{proj['steady_train_s']:.1f}s (start-up ratio {proj['epoch1_train_s'] / proj['steady_train_s']:.2f}); "
             f"wall {proj['wall_s']:.0f}s")
    print(text)
    result = {"device": str(device), "machine": machine(), "arch": args.arch, "image_size": args.image_size,
              "bare": bare, "project": proj, "ratio": ratio}
    if args.out:
        write_json(args.out + ".json", result)
        Path(args.out + ".md").write_text(f"# Pipeline vs bare step ({device}, {args.arch} {args.image_size}px)\n\n"
                                          f"```\n{text}\n```\n")


if __name__ == "__main__":
    main()
