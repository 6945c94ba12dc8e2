"""Decision thresholds from validation probabilities: every distinct score is a candidate."""
from __future__ import annotations

import math

import numpy as np

from ..errors import SkinlesionError
from .metrics import threshold_metrics

OPERATING_SENSITIVITIES = (0.80, 0.85, 0.90, 0.95)


class ThresholdError(SkinlesionError, ValueError):
    """Thresholds cannot be tuned on these labels (e.g. no positives)."""


def _check(y: np.ndarray, where: str) -> None:
    if y.sum() == 0 or y.sum() == len(y):
        raise ThresholdError(f"{where} has {int(y.sum())} malignant and {int(len(y) - y.sum())} benign images; "
                             "tuning a threshold needs both. Remedy: use a split with both classes in validation.")


def sensitivity_curve(y_true, prob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, sensitivity, specificity) at every distinct score (p >= t is positive)."""
    y, p = np.asarray(y_true).astype(int), np.asarray(prob, dtype=float)
    thresholds = np.unique(p)[::-1]
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    tp_cum, fp_cum = np.cumsum(ys), np.cumsum(1 - ys)
    last = np.searchsorted(-ps, -thresholds, side="right") - 1  # last index with p >= t
    sens = tp_cum[last] / max(ys.sum(), 1)
    spec = 1 - fp_cum[last] / max((1 - ys).sum(), 1)
    return thresholds, sens, spec


def threshold_for_sensitivity(y_true, prob, target: float, where: str = "the validation set") -> float:
    """The highest threshold whose sensitivity is >= ``target`` (so specificity is maximal there)."""
    y = np.asarray(y_true).astype(int)
    _check(y, where)
    thresholds, sens, _ = sensitivity_curve(y, prob)
    ok = np.flatnonzero(sens >= target - 1e-12)
    return float(thresholds[ok[0]])  # thresholds descend: the first that reaches target is the highest


def youden_threshold(y_true, prob) -> float:
    """Threshold maximising sensitivity + specificity - 1 (highest such threshold on ties)."""
    thresholds, sens, spec = sensitivity_curve(y_true, prob)
    return float(thresholds[int(np.argmax(sens + spec - 1))])


def operating_points(y_true, prob) -> list[dict]:
    """Rows at sensitivity 0.80/0.85/0.90/0.95, Youden's J and 0.5 with their threshold metrics."""
    y = np.asarray(y_true).astype(int)
    _check(y, "the validation set")
    rows = [("sensitivity >= %.2f" % s, threshold_for_sensitivity(y, prob, s)) for s in OPERATING_SENSITIVITIES]
    rows += [("Youden's J", youden_threshold(y, prob)), ("0.5", 0.5)]
    table = []
    for name, t in rows:
        m = threshold_metrics(y, prob, t)
        table.append({"operating_point": name, "threshold": t,
                      **{k: m[k] for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "predicted_positive_rate")}})
    return table


def format_operating_points(rows: list[dict]) -> str:
    head = ["operating point", "threshold", "sens", "spec", "PPV", "NPV", "F1", "pred+ rate"]
    keys = ["threshold", "sensitivity", "specificity", "ppv", "npv", "f1", "predicted_positive_rate"]
    fmt = lambda v: "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.4f}"
    body = [[r["operating_point"]] + [fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([line(head)] + [line(r) for r in body])
