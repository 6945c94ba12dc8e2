"""Numbers at the user's own site: calibration (prior offset + slope/intercept), `adapt` (labelled and
unlabelled) and `evaluate --adapt-fraction`, on simulated scores with known answers and on tiny synthetic sites."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from skinlesion.cli import main
from skinlesion.evaluation.adapt import adapt_threshold, held_out_adaptation
from skinlesion.evaluation.calibration import Calibration, fit_calibration, prior_offset, sigmoid, to_logits
from skinlesion.evaluation.metrics import expected_calibration_error, top_label_ece
from skinlesion.evaluation.site import Cases, em_prevalence, local_cases_curve


def _population(n=40_000, prevalence=0.2, seed=0):
    """Labels and the true posterior q of a site: scores from two class-conditional normals."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = rng.normal(np.where(y == 1, 1.5, 0.0), 1.0)
    log_lr = 1.5 * s - 1.125  # log N(s; 1.5, 1) / N(s; 0, 1)
    q = sigmoid(log_lr + np.log(prevalence / (1 - prevalence)))
    return y, q, log_lr


def test_calibration_recovers_a_planted_slope_and_intercept():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.5, 60_000)  # the model's logits
    y = (rng.random(len(z)) < sigmoid(0.6 * z - 0.8)).astype(int)  # truth: q = sigmoid(0.6 z - 0.8)
    cal = fit_calibration(y, sigmoid(z))
    assert abs(cal.slope - 0.6) < 0.03 and abs(cal.intercept + 0.8) < 0.05
    assert expected_calibration_error(y, cal.apply(sigmoid(z))) < 0.01 < expected_calibration_error(y, sigmoid(z))


@pytest.mark.parametrize("setup", ["pos_weight", "balanced_sampler"])
def test_the_prior_offset_undoes_class_weighting_exactly(setup):
    y, q, _ = _population()
    pi = y.mean()
    if setup == "pos_weight":  # the optimum of BCEWithLogits(pos_weight=w): logit(q) + log(w)
        w = (1 - pi) / pi
        shifted, offset = sigmoid(to_logits(q) + np.log(w)), prior_offset(pos_weight=w)
    else:  # trained at 50% prevalence: logit(q) + log((1 - pi) / pi)
        shifted, offset = sigmoid(to_logits(q) + np.log((1 - pi) / pi)), prior_offset(balanced_train_prevalence=pi)
    assert shifted.mean() > 0.35 > 0.25 > q.mean()  # the shift the issue measured (0.39 at 19.5%)
    restored = Calibration(1.0, 0.0, offset).apply(shifted)
    np.testing.assert_allclose(restored, q, atol=1e-9)
    assert expected_calibration_error(y, restored) < 0.01 and top_label_ece(y, restored) < 0.01


def test_adapt_finds_the_threshold_a_site_needs_and_scores_it_honestly():
    rng = np.random.default_rng(2)
    n = 4000
    y = (rng.random(n) < 0.25).astype(int)
    p = np.where(y == 1, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.5, n))  # 90% sensitivity: t = 0.37
    out = adapt_threshold(y, p, np.arange(n), 0.9, n_boot=200, seed=0)
    assert abs(out["threshold"] - 0.37) < 0.02
    assert abs(out["expected"]["sensitivity"]["value"] - 0.9) < 0.02
    assert out["expected"]["sensitivity"]["ci_low"] < 0.9 < out["expected"]["sensitivity"]["ci_high"]
    curve = local_cases_curve(Cases(y, p, np.arange(n)), 0.9, sizes=(10, 50, 200), repeats=100)
    widths = [r["ci_half_width"] for r in curve]
    assert [r["malignant_cases"] for r in curve] == [10, 50, 200] and widths[0] > widths[1] > widths[2]


def test_held_out_adaptation_never_scores_the_images_it_tuned_on():
    rng = np.random.default_rng(3)
    n = 1200
    lesions = np.repeat(np.arange(n // 3), 3)
    y = np.repeat((rng.random(n // 3) < 0.3).astype(int), 3)
    p = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    preds = pd.DataFrame({"image_id": [f"I{i}" for i in range(n)], "lesion_id": lesions.astype(str), "label": y,
                          "probability": p})
    a = held_out_adaptation(preds, (0.5, 0.9), None, 0.3, n_boot=50)
    tuned = set(a["adapt_image_ids"])
    assert a["adapt_images"] + a["scored_images"] == n and len(tuned) == a["adapt_images"]
    lesion_of = dict(zip(preds["image_id"], preds["lesion_id"]))
    assert not {lesion_of[i] for i in tuned} & {lesion_of[i] for i in set(preds["image_id"]) - tuned}
    assert a["adapted"]["sensitivity"]["value"] >= 0.8 > a["unadapted"]["sensitivity"]["value"] - 0.5


def test_unlabelled_em_recovers_a_planted_prevalence():
    _, _, _ = _population()
    y_site, _, log_lr = _population(prevalence=0.4, seed=4)
    posterior_at_reference = sigmoid(log_lr + np.log(0.2 / 0.8))  # calibrated where the prevalence was 20%
    pi, adjusted = em_prevalence(posterior_at_reference, 0.2)
    assert abs(pi - y_site.mean()) < 0.02
    assert expected_calibration_error(y_site, adjusted) < 0.02


@pytest.fixture
def tuned_bundle(base):
    return base / "bundle"  # the session's tiny trained + tuned run (conftest); read-only here


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_adapt_writes_a_new_bundle_with_its_provenance(tuned_bundle, external_data, tmp_path, capsys):
    before = _digest(tuned_bundle)
    original = json.loads((tuned_bundle / "config.json").read_text())
    assert original["calibration"]["method"].startswith("prior offset")  # calibrated by tune-threshold
    new = tmp_path / "site-bundle"
    assert main(["adapt", "--model", str(tuned_bundle), "--data", str(external_data), "--out", str(new),
                 "--site", "clinic-B", "--bootstrap", "50", "--quiet"]) == 0
    assert _digest(tuned_bundle) == before  # the original is untouched
    cfg = json.loads((new / "config.json").read_text())
    prov = cfg["site_adaptation"]
    meta = pd.read_csv(external_data / "HAM10000_metadata.csv")
    assert prov["site"] == "clinic-B" and prov["n_images"] == len(meta) and len(prov["sample_sha256"]) == 64
    assert prov["original_threshold"] == original["threshold"] and prov["date"]
    assert cfg["threshold"]["source"].startswith("adapted at site clinic-B")
    assert (new / "adaptation" / "adapt.json").is_file() and (new / "adaptation" / "local_cases_curve.csv").is_file()
    capsys.readouterr()
    assert main(["predict", "--model", str(new), str(next((external_data / "images").glob("*.jpg")))]) == 0
    assert "adapted at site clinic-B" in capsys.readouterr().err  # which operating point is in use
    assert main(["adapt", "--model", str(tuned_bundle), "--data", str(external_data), "--out",
                 str(tmp_path / "unl"), "--unlabelled", "--bootstrap", "30", "--quiet"]) == 0
    rep = json.loads((tmp_path / "unl" / "adapt_unlabelled.json").read_text())
    assert 0 <= rep["prevalence"]["value"] <= 1 and rep["reference_prevalence"] > 0


def test_evaluate_with_adapt_fraction_reports_both_operating_points(tuned_bundle, external_data, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(tuned_bundle), "--data", str(external_data), "--out", str(out),
                 "--adapt-fraction", "0.4", "--bootstrap", "20", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    a = m["adaptation"]
    assert a["adapt_images"] + a["scored_images"] == m["n_images"]
    assert "Adapted at this site" in (out / "report.html").read_text()
    assert m["calibration"]["calibrated"]["ece"] >= 0 and "ece_top_label" in m["calibration"]["raw"]


def test_unlabelled_flags_a_site_whose_images_differ_by_more_than_prevalence():
    from skinlesion.evaluation.site import SHIFT_WARNING_GAP, adjusted_mean, em_prevalence
    ys, _, lr_s = _population(n=20000, prevalence=0.2, seed=6)  # the calibration set
    qs = sigmoid(lr_s + np.log(0.2 / 0.8))
    pos, neg = qs[ys == 1].mean(), qs[ys == 0].mean()
    y, _, log_lr = _population(n=20000, prevalence=0.35, seed=5)
    clean = sigmoid(log_lr + np.log(0.2 / 0.8))  # pure label shift: both estimators find 0.35
    assert abs(em_prevalence(clean, 0.2)[0] - y.mean()) < 0.02 and abs(adjusted_mean(clean, pos, neg) - y.mean()) < 0.02
    shifted = sigmoid(1.8 * log_lr + np.log(0.2 / 0.8))  # a device whose images give more extreme scores
    assert abs(em_prevalence(shifted, 0.2)[0] - adjusted_mean(shifted, pos, neg)) > SHIFT_WARNING_GAP
    # (a site where only the malignant lesions look benigner moves both estimators alike: not detectable
    # without labels; docs/design-choices.md says so)
