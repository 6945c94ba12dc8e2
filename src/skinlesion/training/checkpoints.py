"""Checkpoints of a run: what --resume may not change, binding to the split, and loading weights
without unpickling objects (``weights_only=True``) from paths that stay inside the run."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import LOCKED_KEYS, RunConfig
from ..errors import DataError
from ..data.run import Run, RunContext, check_binding, read_json

def check_resume_config(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a ``--resume`` that would change what the run trains, before anything is written."""
    from ..config import ConfigError, load_config
    path = Run.of(run_dir).config_yaml
    if not path.is_file():
        return
    from .recipe import device_batch
    from .trainer import _accelerator_is_cuda
    cuda = _accelerator_is_cuda(cfg.train)  # both sides with the default batch (and lr) resolved as train does
    saved, now = device_batch(load_config(path).train, cuda), device_batch(cfg.train, cuda)
    changed = [k for k in LOCKED_KEYS if getattr(now, k) != getattr(saved, k)
               and not (k == "image_size" and now.image_size is None)]
    if changed:
        diff = ", ".join(f"{k}: {getattr(saved, k)!r} in the run, {getattr(now, k)!r} now" for k in changed)
        raise ConfigError(f"--resume cannot change what {run_dir} trains ({diff}). Remedy: resume without those "
                          "flags (the run's config.yaml is used), or train the new settings into a new --out.")


def has_checkpoints(run_dir: Path) -> bool:
    """Whether the run holds saved training work (any .ckpt) that --resume continues from."""
    ckpt_dir = Run.of(run_dir).checkpoints
    return ckpt_dir.is_dir() and any(ckpt_dir.rglob("*.ckpt"))


def check_checkpoint_binding(ctx: RunContext, ckpt_dir: Path) -> None:
    path = ckpt_dir / "binding.json"
    if path.is_file():
        check_binding(read_json(path, "written by train"), ctx, f"the checkpoints in {ckpt_dir}")
    elif any(ckpt_dir.rglob("*.ckpt")):
        check_binding(None, ctx, f"the checkpoints in {ckpt_dir}")


def checkpoint_path(run_dir: Path, recorded: str) -> Path:
    """A checkpoint path recorded in the run dir, resolved inside it; anything pointing outside is refused
    (a copied run must not silently read the original run's weights)."""
    path = (run_dir / recorded).resolve() if not Path(recorded).is_absolute() else Path(recorded).resolve()
    if not path.is_relative_to(Run.of(run_dir).checkpoints.resolve()):
        raise DataError(f"{run_dir}: a checkpoint path recorded in the run ({recorded}) points outside "
                        f"{Run.of(run_dir).checkpoints}. Remedy: train again in a new --out.")
    return path


def _safe_load(ckpt: Path) -> dict:
    """A checkpoint's content, read without unpickling objects (``weights_only=True``)."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
            raise ValueError("no state_dict")
        return state
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not our checkpoint
        raise DataError(f"{ckpt}: not a loadable skinlesion checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); only plain tensors and numbers are "
                        "read from checkpoints. Remedy: delete it and train again.") from None


def verify_checkpoints(run_dir: Path) -> None:
    """Before ``--resume`` writes anything: every checkpoint loads as plain tensors and every recorded
    path stays inside the run."""
    ckpt_dir = Run.of(run_dir).checkpoints
    for phase_json in sorted(ckpt_dir.glob("phase*/phase.json")):
        best = checkpoint_path(run_dir, str(read_json(phase_json, "written by train").get("best_path", "")))
        if not best.is_file():
            raise DataError(f"{phase_json} names {best}, which does not exist. Remedy: train again in a new --out.")
    for ckpt in sorted(ckpt_dir.rglob("*.ckpt")):
        _safe_load(ckpt)


def _load_weights(module, ckpt: Path) -> None:
    """Load a checkpoint's weights without unpickling objects (``weights_only=True``)."""
    try:
        module.load_state_dict(_safe_load(ckpt)["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{ckpt}: its weights do not fit this run's model ({str(exc).splitlines()[0][:200]}). "
                        "Remedy: delete it and train again.") from None
