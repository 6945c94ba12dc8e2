"""The cv section of `evaluate` for a cross-validated run: the ensemble against each fold model on the
same held-out test images, and the other way of averaging (mean of logits) for comparison."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.run import Run
from .bootstrap import paired_difference
from .metrics import roc_auc
from .summary import auc_estimates


def cv_section(run: Run, bundle, ensemble_preds: pd.DataFrame, predict, n_boot: int, seed: int) -> dict:
    """``predict(bundle) -> predictions on the test rows`` is supplied by evaluate (same cache, same TTA)."""
    from ..inference.bundle import load_bundle
    from ..models.ensemble import EnsembleClassifier
    members = bundle.config["ensemble"]["members"]
    rows, member_preds = [], {}
    for name in members:
        member_preds[name] = predict(load_bundle(run.fold(name).bundle))
        rows.append({"member": name, **auc_estimates(member_preds[name], n_boot, seed)})
    ensemble = auc_estimates(ensemble_preds, n_boot, seed)
    singles = {k: [r[k]["value"] for r in rows] for k in ("roc_auc", "pr_auc")}
    best = max(rows, key=lambda r: r["roc_auc"]["value"])
    other = "mean_logit" if bundle.config["ensemble"].get("combine", "mean_probability") == "mean_probability" \
        else "mean_probability"
    stacked = bool(bundle.config.get("stack")) and run.bundle_image.is_dir()
    image_bundle = load_bundle(run.bundle_image) if stacked else bundle  # cv --stack: without its trees
    alt_model = EnsembleClassifier(list(image_bundle.model.members), bundle.task, other).eval()
    alt = predict(type(bundle)(alt_model, image_bundle.config, image_bundle.preprocessing))
    y, groups = ensemble_preds["label"], ensemble_preds["lesion_id"]
    stack = {}
    if stacked:
        image = predict(image_bundle)
        stack = {"image_only": auc_estimates(image, n_boot, seed),
                 "stack_vs_image_only": paired_difference(roc_auc, y, (ensemble_preds["probability"],
                                                          image["probability"]), groups, n_boot, seed)}
    return {**stack, "members": rows, "ensemble": ensemble, "combine": bundle.config["ensemble"].get("combine"),
            "single_mean": {k: float(np.mean(v)) for k, v in singles.items()},
            "single_sd": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in singles.items()},
            "best_single": best["member"],
            "ensemble_vs_best": paired_difference(roc_auc, y, (ensemble_preds["probability"],
                                                  member_preds[best["member"]]["probability"]), groups, n_boot, seed),
            "alternative_combine": {"combine": other, **auc_estimates(alt, n_boot, seed)}}


def cv_rows(cv: dict) -> list[list[str]]:
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    rows = [[r["member"], f(r["roc_auc"]), f(r["pr_auc"])] for r in cv["members"]]
    rows.append(["single models, mean ± sd", f"{cv['single_mean']['roc_auc']:.3f} ± {cv['single_sd']['roc_auc']:.3f}",
                 f"{cv['single_mean']['pr_auc']:.3f} ± {cv['single_sd']['pr_auc']:.3f}"])
    stacked = "image_only" in cv
    if stacked:
        rows.append([f"fold ensemble ({cv['combine']}), image only", f(cv["image_only"]["roc_auc"]),
                     f(cv["image_only"]["pr_auc"])])
    rows.append([("stacked trees on the ensemble + metadata" if stacked else f"ensemble ({cv['combine']})"),
                 f(cv["ensemble"]["roc_auc"]), f(cv["ensemble"]["pr_auc"])])
    alt = cv["alternative_combine"]
    rows.append([f"ensemble ({alt['combine']}, for comparison)", f(alt["roc_auc"]), f(alt["pr_auc"])])
    if stacked:
        d = cv["stack_vs_image_only"]
        rows.append(["stack − image only (paired, lesion bootstrap)", f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, "
                     f"{d['ci_high']:+.3f}], p = {d['p_value']:.3f}", ""])
    return rows
