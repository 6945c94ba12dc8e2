"""`compare`: headline metrics of several runs side by side, and a paired ROC-AUC test."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..data.run import Run, check_binding, read_json
from .bootstrap import paired_difference
from .metrics import roc_auc
from .report import _fmt
from ..tables import read_csv_exact

COLUMNS = ("roc_auc", "pr_auc", "pauc_above_tpr80", "sensitivity", "specificity")


def _load(run: Path) -> tuple[dict, pd.DataFrame]:
    """A run's test metrics and predictions, checked to belong to the run's current split and bundle."""
    r = Run(run)
    m, p = r.metrics_json(), r.predictions("test")
    if not m.is_file() or not p.is_file():
        raise DataError(f"{run} has no metrics.json/test_predictions.csv. Remedy: run `skinlesion evaluate {run}` first.")
    from .scores import MetricsFile
    metrics = MetricsFile.read(m)
    if metrics.split != "test":
        raise DataError(f"{m} does not hold test-split metrics. Remedy: run `skinlesion evaluate {run}`.")
    check_binding(metrics, r.context(metrics.get("fold")), str(m))
    bundle = r.bundle / "config.json"
    if bundle.is_file():
        trained = (read_json(bundle, "the run's bundle").get("training_data") or {}).get("split_fingerprint")
        if trained != metrics.get("bundle_split_fingerprint"):
            raise DataError(f"{m} was written for another model than {r.bundle} holds now. Remedy: run "
                            f"`skinlesion evaluate {run}` again.")
    preds = read_csv_exact(p, f"run `skinlesion evaluate {run}` again.")
    if len(preds) != metrics.get("n_images") or not {"image_id", "lesion_id", "label", "probability"} <= set(preds):
        raise DataError(f"{p} does not match {m} (edited by hand?). Remedy: run `skinlesion evaluate {run}` again.")
    return metrics, preds


def compare_runs(runs: list[str | Path], n_boot: int = 1000, seed: int = 0) -> dict:
    """Headline table for every run; paired bootstrap ROC-AUC difference for each pair on the same images."""
    if len({str(Path(r).resolve()) for r in runs}) < len(runs):
        raise DataError("compare: the same run is listed twice. Remedy: list each RUN_DIR once.")
    loaded = [(str(r), *_load(Path(r))) for r in runs]
    table = [{"run": name, "architecture": m.get("architecture"), "n_images": m["n_images"],
              **{k: m["at_threshold"][k] for k in COLUMNS}} for name, m, _ in loaded]
    pairs = []
    for (a, _, pa), (b, _, pb) in combinations(loaded, 2):
        if set(pa["image_id"]) != set(pb["image_id"]):
            pairs.append({"a": a, "b": b, "note": "evaluated on different images; no paired test"})
            continue
        merged = pa.merge(pb[["image_id", "probability"]], on="image_id", suffixes=("_a", "_b"))
        pairs.append({"a": a, "b": b, **paired_difference(roc_auc, merged["label"], (merged["probability_a"],
                                                           merged["probability_b"]), merged["lesion_id"], n_boot, seed)})
    return {"runs": table, "paired_roc_auc": pairs}


def format_comparison(result: dict) -> str:
    head = ["run", "arch", "n"] + list(COLUMNS)
    rows = [[r["run"], r["architecture"], r["n_images"]] + [_fmt(r[k]) for k in COLUMNS] for r in result["runs"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))
    out = [line(head)] + [line(r) for r in rows]
    for p in result["paired_roc_auc"]:
        if "note" in p:
            out.append(f"{p['a']} vs {p['b']}: {p['note']}")
        else:
            out.append(f"{p['a']} vs {p['b']}: ROC-AUC difference {p['difference']:+.4f} "
                       f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}], paired bootstrap p = {p['p_value']:.4f}")
    return "\n".join(out)
