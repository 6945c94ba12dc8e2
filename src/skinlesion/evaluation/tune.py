"""The `tune-threshold` stage: choose the decision threshold on validation probabilities."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import atomic
from ..data.metadata import DataError
from ..inference.bundle import update_config
from .metrics import threshold_metrics
from .plots import roc_plot, threshold_plot
from .thresholds import format_operating_points, operating_points, threshold_for_sensitivity


def tune_threshold(run_dir: str | Path, target_sensitivity: float = 0.90) -> dict:
    """Highest threshold with val sensitivity >= target; writes threshold.json, plots, updates the bundle."""
    run_dir = Path(run_dir)
    path = run_dir / "val_predictions.csv"
    if not path.is_file():
        raise DataError(f"{path} not found. Remedy: train first (`skinlesion train --out {run_dir}`).")
    if not 0 < target_sensitivity <= 1:
        raise DataError(f"--target-sensitivity must be in (0, 1], got {target_sensitivity}")
    val = pd.read_csv(path)
    y, p = val["label"].to_numpy(), val["probability"].to_numpy()
    threshold = threshold_for_sensitivity(y, p, target_sensitivity, where=str(path))
    table = operating_points(y, p)
    chosen = {"threshold": threshold, **threshold_metrics(y, p, threshold)}
    result = {"threshold": threshold, "target_sensitivity": target_sensitivity, "source_split": "val",
              "n_val_images": int(len(val)), "chosen": chosen, "operating_points": table}
    atomic.write_json(run_dir / "threshold.json", result)
    roc_plot(y, p, threshold, run_dir / "plots" / "val_roc.png", title="Validation ROC (chosen threshold)")
    threshold_plot(y, p, threshold, run_dir / "plots" / "val_thresholds.png")
    if (run_dir / "bundle" / "config.json").is_file():
        update_config(run_dir / "bundle", threshold={
            "value": threshold, "source": f"val split, highest threshold with sensitivity >= {target_sensitivity}",
            "target_sensitivity": target_sensitivity, "operating_point": chosen})
    return result


def format_result(result: dict) -> str:
    c = result["chosen"]
    return (f"threshold {result['threshold']:.4f} (val sensitivity {c['sensitivity']:.3f}, specificity "
            f"{c['specificity']:.3f}; target sensitivity {result['target_sensitivity']})\n"
            + format_operating_points(result["operating_points"]))
