"""Confidence intervals by resampling lesions: all images of a lesion move together."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

IndexMetrics = Callable[[np.ndarray], dict[str, float]]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        clean = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return {"value": clean(self.value), "ci_low": clean(self.low), "ci_high": clean(self.high)}

    def __str__(self) -> str:
        return "n/a" if math.isnan(self.value) else f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def lesion_resamples(groups, n_resamples: int = 1000, seed: int = 0):
    """Yield index arrays, each a resample of whole lesions (drawn with replacement)."""
    codes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[members], np.arange(len(codes) + 1))
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        picked = rng.integers(0, len(codes), len(codes))
        yield np.concatenate([members[starts[g]:starts[g + 1]] for g in picked])


def bootstrap(fn: IndexMetrics, groups, n_resamples: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> dict[str, Estimate]:
    """Every metric of ``fn(indices)`` with a (1 - alpha) percentile CI over lesion resamples.

    ``fn`` computes its metrics on the rows ``indices`` (all rows for the point estimate). Resamples
    where a metric is undefined (e.g. no positives drawn) are left out of that metric's interval."""
    point = fn(np.arange(len(groups)))
    draws: dict[str, list[float]] = {k: [] for k in point}
    for idx in lesion_resamples(groups, n_resamples, seed):
        for k, v in fn(idx).items():
            draws[k].append(v)
    out = {}
    for k, v in point.items():
        arr = np.asarray(draws[k], dtype=float)
        arr = arr[~np.isnan(arr)]
        lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2]) if len(arr) else (math.nan, math.nan)
        out[k] = Estimate(float(v), float(lo), float(hi))
    return out


def paired_difference(metric: Callable[[np.ndarray, np.ndarray], float], y, probs: tuple, groups,
                      n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """metric(a) - metric(b) for ``probs`` = (a, b), two models' probabilities on the same images, its 95% CI
    and a two-sided bootstrap p-value: (1 + resamples on the far side of zero) / (1 + resamples), doubled and
    capped at 1, so it is never 0 (its floor with B resamples is about 2 / (B + 1))."""
    (prob_a, prob_b), y = probs, np.asarray(y)
    a, b = np.asarray(prob_a), np.asarray(prob_b)
    diffs = []
    for idx in lesion_resamples(groups, n_resamples, seed):
        d = metric(y[idx], a[idx]) - metric(y[idx], b[idx])
        if not math.isnan(d):
            diffs.append(d)
    arr = np.asarray(diffs)
    far = min(int((arr <= 0).sum()), int((arr >= 0).sum()))
    p = min(1.0, 2 * (far + 1) / (len(arr) + 1)) if len(arr) else math.nan
    lo, hi = np.quantile(arr, [0.025, 0.975]) if len(arr) else (math.nan, math.nan)
    return {"difference": float(metric(y, a) - metric(y, b)), "ci_low": float(lo), "ci_high": float(hi),
            "p_value": float(p), "resamples": int(len(arr))}
