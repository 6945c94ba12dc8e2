"""Temperature scaling of predicted probabilities (fit on validation, applied everywhere after)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-7


def to_logits(prob) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): T > 1 softens over-confident probabilities, T < 1 sharpens."""
    return 1.0 / (1.0 + np.exp(-to_logits(prob) / temperature))


def apply_temperature_multiclass(probs, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) row-wise for an (N, C) probability matrix."""
    z = np.log(np.clip(np.asarray(probs, dtype=float), EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y_true, prob) -> float:
    """The temperature minimising binary negative log-likelihood (searched in [0.05, 20])."""
    y, z = np.asarray(y_true, dtype=float), to_logits(prob)

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), EPS, 1 - EPS)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def rescale_classes(classes, raw_prob, calibrated_prob) -> np.ndarray:
    """7-class probabilities whose malignant classes sum to ``calibrated_prob``: the malignant classes are
    scaled by q/p and the benign ones by (1-q)/(1-p), keeping the ratios within each group."""
    from ..labels import MALIGNANT_CLASS_INDICES
    c = np.asarray(classes, dtype=np.float64).copy()
    p = np.clip(np.asarray(raw_prob, dtype=np.float64), EPS, 1 - EPS)[:, None]
    q = np.asarray(calibrated_prob, dtype=np.float64)[:, None]
    mal = np.zeros(c.shape[1], dtype=bool)
    mal[list(MALIGNANT_CLASS_INDICES)] = True
    c[:, mal] *= q / p
    c[:, ~mal] *= (1 - q) / (1 - p)
    return c
