"""`skinlesion adapt`: a bundle's operating point (and optionally its calibration intercept) re-tuned on a
labelled sample from the user's own site, with what the new threshold is expected to give there and how many
local cases that takes; `--unlabelled` estimates the site's malignant prevalence instead. `evaluate --model
--data D --adapt-fraction F` uses the same pieces to adapt on part of D and score the rest.

The new bundle keeps the original operating point and records the site, the sample's fingerprint and size,
and the date (`site_adaptation` in config.json); predict, serve and evaluate say which operating point is in
use.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__, atomic, console
from ..errors import DataError
from ..inference.bundle import load_bundle, validate_config
from ..paths import OutputPathError, check_outputs
from .bootstrap import bootstrap
from .calibration import Calibration, refit_intercept
from .metrics import expected_calibration_error, threshold_metrics
from .site import SHIFT_WARNING_GAP, Cases, adjusted_mean, local_cases_curve, out_of_bag, unlabelled_estimate
from .thresholds import threshold_for_sensitivity


@dataclass
class SiteSpec:
    """What `adapt` reads: the local sample and how (any dataset format), and what to aim for."""

    data: str
    spec: object = None  # data.formats.TableSpec
    allow_missing: float = 0.0
    site: str | None = None  # a name for the site (default: the data folder's name)
    target_sensitivity: float | None = None  # None: the bundle's own target
    refit_intercept: bool = False
    n_boot: int = 500
    seed: int = 0


@dataclass
class AdaptResult:
    out: Path
    report: dict
    bundle: Path | None


def sample_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the sorted (image_id, label) pairs of the local sample."""
    rows = sorted(zip(frame["image_id"].astype(str), frame["label"].astype(int)))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _target(bundle, wanted: float | None) -> float:
    t = wanted if wanted is not None else (bundle.config.get("threshold") or {}).get("target_sensitivity")
    if t is None:
        return 0.90
    if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 < t <= 1):
        raise DataError(f"--target-sensitivity must be a fraction in (0, 1], got {t!r}. Remedy: --target-sensitivity 0.9")
    return float(t)


def _check_out(bundle_dir: Path, out: Path, data: str) -> None:
    check_outputs([out], protected=[bundle_dir], inputs=[Path(data)])
    if out.resolve() == bundle_dir.resolve() or bundle_dir.resolve().is_relative_to(out.resolve()):
        raise OutputPathError(f"--out {out} would replace the original bundle. Remedy: --out a new folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputPathError(f"--out {out} exists and is not empty. Remedy: choose a new folder for the adapted "
                              "bundle (the original stays as it is).")


def adapt_threshold(y, p, groups, target: float, n_boot: int, seed: int) -> dict:
    """The threshold for ``target`` on this sample, its in-sample operating point with lesion-bootstrap CIs,
    and the out-of-bag expectation (see evaluation/site.py)."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    t = threshold_for_sensitivity(y, p, target, where="the local sample")
    fn = lambda idx: {k: threshold_metrics(y[idx], p[idx], t)[k] for k in ("sensitivity", "specificity")}
    inside = bootstrap(fn, groups, n_boot, seed)
    oob = out_of_bag(y, p, groups, target, n_boot, seed)
    return {"threshold": float(t), "target_sensitivity": target,
            "in_sample": {k: v.to_dict() for k, v in inside.items()},
            "expected": {"sensitivity": oob["sensitivity"].to_dict(), "specificity": oob["specificity"].to_dict(),
                         "how": "tuned on each lesion-bootstrap resample, scored on its out-of-bag lesions",
                         "resamples": oob["resamples"]}}


def adapt(bundle_dir: str | Path, site: SiteSpec, out: str | Path, unlabelled: bool = False,
          num_workers: int | None = None, progress: bool = True) -> AdaptResult:
    """Labelled: write an adapted bundle to ``out`` (with ``out/adaptation/`` holding the report and the
    local-cases curve). ``unlabelled``: write the prevalence report to ``out`` and change no bundle."""
    from .site_data import read_site, site_predictions
    bundle_dir, out = Path(bundle_dir), Path(out)
    bundle = load_bundle(bundle_dir)
    target = _target(bundle, site.target_sensitivity)
    _check_out(bundle_dir, out, site.data)
    ds = read_site(bundle, site.data, site.spec, site.allow_missing, progress,
                   "adapt on images the model never saw (remove those from the local sample)")
    name = site.site or Path(site.data).resolve().name
    if progress:
        console.step(f"adapt: predicting {len(ds.frame)} local images")
    preds = site_predictions(bundle, ds, False, num_workers, progress)
    y, p, groups = preds["label"].to_numpy(), preds["probability"].to_numpy(), preds["lesion_id"].to_numpy()
    cal = Calibration.from_config(bundle.config.get("calibration"))
    base = {"site": name, "data": str(Path(site.data).resolve()), "n_images": int(len(preds)),
            "n_lesions": int(preds["lesion_id"].nunique()), "sample_sha256": sample_fingerprint(preds),
            "date": datetime.date.today().isoformat(), "skinlesion": __version__,
            "original_threshold": bundle.config.get("threshold")}
    if unlabelled:
        return _unlabelled(bundle, cal, preds, base, out, site)
    if y.sum() == 0 or y.sum() == len(y):
        raise DataError(f"{site.data}: the local sample has {int(y.sum())} malignant and {int(len(y) - y.sum())} benign "
                        "images; re-tuning an operating point needs both. Remedy: add labelled malignant (and benign) "
                        "cases from the site, or use `adapt --unlabelled` to estimate the prevalence only.")
    console.step(f"adapt: tuning for sensitivity {target} on {len(preds)} images ({int(y.sum())} malignant), "
                 f"{site.n_boot} lesion-bootstrap resamples")
    old_t = bundle.threshold
    before = {k: float(threshold_metrics(y, p, old_t)[k]) for k in ("sensitivity", "specificity")}
    tuned = adapt_threshold(y, p, groups, target, site.n_boot, site.seed)
    console.step("adapt: the how-many-local-cases curve")
    curve = local_cases_curve(Cases(y, p, groups), target, seed=site.seed)
    new_cal = refit_intercept(cal, y, p) if site.refit_intercept else cal
    report = {**base, "n_malignant": int(y.sum()), "target_sensitivity": target,
              "at_original_threshold": {"threshold": old_t, **before}, "adapted": tuned, "local_cases_curve": curve,
              "calibration": new_cal.to_dict() if new_cal else None,
              "ece_at_site": {"raw": expected_calibration_error(y, p),
                              "calibrated": expected_calibration_error(y, new_cal.apply(p)) if new_cal else None}}
    config = bundle.config.to_json()
    op = {"sensitivity": tuned["in_sample"]["sensitivity"]["value"],
          "specificity": tuned["in_sample"]["specificity"]["value"]}
    config["threshold"] = {"value": tuned["threshold"], "source": f"adapted at site {name}: highest threshold with "
                           f"sensitivity >= {target} on {len(preds)} local images ({int(y.sum())} malignant)",
                           "target_sensitivity": target, "tta": False, "operating_point": op,
                           "calibrated_value": float(new_cal.apply(tuned["threshold"])) if new_cal else None}
    if new_cal is not None and site.refit_intercept:
        config["calibration"] = {**new_cal.to_dict(), "fit_on": f"site {name}", "n_images": int(len(preds)),
                                 "n_malignant": int(y.sum())}
    config["site_adaptation"] = {k: v for k, v in report.items() if k not in ("local_cases_curve", "calibration")}
    written = _write_bundle(bundle_dir, config, out)
    _write_report(out / "adaptation", report, curve, target)
    return AdaptResult(out, report, written)


def _unlabelled(bundle, cal, preds: pd.DataFrame, base: dict, out: Path, site: SiteSpec) -> AdaptResult:
    p = preds["probability"].to_numpy()
    q = cal.apply(p) if cal else p
    entry = bundle.config.get("calibration") or {}
    prior = bundle.config.get("training_prior") or {}
    if entry.get("n_images") and entry.get("n_malignant") is not None:
        pi0, source = entry["n_malignant"] / entry["n_images"], f"the calibration set ({entry.get('fit_on')})"
    elif prior.get("train_prevalence") is not None:
        pi0, source = float(prior["train_prevalence"]), "the training split"
    else:
        raise DataError("--unlabelled needs the prevalence the bundle's probabilities refer to, and this bundle "
                        "records none (it predates calibration). Remedy: re-run `skinlesion tune-threshold RUN_DIR`.")
    console.step(f"adapt --unlabelled: EM prior adjustment on {len(p)} images")
    thr_q = float(cal.apply(bundle.threshold)) if cal else bundle.threshold
    est = unlabelled_estimate(q, preds["lesion_id"].to_numpy(), pi0, thr_q, site.n_boot, site.seed)
    report = {**base, "method": "EM prior adjustment (Saerens, Latinne & Decaestecker 2002) on the calibrated "
              "probabilities", "reference_prevalence": pi0, "reference_prevalence_from": source,
              "calibrated": cal is not None, **{k: v.to_dict() for k, v in est.items()},
              "note": "assumes label shift only (the same lesions look the same at the site); the threshold is "
                      "unchanged: adapt with labelled local cases to move it"}
    pos, neg = entry.get("mean_probability_malignant"), entry.get("mean_probability_benign")
    if cal is not None and pos is not None and neg is not None:
        report["prevalence_adjusted_mean"] = adjusted_mean(q, pos, neg)
        gap = abs(report["prevalence"]["value"] - report["prevalence_adjusted_mean"])
        report["label_shift_doubtful"] = bool(gap > SHIFT_WARNING_GAP)
        if report["label_shift_doubtful"]:
            report["warning"] = (f"two estimators that agree under a pure prevalence change disagree here (EM "
                                 f"{report['prevalence']['value']:.3f}, adjusted mean probability "
                                 f"{report['prevalence_adjusted_mean']:.3f}): the images at this site differ from "
                                 "the training data by more than their prevalence, so neither is reliable; label some "
                                 "local cases and run `adapt` with labels")
    atomic.write_json(out / "adapt_unlabelled.json", report)
    return AdaptResult(out, report, None)


def _write_bundle(bundle_dir: Path, config: dict, out: Path) -> Path:
    """The original weights with the adapted config, written to a temp folder and renamed into place."""
    validate_config(config, out / "config.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(bundle_dir / "model.safetensors", tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # checked empty before
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_report(folder: Path, report: dict, curve: list[dict], target: float) -> None:
    atomic.write_json(folder / "adapt.json", report)
    atomic.write_csv(folder / "local_cases_curve.csv", pd.DataFrame(curve))
    if curve:
        from .plots import local_cases_plot
        local_cases_plot(curve, target, folder / "local_cases_curve.png")


def format_adapt(report: dict) -> str:
    if "prevalence" in report:
        e = report["prevalence"]
        ppv, npv = report["expected_ppv"], report["expected_npv"]
        return (f"{report['site']}: estimated malignant prevalence {e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] "
                f"(reference {report['reference_prevalence']:.3f}); at the bundle's threshold expected PPV "
                f"{ppv['value']:.3f} [{ppv['ci_low']:.3f}, {ppv['ci_high']:.3f}], NPV {npv['value']:.3f} "
                f"[{npv['ci_low']:.3f}, {npv['ci_high']:.3f}]; threshold unchanged. This assumes the site differs only in its "
                "prevalence; with another device or population it can be far off: check it with a few labelled cases"
                + (f"\nwarning: {report['warning']}" if report.get("warning") else ""))
    a, o = report["adapted"], report["at_original_threshold"]
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    lines = [f"{report['site']}: {report['n_images']} local images, {report['n_malignant']} malignant",
             f"original threshold {o['threshold']:.4f}: sensitivity {o['sensitivity']:.3f}, specificity "
             f"{o['specificity']:.3f} here",
             f"adapted threshold {a['threshold']:.4f} for sensitivity {a['target_sensitivity']}: expected sensitivity "
             f"{f(a['expected']['sensitivity'])}, specificity {f(a['expected']['specificity'])} (out-of-bag)"]
    for row in report["local_cases_curve"]:
        lines.append(f"  with {row['malignant_cases']:>4} local malignant cases: sensitivity "
                     f"{row['sensitivity_mean']:.3f}, 95% range ±{row['ci_half_width']:.3f}")
    return "\n".join(lines)


def held_out_adaptation(preds: pd.DataFrame, point: tuple[float, float], cal: Calibration | None, fraction: float,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """`evaluate --adapt-fraction`: with ``point`` = (the bundle's threshold, its target sensitivity), a
    lesion-grouped, class-stratified ``fraction`` of the set adapts the
    threshold (and the calibration intercept); every number is scored on the rest only, unadapted and adapted
    side by side, so the adapted threshold is never scored on the images it was tuned on."""
    threshold, target = point
    lesion_label = preds.groupby("lesion_id")["label"].max()
    rng = np.random.default_rng(seed)
    chosen = set()
    for label in (0, 1):
        ids = lesion_label.index[lesion_label == label].to_numpy()
        chosen.update(rng.choice(ids, int(round(fraction * len(ids))), replace=False).tolist())
    part = preds["lesion_id"].isin(chosen).to_numpy()
    a, r = preds[part], preds[~part]
    if a["label"].nunique() < 2 or r["label"].nunique() < 2:
        raise DataError(f"--adapt-fraction {fraction}: the adaptation part or the scored rest lacks a class "
                        f"({int(a['label'].sum())} and {int(r['label'].sum())} malignant). Remedy: a fraction between "
                        "0.2 and 0.5, on a set with enough malignant cases.")
    ya, pa = a["label"].to_numpy(), a["probability"].to_numpy()
    y, p, g = r["label"].to_numpy(), r["probability"].to_numpy(), r["lesion_id"].to_numpy()
    t_new = threshold_for_sensitivity(ya, pa, target, where="the adaptation part")
    site_cal = refit_intercept(cal, ya, pa)

    def at(t):
        return {k: v.to_dict() for k, v in bootstrap(
            lambda idx: {k: threshold_metrics(y[idx], p[idx], t)[k] for k in ("sensitivity", "specificity")},
            g, n_boot, seed).items()}
    return {"fraction": fraction, "target_sensitivity": target, "seed": seed,
            "adapt_images": int(len(a)), "adapt_malignant": int(ya.sum()),
            "scored_images": int(len(r)), "scored_malignant": int(y.sum()),
            "adapt_image_ids": sorted(a["image_id"].astype(str)),
            "unadapted": {"threshold": float(threshold), **at(threshold)},
            "adapted": {"threshold": float(t_new), **at(t_new)},
            "ece": {"raw": expected_calibration_error(y, p),
                    "calibrated": expected_calibration_error(y, cal.apply(p)) if cal else None,
                    "intercept_refit_at_site": expected_calibration_error(y, site_cal.apply(p))}}
