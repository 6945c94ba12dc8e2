"""One writer per run directory: the verbs that write into a run (prepare, train, lr-find, cv, run,
tune-threshold, evaluate) hold an OS file lock on ``RUN/.skinlesion.lock`` while they work, so a second
command on the same run stops at once with a message instead of interleaving checkpoints, splits or
thresholds. The OS drops the lock when the process ends, however it ends, so no stale lock is left."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import SkinlesionError

LOCK_NAME = ".skinlesion.lock"


class RunBusyError(SkinlesionError, RuntimeError):
    """Another skinlesion process is writing into the same run directory."""


def process_rank() -> int:
    """Non-zero in every process but the first under Lightning's DDP launcher or torchrun."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return int(os.environ.get("NODE_RANK", 0)) * 1024 + int(os.environ.get("LOCAL_RANK", 0))


@contextmanager
def run_lock(run_dir: str | Path | None, verb: str, create: bool = True) -> Iterator[None]:
    """Hold the run's lock for the body (rank 0 only: DDP ranks of one command share the run). A run
    folder this call had to create is removed again if the body left nothing in it but the lock; with
    ``create`` False (verbs that read an existing run) a missing folder is left to the verb to report."""
    if run_dir is None or process_rank() != 0:
        yield
        return
    from filelock import FileLock, Timeout
    run_dir = Path(run_dir)
    if (run_dir.exists() and not run_dir.is_dir()) or (not create and not run_dir.exists()):
        yield  # not a folder, or no run: the verb itself reports that with its own remedy
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(f"another skinlesion command is writing into {run_dir} (it holds {run_dir / LOCK_NAME}); "
                           f"running {verb} there now would mix their files. Remedy: wait for it to finish, or "
                           "choose another --out for this one.") from None
    before, started = _files(run_dir), time.time()
    failed = True
    try:
        yield
        failed = False
    finally:
        try:
            if failed and not _trained_since(run_dir, started):
                _remove_new(run_dir, before)
        finally:
            lock.release()
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
            run_dir.rmdir()


def _files(run_dir: Path) -> set[Path]:
    return set(run_dir.rglob("*"))


def _trained_since(run_dir: Path, started: float) -> bool:
    """Whether training work was saved during the command (a checkpoint written): that is kept for --resume."""
    return any(p.stat().st_mtime >= started - 1 for p in run_dir.rglob("*.ckpt") if p.is_file())


def _remove_new(run_dir: Path, before: set[Path]) -> None:
    """A command that failed leaves the run as it found it: the files it added (a split, config.yaml,
    binding.json, logs...) are removed, so the corrected next command does not trip over them. Files that
    existed before are only ever replaced atomically, so they are intact."""
    for path in sorted(_files(run_dir) - before, key=lambda p: len(p.parts), reverse=True):
        if path.name == LOCK_NAME:
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
