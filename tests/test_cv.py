"""Cross-validation and ensembles on tiny synthetic data: fold coverage, out-of-fold predictions, resume,
an ensemble bundle that is the mean of its members in predict, serve and ONNX, and evaluate's cv table."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from skinlesion.cli import main
from skinlesion.inference.bundle import load_bundle
from skinlesion.inference.predictor import Predictor
from skinlesion.training import fit as fit_module

K = 3


def _args(demo_data, run, tmp):
    return ["cv", "--data", str(demo_data), "--out", str(run), "--folds", str(K), "--arch", "simple_cnn",
            "--image-size", "32", "--epochs", "1", "--num-workers", "0", "--cache-dir", str(tmp / "cache"),
            "--limit-train-batches", "2", "--quiet"]


@pytest.fixture(scope="module")
def cv_run(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    assert main(_args(demo_data, tmp / "run", tmp)) == 0
    return tmp / "run"


def test_folds_cover_train_and_val_once_and_leave_test_untouched(cv_run):
    split = pd.read_csv(cv_run / "split.csv", dtype={"image_id": str})
    oof = pd.read_csv(cv_run / "oof_predictions.csv", dtype={"image_id": str})
    cvset = split[split["split"] != "test"]
    assert oof["image_id"].is_unique and set(oof["image_id"]) == set(cvset["image_id"])
    assert not set(oof["image_id"]) & set(split.loc[split["split"] == "test", "image_id"])
    assert split.groupby("lesion_id")["fold"].nunique().max() == 1  # a lesion sits in one fold
    for k in range(K):
        member = pd.read_csv(cv_run / f"folds/fold{k}/val_predictions.csv", dtype={"image_id": str})
        assert set(member["image_id"]) == set(cvset.loc[cvset["fold"] == k, "image_id"])  # its own fold only
        assert (oof.loc[oof["fold"] == k, "image_id"].isin(member["image_id"])).all()
    summary = json.loads((cv_run / "cv.json").read_text())
    assert len(summary["per_fold"]) == K and summary["val_roc_auc"]["sd"] >= 0
    t = summary["threshold"]
    y, p = oof["label"].to_numpy(), oof["probability"].to_numpy()
    assert t["n_images"] == len(oof) and ((p >= t["value"]) & (y == 1)).sum() / y.sum() >= 0.9


def test_ensemble_is_the_mean_of_its_members_everywhere(cv_run, demo_data, tmp_path):
    ens = load_bundle(cv_run / "bundle")
    assert ens.config["ensemble"]["size"] == K and ens.threshold == json.loads((cv_run / "cv.json").read_text())["threshold"]["value"]
    images = [str(p) for p in sorted((demo_data / "images").glob("*.jpg"))[:4]]
    out = Predictor(ens).predict(images)
    got = out["probability"].to_numpy()  # calibrated on the out-of-fold predictions
    members = [Predictor.from_bundle(cv_run / f"folds/fold{k}/bundle").predict(images)["probability"].to_numpy()
               for k in range(K)]  # fold bundles are not tuned: their own (raw) probabilities
    assert ens.config["calibration"]["fit_on"] == "out-of-fold predictions"
    np.testing.assert_allclose(out["probability_raw"].to_numpy(), np.mean(members, axis=0), atol=1e-5)

    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    with TestClient(create_app(cv_run / "bundle")) as client:
        r = client.post("/api/predict?explain=1", files={"file": ("a.jpg", open(images[0], "rb").read(), "image/jpeg")})
        assert r.status_code == 200 and r.json()["probability"] == pytest.approx(got[0], abs=1e-5)
        assert "gradcam_png_base64" in r.json()

    import onnxruntime as ort
    assert main(["export", "--model", str(cv_run / "bundle"), "--out", str(tmp_path / "e.onnx"), "--quiet"]) == 0
    session = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)
    logits = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.no_grad():
        mean_p = torch.stack([torch.sigmoid(m(x)) for m in ens.model.members]).mean(0).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), mean_p, atol=1e-5)


def test_evaluate_a_cv_run_tables_single_models_against_the_ensemble(cv_run, tmp_path):
    assert main(["evaluate", str(cv_run), "--bootstrap", "20", "--num-workers", "0", "--quiet"]) == 0
    m = json.loads((cv_run / "metrics.json").read_text())
    cv = m["cv"]
    assert [r["member"] for r in cv["members"]] == [f"fold{k}" for k in range(K)]
    assert cv["ensemble"]["roc_auc"]["value"] == pytest.approx(m["at_threshold"]["roc_auc"]["value"])
    assert cv["single_mean"]["roc_auc"] == pytest.approx(np.mean([r["roc_auc"]["value"] for r in cv["members"]]))
    assert cv["alternative_combine"]["combine"] == "mean_logit"
    assert "ensemble vs single fold models" in (cv_run / "report.html").read_text()
    assert "Cross-validation ensemble" in (cv_run / "model_card.md").read_text()
    assert main(["compare", str(cv_run), str(cv_run / "folds/fold0"), "--bootstrap", "20"]) == 2  # fold0 not evaluated


def test_a_killed_cv_resumes_at_its_fold(demo_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original = fit_module.train
    calls = []

    def dies_on_second_fold(cfg, run_dir, *a, **kw):
        calls.append(run_dir.name)
        if run_dir.name == "fold1" and len(calls) == 2:
            raise KeyboardInterrupt
        return original(cfg, run_dir, *a, **kw)
    monkeypatch.setattr(fit_module, "train", dies_on_second_fold)
    assert main(_args(demo_data, run, tmp_path)) == 130
    assert (run / "folds/fold0/bundle").is_dir() and not (run / "bundle").exists()
    assert main(_args(demo_data, run, tmp_path)) == 2  # folds/ exists: --resume needed
    capsys.readouterr()
    assert main([*_args(demo_data, run, tmp_path), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "fold 1/3: done, skipping" in out and (run / "bundle/config.json").is_file()
    assert calls == ["fold0", "fold1", "fold1", "fold2"]
