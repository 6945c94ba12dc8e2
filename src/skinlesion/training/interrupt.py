"""Interrupted training keeps its work: on SIGTERM (a batch scheduler's pre-emption or time limit) or SIGINT
(Ctrl-C), and every ``--checkpoint-minutes`` inside long epochs, the phase's ``last.ckpt`` is written
(atomically) after the current batch; a signal then stops the run with ``errors.Interrupted`` (exit 143 /
130) and a one-line remedy, and ``checkpoints/interrupted.json`` tells ``runs`` and ``--resume`` what
happened. A second Ctrl-C stops at once (the last saved checkpoint is kept)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import lightning as L

from .. import atomic
from ..data.run import Run
from ..errors import Interrupted



class SaveOnInterrupt(L.Callback):
    """Installed for one phase's ``trainer.fit``: catches SIGINT/SIGTERM in the main process (after
    Lightning's own handlers, which only act at the end of an epoch) and saves a resumable checkpoint."""

    def __init__(self, run_dir: Path, phase: int, every_minutes: float):
        self.run_dir, self.phase = Path(run_dir), phase
        self.every_s = every_minutes * 60 if every_minutes and every_minutes > 0 else None
        self.requested: int | None = None
        self.saved: Path | None = None
        self._last_save = time.monotonic()
        self._previous: dict = {}

    # -- signals -------------------------------------------------------------------------------------------
    def _handler(self, signum, frame) -> None:
        if self.requested is not None:  # asked twice: stop now, keeping the last saved checkpoint
            raise Interrupted(signum, self.message(signum))
        self.requested = signum

    def on_train_start(self, trainer, pl_module) -> None:  # after Lightning registered its own handlers
        import threading
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    # -- saving --------------------------------------------------------------------------------------------
    def _save(self, trainer, signalled: bool) -> None:
        """The phase's last.ckpt with the full training state (optimizer, loops; read back with
        weights_only=True by --resume); after a signal also the marker for `runs` and the message."""
        ckpt_dir = Run(self.run_dir).phase_dir(self.phase)
        target = ckpt_dir / "last.ckpt"
        tmp = ckpt_dir / f".last.{os.getpid()}.tmp.ckpt"
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, target)
        self.saved, self._last_save = target, time.monotonic()
        if signalled and trainer.is_global_zero:
            atomic.write_json(Run(self.run_dir).interrupted_json, {
                "signal": signal.Signals(self.requested).name,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "phase": self.phase, "epoch": trainer.current_epoch,
                "batches_done_in_epoch": int(trainer.fit_loop.epoch_loop.batch_progress.current.completed),
                "checkpoint": target.relative_to(self.run_dir).as_posix()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requested is not None:
            self._save(trainer, signalled=True)
            raise Interrupted(self.requested, self.message(self.requested))
        if self.every_s is not None and time.monotonic() - self._last_save >= self.every_s:
            self._save(trainer, signalled=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()  # the epoch-end checkpoint has just been written

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()
        if self.requested is not None and self.saved is None:
            # a signal, then a failure before the next batch ended (e.g. a DataLoader worker killed by the same
            # SIGTERM): the weights are those after the last completed step, so save them
            try:
                self._save(trainer, signalled=True)
            except Exception:  # noqa: BLE001 - the epoch-end checkpoint, if any, is still there
                pass

    def message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        where = f"saved {self.saved}" if self.saved else "kept the last epoch's checkpoint"
        return (f"training interrupted by {name}: {where}. Remedy: continue with "
                f"`skinlesion train --out {self.run_dir} --resume` (the run's config is reused).")
