"""Calibrated probabilities: the prior shift that class weighting puts into the logits is removed, then a
slope and an intercept on the logit are fit on validation (Platt scaling), and the result is applied
everywhere after (predict, serve, reports, ONNX's model.json).

Why both steps: training with ``BCEWithLogitsLoss(pos_weight=w)`` makes the optimal logit the true log-odds
plus ``log(w)``; a class-balanced sampler trains at 50% prevalence instead of the training split's ``pi``,
adding ``log((1 - pi) / pi)``. A temperature alone (the earlier ``--calibrate``) cannot move that intercept.
The offset follows from the training setup alone (``prior_offset``); the slope + intercept fit then corrects
what remains (over-confidence, EMA/mixup effects). A monotone map: decisions never change, the threshold is
simply expressed on the new scale.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize

from ..labels import TASKS
from ..models.task import get_task

EPS = 1e-7
#: Fewer validation cases of either class than this: only the prior offset is applied (a fit would be noise).
MIN_PER_CLASS = 10
#: log-slope and intercept bounds of the fit: a slope outside [0.1, 10] means the scores barely separate the
#: classes on the calibration set, and an unbounded fit would turn them into near-0/1 probabilities.
SLOPE_BOUNDS = (math.log(0.1), math.log(10.0))
INTERCEPT_BOUNDS = (-10.0, 10.0)


def to_logits(prob) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def prior_offset(pos_weight: float | None = None, balanced_train_prevalence: float | None = None) -> float:
    """The logit offset that undoes the training prior shift: ``-log(pos_weight)`` for a weighted loss,
    ``log(pi / (1 - pi))`` for a class-balanced sampler at training prevalence ``pi``; 0 otherwise."""
    if pos_weight is not None:
        return -math.log(pos_weight)
    if balanced_train_prevalence is not None:
        pi = min(max(balanced_train_prevalence, EPS), 1 - EPS)
        return math.log(pi / (1 - pi))
    return 0.0


@dataclass(frozen=True)
class Calibration:
    """q = sigmoid(slope * (logit(p) + offset) + intercept), applied to p(malignant)."""

    slope: float = 1.0
    intercept: float = 0.0
    offset: float = 0.0  # the prior offset (training setup), applied before the fit
    method: str = "prior offset + platt"

    def apply(self, prob) -> np.ndarray:
        return sigmoid(self.slope * (to_logits(prob) + self.offset) + self.intercept)

    def on_logit(self) -> tuple[float, float]:
        """(a, b) with q = sigmoid(a * logit(p) + b): what model.json states."""
        return self.slope, self.slope * self.offset + self.intercept

    def to_dict(self) -> dict:
        a, b = self.on_logit()
        return {**asdict(self), "formula": f"sigmoid({a:.6g} * logit(p) + {b:.6g})"}

    @classmethod
    def from_config(cls, cal) -> "Calibration | None":
        """A bundle's ``calibration`` entry: this form, or the earlier ``{"temperature": T}``."""
        if not isinstance(cal, dict):
            return None
        if "slope" in cal:
            return cls(float(cal["slope"]), float(cal.get("intercept", 0.0)), float(cal.get("offset", 0.0)),
                       str(cal.get("method", "prior offset + platt")))
        if "temperature" in cal:
            return cls(1.0 / float(cal["temperature"]), 0.0, 0.0, "temperature scaling")
        return None


def _log_loss(y: np.ndarray, s: np.ndarray) -> float:
    """Mean binary log-loss of logits ``s`` for labels ``y`` (numerically stable)."""
    return float(np.mean(np.logaddexp(0, s) - y * s))


def fit_calibration(y_true, prob, offset: float = 0.0) -> Calibration:
    """Slope and intercept minimising binary log-loss of ``sigmoid(a * (logit(p) + offset) + b)`` (a > 0);
    with fewer than MIN_PER_CLASS cases of a class, the prior offset alone."""
    y, z = np.asarray(y_true, dtype=float), to_logits(prob) + offset
    if min(y.sum(), len(y) - y.sum()) < MIN_PER_CLASS:
        return Calibration(1.0, 0.0, offset, "prior offset only (too few validation cases to fit)")

    res = minimize(lambda ab: _log_loss(y, np.exp(ab[0]) * z + ab[1]), x0=[0.0, 0.0], method="L-BFGS-B",
                   bounds=[SLOPE_BOUNDS, INTERCEPT_BOUNDS])
    return Calibration(float(np.exp(res.x[0])), float(res.x[1]), offset)


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): temperature scaling, the one-parameter special case (slope 1/T, no intercept)."""
    return Calibration(1.0 / temperature, 0.0, 0.0, "temperature scaling").apply(prob)


def fit_temperature(y_true, prob) -> float:
    """The temperature minimising binary log-loss (searched in [0.05, 20]); kept for comparison with the
    slope + intercept fit, which is what skinlesion applies."""
    from scipy.optimize import minimize_scalar
    y, z = np.asarray(y_true, dtype=float), to_logits(prob)

    res = minimize_scalar(lambda log_t: _log_loss(y, z / np.exp(log_t)), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded")
    return float(np.exp(res.x))


def refit_intercept(cal: Calibration | None, y_true, prob) -> Calibration:
    """``cal`` with its intercept re-fit on a site's sample (slope and offset kept): the site's prevalence and
    score shift, without re-learning the slope from few cases."""
    from scipy.optimize import minimize_scalar
    cal = cal or Calibration()
    y, s = np.asarray(y_true, dtype=float), cal.slope * (to_logits(prob) + cal.offset)
    res = minimize_scalar(lambda b: _log_loss(y, s + b), bounds=(-20, 20), method="bounded")
    return Calibration(cal.slope, float(res.x), cal.offset, cal.method + ", intercept re-fit at the site")


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


def offset_for(bundle_config: dict) -> float:
    """The prior offset of a bundle's training setup (its ``training_prior``; 0 for bundles without one)."""
    prior = bundle_config.get("training_prior") or {}
    task = bundle_config.get("task")
    if task not in TASKS or not get_task(task).binary:
        return 0.0  # p(malignant) of a 7-class model: the fit's intercept absorbs the class weights
    if isinstance(prior.get("pos_weight"), (int, float)) and prior["pos_weight"] > 0:
        return prior_offset(pos_weight=float(prior["pos_weight"]))
    if prior.get("balanced_sampler") and isinstance(prior.get("train_prevalence"), (int, float)):
        return prior_offset(balanced_train_prevalence=float(prior["train_prevalence"]))
    return 0.0


def fit_for_bundle(bundle_config: dict, y_true, prob, fit_on: str, extra: dict | None = None) -> dict:
    """The bundle's ``calibration`` entry fit on (``y_true``, ``prob``): offset from its training setup, then
    slope + intercept; with where it was fit and how many cases."""
    cal = fit_calibration(y_true, prob, offset_for(bundle_config))
    y, q = np.asarray(y_true), cal.apply(prob)
    by_class = {"mean_probability_malignant": float(q[y == 1].mean()) if (y == 1).any() else None,
                "mean_probability_benign": float(q[y == 0].mean()) if (y == 0).any() else None}
    return {**cal.to_dict(), "fit_on": fit_on, "n_images": int(len(y)), "n_malignant": int(y.sum()), **by_class,
            **(extra or {})}
