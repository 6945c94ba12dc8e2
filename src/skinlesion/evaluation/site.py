"""Numbers at the user's own site, as pure functions of labels, probabilities and lesion groups: the operating
point re-tuned on a local sample with an honest estimate of what it will give, how many local malignant cases
that needs, and (without labels) the site's malignant prevalence by EM prior adjustment.

Honesty: a threshold tuned on n local cases and scored on the same cases reads the target back. The expected
sensitivity/specificity are therefore out-of-bag: in each lesion-bootstrap resample the threshold is tuned on
the resample and scored on the lesions the resample left out (Efron's .632-style out-of-bag estimate, without
the .632 blend), and the 95% interval is over resamples.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .bootstrap import Estimate, lesion_resamples
from .metrics import threshold_metrics
from .thresholds import ThresholdError, threshold_for_sensitivity


def _sens_spec(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    m = threshold_metrics(y, p, t)
    return float(m["sensitivity"]), float(m["specificity"])


def out_of_bag(y, p, groups, target: float, n_boot: int = 500, seed: int = 0) -> dict:
    """Expected sensitivity and specificity of a threshold tuned for ``target`` on a sample like this one:
    tuned on each lesion resample, scored on its out-of-bag lesions. Returns Estimates (mean, 95% interval)."""
    y, p, groups = np.asarray(y), np.asarray(p, dtype=float), np.asarray(groups)
    sens, spec = [], []
    for idx in lesion_resamples(groups, n_boot, seed):
        oob = np.ones(len(y), dtype=bool)
        oob[idx] = False
        if y[idx].sum() == 0 or y[oob].sum() == 0 or (1 - y[oob]).sum() == 0:
            continue
        t = threshold_for_sensitivity(y[idx], p[idx], target)
        s, c = _sens_spec(y[oob], p[oob], t)
        sens.append(s)
        spec.append(c)
    est = lambda v: Estimate(float(np.mean(v)), *map(float, np.quantile(v, [0.025, 0.975]))) if v else \
        Estimate(math.nan, math.nan, math.nan)
    return {"sensitivity": est(sens), "specificity": est(spec), "resamples": len(sens)}


class Cases(NamedTuple):
    """Labelled cases of a site: labels, model probabilities and lesion (group) ids, one per image."""

    y: np.ndarray
    p: np.ndarray
    groups: np.ndarray


def local_cases_curve(cases: Cases, target: float, sizes=(10, 25, 50, 100, 200, 400), repeats: int = 200,
                      seed: int = 0) -> list[dict]:
    """For each number n of local malignant cases: draw n malignant lesions (and benign lesions in the
    sample's own ratio), tune the threshold on them, score sensitivity on every lesion not drawn; the spread of
    that sensitivity over ``repeats`` draws (95% interval half-width) is how precisely n cases pin the
    operating point. Sizes above what the sample can spare (half its malignant lesions) are left out."""
    y, p, groups = np.asarray(cases.y), np.asarray(cases.p, dtype=float), np.asarray(cases.groups)
    lesions, inverse = np.unique(groups, return_inverse=True)
    lesion_label = np.zeros(len(lesions), dtype=int)
    np.maximum.at(lesion_label, inverse, y.astype(int))
    mal, ben = np.flatnonzero(lesion_label == 1), np.flatnonzero(lesion_label == 0)
    ratio = len(ben) / max(len(mal), 1)
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        if n > len(mal) // 2:
            continue
        achieved = []
        for _ in range(repeats):
            chosen = np.zeros(len(lesions), dtype=bool)
            chosen[rng.choice(mal, n, replace=False)] = True
            chosen[rng.choice(ben, min(len(ben) - 1, int(round(n * ratio))), replace=False)] = True
            pick = chosen[inverse]
            try:
                t = threshold_for_sensitivity(y[pick], p[pick], target)
            except ThresholdError:
                continue
            achieved.append(_sens_spec(y[~pick], p[~pick], t)[0])
        if achieved:
            lo, hi = np.quantile(achieved, [0.025, 0.975])
            rows.append({"malignant_cases": int(n), "benign_cases": int(round(n * ratio)),
                         "sensitivity_mean": float(np.mean(achieved)), "sensitivity_low": float(lo),
                         "sensitivity_high": float(hi), "ci_half_width": float((hi - lo) / 2),
                         "repeats": len(achieved)})
    return rows


def em_prevalence(p, train_prevalence: float, tol: float = 1e-8, max_iter: int = 1000) -> tuple[float, np.ndarray]:
    """Saerens, Latinne & Decaestecker (2002): the prevalence at a new site from posteriors ``p`` that are
    calibrated at ``train_prevalence``, by EM on the priors; returns (prevalence, adjusted posteriors)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    pi0 = min(max(train_prevalence, 1e-6), 1 - 1e-6)
    pi = pi0
    for _ in range(max_iter):
        a, b = pi / pi0 * p, (1 - pi) / (1 - pi0) * (1 - p)
        q = a / (a + b)
        new = float(q.mean())
        if abs(new - pi) < tol:
            pi = new
            break
        pi = new
    a, b = pi / pi0 * p, (1 - pi) / (1 - pi0) * (1 - p)
    return pi, a / (a + b)


def unlabelled_estimate(p, groups, train_prevalence: float, threshold_p: float, n_boot: int = 500,
                        seed: int = 0) -> dict:
    """EM prevalence with a lesion-bootstrap 95% interval, and the PPV/NPV the current operating point is
    expected to give there (from the prior-adjusted posteriors of the images above / below it)."""
    p, groups = np.asarray(p, dtype=float), np.asarray(groups)

    def one(idx):
        pi, q = em_prevalence(p[idx], train_prevalence)
        above = p[idx] >= threshold_p
        ppv = float(q[above].mean()) if above.any() else math.nan
        npv = float(1 - q[~above].mean()) if (~above).any() else math.nan
        return pi, ppv, npv, float(above.mean()), float(p[idx].mean())

    point = one(np.arange(len(p)))
    draws = np.array([one(idx) for idx in lesion_resamples(groups, n_boot, seed)])
    ci = lambda k: tuple(float(v) for v in np.nanquantile(draws[:, k], [0.025, 0.975]))
    names = ("prevalence", "expected_ppv", "expected_npv", "called_malignant", "mean_probability")
    return {n: Estimate(point[k], *ci(k)) for k, n in enumerate(names)}


#: Two estimators that are both consistent under pure label shift -- EM and the adjusted mean probability
#: (PACC: the site's mean calibrated probability, rescaled by the calibration set's class-wise means) --
#: agree when the site differs by its prevalence alone; a larger gap means the lesions themselves look
#: different there (another device or population), and no unlabelled estimate can be trusted.
SHIFT_WARNING_GAP = 0.05


def adjusted_mean(q, mean_malignant: float, mean_benign: float) -> float:
    """PACC (Bella et al. 2010): (mean q - E[q | benign]) / (E[q | malignant] - E[q | benign]), clipped."""
    span = mean_malignant - mean_benign
    return float(np.clip((np.mean(q) - mean_benign) / span, 0, 1)) if span > 1e-6 else math.nan
