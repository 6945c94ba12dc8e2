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

from ..console import Console
from ..errors import DataError
from ..tables import read_csv_exact
from .split import attach_paths, load_split, split_fingerprint, use_fold, write_split


class Run:
    """A run folder: the only code that knows its layout. Every artifact path is an attribute here, the
    readers share one validation policy (:func:`read_json`: missing, damaged or not an object -> one
    DataError naming the file), the split binding comes from :meth:`context`, and the run carries the
    console (progress bars, step lines) and the data-loader workers its stages use.

    Layout::

        split.csv  split.json  config.yaml  cv.json  threshold.json  metrics.json  metrics.csv
        val_predictions.csv  test_predictions.csv  oof_predictions.csv  report.html  model_card.md
        stack.json  stack_oof_predictions.csv  lr_find.json
        checkpoints/{binding.json, best.json, interrupted.json, phaseN/{last.ckpt, best.ckpt, phase.json}}
        bundle/  bundle-image/  folds/NAME/ (a Run each)  plots/
    """

    def __init__(self, path: str | Path, console: Console = Console(), num_workers: int | None = None):
        self.path = Path(path)
        self.console = console
        self.num_workers = num_workers

    @classmethod
    def of(cls, run: "Run | str | Path") -> "Run":
        """A Run as given, or the Run of a folder (default console: progress on, echo to stdout)."""
        return run if isinstance(run, Run) else cls(run)

    @classmethod
    def quiet(cls, path: str | Path) -> "Run":
        """A Run whose stages draw no progress bars (step lines still go to stdout): tests, notebooks, logs."""
        return cls(path, Console(progress=False))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- layout ---------------------------------------------------------------------------------------
    name = property(lambda self: self.path.name)
    split_csv = property(lambda self: self.path / "split.csv")
    split_json = property(lambda self: self.path / "split.json")
    config_yaml = property(lambda self: self.path / "config.yaml")
    cv_json = property(lambda self: self.path / "cv.json")
    threshold_json = property(lambda self: self.path / "threshold.json")
    history_csv = property(lambda self: self.path / "metrics.csv")  # Lightning's CSVLogger: one row per epoch
    val_predictions = property(lambda self: self.path / "val_predictions.csv")
    oof_predictions = property(lambda self: self.path / "oof_predictions.csv")
    stack_oof_predictions = property(lambda self: self.path / "stack_oof_predictions.csv")
    stack_json = property(lambda self: self.path / "stack.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    interrupted_json = property(lambda self: self.checkpoints / "interrupted.json")
    binding_json = property(lambda self: self.checkpoints / "binding.json")
    best_json = property(lambda self: self.checkpoints / "best.json")
    bundle = property(lambda self: self.path / "bundle")
    bundle_image = property(lambda self: self.path / "bundle-image")  # a stacked cv's fold ensemble
    folds_dir = property(lambda self: self.path / "folds")
    plots = property(lambda self: self.path / "plots")
    lr_find_json = property(lambda self: self.path / "lr_find.json")

    def phase_dir(self, phase: int) -> Path:
        return self.checkpoints / f"phase{phase}"

    def predictions(self, split: str) -> Path:
        """Where ``evaluate`` writes the predictions of ``split`` (test: test_predictions.csv)."""
        return self.path / f"{split}_predictions.csv"

    def metrics_json(self, split: str = "test") -> Path:
        """metrics.json for the test split (and external sets), metrics_<split>.json for another split."""
        return self.path / ("metrics.json" if split in ("test", "external") else f"metrics_{split}.json")

    def report_dir(self, split: str) -> Path:
        """Where ``evaluate`` writes a split's report: the run folder for test, ``eval-<split>/`` otherwise (so the
        validation artifacts tune-threshold reads are never overwritten)."""
        return self.path if split == "test" else self.path / f"eval-{split}"

    def fold(self, name: str) -> "Run":
        """The run folder of one cv member (same console and workers)."""
        return Run(self.folds_dir / name, self.console, self.num_workers)

    # -- state ----------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A training run (it has a split or checkpoints), as opposed to a report folder."""
        return self.split_csv.is_file() or self.checkpoints.is_dir()

    def is_cv(self) -> bool:
        return self.cv_json.is_file()

    def has_bundle(self) -> bool:
        return (self.bundle / "config.json").is_file()

    def check_exists(self) -> "Run":
        check_run_dir(self.path)
        return self

    def model_artifacts(self) -> list[str]:
        """The artifacts that mean a model was trained on the current split."""
        return [p.name for p in (self.checkpoints, self.bundle, self.val_predictions) if p.exists()]

    # -- readers --------------------------------------------------------------------------------------
    def split_summary(self) -> dict:
        """split.json (what prepare recorded), or {} for a run without one."""
        return read_json(self.split_json, "written by prepare") if self.split_json.is_file() else {}

    def context(self, fold: int | None = None) -> "RunContext":
        """The run's split (checked, ``fold`` applied) and its fingerprint."""
        self.check_exists()
        split = self.load_split()
        if fold is not None:
            split = use_fold(split, fold)
        return RunContext(self.path, split, fold, split_fingerprint(split, fold), self.split_summary())

    def load_split(self) -> pd.DataFrame:
        """split.csv, checked (columns, labels, lesion-disjointness, the fingerprint in split.json)."""
        return load_split(self.split_csv, self.split_json)

    def write_split(self, split: pd.DataFrame, summary: dict) -> tuple[Path, Path]:
        """split.csv and split.json, atomically."""
        return write_split(split, summary, self.split_csv, self.split_json)

    def read_val_predictions(self, ctx: "RunContext") -> pd.DataFrame:
        """val_predictions.csv, refused unless it holds exactly the validation images of ``ctx``'s split and
        fold; labels from the split."""
        path = self.val_predictions
        if not path.is_file():
            raise DataError(f"{path} not found. Remedy: " + (
                f"{self.path} is a cv run: use `skinlesion cv --out {self.path} --resume`" if self.is_cv()
                else f"train first (`skinlesion train --out {self.path}`)") + ".")
        val = read_csv_exact(path, "re-create it by training again.", ("image_id", "label", "probability"))
        if set(val["image_id"]) != set(ctx.rows("val")["image_id"]) or not val["image_id"].is_unique:
            raise DataError(f"{path} does not hold the validation images of the run's split"
                            + (f" (fold {ctx.fold})" if ctx.fold is not None else "") + ". Remedy: train again in a "
                            "new --out.")
        p = pd.to_numeric(val["probability"], errors="coerce")
        if not p.between(0, 1).all():
            raise DataError(f"{path}: probabilities must be numbers in [0, 1]. Remedy: re-create it by training again.")
        return val.assign(probability=p, label=val["image_id"].map(dict(zip(ctx.split["image_id"], ctx.split["label"]))))


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
            raise DataError(f"{Run(self.run_dir).split_json} records no data folder. Remedy: pass --data DIR.")
        return attach_paths(self.split, root, str(Run(self.run_dir).split_csv))


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
        what = "is a file, not a folder" if run_dir.exists() else "does not exist"
        raise DataError(f"run directory {run_dir} {what}. Remedy: pass a folder made by `skinlesion "
                        "prepare` or `skinlesion train --out`.")
    return run_dir


def open_run(run_dir: "Run | str | Path", fold: int | None = None) -> RunContext:
    """Load and check ``split.csv`` (see :func:`load_split`), apply ``fold``, fingerprint the result."""
    return Run.of(run_dir).context(fold)


def share_split(src: "Run | Path", dst: "Run | Path") -> None:
    """Give run folder ``dst`` (a cv fold, a search trial) the split of ``src``: split.csv and split.json,
    copied where ``dst`` does not have them yet."""
    import shutil
    src, dst = Run.of(src), Run.of(dst)
    dst.path.mkdir(parents=True, exist_ok=True)
    for a, b in ((src.split_csv, dst.split_csv), (src.split_json, dst.split_json)):
        if not b.is_file():
            shutil.copy(a, b)


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
    found = Run.of(run_dir).model_artifacts()
    if found:
        raise DataError(f"{run_dir} already has {', '.join(found)}: replacing its split would let the model be "
                        "scored on lesions it trained on. Remedy: prepare into a new --out folder.")


def check_not_a_run(out: str | Path, verb: str) -> None:
    """A report folder (``evaluate --model --out``) must not be a training run: its metrics.json, report and
    predictions would replace the run's own."""
    from ..paths import OutputPathError
    if Run(out).is_run():
        raise OutputPathError(f"--out {out} is a training run (it has split.csv or checkpoints/); {verb} would replace "
                              f"its metrics.json and report with another model's. Remedy: choose a new folder, e.g. "
                              f"--out {Path(out) / 'external'}")
