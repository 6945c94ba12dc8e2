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
