"""The `tune-threshold` stage: choose the decision threshold on validation probabilities."""
from __future__ import annotations

import math
from pathlib import Path

from .. import atomic
from ..data.run import Run, binding
from ..inference.bundle import load_bundle, update_config
from .calibration import Calibration, fit_for_bundle
from .metrics import threshold_metrics
from .plots import roc_plot, threshold_plot
from .thresholds import ThresholdError, format_operating_points, operating_points, threshold_for_sensitivity


def tune_threshold(run: Run | str | Path, target_sensitivity: float = 0.90, tta: bool = False) -> dict:
    """Highest threshold with val sensitivity >= target, on the validation images of the run's own fold
    (checked against the split the model trained on). With ``tta`` the validation probabilities are
    recomputed with test-time augmentation (the run's workers and console), so the threshold holds for
    `predict --tta`. Writes threshold.json and plots and updates the bundle; nothing is written when a check
    fails."""
    from .evaluate import predict_split, run_context
    run = Run.of(run)
    run_dir = run.path
    if not (isinstance(target_sensitivity, (int, float)) and math.isfinite(target_sensitivity)
            and 0 < target_sensitivity <= 1):
        raise ThresholdError(f"--target-sensitivity must be a fraction in (0, 1], got {target_sensitivity!r}. "
                             "Remedy: --target-sensitivity 0.9")
    bundle = load_bundle(run.check_exists().bundle)
    if bundle.config.get("ensemble") or run.is_cv():
        from ..errors import DataError
        raise DataError(f"{run_dir} is a cross-validation run: its ensemble's threshold is tuned on the out-of-fold "
                        "predictions of every fold, not on one validation split. Remedy: re-tune it with `skinlesion cv "
                        f"--out {run_dir} --resume --target-sensitivity {target_sensitivity}` (the fold models are kept).")
    ctx, split = run_context(run, bundle)
    if tta:
        from .site_data import EvalOptions
        val = predict_split(bundle, split, "val", EvalOptions(tta=True, num_workers=run.num_workers,
                                                                  progress=run.console.progress))
        source = f"{len(val)} validation images, predicted with TTA"
    else:
        val = run.read_val_predictions(ctx)
        source = str(run.val_predictions)
    y, p = val["label"].to_numpy(), val["probability"].to_numpy()
    threshold = threshold_for_sensitivity(y, p, target_sensitivity, where=source)
    table = operating_points(y, p)
    chosen = {"threshold": threshold, **threshold_metrics(y, p, threshold)}
    result = {"threshold": threshold, "target_sensitivity": target_sensitivity, "source_split": "val", "tta": tta,
              "n_val_images": int(len(val)), "chosen": chosen, "operating_points": table, **binding(ctx)}
    calibration = fit_for_bundle(bundle.config, y, p, "val" + (" (TTA)" if tta else ""), {"tta": tta, **binding(ctx)})
    calibrated_threshold = float(Calibration.from_config(calibration).apply(threshold))
    result["calibration"], result["calibrated_threshold"] = calibration, calibrated_threshold
    update_config(run.bundle, threshold={
        "value": threshold, "source": f"val split{' (TTA)' if tta else ''}, highest threshold with sensitivity >= "
        f"{target_sensitivity}", "target_sensitivity": target_sensitivity, "tta": tta, "operating_point": chosen,
        "calibrated_value": calibrated_threshold, **binding(ctx)}, calibration=calibration)
    atomic.write_json(run.threshold_json, result)
    roc_plot(y, p, threshold, run.plots / "val_roc.png", title="Validation ROC (chosen threshold)")
    threshold_plot(y, p, threshold, run.plots / "val_thresholds.png")
    return result


def format_result(result: dict) -> str:
    c = result["chosen"]
    cal = result.get("calibration")
    return (f"threshold {result['threshold']:.4f} (val sensitivity {c['sensitivity']:.3f}, specificity "
            f"{c['specificity']:.3f}; target sensitivity {result['target_sensitivity']}"
            f"{', with TTA' if result.get('tta') else ''})\n"
            + (f"calibrated probabilities: {cal['formula']} ({cal['method']}, fit on {cal['n_images']} validation "
               f"images); the threshold on that scale is {result['calibrated_threshold']:.4f}\n" if cal else "")
            + format_operating_points(result["operating_points"]))
