"""A run directory's split as the stages see it, and the binding of models and their artifacts to it.

Every artifact that depends on a split (checkpoints, bundle, val predictions, threshold, calibration,
metrics) records :func:`~skinlesion.data.split.split_fingerprint` of the split *with the run's fold
applied*; every stage that reads such an artifact calls :func:`check_binding` first, so a model is never
scored, tuned or calibrated on images it trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .split import attach_paths, load_split, split_fingerprint, use_fold

ARTIFACTS_OF_A_MODEL = ("checkpoints", "bundle", "val_predictions.csv")


@dataclass(frozen=True)
class RunContext:
    """The run's effective split (``fold`` applied) and its fingerprint."""

    run_dir: Path
    split: pd.DataFrame
    fold: int | None
    fingerprint: str
    summary: dict

    def rows(self, which: str) -> pd.DataFrame:
        return self.split[self.split["split"] == which]

    def with_paths(self, root: str | Path | None) -> pd.DataFrame:
        """The split joined with image paths below ``root`` (default: the root recorded at prepare)."""
        root = root or self.summary.get("dataset", {}).get("root")
        if not root:
            raise DataError(f"{self.run_dir / 'split.json'} records no data folder. Remedy: pass --data DIR.")
        return attach_paths(self.split, root, str(self.run_dir / "split.csv"))


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or a DataError naming the file (never a traceback)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} not found ({what}).") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); it was damaged or edited by hand. Remedy: restore it "
                        "or re-create it with the stage that writes it.") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object ({what}).")
    return data


def check_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist. Remedy: pass a folder made by `skinlesion "
                        "prepare` or `skinlesion train --out`.")
    return run_dir


def open_run(run_dir: str | Path, fold: int | None = None) -> RunContext:
    """Load and check ``split.csv`` (see :func:`load_split`), apply ``fold``, fingerprint the result."""
    run_dir = check_run_dir(run_dir)
    split = load_split(run_dir)
    if fold is not None:
        split = use_fold(split, fold)
    summary = read_json(run_dir / "split.json", "written by prepare") if (run_dir / "split.json").is_file() else {}
    return RunContext(run_dir, split, fold, split_fingerprint(split, fold), summary)


def share_split(src: Path, dst: Path) -> None:
    """Give run folder ``dst`` (a cv fold, a search trial) the split of ``src``: split.csv and split.json,
    copied where ``dst`` does not have them yet."""
    import shutil
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("split.csv", "split.json"):
        if not (dst / name).is_file():
            shutil.copy(src / name, dst / name)


def binding(ctx: RunContext) -> dict:
    """What an artifact records about the split it came from."""
    return {"split_fingerprint": ctx.fingerprint, "fold": ctx.fold}


def check_binding(recorded: dict | None, ctx: RunContext, what: str) -> None:
    """Refuse an artifact made on another split (or fold) than the run's current one."""
    if not recorded or not recorded.get("split_fingerprint"):
        raise DataError(f"{what} records no split fingerprint (made by an older skinlesion, or edited by hand), so "
                        f"it cannot be shown to belong to the split in {ctx.run_dir / 'split.csv'}. Remedy: train "
                        "again with this version (a new --out).")
    if recorded.get("fold") != ctx.fold:
        raise DataError(f"{what} was made with fold {recorded.get('fold')}, but the run uses fold {ctx.fold}. "
                        f"Remedy: use the run directory of fold {recorded.get('fold')}.")
    if recorded["split_fingerprint"] != ctx.fingerprint:
        raise DataError(f"{what} was made on a different split than {ctx.run_dir / 'split.csv'} holds now (the split "
                        "was re-made or edited after training), so its images may include training lesions. Remedy: "
                        "restore the original split.csv, or train again in a new --out.")


def check_no_model(run_dir: str | Path) -> None:
    """``prepare`` must not replace the split under a trained model (that would leak its training lesions)."""
    run_dir = Path(run_dir)
    found = [name for name in ARTIFACTS_OF_A_MODEL if (run_dir / name).exists()]
    if found:
        raise DataError(f"{run_dir} already has {', '.join(found)}: replacing its split would let the model be "
                        "scored on lesions it trained on. Remedy: prepare into a new --out folder.")
