"""The cv section of `evaluate` for a cross-validated run: the ensemble against each fold model on the
same held-out test images, and the other way of averaging (mean of logits) for comparison."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .bootstrap import bootstrap, paired_difference
from .metrics import pr_auc, roc_auc


def _aucs(frame: pd.DataFrame, n_boot: int, seed: int) -> dict:
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
    est = bootstrap(lambda i: {"roc_auc": roc_auc(y[i], p[i]), "pr_auc": pr_auc(y[i], p[i])},
                    frame["lesion_id"].to_numpy(), n_boot, seed)
    return {k: v.to_dict() for k, v in est.items()}


def cv_section(run_dir: Path, bundle, split: pd.DataFrame, ensemble_preds: pd.DataFrame, predict, n_boot: int,
               seed: int) -> dict:
    """``predict(bundle) -> predictions on the test rows`` is supplied by evaluate (same cache, same TTA)."""
    from ..inference.bundle import load_bundle
    from ..models.ensemble import EnsembleClassifier
    members = bundle.config["ensemble"]["members"]
    rows = []
    for name in members:
        preds = predict(load_bundle(run_dir / "folds" / name / "bundle"))
        rows.append({"member": name, **_aucs(preds, n_boot, seed)})
    ensemble = _aucs(ensemble_preds, n_boot, seed)
    singles = {k: [r[k]["value"] for r in rows] for k in ("roc_auc", "pr_auc")}
    best = max(rows, key=lambda r: r["roc_auc"]["value"])
    other = "mean_logit" if bundle.config["ensemble"].get("combine", "mean_probability") == "mean_probability" \
        else "mean_probability"
    alt_model = EnsembleClassifier(list(bundle.model.members), bundle.task, other).eval()
    alt = predict(type(bundle)(alt_model, bundle.config, bundle.preprocessing))
    y, groups = ensemble_preds["label"], ensemble_preds["lesion_id"]
    return {"members": rows, "ensemble": ensemble, "combine": bundle.config["ensemble"].get("combine"),
            "single_mean": {k: float(np.mean(v)) for k, v in singles.items()},
            "single_sd": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in singles.items()},
            "best_single": best["member"],
            "ensemble_vs_best": paired_difference(roc_auc, y, ensemble_preds["probability"],
                                                  predict(load_bundle(run_dir / "folds" / best["member"] / "bundle"))
                                                  ["probability"], groups, n_boot, seed),
            "alternative_combine": {"combine": other, **_aucs(alt, n_boot, seed)}}


def cv_rows(cv: dict) -> list[list[str]]:
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    rows = [[r["member"], f(r["roc_auc"]), f(r["pr_auc"])] for r in cv["members"]]
    rows.append(["single models, mean ± sd", f"{cv['single_mean']['roc_auc']:.3f} ± {cv['single_sd']['roc_auc']:.3f}",
                 f"{cv['single_mean']['pr_auc']:.3f} ± {cv['single_sd']['pr_auc']:.3f}"])
    rows.append([f"ensemble ({cv['combine']})", f(cv["ensemble"]["roc_auc"]), f(cv["ensemble"]["pr_auc"])])
    alt = cv["alternative_combine"]
    rows.append([f"ensemble ({alt['combine']}, for comparison)", f(alt["roc_auc"]), f(alt["pr_auc"])])
    return rows
