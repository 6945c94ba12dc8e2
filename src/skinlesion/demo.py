"""`skinlesion demo`: the whole chain on synthetic HAM10000-layout data, offline."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from .config import RunConfig
from .data.prepare import prepare
from .data.synthetic import make_demo_data


def demo_config(cfg: RunConfig, data_dir: Path) -> RunConfig:
    """The run config the demo trains with: demo data as input, the demo's short training schedule."""
    d = cfg.demo
    train = dataclasses.replace(cfg.train, arch=d.arch, epochs=d.epochs, phase1_epochs=min(d.phase1_epochs, d.epochs),
                                lr=d.lr, image_size=d.train_size)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(data_dir), metadata=None), train=train)


def run_demo(cfg: RunConfig, out: str | Path | None = None, progress: bool = True, echo=print) -> dict:
    """Generate demo data into ``out/data``, then prepare and train into ``out/run``; return the results."""
    from .training.fit import train

    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="skinlesion-demo-"))
    data_dir, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    echo(f"[1/3] generating {cfg.demo.n} synthetic images (seed {cfg.demo.seed}) -> {data_dir}")
    make_demo_data(data_dir, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=progress)
    cfg = demo_config(cfg, data_dir)
    echo(f"[2/3] prepare: lesion-level split -> {run_dir}")
    echo(prepare(cfg, run_dir, progress=progress).report())
    echo(f"[3/3] train: {cfg.train.arch}, {cfg.train.epochs} epochs at {cfg.train.image_size}px (ImageNet weights, offline)")
    result = train(cfg, run_dir, progress=progress, echo=echo)
    v = result.val_metrics
    echo(f"demo finished in {time.perf_counter() - t0:.0f}s: val ROC-AUC {v['roc_auc']:.3f}, PR-AUC {v['pr_auc']:.3f} "
         f"(synthetic data; per-epoch figures in {run_dir / 'metrics.csv'})")
    echo(f"bundle: {result.bundle}")
    return {"out": out, "data": data_dir, "run": run_dir, "train": result}
