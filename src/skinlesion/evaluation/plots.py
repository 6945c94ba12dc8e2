"""Evaluation plots (PNG, written atomically): ROC, PR, confusion, reliability, thresholds, per-dx."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import atomic
from .thresholds import sensitivity_curve


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    atomic.save_figure(path, fig, dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return path


def roc_plot(y, p, threshold: float, path: Path, title: str = "ROC") -> Path:
    from sklearn.metrics import roc_curve
    from .metrics import roc_auc, threshold_metrics
    plt = _plt()
    fpr, tpr, _ = roc_curve(y, p)
    m = threshold_metrics(y, p, threshold)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot(1 - m["specificity"], m["sensitivity"], "o", color="C3", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def pr_plot(y, p, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve
    from .metrics import pr_auc
    plt = _plt()
    prec, rec, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(rec, prec, label=f"PR-AUC {pr_auc(y, p):.3f}")
    ax.axhline(np.mean(y), ls=":", color="grey", label="prevalence")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall")
    ax.legend()
    return _save(fig, path)


def threshold_plot(y, p, threshold: float, path: Path) -> Path:
    plt = _plt()
    t, sens, spec = sensitivity_curve(y, p)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(t, sens, label="sensitivity")
    ax.plot(t, spec, label="specificity")
    ax.axvline(threshold, color="C3", ls="--", label=f"chosen {threshold:.3g}")
    ax.set(xlabel="threshold on p(malignant)", ylabel="rate", title="Sensitivity and specificity vs threshold")
    ax.legend()
    return _save(fig, path)


def confusion_plot(conf: dict, threshold: float, path: Path) -> Path:
    plt = _plt()
    m = np.array([[conf["tn"], conf["fp"]], [conf["fn"], conf["tp"]]])
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["benign", "malignant"], yticklabels=["benign", "malignant"],
           xlabel="predicted", ylabel="true", title=f"Confusion at {threshold:.3g}")
    return _save(fig, path)


def reliability_plot(calibration: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    r = calibration["reliability"]
    ax.plot(r["mean_predicted"], r["observed"], "o-", label="model")
    if "reliability_calibrated" in calibration:
        rc = calibration["reliability_calibrated"]
        ax.plot(rc["mean_predicted"], rc["observed"], "s-", label="calibrated")
    ax.set(xlabel="mean predicted p(malignant)", ylabel="observed malignant fraction", title="Reliability")
    ax.legend()
    return _save(fig, path)


def per_dx_plot(rows: list[dict], threshold: float, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = [r["dx"] for r in rows]
    vals = [r["called_malignant"]["value"] or 0 for r in rows]
    lo = [v - (r["called_malignant"]["ci_low"] or v) for v, r in zip(vals, rows)]
    hi = [(r["called_malignant"]["ci_high"] or v) - v for v, r in zip(vals, rows)]
    ax.bar(names, vals, yerr=[lo, hi], capsize=3, color=["#e8604c" if r["malignant"] else "#4c9be8" for r in rows])
    ax.set(ylim=(0, 1), ylabel="share called malignant", title=f"Per dx at threshold {threshold:.3g} (red: malignant dx)")
    return _save(fig, path)


def local_cases_plot(curve: list[dict], target: float, path: Path) -> Path:
    """`adapt`'s "how many local cases" curve: the sensitivity an adapted threshold reaches on held-out site
    images (mean and 95% range over repeated draws) against the number of local malignant cases tuned on."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = [r["malignant_cases"] for r in curve]
    ax.fill_between(n, [r["sensitivity_low"] for r in curve], [r["sensitivity_high"] for r in curve], alpha=0.25,
                    label="95% range over draws")
    ax.plot(n, [r["sensitivity_mean"] for r in curve], "o-", label="mean")
    ax.axhline(target, color="grey", ls=":", label=f"target {target:g}")
    ax.set(xscale="log", xlabel="local malignant cases used to tune the threshold",
           ylabel="sensitivity on the rest of the site", title="How many local cases")
    ax.set_xticks(n, [str(v) for v in n])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return _save(fig, path)
