"""Per-epoch history (metrics.csv), the training-history plot and validation predictions."""
from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import pandas as pd

from .. import atomic
from ..tables import RunFileError, read_csv_exact

HISTORY_COLUMNS = ["epoch", "phase", "lr", "train_loss", "val_loss", "val_roc_auc", "val_pr_auc",
                   "val_sensitivity", "val_specificity", "val_predicted_positive_rate", "epoch_seconds",
                   "train_seconds", "val_seconds", "train_images_per_s", "val_images_per_s"]


def read_history(path: Path) -> pd.DataFrame:
    """metrics.csv (every column checked, numbers exact), or an empty history when absent."""
    if not path.is_file():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    remedy = "delete it (the per-epoch history restarts; the checkpoints are kept) and run the command again."
    history = read_csv_exact(path, remedy, tuple(HISTORY_COLUMNS))
    bad = [c for c in HISTORY_COLUMNS if not pd.api.types.is_numeric_dtype(history[c]) and len(history)]
    if bad:
        raise RunFileError(f"{path}: column(s) {', '.join(bad)} hold non-numbers. Remedy: {remedy}")
    return history


class HistoryRecorder(L.Callback):
    """Appends one row per finished epoch to ``metrics.csv`` (rewritten atomically), with the global
    epoch number across phases; rows at or after a resumed epoch are replaced."""

    def __init__(self, path: Path, phase: int, epoch_offset: int, echo=None, total_epochs: int | None = None):
        self.path, self.phase, self.epoch_offset = Path(path), phase, epoch_offset
        self.echo, self.total_epochs = echo, total_epochs  # echo: one line per epoch (logs that are not a terminal)
        self._t = {}
        self._seen = self._val_seen = 0

    def on_train_start(self, trainer, pl_module) -> None:  # a resumed mid-epoch run starts without an epoch start
        self._t = {"start": time.perf_counter()}
        self._seen = self._val_seen = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = {"start": time.perf_counter()}
        self._seen = self._val_seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += len(batch[1]) * trainer.world_size

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._t["val_start"] = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._val_seen += len(batch[1]) * trainer.world_size

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._t["val_end"] = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        elapsed = time.perf_counter() - self._t["start"]
        train_s = self._t.get("val_start", time.perf_counter()) - self._t["start"]
        val_s = self._t.get("val_end", 0.0) - self._t.get("val_start", 0.0)
        row = {"epoch": self.epoch_offset + trainer.current_epoch + 1, "phase": self.phase,
               "lr": max(g["lr"] for g in trainer.optimizers[0].param_groups),  # the head's (top) rate
               "train_loss": m.get("train/loss", math.nan), "val_loss": m.get("val/loss", math.nan),
               **{f"val_{k}": m.get(f"val/{k}", math.nan) for k in
                  ("roc_auc", "pr_auc", "sensitivity", "specificity", "predicted_positive_rate")},
               "epoch_seconds": elapsed, "train_seconds": train_s, "val_seconds": val_s,
               "train_images_per_s": self._seen / train_s if train_s > 0 else math.nan,
               "val_images_per_s": self._val_seen / val_s if val_s > 0 else math.nan}
        history = read_history(self.path)
        history = history[history["epoch"] < row["epoch"]] if len(history) else history
        atomic.write_csv(self.path, pd.concat([history, pd.DataFrame([row])], ignore_index=True)[HISTORY_COLUMNS])
        if self.echo is not None:
            self.echo(f"epoch {row['epoch']}" + (f"/{self.total_epochs}" if self.total_epochs else "")
                      + f" (phase {self.phase}): train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                      f"val ROC-AUC {row['val_roc_auc']:.3f}, PR-AUC {row['val_pr_auc']:.3f}, lr {row['lr']:.2e}, "
                      f"{elapsed:.0f} s ({row['train_images_per_s']:.0f} train img/s)")


def plot_history(history: pd.DataFrame, out: Path) -> Path:
    """Loss, ROC-AUC, PR-AUC and learning rate per epoch; the phase boundary is a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    e = history["epoch"]
    axes[0].plot(e, history["train_loss"], "o-", label="train")
    axes[0].plot(e, history["val_loss"], "o-", label="val")
    axes[0].legend()
    axes[1].plot(e, history["val_roc_auc"], "o-", color="C2")
    axes[2].plot(e, history["val_pr_auc"], "o-", color="C3")
    axes[3].plot(e, history["lr"], "o-", color="C4")
    if (history["lr"] > 0).all():  # a log axis needs positive rates (an lr of 0 is legal)
        axes[3].set_yscale("log")
    boundary = history.loc[history["phase"] == 2, "epoch"]
    for ax, title in zip(axes, ["loss", "val ROC-AUC", "val PR-AUC (average precision)", "learning rate"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(boundary) and (history["phase"] == 1).any():
            ax.axvline(boundary.min() - 0.5, color="grey", ls="--", lw=1)
    axes[0].text(0.02, 0.02, "dashed: phase 1 -> 2", transform=axes[0].transAxes, fontsize=8, color="grey")
    fig.tight_layout()
    atomic.save_figure(out, fig, dpi=100)
    plt.close(fig)
    return out
