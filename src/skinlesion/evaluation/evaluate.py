"""The `evaluate` stage: predictions on a run's test split or an external dataset, then every metric,
plot, report.html and model_card.md."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import console
from .. import atomic
from ..data.cache import CachedImages, build_cache, default_num_workers
from ..data.formats import TableSpec, recorded_table
from ..errors import DataError
from ..data.run import Run, RunContext, binding, check_binding, check_not_a_run, read_json
from ..inference.bundle import Bundle, check_inference_mode, load_bundle, update_config
from ..paths import check_outputs
from ..inference.predictor import forward_probs, prediction_frame
from ..labels import label_for
from . import plots
from .calibration import Calibration, fit_for_bundle
from .site_data import META_COLUMNS, EvalOptions, SiteData, read_site, site_predictions, threshold_drift
from .scores import METRICS_FORMAT
from .summary import check_resamples, summarize



@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict
    report: Path
    model_card: Path


def predict_frame(model, dataset: CachedImages, rows: pd.DataFrame, task: str, opts: EvalOptions,
                  meta: torch.Tensor | None = None) -> pd.DataFrame:
    """Eval-mode predictions on cached images: image_id, lesion_id, dx, label, probability (+ p_<dx>);
    ``meta``: encoded metadata, one row per dataset row (None: image only / every field missing)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=opts.batch_size, shuffle=False,
                                         num_workers=default_num_workers(opts.num_workers))
    device = next(model.parameters()).device
    probs, classes = zip(*[forward_probs(model, x.to(device), task, opts.tta, None if meta is None else meta[i])
                           for x, _, i in loader])
    return prediction_frame(rows, torch.cat(probs).cpu().numpy(), torch.cat(classes).cpu().numpy(), task)


def predict_split(bundle: Bundle, split: pd.DataFrame, which: str, opts: EvalOptions,
                  use_metadata: bool = True) -> pd.DataFrame:
    """Predictions for the rows of split ``which`` from the run's decoded-image cache (with the rows'
    metadata columns for a metadata model, unless ``use_metadata`` is False)."""
    rows_idx = np.flatnonzero(split["split"].to_numpy() == which)
    if not len(rows_idx):
        raise DataError(f"the split has no '{which}' images; choose --split train, val or test")
    cache = build_cache(split["path"].tolist(), bundle.preprocessing, opts.cache_dir,
                        default_num_workers(opts.num_workers), opts.progress)
    targets = np.array([label_for(dx, bundle.task) for dx in split["dx"].iloc[rows_idx]])
    ds = CachedImages(cache, rows_idx, targets, bundle.preprocessing.eval_transform())
    meta = bundle.encode_metadata(split.iloc[rows_idx]) if use_metadata else None
    return predict_frame(bundle.model, ds, split.iloc[rows_idx], bundle.task, opts, meta)


def run_context(run: Run | Path, bundle: Bundle, columns: tuple[str, ...] = ()) -> tuple[RunContext, pd.DataFrame]:
    """The run's split with the bundle's own fold, checked against the split the bundle trained on, with
    paths below the data root the bundle was trained on, and — read once from the dataset's table when it is
    still there — the metadata fields the model fuses plus ``columns`` (e.g. for subgroup tables)."""
    trained = bundle.config.get("training_data") or {}
    run = Run.of(run)
    ctx = run.context(trained.get("fold"))
    check_binding(trained, ctx, f"the model in {run.bundle}")
    split = ctx.with_paths(trained.get("dataset_root"))
    wanted = list(dict.fromkeys([*(bundle.encoder.fields if bundle.encoder is not None else ()), *columns]))
    if wanted:
        meta = recorded_table(ctx.summary.get("dataset"), trained.get("dataset_root"))
        if meta is not None:
            cols = [c for c in wanted if c in meta.columns]
            split = split.merge(meta[["image_id", *cols]], on="image_id", how="left")
    return ctx, split


def evaluate_run(run: Run | str | Path, split_name: str = "test", calibrate: bool = False,
                 opts: EvalOptions = EvalOptions()) -> EvalResult:
    """Evaluate a run's bundle on one split of its own data (the bundle's fold). Test outputs go into the
    run dir; other splits into ``run_dir/eval-<split>/`` so the training artifacts that tune-threshold
    reads (val_predictions.csv, validation plots) are never overwritten."""
    check_resamples(opts.n_boot)
    tta, n_boot, seed = opts.tta, opts.n_boot, opts.seed
    run = Run.of(run).check_exists()
    run_dir = run.path
    bundle = load_bundle(run.bundle)
    check_inference_mode(bundle.config, tta, str(run.bundle))
    if calibrate and bundle.config.get("ensemble"):
        raise DataError("--calibrate on a cv run: calibrate needs the ensemble's own validation predictions, which "
                        "do not exist (every image was in some member's training data). Remedy: drop --calibrate.")
    ctx, split = run_context(run, bundle, META_COLUMNS)
    if run.threshold_json.is_file():  # the report reads it: check it before anything is written
        check_threshold_file(run.threshold_json)
    if split_name == "test":  # test metrics go to the run's trackers: check their record before writing
        from ..tracking import check_tracking
        check_tracking(run_dir)
    if opts.cache_dir is None and run.config_yaml.is_file():  # reuse the cache training filled
        from ..config import load_config
        opts = dataclasses.replace(opts, cache_dir=load_config(run.config_yaml).train.cache_dir)
    if opts.progress:
        console.step(f"evaluate: predicting the {split_name} split of {run_dir}" + (" with TTA" if tta else ""))
    preds = predict_split(bundle, split, split_name, opts)
    extra = {**binding(ctx)}
    if bundle.encoder is not None:  # the same model with every metadata field missing: what metadata adds
        image_only = predict_split(bundle, split, split_name, opts, use_metadata=False)
        extra["metadata_ablation"] = metadata_ablation(preds, image_only, bundle.encoder.fields, n_boot, seed)
    if bundle.config.get("ensemble") and run.folds_dir.is_dir() and split_name == "test":
        from .cv_eval import cv_section
        quiet = dataclasses.replace(opts, progress=False)
        extra["cv"] = cv_section(run, bundle, preds, lambda b: predict_split(b, split, split_name, quiet), n_boot,
                                 seed)
    entry = bundle.config.get("calibration")
    if calibrate:
        val_preds = run.read_val_predictions(ctx) if not tta else \
            predict_split(bundle, split, "val", opts)
        entry = fit_for_bundle(bundle.config, val_preds["label"], val_preds["probability"], "val",
                               {"tta": tta, **binding(ctx)})
    cal = Calibration.from_config(entry)
    cols = [c for c in META_COLUMNS if c in split.columns and c not in preds.columns]  # for subgroup tables
    preds = preds.merge(split[["image_id", *cols]], on="image_id", how="left") if cols else preds
    out_dir = run.report_dir(split_name)
    result = _finish(bundle, preds, Report(out_dir, split_name, run_dir, paths=dict(zip(split["image_id"], split["path"]))),
                     opts, cal, extra)
    changes = {}
    if calibrate:
        changes["calibration"] = entry
    if split_name == "test":
        h = result.metrics["at_threshold"]
        changes["metrics"] = {**bundle.config.get("metrics", {}), "test": {
            k: h[k] for k in ("roc_auc", "pr_auc", "pauc_above_tpr80", "sensitivity", "specificity")}}
    if changes:
        update_config(run.bundle, **changes)
    if split_name == "test":
        from ..tracking import log_test_metrics
        h = result.metrics["at_threshold"]
        log_test_metrics(run_dir, {k: h[k]["value"] for k in ("roc_auc", "pr_auc", "sensitivity", "specificity")
                                   if h.get(k, {}).get("value") is not None})
    return result


def evaluate_external(bundle_dir: str | Path, site: SiteData, out_dir: str | Path, opts: EvalOptions = EvalOptions(),
                      adapt_fraction: float | None = None) -> EvalResult:
    """Evaluate a bundle on every image of an external dataset in any format (no split). Images the model
    trained or was selected on are refused: that would not be an external validation. With
    ``adapt_fraction`` a lesion-grouped part of the set re-tunes the operating point and the rest scores it."""
    check_resamples(opts.n_boot)
    tta, n_boot, seed, data = opts.tta, opts.n_boot, opts.seed, site.data
    bundle = load_bundle(bundle_dir)
    check_inference_mode(bundle.config, tta, str(bundle_dir))
    check_outputs([Path(out_dir)], protected=[Path(bundle_dir)], inputs=[Path(data)])
    check_not_a_run(out_dir, "evaluate --model")
    ds = read_site(bundle, data, site.spec or TableSpec(), site.allow_missing, opts.progress,
                   "evaluate the run's held-out test split with `skinlesion evaluate RUN_DIR`, or remove those images "
                   "from the external set")
    preds = site_predictions(bundle, ds, tta, opts.num_workers, opts.progress, opts.batch_size)
    cal = Calibration.from_config(bundle.config.get("calibration"))
    drift = threshold_drift(preds, bundle.threshold, bundle.config["threshold"].get("target_sensitivity"))
    extra = {"data_root": str(Path(data).resolve()), "threshold_drift": drift}
    if adapt_fraction:
        from .adapt import held_out_adaptation
        target = bundle.config["threshold"].get("target_sensitivity") or 0.9
        extra["adaptation"] = held_out_adaptation(preds, (bundle.threshold, target), cal, adapt_fraction, n_boot,
                                                    seed)
    where = Report(Path(out_dir), "external", None, f"external dataset {Path(data).resolve()} (every image, no split)",
                   dict(zip(ds.frame["image_id"], ds.frame["path"])))
    return _finish(bundle, preds, where, opts, cal, extra)


def check_threshold_file(path: Path) -> dict:
    """threshold.json as tune-threshold writes it: a list of operating points, each with the numbers the
    report prints; anything else names the file."""
    data = read_json(path, "written by tune-threshold")
    keys = ("threshold", "sensitivity", "specificity", "ppv", "npv", "f1", "predicted_positive_rate")
    rows = data.get("operating_points", [])
    ok = isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("operating_point"), str) and all(
        isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for k in keys) for r in rows)
    if not ok:
        raise DataError(f"{path}: its operating_points are damaged (each needs operating_point and the numbers "
                        f"{', '.join(keys)}). Remedy: re-create it with `skinlesion tune-threshold {path.parent}`.")
    return data


def metadata_ablation(with_meta: pd.DataFrame, without: pd.DataFrame, fields, n_boot: int, seed: int) -> dict:
    """ROC-AUC / PR-AUC of the metadata model with its metadata and with every field missing (same images),
    and the paired bootstrap difference of the ROC-AUC."""
    from .bootstrap import paired_difference
    from .metrics import roc_auc
    from .summary import auc_estimates
    out = {"fields": list(fields), "with_metadata": auc_estimates(with_meta, n_boot, seed),
           "image_only": auc_estimates(without, n_boot, seed)}
    out["roc_auc_difference"] = paired_difference(roc_auc, with_meta["label"].to_numpy(), (with_meta["probability"],
                                                  without["probability"]), with_meta["lesion_id"].to_numpy(), n_boot, seed)
    return out


@dataclass(frozen=True)
class Report:
    """Where an evaluation writes and what it describes: the output folder, the split's name ("external" for
    a site set), the run it belongs to (None for a bundle on an external set), and the image paths for the
    error gallery."""

    out_dir: Path
    split_name: str
    run_dir: Path | None = None
    data_description: str | None = None
    paths: dict | None = None


def _finish(bundle: Bundle, preds: pd.DataFrame, where: Report, opts: EvalOptions, cal: Calibration | None,
            extra: dict) -> EvalResult:
    from .report import write_model_card, write_report
    out_dir, split_name, run_dir, paths = where.out_dir, where.split_name, where.run_dir, where.paths
    tta, n_boot, seed, data_description = opts.tta, opts.n_boot, opts.seed, where.data_description
    threshold = bundle.threshold
    console.step(f"evaluate: metrics with {n_boot} lesion-bootstrap resamples on {len(preds)} images")
    metrics = summarize(preds, threshold, bundle.config["threshold"]["source"], n_boot, seed, cal)
    metrics.update({"format_version": METRICS_FORMAT, "split": split_name, "tta": tta, "architecture": bundle.config["architecture"],
                    "task": bundle.task, "data": data_description or (
                        "train split of the run: the model's own training images, NOT a performance estimate"
                        if split_name == "train" else f"{split_name} split of the run"),
                    "bundle_split_fingerprint": (bundle.config.get("training_data") or {}).get("split_fingerprint"),
                    **(extra or {})})
    written = preds.copy()
    if cal is not None:
        written["probability_calibrated"] = cal.apply(written["probability"])
    atomic.write_csv(Run(out_dir).predictions(split_name), written)
    y, p = preds["label"].to_numpy(), preds["probability"].to_numpy()
    d = out_dir / "plots"
    plots.roc_plot(y, p, threshold, d / f"{split_name}_roc.png", title=f"ROC ({split_name})")
    plots.pr_plot(y, p, d / f"{split_name}_pr.png")
    plots.confusion_plot(metrics["confusion_at_threshold"], threshold, d / f"{split_name}_confusion.png")
    plots.reliability_plot(metrics["calibration"], d / f"{split_name}_reliability.png")
    plots.threshold_plot(y, p, threshold, d / f"{split_name}_thresholds.png")
    plots.per_dx_plot(metrics["per_dx"], threshold, d / f"{split_name}_per_dx.png")
    if paths:
        console.step("evaluate: error gallery (Grad-CAM of the most confident mistakes)")
        from .gallery import error_gallery
        metrics["gallery"] = error_gallery(bundle, preds, paths, out_dir)
    atomic.write_json(Run(out_dir).metrics_json(split_name), metrics)
    console.step(f"evaluate: writing the report and model card into {out_dir}")
    report = write_report(out_dir, metrics, bundle.config, run_dir)
    card = write_model_card(out_dir, metrics, bundle.config, run_dir)
    return EvalResult(out_dir, metrics, report, card)


def format_headline(metrics: dict) -> str:
    """One paragraph: ROC-AUC, PR-AUC, pauc_above_tpr80 and sensitivity/specificity at the threshold, with CIs."""
    h = metrics["at_threshold"]
    s = lambda k: f"{h[k]['value']:.3f} [{h[k]['ci_low']:.3f}, {h[k]['ci_high']:.3f}]" if h[k]["value"] is not None else "n/a"
    return (f"{metrics['split']} ({metrics['n_images']} images, {metrics['n_lesions']} lesions, {metrics['n_malignant']} malignant): "
            f"ROC-AUC {s('roc_auc')}, PR-AUC {s('pr_auc')}, pauc_above_tpr80 {s('pauc_above_tpr80')}; at threshold "
            f"{metrics['threshold']['value']:.4f}: sensitivity {s('sensitivity')}, specificity {s('specificity')} "
            f"(95% CIs, {metrics['bootstrap']['resamples']} lesion-level bootstrap resamples)")
