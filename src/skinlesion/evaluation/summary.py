"""Everything `evaluate` reports, computed from a predictions table (no I/O)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.explore import AGE_BAND_ORDER, age_band
from ..errors import SkinlesionError
from ..labels import ALL_DX, MALIGNANT_DX
from .bootstrap import Estimate, bootstrap
from .calibration import Calibration
from .metrics import (all_metrics, brier, confusion, expected_calibration_error, pr_auc, reliability_curve, roc_auc,
                      threshold_metrics, top_label_ece)

SUBGROUP_COLUMNS = ("sex", "age_band", "localization")
MIN_RESAMPLES = 10


class EvaluationError(SkinlesionError, ValueError):
    """Predictions cannot be evaluated as asked (one class only, too few resamples, ...)."""


def check_resamples(n_boot: int) -> None:
    if not isinstance(n_boot, int) or n_boot < MIN_RESAMPLES:
        raise EvaluationError(f"--bootstrap must be at least {MIN_RESAMPLES} resamples for a confidence interval, "
                              f"got {n_boot!r}. Remedy: --bootstrap 1000")


def _estimates(est: dict[str, Estimate]) -> dict[str, dict]:
    return {k: v.to_dict() for k, v in est.items()}


def with_age_band(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``age_band`` (<30, 30-49, 50-69, >=70, unknown) when an ``age`` column exists."""
    return frame.assign(age_band=age_band(frame["age"])) if "age" in frame else frame


def auc_estimates(frame: pd.DataFrame, n_boot: int, seed: int = 0) -> dict[str, dict]:
    """ROC-AUC and PR-AUC of a predictions table with lesion-bootstrap CIs (as ``Estimate.to_dict``)."""
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
    est = bootstrap(lambda i: {"roc_auc": roc_auc(y[i], p[i]), "pr_auc": pr_auc(y[i], p[i])},
                    frame["lesion_id"].to_numpy(), n_boot, seed)
    return _estimates(est)


def headline(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict:
    """All metrics at ``threshold`` and at 0.5, each with a lesion-bootstrap CI."""
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()

    def fn(idx):
        m = all_metrics(y[idx], p[idx], threshold)
        m.update({f"{k}@0.5": v for k, v in threshold_metrics(y[idx], p[idx], 0.5).items()})
        return m
    est = bootstrap(fn, frame["lesion_id"].to_numpy(), n_boot, seed)
    at_t = {k: v for k, v in est.items() if not k.endswith("@0.5")}
    at_half = {k[:-4]: v for k, v in est.items() if k.endswith("@0.5")}
    return {"at_threshold": _estimates(at_t), "at_0.5": _estimates(at_half),
            "confusion_at_threshold": confusion(y, p, threshold), "confusion_at_0.5": confusion(y, p, 0.5)}


def per_dx(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> list[dict]:
    """Share of each dx called malignant (recall for the malignant codes, false-positive rate for the rest)."""
    dx, called = frame["dx"].to_numpy(), frame["probability"].to_numpy() >= threshold
    present = [d for d in ALL_DX if (dx == d).any()]

    def fn(idx):
        return {d: float(called[idx][dx[idx] == d].mean()) if (dx[idx] == d).any() else np.nan for d in present}
    est = bootstrap(fn, frame["lesion_id"].to_numpy(), n_boot, seed)
    return [{"dx": d, "n": int((dx == d).sum()), "malignant": d in MALIGNANT_DX,
             "called_malignant": est[d].to_dict()} for d in present]


def subgroups(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict[str, list[dict]]:
    """ROC-AUC, sensitivity and specificity with CIs per sex, age band and localization group."""
    frame = with_age_band(frame)
    out: dict[str, list[dict]] = {}
    for col in SUBGROUP_COLUMNS:
        if col not in frame:
            continue
        rows = []
        groups = frame.groupby(frame[col].fillna("unknown").astype(str), sort=True)
        order = AGE_BAND_ORDER if col == "age_band" else ()
        for value, part in sorted(groups, key=lambda g: order.index(g[0]) if g[0] in order else 0):
            y, p = part["label"].to_numpy(), part["probability"].to_numpy()

            def fn(idx, y=y, p=p):
                t = threshold_metrics(y[idx], p[idx], threshold)
                return {"roc_auc": roc_auc(y[idx], p[idx]), "sensitivity": t["sensitivity"], "specificity": t["specificity"]}
            est = bootstrap(fn, part["lesion_id"].to_numpy(), n_boot, seed)
            rows.append({"group": value, "n": int(len(part)), "n_malignant": int(y.sum()), **_estimates(est)})
        out[col] = rows
    return out


def calibration(frame: pd.DataFrame, cal: Calibration | None) -> dict:
    """Reliability curve, ECE (both conventions) and Brier score, before and (with the bundle's calibration)
    after calibration."""
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
    out = {"calibration": cal.to_dict() if cal else None, "reliability": reliability_curve(y, p),
           "raw": {"ece": expected_calibration_error(y, p), "ece_top_label": top_label_ece(y, p),
                   "brier": brier(y, p), "mean_probability": float(np.mean(p)), "prevalence": float(np.mean(y))}}
    if cal is not None:
        q = cal.apply(p)
        out["reliability_calibrated"] = reliability_curve(y, q)
        out["calibrated"] = {"ece": expected_calibration_error(y, q), "ece_top_label": top_label_ece(y, q),
                             "brier": brier(y, q), "mean_probability": float(np.mean(q)), "prevalence": float(np.mean(y))}
    return out


def summarize(frame: pd.DataFrame, threshold: float, threshold_source: str, n_boot: int = 1000, seed: int = 0,
              cal: Calibration | None = None) -> dict:
    """The metrics.json content for one set of predictions (``probability`` is uncalibrated;
    with the bundle's calibration ``cal`` the calibrated metrics are reported too)."""
    check_resamples(n_boot)
    if frame["label"].nunique() < 2:
        raise EvaluationError(f"evaluation needs both benign and malignant images; these {len(frame)} image(s) are "
                              f"all {'malignant' if frame['label'].iloc[0] == 1 else 'benign'} (ROC-AUC, PR-AUC and "
                              "sensitivity/specificity would be undefined). Remedy: evaluate on a set with both classes.")
    result = {
        "n_images": int(len(frame)), "n_lesions": int(frame["lesion_id"].nunique()),
        "n_malignant": int(frame["label"].sum()),
        "threshold": {"value": float(threshold), "source": threshold_source},
        "bootstrap": {"unit": "lesion", "resamples": n_boot, "seed": seed, "interval": "95% percentile"},
        **headline(frame, threshold, n_boot, seed),
        "per_dx": per_dx(frame, threshold, n_boot, seed),
        "subgroups": subgroups(frame, threshold, n_boot, seed),
        "calibration": calibration(frame, cal),
    }
    if cal is not None:
        calibrated = frame.assign(probability=cal.apply(frame["probability"].to_numpy()))
        result["calibrated"] = headline(calibrated, float(cal.apply(threshold)), n_boot, seed)
    return result
