"""`skinlesion demo`: the whole chain on synthetic HAM10000-layout data, offline."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from .config import RunConfig
from .console import Console
from .data.run import Run
from .data.prepare import prepare
from .data.synthetic import make_demo_data


def demo_config(cfg: RunConfig, data_dir: Path) -> RunConfig:
    """The run config the demo trains with: demo data as input, the demo's short training schedule."""
    from .config import RECIPES
    d = cfg.demo
    # the demo keeps its short two-phase (classic) schedule, whatever the default recipe of `train` is
    train = dataclasses.replace(cfg.train, **{**RECIPES["classic"], "recipe": "classic", "arch": d.arch,
                                              "epochs": d.epochs, "phase1_epochs": min(d.phase1_epochs, d.epochs),
                                              "lr": d.lr, "image_size": d.train_size})
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(data_dir), metadata=None), train=train)


def run_demo(cfg: RunConfig, out: str | Path | None = None, progress: bool = True, echo=print) -> dict:
    """Generate demo data into ``out/data``, then prepare and train into ``out/run``; return the results."""
    import pandas as pd

    from .evaluation.site_data import EvalOptions
    from .inference.predictor import Predictor
    from .pipeline import train_tune_evaluate

    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="skinlesion-demo-"))
    data_dir, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    echo(f"[1/6] generating {cfg.demo.n} synthetic images (seed {cfg.demo.seed}) -> {data_dir}")
    make_demo_data(data_dir, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=progress)
    cfg = demo_config(cfg, data_dir)
    echo(f"[2/6] prepare: lesion-level split -> {run_dir}")
    run = Run(run_dir, Console(progress, echo))
    echo(prepare(cfg, run).report())
    echo(f"[3/6] train: {cfg.train.arch}, {cfg.train.epochs} epochs at {cfg.train.image_size}px (ImageNet weights, "
         "offline); [4/6] tune-threshold; [5/6] evaluate on the held-out test split")
    chain = train_tune_evaluate(cfg, run, 0.90, EvalOptions(n_boot=cfg.demo.bootstrap, progress=progress))
    result, evaluation = chain.train, chain.evaluation
    echo("[6/6] predict: a few test images with the bundle")
    test_ids = pd.read_csv(run.predictions("test"))["image_id"].head(4)
    paths = [str(data_dir / "images" / f"{i}.jpg") for i in test_ids]
    preds = Predictor.from_bundle(result.bundle).predict(paths)
    preds.insert(0, "image", [Path(p).name for p in paths])
    echo(preds.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    echo(f"demo finished in {time.perf_counter() - t0:.0f}s (synthetic data: not a real-world result)")
    echo(f"bundle: {result.bundle}\nsee it in a browser: skinlesion serve --model {result.bundle}  (then open http://127.0.0.1:8000/)")
    return {"out": out, "data": data_dir, "run": run_dir, "train": result, "evaluation": evaluation}
