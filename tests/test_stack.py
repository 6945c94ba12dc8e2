"""`cv --stack gbdt`: the trees as tensors equal scikit-learn, the stacked bundle gives the same numbers in
predict, serve, evaluate and ONNX, and its threshold comes from the trees' own out-of-fold scores."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from skinlesion.cli import main
from skinlesion.evaluation.thresholds import threshold_for_sensitivity
from skinlesion.inference.bundle import load_bundle
from skinlesion.inference.predictor import Predictor
from skinlesion.models.trees import TreeEnsemble, arrays_from_sklearn

TINY = ["--arch", "simple_cnn", "--image-size", "32", "--epochs", "2", "--phase1-epochs", "1", "--batch-size", "16",
        "--num-workers", "0", "--limit-train-batches", "2", "--quiet"]


def test_trees_as_tensors_equal_sklearn_with_missing_values():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 5)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.isnan(X[:, 1]) + rng.normal(size=len(X)) * 0.5 > 0.5).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y)
    trees = TreeEnsemble.from_arrays(arrays_from_sklearn(clf))
    p = torch.sigmoid(trees(torch.from_numpy(X))).numpy()
    np.testing.assert_allclose(p, clf.predict_proba(X)[:, 1], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def stacked(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    run = tmp / "cv"
    assert main(["cv", "--data", str(demo_data), "--out", str(run), "--folds", "3", "--cache-dir", str(tmp / "cache"),
                 "--stack", "gbdt", *TINY]) == 0
    return run


def test_stack_is_bundled_without_pickle_and_tuned_on_its_own_oof(stacked):
    config = json.loads((stacked / "bundle" / "config.json").read_text())
    assert config["stack"]["kind"] == "gbdt" and config["stack"]["features"][0] == "cnn_logit"
    assert sorted(p.name for p in (stacked / "bundle").iterdir() if p.suffix in (".pkl", ".pickle", ".joblib")) == []
    assert (stacked / "bundle-image" / "config.json").is_file() and "stack" not in json.loads(
        (stacked / "bundle-image" / "config.json").read_text())
    oof = pd.read_csv(stacked / "stack_oof_predictions.csv")
    y, p = oof["label"].to_numpy(), oof["probability"].to_numpy()
    assert config["threshold"]["value"] == pytest.approx(threshold_for_sensitivity(y, p, 0.9))
    assert not np.allclose(p, oof["probability_image"])  # the trees' scores, not the CNN's
    summary = json.loads((stacked / "stack.json").read_text())
    assert summary["n_images"] == len(oof) and set(summary["oof_stack"]) >= {"roc_auc", "pr_auc"}


def test_stacked_predictions_equal_in_predict_serve_evaluate_and_onnx(stacked, demo_data, tmp_path):
    assert main(["evaluate", str(stacked), "--quiet", "--num-workers", "0"]) == 0
    evaluated = pd.read_csv(stacked / "test_predictions.csv").head(6)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv")
    rows = evaluated[["image_id"]].merge(meta, on="image_id", how="left")
    paths = [str(demo_data / "images" / f"{i}.jpg") for i in rows["image_id"]]
    listing = tmp_path / "list.csv"
    rows.assign(path=paths)[["path", "age", "sex", "localization"]].to_csv(listing, index=False)
    assert main(["predict", "--model", str(stacked / "bundle"), str(listing), "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(predicted["probability_raw"], evaluated["probability"], atol=1e-6)
    api = Predictor.from_bundle(stacked / "bundle").predict(paths, rows[["age", "sex", "localization"]])
    np.testing.assert_allclose(api["probability"], predicted["probability"], atol=1e-9)

    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    with TestClient(create_app(stacked / "bundle")) as client:
        r = client.post("/api/predict", files={"file": ("a.jpg", open(paths[0], "rb").read(), "image/jpeg")},
                        data={"age": str(rows.loc[0, "age"]), "sex": rows.loc[0, "sex"],
                              "site": rows.loc[0, "localization"]})
        assert r.status_code == 200
        assert r.json()["probability"] == pytest.approx(predicted["probability"].iloc[0], abs=1e-6)

    report = (stacked / "report.html").read_text()
    assert "stacked trees on the ensemble + metadata" in report and "image only" in report

    import onnxruntime as ort
    assert main(["export", "--model", str(stacked / "bundle"), "--out", str(tmp_path / "m.onnx"), "--quiet"]) == 0
    bundle = load_bundle(stacked / "bundle")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)
    m = bundle.encoder.encode(rows.head(3))
    with torch.no_grad():
        ref = bundle.model(x, torch.from_numpy(m)).numpy()
    assert np.abs(session.run(["logits"], {"image": x.numpy(), "metadata": m})[0] - ref).max() < 1e-4


def test_damaged_stack_entry_is_refused(stacked, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bundle"
    shutil.copytree(stacked / "bundle", bad)
    config = json.loads((bad / "config.json").read_text())
    config["stack"]["trees"]["n_trees"] = 10 ** 9
    (bad / "config.json").write_text(json.dumps(config))
    rc = main(["predict", "--model", str(bad), str(tmp_path / "none.jpg"), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "'stack' entry is damaged" in err and "Remedy" in err


def test_unknown_stack_and_seven_classes_are_clear_errors(demo_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cv", "--data", str(demo_data), "--out", str(tmp_path / "a"), "--stack", "xgboost", *TINY])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    rc = main(["cv", "--data", str(demo_data), "--out", str(tmp_path / "b"), "--stack", "gbdt", "--task", "7class",
               *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "binary" in err and "Remedy" in err and not (tmp_path / "b").exists()  # refused before training


def test_stack_with_tta_features_restacks_a_finished_cv(stacked, demo_data, tmp_path):
    import shutil
    run = tmp_path / "cv"
    shutil.copytree(stacked, run)
    assert main(["cv", "--data", str(demo_data), "--out", str(run), "--folds", "3", "--cache-dir",
                 str(tmp_path / "cache"), "--resume", "--stack", "gbdt", "--stack-tta", *TINY]) == 0
    config = json.loads((run / "bundle" / "config.json").read_text())
    assert config["stack"]["tta"] is True and config["stack"]["features"][:2] == ["cnn_logit", "cnn_logit_tta"]
    assert main(["evaluate", str(run), "--quiet", "--num-workers", "0", "--bootstrap", "20"]) == 0
    evaluated = pd.read_csv(run / "test_predictions.csv").head(4)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv")
    rows = evaluated[["image_id"]].merge(meta, on="image_id", how="left")
    paths = [str(demo_data / "images" / f"{i}.jpg") for i in rows["image_id"]]
    api = Predictor.from_bundle(run / "bundle").predict(paths, rows[["age", "sex", "localization"]])
    np.testing.assert_allclose(api["probability_raw"], evaluated["probability"], atol=1e-6)
    # without --stack the fold ensemble is the bundle again
    assert main(["cv", "--data", str(demo_data), "--out", str(run), "--folds", "3", "--cache-dir",
                 str(tmp_path / "cache"), "--resume", *TINY]) == 0
    assert "stack" not in json.loads((run / "bundle" / "config.json").read_text())
    assert not (run / "bundle-image").exists()


def test_cv_with_metadata_fusion_makes_its_ensemble(demo_data, tmp_path):
    """Every fold model encodes the metadata the same way (fitted on train+val), so the ensemble can be built."""
    run = tmp_path / "cv"
    assert main(["cv", "--data", str(demo_data), "--out", str(run), "--folds", "2", "--cache-dir",
                 str(tmp_path / "cache"), "--metadata", "age,sex,localization", *TINY]) == 0
    encoders = [json.loads((run / "folds" / f"fold{k}" / "bundle" / "config.json").read_text())["metadata"]
                for k in (0, 1)]
    assert encoders[0] == encoders[1]
    assert json.loads((run / "bundle" / "config.json").read_text())["metadata"] == encoders[0]
