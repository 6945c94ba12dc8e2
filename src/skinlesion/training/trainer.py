"""The Lightning Trainer of one training phase: callbacks (checkpoints, early stopping, history, per-epoch
reseeding and whatever the caller adds), loggers, precision and the quiet logging every phase shares."""
from __future__ import annotations

import logging
import math
import random
import sys
import warnings

import lightning as L
import numpy as np
import torch

from ..data.run import Run
from ..tracking import phase_loggers
from .history import HistoryRecorder
from .module import Phase


def _precision(cfg_value: str | None) -> str:
    if cfg_value:
        return cfg_value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _accelerator_is_cuda(t) -> bool:
    return torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda")


class _NoTips(logging.Filter):
    """Drop Lightning's advertising tips (e.g. the litmodels one) from every log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.getMessage())
        return "💡 Tip" not in text and "litmodels" not in text


for _name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
    logging.getLogger(_name).addFilter(_NoTips())


def _make_trainer(t, run: Run, ph: Phase, trackers=(), extra=()):
    """The phase's Trainer. On a terminal, Lightning's progress bar; otherwise (a log file, CI) no bar
    redraws but one line per epoch, and none of Lightning's start-up chatter."""
    tty = sys.stderr.isatty()
    if not tty:
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
            logging.getLogger(name).setLevel(logging.WARNING)
    phase, epochs, offset = ph.plan.phase, ph.plan.epochs, ph.offset
    progress = run.console.progress
    ckpt_dir = run.phase_dir(phase)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor="val/pr_auc", mode="max", enable_version_counter=False)
    # Lightning 2.6 refreshes save_last only when a top-k checkpoint is saved; resuming needs the latest epoch.
    latest = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                                 every_n_epochs=1, enable_version_counter=False)
    callbacks = [checkpoint, latest, L.pytorch.callbacks.EarlyStopping("val/pr_auc", mode="max", patience=t.patience),
                 L.pytorch.callbacks.LearningRateMonitor("epoch"),
                 HistoryRecorder(run.history_csv, phase, offset, run.console.echo if progress and not tty else None,
                                 t.epochs), _EpochReseed(t.seed, phase), *extra]
    loggers = phase_loggers(t, run.path, phase) + list(trackers)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=t.accelerator, devices=_devices(t.devices), strategy=t.strategy,
        num_nodes=t.num_nodes, precision=_precision(t.precision), callbacks=callbacks, logger=loggers or False,
        num_sanity_val_steps=0, enable_progress_bar=progress and tty, enable_model_summary=False, log_every_n_steps=10,
        limit_train_batches=t.limit_train_batches, benchmark=True if _accelerator_is_cuda(t) else None)
    return trainer, checkpoint


def _quietly(run, *args, **kwargs):
    """Call trainer.fit / trainer.validate without Lightning's warnings that do not apply here."""
    with warnings.catch_warnings():
        for message in (".*does not have many workers.*", ".*module\\(s\\) in eval mode.*", ".*LeafSpec.*",
                        ".*smaller than the logging interval.*",
                        # resume: a mid-epoch checkpoint continues with the epoch's remaining number of batches
                        # (docs/bad-inputs.md); the folders of a resumed or copied run are ours and not empty
                        ".*checkpoint that ended before the epoch ended.*", ".*exists and is not empty.*",
                        ".*The dirpath has changed from.*"):
            warnings.filterwarnings("ignore", message=message)
        return run(*args, **kwargs)


def _batches(trainer) -> int | None:
    n = getattr(trainer, "num_training_batches", None)
    return int(n) if isinstance(n, (int, float)) and math.isfinite(n) else None


def _devices(value: str):
    return int(value) if str(value).isdigit() else value


class _EpochReseed(L.Callback):
    """Reseed the global RNG (dropout) from (seed, phase, epoch) so --resume reproduces the run.
    (Under DDP, Lightning's DistributedSamplerWrapper forwards set_epoch to the EpochSampler.)"""

    def __init__(self, seed: int, phase: int):
        self.seed, self.phase = seed, phase

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = self.seed * 7 + self.phase * 100_003 + trainer.current_epoch
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # timm's Mixup draws from numpy and random: restored on --resume too
        random.seed(seed)
