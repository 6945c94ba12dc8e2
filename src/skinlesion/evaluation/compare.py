"""`compare`: headline metrics of several runs side by side, and a paired ROC-AUC test."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pandas as pd

from ..data.metadata import DataError
from .bootstrap import paired_difference
from .metrics import roc_auc
from .report import _fmt

COLUMNS = ("roc_auc", "pr_auc", "auc_sens_80", "sensitivity", "specificity")


def _load(run: Path) -> tuple[dict, pd.DataFrame]:
    m, p = run / "metrics.json", run / "test_predictions.csv"
    if not m.is_file() or not p.is_file():
        raise DataError(f"{run} has no metrics.json/test_predictions.csv. Remedy: run `skinlesion evaluate {run}` first.")
    return json.loads(m.read_text(encoding="utf-8")), pd.read_csv(p)


def compare_runs(runs: list[str | Path], n_boot: int = 1000, seed: int = 0) -> dict:
    """Headline table for every run; paired bootstrap ROC-AUC difference for each pair on the same images."""
    loaded = [(str(r), *_load(Path(r))) for r in runs]
    table = [{"run": name, "architecture": m.get("architecture"), "n_images": m["n_images"],
              **{k: m["at_threshold"][k] for k in COLUMNS}} for name, m, _ in loaded]
    pairs = []
    for (a, _, pa), (b, _, pb) in combinations(loaded, 2):
        if set(pa["image_id"]) != set(pb["image_id"]):
            pairs.append({"a": a, "b": b, "note": "evaluated on different images; no paired test"})
            continue
        merged = pa.merge(pb[["image_id", "probability"]], on="image_id", suffixes=("_a", "_b"))
        pairs.append({"a": a, "b": b, **paired_difference(roc_auc, merged["label"], merged["probability_a"],
                                                           merged["probability_b"], merged["lesion_id"], n_boot, seed)})
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
