"""`cv --stack gbdt`: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier) on the fold
models' out-of-fold scores and the patient metadata — the recipe of the ISIC 2024 winners — fitted after a
cross-validation and bundled with the fold models as one :class:`~skinlesion.models.stack.StackedClassifier`.

The trees' own threshold and calibration come from *their* out-of-fold scores (nested over the same folds:
the trees predicting fold k never saw fold k's rows), so no number of the stacked bundle is fit and scored
on the same images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..models.task import get_task
from .. import atomic
from ..data.run import Run, binding
from ..errors import DataError
from ..evaluation.metrics import epoch_metrics, threshold_metrics
from ..evaluation.thresholds import threshold_for_sensitivity
from ..inference.bundle import load_bundle, save_bundle
from ..models.stack import StackedClassifier, stack_features
from ..models.trees import TreeEnsemble, arrays_from_sklearn
from ..tables import read_csv_exact

STACKS = ("gbdt",)
#: Fixed, conservative settings (few thousand rows, a handful of features): shallow trees, strong shrinkage.
GBDT_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 40,
               "l2_regularization": 1.0, "early_stopping": False}
DEFAULT_FIELDS = ("age", "sex", "localization")


def _gbdt(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(**GBDT_PARAMS, random_state=seed)


def _table(ctx, root: str | None) -> pd.DataFrame:
    from ..data.formats import recorded_table
    table = recorded_table(ctx.summary.get("dataset"), root)
    if table is None:
        raise DataError(f"--stack gbdt: the dataset's table (recorded in {Run(ctx.run_dir).split_json}) is not "
                        "readable. Remedy: pass --data DIR of the dataset the cv was made from.")
    return table


def tta_oof(members: list[Path], oof: pd.DataFrame) -> np.ndarray:
    """Each out-of-fold row's p(malignant) averaged over the four TTA views, by the fold model(s) that did not
    train on it (the mean over seeds), in ``oof``'s row order."""
    from ..evaluation.evaluate import predict_split, run_context
    from ..evaluation.site_data import EvalOptions
    parts = []
    for m in members:
        bundle = load_bundle(Run(m).bundle)
        _, split = run_context(m, bundle)
        parts.append(predict_split(bundle, split, "val", EvalOptions(tta=True, progress=False))[["image_id",
                                                                                                "probability"]])
    mean = pd.concat(parts).groupby("image_id")["probability"].mean()
    return oof["image_id"].map(mean).to_numpy(np.float64)


def stack_inputs(ctx, oof: pd.DataFrame, ensemble_config: dict, root: str | None, p_tta: np.ndarray | None = None):
    """(X, y, folds, encoder, base_uses_meta) for the out-of-fold rows. The metadata fields are the fold
    models' own when they fused metadata, else those of age, sex and localization the dataset has."""
    from ..data.tabular import MetadataEncoder
    table = _table(ctx, root)
    rows = oof[["image_id", "label", "probability", "fold"]].merge(
        table.drop(columns=["split", "label", "dx", "lesion_id"], errors="ignore"), on="image_id", how="left")
    member_meta = ensemble_config.get("metadata")
    if member_meta:
        encoder = MetadataEncoder.from_dict(member_meta)
    else:
        fields = tuple(f for f in DEFAULT_FIELDS if f in rows.columns and rows[f].notna().any())
        encoder = MetadataEncoder.fit(rows, fields) if fields else None
    meta = torch.from_numpy(encoder.encode(rows)) if encoder is not None else None
    X = stack_features(torch.from_numpy(np.array(rows["probability"], dtype=np.float64)), meta,
                       None if p_tta is None else torch.from_numpy(np.array(p_tta, dtype=np.float64))).numpy()
    return X, rows["label"].to_numpy(int), rows["fold"].to_numpy(int), encoder, bool(member_meta)


def nested_oof(X: np.ndarray, y: np.ndarray, folds: np.ndarray, seed: int) -> np.ndarray:
    """The trees' out-of-fold probability: for each fold, trees fit on the other folds' rows."""
    out = np.zeros(len(y))
    for k in np.unique(folds):
        test = folds == k
        out[test] = _gbdt(seed).fit(X[~test], y[~test]).predict_proba(X[test])[:, 1]
    return out


def fit_stack(ctx, ensemble_bundle: Path, members: list[Path], target: float, cfg, tta: bool = False) -> dict:
    """Fit the trees on the cv's out-of-fold rows, write stack_oof_predictions.csv and stack.json, and
    replace ``RUN_DIR/bundle`` by the stacked model (the fold ensemble stays in ``RUN_DIR/bundle-image``).
    ``cfg``: the cv's config (its data root and seed); ``tta``: the TTA mean is a feature too."""
    from ..evaluation.calibration import Calibration, fit_for_bundle
    run = Run(ctx.run_dir)
    image = load_bundle(ensemble_bundle)
    if not get_task(image.task).binary:
        raise DataError("--stack gbdt stacks p(malignant): it needs a binary cv (--task binary).")
    oof = read_csv_exact(run.oof_predictions, "re-run `skinlesion cv --resume`.",
                         ("image_id", "label", "probability", "fold"))
    root, seed = cfg.data.root, cfg.train.seed
    X, y, folds, encoder, base_uses_meta = stack_inputs(ctx, oof, image.config, root,
                                                        tta_oof(members, oof) if tta else None)
    stacked_oof = nested_oof(X, y, folds, seed)
    atomic.write_csv(run.stack_oof_predictions,
                     oof.assign(probability=stacked_oof, probability_image=oof["probability"].to_numpy()))
    trees = TreeEnsemble.from_arrays(arrays_from_sklearn(_gbdt(seed).fit(X, y)))
    thr = threshold_for_sensitivity(y, stacked_oof, target, where=str(run.stack_oof_predictions))
    summary = {"stack": "gbdt", "params": GBDT_PARAMS, "seed": seed,
               "features": ["cnn_logit", *(["cnn_logit_tta"] if tta else []),
                            *([f"metadata:{f}" for f in encoder.fields] if encoder else [])],
               "n_images": int(len(y)), "n_malignant": int(y.sum()), **binding(ctx),
               "oof_image": {k: float(v) for k, v in epoch_metrics(y, oof["probability"].to_numpy()).items()},
               "oof_stack": {k: float(v) for k, v in epoch_metrics(y, stacked_oof).items()},
               "threshold": {"value": thr, "target_sensitivity": target, "chosen": threshold_metrics(y, stacked_oof, thr)}}
    atomic.write_json(run.stack_json, summary)
    config = _stacked_config(image.config, summary, encoder, trees, base_uses_meta)
    config["calibration"] = fit_for_bundle(config, y, stacked_oof, "the trees' nested out-of-fold predictions",
                                           binding(ctx))
    config["threshold"]["calibrated_value"] = float(Calibration.from_config(config["calibration"]).apply(thr))
    model = StackedClassifier(image.model, trees, encoder.dim if encoder else 0, base_uses_meta, tta)
    if encoder is not None:
        model.missing_meta.copy_(torch.from_numpy(encoder.missing_vector()))
    with torch.no_grad():
        save_bundle(model, config, run.bundle)
    return summary


def _stacked_config(image: dict, summary: dict, encoder, trees: TreeEnsemble, base_uses_meta: bool) -> dict:
    thr = summary["threshold"]
    config = {**image, "threshold": {**image["threshold"], "value": thr["value"], "operating_point": thr["chosen"],
                                     "source": "the stacked trees' nested out-of-fold predictions, highest threshold "
                                               f"with sensitivity >= {thr['target_sensitivity']}", "tta": False}}
    config["stack"] = {"kind": "gbdt", "trees": {"n_trees": int(trees.feature.shape[0]),
                                                 "width": int(trees.feature.shape[1]), "depth": int(trees.depth)},
                       "features": summary["features"], "params": summary["params"],
                       "base_uses_metadata": base_uses_meta, "tta": "cnn_logit_tta" in summary["features"],
                       "base_metadata_dim": int(image["metadata"]["dim"]) if image.get("metadata") else 0,
                       "how": "HistGradientBoostingClassifier on the fold models' out-of-fold logit and the encoded "
                              "metadata; stored as node arrays in model.safetensors (no pickle)"}
    if encoder is not None:
        config["metadata"] = encoder.to_dict()
    # the trees are fit on unweighted out-of-fold rows: no class-weight shift for the calibration to undo
    config["training_prior"] = {**(image.get("training_prior") or {}), "pos_weight": None, "balanced_sampler": False}
    config["metrics"] = {**(image.get("metrics") or {}), "stack_oof": summary["oof_stack"]}
    return config


def copy_image_bundle(run: Run) -> Path:
    """Keep the fold ensemble as ``bundle-image`` before the stacked bundle replaces ``bundle``."""
    import shutil
    src, dst = run.bundle, run.bundle_image
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst

