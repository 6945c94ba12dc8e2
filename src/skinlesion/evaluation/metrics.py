"""Metric functions: arrays in, numbers out, no I/O. p >= threshold means 'malignant'."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def roc_auc(y_true, prob) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(y_true)
    return float(roc_auc_score(y, prob)) if _both_classes(y) else math.nan


def pr_auc(y_true, prob) -> float:
    """Average precision (area under the precision-recall curve); NaN without positives."""
    y = np.asarray(y_true)
    return float(average_precision_score(y, prob)) if y.sum() > 0 else math.nan


def auc_above_sensitivity(y_true, prob, min_sensitivity: float = 0.80) -> float:
    """Partial ROC area above ``min_sensitivity``: the area between the ROC curve and the horizontal line
    TPR = min_sensitivity, over all FPR (the ISIC 2024 / Kaggle challenge metric; range [0, 1 - min_sensitivity]).
    Reported as ``pauc_above_tpr80``; files written before the rename call it ``auc_sens_80``, a name the
    official ISIC challenge scorer uses for a different area, so it was renamed (see METRIC_DEFINITIONS)."""
    y = np.asarray(y_true)
    if not _both_classes(y):
        return math.nan
    max_fpr = 1.0 - min_sensitivity
    # Swap the classes and negate the scores: the region above TPR=s becomes the region left of FPR=1-s.
    scaled = roc_auc_score(1 - y, -np.asarray(prob, dtype=float), max_fpr=max_fpr)  # McClish-standardised
    return float(0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / 0.5 * (scaled - 0.5))


def confusion(y_true, prob, threshold: float) -> dict[str, int]:
    """tp, fp, tn, fn when ``prob >= threshold`` is called malignant."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(prob) >= threshold
    return {"tp": int((pred & (y == 1)).sum()), "fp": int((pred & (y == 0)).sum()),
            "tn": int((~pred & (y == 0)).sum()), "fn": int((~pred & (y == 1)).sum())}


def threshold_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, F1, accuracy, balanced accuracy, predicted-positive rate."""
    c = confusion(y_true, prob, threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    n = tp + fp + tn + fn
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    ppv = _div(tp, tp + fp)
    return {
        "sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn), "accuracy": _div(tp + tn, n),
        "balanced_accuracy": (sens + spec) / 2, "predicted_positive_rate": _div(tp + fp, n),
    }


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width probability bins: sum of |accuracy - confidence| weighted by bin size,
    for the probability of the positive class."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(prob, dtype=float)
    if len(y) == 0:
        return math.nan
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(ece)


def reliability_curve(y_true, prob, n_bins: int = 10) -> dict[str, list[float]]:
    """Per-bin mean predicted probability, observed frequency and count (empty bins omitted)."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(prob, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    out: dict[str, list[float]] = {"mean_predicted": [], "observed": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out["mean_predicted"].append(float(p[mask].mean()))
            out["observed"].append(float(y[mask].mean()))
            out["count"].append(int(mask.sum()))
    return out


def brier(y_true, prob) -> float:
    y = np.asarray(y_true)
    return float(brier_score_loss(y, prob)) if len(y) else math.nan


def top_label_ece(y_true, prob, n_bins: int = 10) -> float:
    """ECE in the top-label convention (Guo et al. 2017): confidence = max(p, 1 - p) of the predicted class
    (p >= 0.5: malignant), accuracy = whether that class is right; equal-width bins over [0.5, 1]."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(prob, dtype=float)
    if len(y) == 0:
        return math.nan
    conf = np.maximum(p, 1 - p)
    correct = ((p >= 0.5) == (y == 1)).astype(float)
    bins = np.clip(((conf - 0.5) * 2 * n_bins).astype(int), 0, n_bins - 1)
    return float(sum((bins == b).mean() * abs(correct[bins == b].mean() - conf[bins == b].mean())
                     for b in range(n_bins) if (bins == b).any()))


def ranking_metrics(y_true, prob) -> dict[str, float]:
    """Threshold-free metrics: ROC-AUC, PR-AUC, pauc_above_tpr80, Brier score, ECE (both conventions)."""
    return {"roc_auc": roc_auc(y_true, prob), "pr_auc": pr_auc(y_true, prob),
            "pauc_above_tpr80": auc_above_sensitivity(y_true, prob, 0.80), "brier": brier(y_true, prob),
            "ece": expected_calibration_error(y_true, prob), "ece_top_label": top_label_ece(y_true, prob)}


def all_metrics(y_true, prob, threshold: float) -> dict[str, float]:
    """Every headline metric at ``threshold``."""
    return {**ranking_metrics(y_true, prob), **threshold_metrics(y_true, prob, threshold)}


def epoch_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """The per-epoch validation figures logged during training."""
    t = threshold_metrics(y_true, prob, threshold)
    return {"roc_auc": roc_auc(y_true, prob), "pr_auc": pr_auc(y_true, prob),
            **{k: t[k] for k in ("sensitivity", "specificity", "predicted_positive_rate")}}


#: Old metric names still read from files written by earlier versions -> the current name.
RENAMED = {"auc_sens_80": "pauc_above_tpr80"}


def upgrade_metric_names(data):
    """A metrics.json structure with old metric keys renamed (recursively); anything else unchanged."""
    if isinstance(data, dict):
        return {RENAMED.get(k, k): upgrade_metric_names(v) for k, v in data.items()}
    if isinstance(data, list):
        return [upgrade_metric_names(v) for v in data]
    return data


#: Every metric a report shows: (range, definition and source). Rendered in report.html and model_card.md.
METRIC_DEFINITIONS = {
    "roc_auc": ("0-1 (0.5 = chance)", "area under the ROC curve, malignant as the positive class "
                "(scikit-learn roc_auc_score)"),
    "pr_auc": ("0-1 (chance = prevalence)", "average precision, the area under the precision-recall curve "
               "(scikit-learn average_precision_score)"),
    "pauc_above_tpr80": ("0-0.2", "partial ROC area above 80% sensitivity: the area between the ROC curve and "
                         "TPR = 0.8 over all FPR, as in the ISIC 2024 challenge (Kaggle metric code); not the "
                         "McClish-standardised value and not the ISIC challenge scorer's 'auc_sens_80'"),
    "sensitivity": ("0-1", "true-positive rate: malignant images called malignant / malignant images"),
    "specificity": ("0-1", "true-negative rate: benign images called benign / benign images"),
    "ppv": ("0-1", "positive predictive value (precision) at the threshold; depends on the prevalence"),
    "npv": ("0-1", "negative predictive value at the threshold; depends on the prevalence"),
    "f1": ("0-1", "harmonic mean of PPV and sensitivity"),
    "accuracy": ("0-1", "share of images whose decision is correct"),
    "balanced_accuracy": ("0-1 (0.5 = chance)", "mean of sensitivity and specificity"),
    "brier": ("0-1 (lower is better)", "mean squared difference between probability and the 0/1 label"),
    "ece": ("0-1 (lower is better)", "expected calibration error, malignant-class convention: 10 equal-width "
            "bins of p(malignant), |mean probability - malignant share| weighted by the bin's share of images"),
    "ece_top_label": ("0-0.5 (lower is better)", "expected calibration error, top-label convention (Guo et al. "
                      "2017): confidence of the predicted class max(p, 1-p) against its accuracy, 10 bins over "
                      "[0.5, 1]"),
}
