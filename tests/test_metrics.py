"""Pure metric functions against scikit-learn and hand-computed cases."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from skinlesion.evaluation.bootstrap import bootstrap, lesion_resamples, paired_difference
from skinlesion.evaluation.calibration import apply_temperature, fit_temperature
from skinlesion.evaluation.metrics import (all_metrics, auc_above_sensitivity, expected_calibration_error, pr_auc,
                                           roc_auc, threshold_metrics)
from skinlesion.evaluation.thresholds import (ThresholdError, operating_points, sensitivity_curve,
                                              threshold_for_sensitivity, youden_threshold)


@pytest.fixture
def random_preds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 400), 0, 1).round(2)  # rounded: many ties
    return y, p


def test_against_sklearn_on_random_data(random_preds):
    y, p = random_preds
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p))
    t = 0.5
    pred = (p >= t).astype(int)
    m = all_metrics(y, p, t)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(skm.precision_score(1 - y, 1 - pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))


def test_hand_computed_case_with_ties_and_the_threshold_boundary():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.4, 0.6, 0.9])
    # pairs (pos, neg): 0.4 vs {0.1 win, 0.4 tie, 0.6 loss}, 0.6 vs {win, win, tie}, 0.9 vs all win -> 7/9
    assert roc_auc(y, p) == pytest.approx(7 / 9)
    m = threshold_metrics(y, p, 0.6)  # p == threshold counts as malignant
    assert (m["sensitivity"], m["specificity"], m["ppv"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert threshold_metrics(y, p, 0.61)["sensitivity"] == pytest.approx(1 / 3)
    assert math.isnan(threshold_metrics(np.zeros(3), np.ones(3), 0.5)["sensitivity"])


def test_pauc_above_tpr80_hand_checked_and_bounds():
    # ROC: (0,0)->(0,.5)->(.5,.5)->(.5,1)->(1,1); area above TPR 0.8 = (1 - 0.5) * (1 - 0.8) = 0.1
    assert auc_above_sensitivity([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.1)
    assert auc_above_sensitivity([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.2)  # perfect
    assert auc_above_sensitivity([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)  # inverted


def test_pauc_above_tpr80_matches_numeric_integration(random_preds):
    y, p = random_preds
    fpr, tpr, _ = skm.roc_curve(y, p)
    grid = np.linspace(0, 1, 200001)
    numeric = np.trapezoid(np.clip(np.interp(grid, fpr, tpr) - 0.8, 0, None), grid)
    assert auc_above_sensitivity(y, p) == pytest.approx(numeric, abs=2e-4)


def test_threshold_rule_is_the_highest_threshold_reaching_the_target(random_preds):
    y, p = random_preds
    for target in (0.8, 0.9, 0.95, 1.0):
        t = threshold_for_sensitivity(y, p, target)
        assert threshold_metrics(y, p, t)["sensitivity"] >= target
        higher = np.unique(p[p > t])
        assert all(threshold_metrics(y, p, h)["sensitivity"] < target for h in higher)
    thresholds, sens, spec = sensitivity_curve(y, p)
    for t, s, sp in zip(thresholds[::7], sens[::7], spec[::7]):
        m = threshold_metrics(y, p, t)
        assert (s, sp) == pytest.approx((m["sensitivity"], m["specificity"]))
    j = youden_threshold(y, p)
    best = max(threshold_metrics(y, p, t)["sensitivity"] + threshold_metrics(y, p, t)["specificity"] for t in np.unique(p))
    assert threshold_metrics(y, p, j)["sensitivity"] + threshold_metrics(y, p, j)["specificity"] == pytest.approx(best)
    rows = operating_points(y, p)
    assert [r["operating_point"] for r in rows] == ["sensitivity >= 0.80", "sensitivity >= 0.85", "sensitivity >= 0.90",
                                                     "sensitivity >= 0.95", "Youden's J", "0.5"]


def test_threshold_needs_both_classes():
    with pytest.raises(ThresholdError, match="0 malignant"):
        threshold_for_sensitivity([0, 0, 0], [0.1, 0.2, 0.3], 0.9)
    with pytest.raises(ThresholdError, match="0 benign"):
        operating_points([1, 1], [0.1, 0.2])


def test_lesion_bootstrap_keeps_lesions_together_and_is_seeded():
    groups = np.array(["a", "a", "a", "b", "c", "c", "d"])
    sizes = {"a": 3, "b": 1, "c": 2, "d": 1}
    for idx in lesion_resamples(groups, 50, seed=1):
        counts = {g: int((groups[idx] == g).sum()) for g in sizes}
        assert all(c % sizes[g] == 0 for g, c in counts.items())
        for g in sizes:  # all images of a drawn lesion appear, in full
            members = set(np.flatnonzero(groups == g))
            drawn = [i for i in idx if groups[i] == g]
            assert len(drawn) == 0 or set(drawn) == members
    a = [tuple(i) for i in lesion_resamples(groups, 5, seed=3)]
    assert a == [tuple(i) for i in lesion_resamples(groups, 5, seed=3)]
    assert a != [tuple(i) for i in lesion_resamples(groups, 5, seed=4)]


def test_ci_narrows_with_more_lesions_and_covers_the_point():
    rng = np.random.default_rng(0)

    def width(n):
        y = rng.integers(0, 2, n)
        p = np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1)
        est = bootstrap(lambda idx: {"auc": roc_auc(y[idx], p[idx])}, np.arange(n), 300, seed=0)["auc"]
        assert est.low <= est.value <= est.high
        return est.high - est.low
    assert width(2000) < 0.6 * width(200)


def test_paired_test_detects_a_better_model_and_not_an_identical_one():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    good = np.clip(0.4 * y + rng.normal(0.3, 0.15, 600), 0, 1)
    bad = np.clip(0.1 * y + rng.normal(0.45, 0.15, 600), 0, 1)
    groups = np.arange(600) // 2
    same = paired_difference(roc_auc, y, (good, good), groups, 300)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    better = paired_difference(roc_auc, y, (good, bad), groups, 300)
    assert better["difference"] > 0.2 and better["p_value"] < 0.01 and better["ci_low"] > 0


def test_ece_hand_case_and_temperature_scaling_fixes_overconfidence():
    assert expected_calibration_error([1, 0], [0.95, 0.95]) == pytest.approx(0.45)
    rng = np.random.default_rng(2)
    logit = rng.normal(0, 1.5, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-logit))).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * logit))
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(overconfident, t)
    assert expected_calibration_error(y, calibrated) < 0.5 * expected_calibration_error(y, overconfident)
    assert roc_auc(y, calibrated) == pytest.approx(roc_auc(y, overconfident))  # ranking unchanged


def test_metrics_file_reads_old_files_and_refuses_damaged_ones(tmp_path):
    import json

    from skinlesion.errors import DataError
    from skinlesion.evaluation.scores import HEADLINE, MetricsFile
    est = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    old = {"split": "test", "n_images": 10, "at_threshold": {**{k: est for k in HEADLINE if k != "pauc_above_tpr80"},
                                                             "auc_sens_80": est}}  # written before the rename
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    m = MetricsFile.read(tmp_path / "metrics.json")
    assert m.split == "test" and m.n_images == 10 and m.headline("pauc_above_tpr80") == est and m.fold is None
    with pytest.raises(DataError, match=r"metrics.json: 'at_threshold' must hold .*Remedy"):
        MetricsFile.from_json({**old, "at_threshold": {"roc_auc": {"value": "high"}}}, tmp_path / "metrics.json")
    with pytest.raises(DataError, match=r"metrics format 2 is not supported.*Remedy"):
        MetricsFile.from_json({**old, "format_version": 2}, "metrics.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"bad.json is not valid JSON.*Remedy"):
        MetricsFile.read(tmp_path / "bad.json")
