"""Run folders and bundles written by an earlier skinlesion (tests/fixtures/run-5a09157, see its README) still
load, predict the same numbers, re-tune and evaluate with the current code."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from skinlesion.cli import main
from skinlesion.inference.bundle import load_bundle

OLD = Path(__file__).parent / "fixtures" / "run-5a09157"


def test_old_bundle_predicts_what_it_predicted_then(tmp_path):
    images = sorted(str(p) for p in (OLD / "images").glob("*.jpg"))
    assert main(["predict", "--model", str(OLD / "bundle"), *images, "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    now = pd.read_csv(tmp_path / "p.csv")
    then = pd.read_csv(OLD / "expected_predictions.csv")
    assert [Path(p).name for p in now["path"]] == list(then["path"])
    np.testing.assert_allclose(now["probability_raw"], then["probability_raw"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(now["probability"], then["probability"], rtol=0, atol=1e-6)
    assert list(now["decision"]) == list(then["decision"])
    assert load_bundle(OLD / "bundle").config.get("stack") is None


def test_old_run_folder_re_tunes_to_the_same_threshold(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD, run, ignore=shutil.ignore_patterns("images", "expected_predictions.csv", "README.md"))
    before = json.loads((OLD / "threshold.json").read_text())
    assert main(["tune-threshold", str(run), "--quiet"]) == 0
    after = json.loads((run / "threshold.json").read_text())
    assert after["threshold"] == before["threshold"]
    assert main(["runs", str(tmp_path), "--out", str(tmp_path / "overview"), "--quiet"]) == 0
    assert "run" in (tmp_path / "overview.csv").read_text()


def test_old_bundle_evaluates_on_an_external_set(external_data, tmp_path):
    rc = main(["evaluate", "--model", str(OLD / "bundle"), "--data", str(external_data), "--out", str(tmp_path / "ext"),
               "--bootstrap", "50", "--num-workers", "0", "--quiet"])
    assert rc == 0
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert 0 <= metrics["at_threshold"]["roc_auc"]["value"] <= 1


def test_old_bundle_config_reads_as_the_typed_config_and_round_trips():
    from skinlesion.inference.bundle import BundleConfig, BundleError
    raw = json.loads((OLD / "bundle" / "config.json").read_text())
    cfg = BundleConfig.from_json(raw, OLD / "bundle" / "config.json")
    assert cfg.format_version == 1 and cfg.task == raw["task"] and cfg.task_spec.name == raw["task"]
    assert cfg.threshold == raw["threshold"]["value"] and cfg.architecture == raw["architecture"]
    assert cfg.preprocessing.image_size == raw["preprocessing"]["image_size"]
    assert cfg.to_json() == raw  # keys this version does not model are kept
    try:
        cfg["task"] = "7class"  # read-only: changes go through to_json() and a new from_json
        raise AssertionError("BundleConfig accepted an item assignment")
    except TypeError:
        pass
    newer = {**raw, "format_version": 99}
    import pytest
    with pytest.raises(BundleError, match=r"bundle format 99 is not supported.*Remedy"):
        BundleConfig.from_json(newer, "x/config.json")
    with pytest.raises(BundleError, match=r"x/config.json: threshold 2 is not a number in \[0, 1\]"):
        BundleConfig.from_json({**raw, "threshold": {**raw["threshold"], "value": 2}}, "x/config.json")


def test_the_run_layout_names_the_files_an_old_run_folder_has():
    from skinlesion.data.run import Run
    run = Run(OLD)
    for path in (run.split_csv, run.split_json, run.config_yaml, run.threshold_json, run.val_predictions,
                 run.history_csv, run.bundle / "config.json"):
        assert path.is_file(), path
    assert run.is_run() and run.has_bundle() and not run.is_cv()
    ctx = run.context()
    val = run.read_val_predictions(ctx)
    assert set(val["image_id"]) == set(ctx.rows("val")["image_id"])
    assert run.report_dir("test") == OLD and run.report_dir("val") == OLD / "eval-val"
    assert run.fold("fold0").path == OLD / "folds" / "fold0"


def test_val_predictions_of_another_split_are_refused(tmp_path):
    import pytest

    from skinlesion.data.run import Run
    from skinlesion.errors import DataError
    shutil.copytree(OLD, tmp_path / "run", ignore=shutil.ignore_patterns("images", "bundle"))
    run = Run(tmp_path / "run")
    val = pd.read_csv(run.val_predictions)
    val.iloc[1:].to_csv(run.val_predictions, index=False)  # one validation image missing
    with pytest.raises(DataError, match=r"val_predictions.csv does not hold the validation images.*Remedy"):
        run.read_val_predictions(run.context())
