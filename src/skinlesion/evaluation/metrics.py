"""Metric functions: arrays in, numbers out, no I/O."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def roc_auc(y_true, prob) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(y_true)
    return float(roc_auc_score(y, prob)) if _both_classes(y) else math.nan


def pr_auc(y_true, prob) -> float:
    """Average precision (area under the precision-recall curve); NaN without positives."""
    y = np.asarray(y_true)
    return float(average_precision_score(y, prob)) if y.sum() > 0 else math.nan


def threshold_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """Sensitivity, specificity and predicted-positive rate when ``prob >= threshold`` is malignant."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(prob) >= threshold
    tp, fn = int((pred & (y == 1)).sum()), int((~pred & (y == 1)).sum())
    tn, fp = int((~pred & (y == 0)).sum()), int((pred & (y == 0)).sum())
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else math.nan,
        "predicted_positive_rate": float(pred.mean()) if len(pred) else math.nan,
    }


def epoch_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """The per-epoch validation figures: ROC-AUC, PR-AUC and the threshold metrics."""
    return {"roc_auc": roc_auc(y_true, prob), "pr_auc": pr_auc(y_true, prob), **threshold_metrics(y_true, prob, threshold)}
