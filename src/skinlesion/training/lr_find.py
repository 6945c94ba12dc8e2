"""`skinlesion lr-find`: Lightning's learning-rate finder on the run's training split, with the recipe's
first phase (the frozen-backbone head for two-phase recipes, the whole network for one-phase ones)."""
from __future__ import annotations

import math
from pathlib import Path

from .. import atomic
from ..config import RunConfig
from ..data.run import Run
from ..errors import DataError
from ..models.classifier import set_trainable
from .fit import _phase_plan, setup_training
from .trainer import _make_trainer, _quietly
from .module import Phase


def lr_find(cfg: RunConfig, run: Run | str | Path, num_training: int = 100, lr_range: tuple[float, float] = (1e-7, 1.0)
            ) -> dict:
    """Sweep the learning rate exponentially over ``num_training`` steps; write ``lr_find.json`` and
    ``plots/lr_find.png``; return the suggestion (steepest descent of the smoothed loss)."""
    from lightning.pytorch.tuner import Tuner
    min_lr, max_lr = lr_range
    if not (math.isfinite(min_lr) and math.isfinite(max_lr) and 0 < min_lr < max_lr):
        raise DataError(f"--min-lr {min_lr} and --max-lr {max_lr} must satisfy 0 < min < max. Remedy: --min-lr 1e-7 "
                        "--max-lr 1")
    if num_training < 10:
        raise DataError(f"--num-training must be at least 10 steps, got {num_training}. Remedy: --num-training 100")
    run = Run.of(run)
    st = setup_training(cfg, run, resume=False, write=False)
    t = st.cfg.train
    plan = _phase_plan(t, st.spec, st.n_groups)[0]
    phase, unfreeze = plan.phase, plan.unfreeze
    module = st.module(Phase(plan, 0, set_trainable(st.model, unfreeze)))
    sweep = Phase(plan._replace(epochs=num_training), 0, [])  # epochs >= steps
    trainer, _ = _make_trainer(t, Run(run.path / "lr_find", run.console), sweep)
    trainer.logger = None
    loader = st.data.train_loader(t.seed + 1000 * phase)
    finder = _quietly(Tuner(trainer).lr_find, module, train_dataloaders=loader, val_dataloaders=st.data.val_loader(),
                      min_lr=min_lr, max_lr=max_lr, num_training=num_training, attr_name="lr", update_attr=False)
    if finder is None:
        raise DataError("the learning-rate finder stopped early (the loss diverged at once). Remedy: lower --max-lr")
    suggestion = finder.suggestion()
    fig = finder.plot(suggest=True)
    fig.axes[0].set_title(f"{t.arch}, phase {phase} ({'whole network' if unfreeze else 'head only'}); "
                          f"suggested lr {suggestion:.2e}" if suggestion else "no suggestion")
    atomic.save_figure(run.plots / "lr_find.png", fig, dpi=110)
    result = {"suggested_lr": suggestion, "phase": phase, "trainable": "whole network" if unfreeze else "head",
              "num_training": num_training, "min_lr": min_lr, "max_lr": max_lr,
              "lr": [float(x) for x in finder.results["lr"]], "loss": [float(x) for x in finder.results["loss"]],
              "note": "layer-wise LR decay is not applied during the sweep (one rate for every group)"}
    atomic.write_json(run.lr_find_json, result)
    return result
