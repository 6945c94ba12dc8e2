"""`skinlesion cv`: lesion-grouped K-fold cross-validation (test share held out), every fold (x seeds) an
ordinary run directory under ``RUN_DIR/folds/``; out-of-fold predictions, a threshold tuned on them and
an ensemble bundle of the fold models in ``RUN_DIR/bundle``. Resumable fold by fold, epoch by epoch."""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..models.task import get_task
from .. import atomic
from ..config import ConfigError, RunConfig, load_config, save_config
from ..errors import DataError
from ..data.run import Run, binding, share_split
from ..evaluation.metrics import epoch_metrics, threshold_metrics
from ..evaluation.thresholds import operating_points, threshold_for_sensitivity
from ..inference.bundle import load_bundle, save_bundle
from ..models.ensemble import EnsembleClassifier
from ..tables import read_csv_exact
from .checkpoints import check_resume_config, has_checkpoints
from .stack import STACKS, copy_image_bundle, fit_stack

REMEDY_REFOLD = "re-run that fold: `skinlesion cv --resume`."


@dataclass
class CVResult:
    run_dir: Path
    members: list[Path]
    summary: dict
    bundle: Path


def member_name(fold: int, seed: int, seeds: int) -> str:
    return f"fold{fold}" + (f"-seed{seed}" if seeds > 1 else "")


def _split(cfg: RunConfig, run: Run, folds: int):
    """The run's K-fold split: made by prepare when absent, else checked to have ``folds`` folds."""
    if not run.split_csv.is_file():
        from ..data.prepare import prepare
        cfg = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, folds=folds))
        run.console.echo(prepare(cfg, run).report())
    ctx = run.context()
    if "fold" not in ctx.split.columns or int(ctx.split["fold"].max()) + 1 != folds:
        have = int(ctx.split["fold"].max()) + 1 if "fold" in ctx.split.columns else 0
        raise DataError(f"{run.split_csv} has {have} folds, not {folds}. Remedy: `skinlesion cv` into a new "
                        f"--out, or pass --folds {have}." if have else
                        f"{run.split_csv} has no folds. Remedy: `skinlesion cv` into a new --out.")
    return ctx


@dataclass(frozen=True)
class CVOptions:
    """How a cv runs: K folds x seeds, the out-of-fold threshold's target, resume, a stack."""

    folds: int = 5
    seeds: int = 1
    target_sensitivity: float = 0.90
    resume: bool = False
    stack: str | None = None  # "gbdt": boosted trees on the out-of-fold scores and metadata (training.stack)
    stack_tta: bool = False  # the stack also takes the TTA mean (four views) of the fold models' score


def run_cv(cfg: RunConfig, run: Run | str | Path, opts: CVOptions = CVOptions()) -> CVResult | None:
    """Train every fold (x seed), pool the out-of-fold predictions, tune the threshold on them and write
    the ensemble bundle (with ``opts.stack``, the stacked one). Finished members are skipped; with
    ``opts.resume`` an interrupted one continues."""
    from ..runlock import process_rank
    from .fit import train
    folds, seeds, resume = opts.folds, opts.seeds, opts.resume
    run = Run.of(run)
    run_dir, echo = run.path, run.console.echo
    if opts.stack is not None and opts.stack not in STACKS:
        raise ConfigError(f"--stack {opts.stack!r} is not known ({', '.join(STACKS)}). Remedy: --stack gbdt")
    if opts.stack and not get_task(cfg.train.task).binary:
        raise ConfigError("--stack gbdt stacks p(malignant) and needs a binary cv. Remedy: drop --task 7class, or "
                          "drop --stack.")
    if not 2 <= folds <= 50 or not 1 <= seeds <= 20:
        raise ConfigError(f"--folds must be 2-50 and --seeds 1-20, got {folds} and {seeds}. Remedy: --folds 5 --seeds 1")
    if cfg.train.fold is not None:
        raise ConfigError("cv trains every fold itself; drop --fold. Remedy: skinlesion cv --folds 5 ...")
    cfg.validate()
    if not resume and run.folds_dir.exists():
        raise FileExistsError(f"{run_dir} already has folds/. Remedy: pass --resume to continue it, or a new --out")
    if resume and not run.folds_dir.is_dir():
        raise DataError(f"--resume: {run_dir} has no folds/ to continue (no cv was started there). Remedy: run the "
                        f"same `skinlesion cv ... --out {run_dir}` without --resume.")
    if resume:  # one recipe for every fold: --resume may not change what the folds train (cv's config.yaml)
        check_resume_config(cfg, run_dir)
        for started in sorted(run.folds_dir.glob("*/config.yaml")):
            member = load_config(started).train
            check_resume_config(dataclasses.replace(cfg, train=dataclasses.replace(
                cfg.train, fold=member.fold, seed=member.seed)), started.parent)
    ctx = _split(cfg, run, folds)
    if process_rank() == 0:
        save_config(cfg, run_dir)  # the base layer of `cv --resume`, as config.yaml is for train --resume
    members = []
    for k in range(folds):
        for s in range(seeds):
            name = member_name(k, s, seeds)
            member = run.fold(name)
            mdir = member.path
            members.append(mdir)
            if member.has_bundle() and member.val_predictions.is_file():
                echo(f"fold {k + 1}/{folds}" + (f", seed {s + 1}/{seeds}" if seeds > 1 else "") + ": done, skipping")
                continue
            share_split(run_dir, mdir)
            echo(f"fold {k + 1}/{folds}" + (f", seed {s + 1}/{seeds}" if seeds > 1 else "") + f" -> {mdir}")
            mcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, fold=k, seed=cfg.train.seed + s))
            if train(mcfg, member, resume=has_checkpoints(mdir)) is None:
                continue  # a DDP rank other than 0
    if process_rank() != 0:
        return None
    summary = summarize_cv(ctx, members, folds, seeds, opts.target_sensitivity)
    atomic.write_json(run.cv_json, summary)
    bundle = save_ensemble(members, summary, ctx, run.bundle)
    if opts.stack:
        echo("stacking: gradient-boosted trees on the out-of-fold scores and metadata")
        summary["stack"] = fit_stack(ctx, copy_image_bundle(run), members, opts.target_sensitivity, cfg,
                                     opts.stack_tta)
    elif run.bundle_image.exists():  # re-run without --stack: the fold ensemble is the bundle again
        shutil.rmtree(run.bundle_image)
    return CVResult(run_dir, members, summary, bundle)


def member_predictions(members: list[Path], seeds: int) -> list[pd.DataFrame]:
    """Each member's val_predictions.csv, checked against the split of its own fold (read once)."""
    return [Run(m).read_val_predictions(Run(m).context(i // seeds)) for i, m in enumerate(members)]


def out_of_fold(ctx, vals: list[pd.DataFrame], folds: int, seeds: int) -> pd.DataFrame:
    """Every train+val image once, predicted by the fold model(s) that did not train on it (the mean over
    seeds), with its fold; ``vals``: the members' validation predictions, fold by fold."""
    parts = []
    for k in range(folds):
        frames = vals[k * seeds:(k + 1) * seeds]
        fold = frames[0].copy()
        for f in frames[1:]:
            if list(f["image_id"]) != list(fold["image_id"]):
                raise DataError(f"fold {k}: its seeds predicted different images. Remedy: re-run that fold.")
        fold["probability"] = np.mean([f["probability"].to_numpy() for f in frames], axis=0)
        fold["fold"] = k
        parts.append(fold)
    oof = pd.concat(parts, ignore_index=True)
    expected = set(ctx.split.loc[ctx.split["split"] != "test", "image_id"])
    if set(oof["image_id"]) != expected or not oof["image_id"].is_unique:
        raise DataError("the fold models' validation predictions do not cover every train+val image exactly once. "
                        "Remedy: re-run `skinlesion cv --resume`.")
    return oof


def summarize_cv(ctx, members: list[Path], folds: int, seeds: int, target: float) -> dict:
    """Per-fold validation metrics (mean and sd), seed spread, the out-of-fold threshold and its table."""
    vals = member_predictions(members, seeds)
    oof = out_of_fold(ctx, vals, folds, seeds)
    atomic.write_csv(Run(ctx.run_dir).oof_predictions, oof)
    per_member = []
    for i, (m, val) in enumerate(zip(members, vals)):
        per_member.append({"member": m.name, "fold": i // seeds, "seed": i % seeds,
                           **{k: float(v) for k, v in epoch_metrics(val["label"], val["probability"]).items()}})
    per_fold = []
    for k in range(folds):
        part = oof[oof["fold"] == k]
        per_fold.append({"fold": k, "images": int(len(part)),
                         **{k2: float(v) for k2, v in epoch_metrics(part["label"], part["probability"]).items()}})
    stats = lambda rows, key: {"mean": float(np.mean([r[key] for r in rows])), "sd": float(np.std([r[key] for r in rows], ddof=1))
                               if len(rows) > 1 else 0.0}
    y, p = oof["label"].to_numpy(), oof["probability"].to_numpy()
    threshold = threshold_for_sensitivity(y, p, target, where=str(Run(ctx.run_dir).oof_predictions))
    seed_sd = [float(np.std([r["roc_auc"] for r in per_member if r["fold"] == k], ddof=1)) for k in range(folds)] \
        if seeds > 1 else []
    return {"folds": folds, "seeds": seeds, "members": [m.name for m in members], **binding(ctx),
            "per_fold": per_fold, "per_member": per_member,
            "val_roc_auc": stats(per_fold, "roc_auc"), "val_pr_auc": stats(per_fold, "pr_auc"),
            "oof": {k: float(v) for k, v in epoch_metrics(y, p).items()},
            "seed_spread_roc_auc_sd": {"per_fold": seed_sd, "mean": float(np.mean(seed_sd)) if seed_sd else None},
            "threshold": {"value": threshold, "target_sensitivity": target, "source": "out-of-fold predictions",
                          "n_images": int(len(oof)), "n_malignant": int(y.sum()),
                          "chosen": {"threshold": threshold, **threshold_metrics(y, p, threshold)},
                          "operating_points": operating_points(y, p)}}


def save_ensemble(members: list[Path], summary: dict, ctx, out: Path, combine: str = "mean_probability") -> Path:
    """One bundle holding every fold model (``members.<i>.*`` tensors), averaged by ``combine``, with the
    out-of-fold threshold; it loads, predicts, explains, exports and serves like a single model."""
    bundles = [load_bundle(Run(m).bundle) for m in members]
    first = bundles[0].config
    for b, m in zip(bundles, members):
        if b.config["backbone"] != first["backbone"] or b.config["preprocessing"] != first["preprocessing"] \
                or b.config.get("metadata") != first.get("metadata"):
            raise DataError(f"{Run(m).bundle} differs from the other fold models in architecture, preprocessing or "
                            "metadata. Remedy: re-run that fold with the same settings.")
    model = EnsembleClassifier([b.model for b in bundles], first["task"], combine)
    thr = summary["threshold"]
    config = {**first, "threshold": {"value": thr["value"], "source": f"out-of-fold predictions of {len(members)} "
                                     f"fold models, highest threshold with sensitivity >= {thr['target_sensitivity']}",
                                     "target_sensitivity": thr["target_sensitivity"], "tta": False,
                                     "operating_point": thr["chosen"], **binding(ctx)},
              "ensemble": {"size": len(members), "combine": combine, "folds": summary["folds"],
                           "seeds": summary["seeds"], "members": summary["members"],
                           "how": "lesion-grouped K-fold cross-validation, test share held out; each member trained "
                                  "on K-1 folds and validated on its own fold"},
              "metrics": {"cv_val_roc_auc": summary["val_roc_auc"], "cv_val_pr_auc": summary["val_pr_auc"],
                          "oof": summary["oof"]},
              "training_data": {**first["training_data"], **binding(ctx),
                                "seen_image_ids": sorted({i for b in bundles for i in b.config["training_data"]
                                                          .get("seen_image_ids", [])})}}
    oof = read_csv_exact(Run(ctx.run_dir).oof_predictions, REMEDY_REFOLD, ("label", "probability"))
    from ..evaluation.calibration import Calibration, fit_for_bundle
    config["calibration"] = fit_for_bundle(first, oof["label"], oof["probability"], "out-of-fold predictions",
                                           binding(ctx))
    config["threshold"]["calibrated_value"] = float(Calibration.from_config(config["calibration"]).apply(thr["value"]))
    with torch.no_grad():
        return save_bundle(model, config, out)
