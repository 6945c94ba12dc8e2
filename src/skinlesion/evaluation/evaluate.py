"""The `evaluate` stage: predictions on a run's test split or an external dataset, then every metric,
plot, report.html and model_card.md."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import atomic
from ..data.cache import CachedImages, build_cache, default_num_workers
from ..data.metadata import DataError, load_dataset, read_metadata
from ..data.split import attach_paths, load_split
from ..inference.bundle import Bundle, load_bundle, update_config
from ..inference.predictor import Predictor, forward_probs, prediction_frame
from ..labels import label_for
from . import plots
from .calibration import apply_temperature, fit_temperature
from .summary import summarize

META_COLUMNS = ("age", "sex", "localization", "dx_type")


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict
    report: Path
    model_card: Path


def _with_metadata(preds: pd.DataFrame, metadata_path: str | None) -> pd.DataFrame:
    """Join age/sex/localization from the dataset's metadata CSV (for subgroup tables) when available."""
    if not metadata_path or not Path(metadata_path).is_file():
        return preds
    meta = read_metadata(metadata_path)
    cols = [c for c in META_COLUMNS if c in meta.columns]
    return preds.merge(meta[["image_id", *cols]], on="image_id", how="left") if cols else preds


def predict_frame(model, dataset: CachedImages, rows: pd.DataFrame, task: str, batch_size: int, workers: int,
                  tta: bool = False) -> pd.DataFrame:
    """Eval-mode predictions on cached images: image_id, lesion_id, dx, label, probability (+ p_<dx>)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    device = next(model.parameters()).device
    probs, classes = zip(*[forward_probs(model, x.to(device), task, tta) for x, _, _ in loader])
    return prediction_frame(rows, torch.cat(probs).cpu().numpy(), torch.cat(classes).cpu().numpy(), task)


def predict_split(bundle: Bundle, split: pd.DataFrame, which: str, tta: bool, batch_size: int, workers: int,
                  cache_dir: str | None, progress: bool) -> pd.DataFrame:
    """Predictions for the rows of split ``which`` from the run's decoded-image cache."""
    rows_idx = np.flatnonzero(split["split"].to_numpy() == which)
    if not len(rows_idx):
        raise DataError(f"the split has no '{which}' images; choose --split train, val or test")
    cache = build_cache(split["path"].tolist(), bundle.preprocessing, cache_dir, workers, progress)
    targets = np.array([label_for(dx, bundle.task) for dx in split["dx"].iloc[rows_idx]])
    ds = CachedImages(cache, rows_idx, targets, bundle.preprocessing.eval_transform())
    return predict_frame(bundle.model, ds, split.iloc[rows_idx], bundle.task, batch_size, workers, tta)


def _temperature(bundle: Bundle, bundle_dir: Path, calibrate: bool, val_preds: pd.DataFrame | None) -> float | None:
    if calibrate:
        if val_preds is None:
            raise DataError("--calibrate needs the run's validation predictions; evaluate a run dir, not --model")
        t = fit_temperature(val_preds["label"].to_numpy(), val_preds["probability"].to_numpy())
        update_config(bundle_dir, calibration={"temperature": t, "fit_on": "val", "method": "temperature scaling"})
        return t
    return (bundle.config.get("calibration") or {}).get("temperature")


def evaluate_run(run_dir: str | Path, split_name: str = "test", tta: bool = False, calibrate: bool = False,
                 n_boot: int = 1000, seed: int = 0, batch_size: int = 64, num_workers: int | None = None,
                 cache_dir: str | None = None, progress: bool = True) -> EvalResult:
    """Evaluate a run's bundle on one split of its own data; outputs go into the run dir."""
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir / "bundle")
    split = load_split(run_dir)
    info = json.loads((run_dir / "split.json").read_text(encoding="utf-8")).get("dataset", {})
    split = attach_paths(split, info["root"], str(run_dir / "split.csv"))
    workers = default_num_workers(num_workers)
    if cache_dir is None and (run_dir / "config.yaml").is_file():  # reuse the cache training filled
        from ..config import load_config
        cache_dir = load_config(run_dir / "config.yaml").train.cache_dir
    preds = predict_split(bundle, split, split_name, tta, batch_size, workers, cache_dir, progress)
    val_preds = None
    if calibrate:
        val_preds = pd.read_csv(run_dir / "val_predictions.csv") if not tta else \
            predict_split(bundle, split, "val", tta, batch_size, workers, cache_dir, progress)
    temperature = _temperature(bundle, run_dir / "bundle", calibrate, val_preds)
    preds = _with_metadata(preds, info.get("metadata"))
    result = _finish(bundle, preds, run_dir, split_name, tta, temperature, n_boot, seed, run_dir)
    if split_name == "test":
        h = result.metrics["at_threshold"]
        update_config(run_dir / "bundle", metrics={**bundle.config.get("metrics", {}), "test": {
            k: h[k] for k in ("roc_auc", "pr_auc", "auc_sens_80", "sensitivity", "specificity")}})
    return result


def evaluate_external(bundle_dir: str | Path, data: str | Path, out_dir: str | Path, metadata: str | None = None,
                      allow_missing: float = 0.0, tta: bool = False, n_boot: int = 1000, seed: int = 0,
                      batch_size: int = 64, num_workers: int | None = None, progress: bool = True) -> EvalResult:
    """Evaluate a bundle on every image of an external HAM10000-layout dataset (no split)."""
    bundle = load_bundle(bundle_dir)
    ds = load_dataset(data, metadata, allow_missing, verify=False, progress=progress)
    predictor = Predictor(bundle, batch_size=batch_size, tta=tta, calibrated=False)
    out = predictor.predict_paths(ds.frame["path"].tolist(), default_num_workers(num_workers), progress)
    failed = out[out["error"] != ""]
    if len(failed):
        raise DataError(f"{len(failed)} image(s) could not be decoded: " + "; ".join(failed["error"].head(5))
                        + ". Remedy: fix or remove them (run `skinlesion prepare --verify` to list all).")
    preds = ds.frame.loc[:, ["image_id", "lesion_id", "dx", "label", *[c for c in META_COLUMNS if c in ds.frame]]].copy()
    preds["probability"] = out["probability"].to_numpy()
    for col in [c for c in out.columns if c.startswith("p_")]:
        preds[col] = out[col].to_numpy()
    temperature = (bundle.config.get("calibration") or {}).get("temperature")
    return _finish(bundle, preds, Path(out_dir), "external", tta, temperature, n_boot, seed, None,
                   data_description=f"external dataset {Path(data).resolve()} (every image, no split)")


def _finish(bundle: Bundle, preds: pd.DataFrame, out_dir: Path, split_name: str, tta: bool, temperature: float | None,
            n_boot: int, seed: int, run_dir: Path | None, data_description: str | None = None) -> EvalResult:
    from .report import write_model_card, write_report
    threshold = bundle.threshold
    metrics = summarize(preds, threshold, bundle.config["threshold"]["source"], n_boot, seed, temperature)
    metrics.update({"split": split_name, "tta": tta, "architecture": bundle.config["architecture"],
                    "task": bundle.task, "data": data_description or f"{split_name} split of the run"})
    name = "test_predictions.csv" if split_name == "test" else f"{split_name}_predictions.csv"
    written = preds.copy()
    if temperature is not None:
        written["probability_calibrated"] = apply_temperature(written["probability"], temperature)
    atomic.write_csv(out_dir / name, written)
    atomic.write_json(out_dir / ("metrics.json" if split_name in ("test", "external") else f"metrics_{split_name}.json"), metrics)
    y, p = preds["label"].to_numpy(), preds["probability"].to_numpy()
    d = out_dir / "plots"
    plots.roc_plot(y, p, threshold, d / f"{split_name}_roc.png", title=f"ROC ({split_name})")
    plots.pr_plot(y, p, d / f"{split_name}_pr.png")
    plots.confusion_plot(metrics["confusion_at_threshold"], threshold, d / f"{split_name}_confusion.png")
    plots.reliability_plot(metrics["calibration"], d / f"{split_name}_reliability.png")
    plots.threshold_plot(y, p, threshold, d / f"{split_name}_thresholds.png")
    plots.per_dx_plot(metrics["per_dx"], threshold, d / f"{split_name}_per_dx.png")
    report = write_report(out_dir, metrics, bundle.config, run_dir)
    card = write_model_card(out_dir, metrics, bundle.config, run_dir)
    return EvalResult(out_dir, metrics, report, card)


def format_headline(metrics: dict) -> str:
    """One paragraph: ROC-AUC, PR-AUC, auc_sens_80 and sensitivity/specificity at the threshold, with CIs."""
    h = metrics["at_threshold"]
    s = lambda k: f"{h[k]['value']:.3f} [{h[k]['ci_low']:.3f}, {h[k]['ci_high']:.3f}]" if h[k]["value"] is not None else "n/a"
    return (f"{metrics['split']} ({metrics['n_images']} images, {metrics['n_lesions']} lesions, {metrics['n_malignant']} malignant): "
            f"ROC-AUC {s('roc_auc')}, PR-AUC {s('pr_auc')}, auc_sens_80 {s('auc_sens_80')}; at threshold "
            f"{metrics['threshold']['value']:.4f}: sensitivity {s('sensitivity')}, specificity {s('specificity')} "
            f"(95% CIs, {metrics['bootstrap']['resamples']} lesion-level bootstrap resamples)")
