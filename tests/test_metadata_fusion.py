"""Metadata fusion: the encoder (fitted on train, missing and unknown values, bundle round trip), dx_type
refused, and a metadata model through predict (CSV columns), serve (form fields), ONNX (parity) and
evaluate (with/without metadata)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from skinlesion.cli import main
from skinlesion.data.tabular import MetadataEncoder, MetadataError, parse_fields
from skinlesion.inference.bundle import load_bundle
from skinlesion.inference.predictor import Predictor
from skinlesion.training.fit import train
from conftest import tiny_cfg
from skinlesion.data.run import Run


def test_encoder_scales_age_one_hots_categories_and_marks_missing_values():
    train_rows = pd.DataFrame({"age": [30, 50, np.nan, 70], "sex": ["male", "female", "unknown", "male"],
                               "localization": ["back", "face", "back", None]})
    enc = MetadataEncoder.fit(train_rows, ("age", "sex", "localization"))
    assert enc.vocab == {"sex": ["female", "male"], "localization": ["back", "face"]}
    assert enc.age_mean == pytest.approx(50.0) and enc.dim == 2 + 3 + 3
    x = enc.encode(pd.DataFrame({"age": [50, None, 200], "sex": ["FEMALE ", "other", None],
                                 "localization": ["face", "scalp", "back"]}))
    assert x[0, :2].tolist() == [0.0, 0.0] and x[1, :2].tolist() == [0.0, 1.0] and x[2, 1] == 1.0  # 200: impossible
    assert x[0, 2:5].tolist() == [1, 0, 0] and x[1, 2:5].tolist() == [0, 0, 1]  # unknown value -> unknown slot
    assert x[1, 5:8].tolist() == [0, 0, 1] and x[2, 5:8].tolist() == [1, 0, 0]
    assert enc.encode(pd.DataFrame(index=[0]))[0].tolist() == enc.missing_vector().tolist()  # columns may be absent
    again = MetadataEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert np.array_equal(again.encode(train_rows), enc.encode(train_rows))


def test_label_leaking_fields_are_refused_with_the_reason(demo_data, tmp_path, capsys):
    with pytest.raises(MetadataError, match="dx_type.*encodes the label"):
        parse_fields("age,dx_type")
    assert parse_fields("age,site,sex") == ("age", "localization", "sex")
    code = main(["train", "--data", str(demo_data), "--out", str(tmp_path / "r"), "--metadata", "dx_type", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "refused as a feature" in err and "Remedy: --metadata age,sex,localization" in err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def meta_run(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("meta")
    cfg = tiny_cfg(demo_data, tmp, epochs=2, image_size=32, limit_train_batches=None, metadata=("age", "sex", "localization"))
    train(cfg, Run.quiet(tmp / "run"))
    return tmp / "run"


def test_metadata_model_uses_the_fields_everywhere(meta_run, demo_data, tmp_path):
    bundle = load_bundle(meta_run / "bundle")
    assert bundle.encoder.fields == ("age", "sex", "localization") and bundle.model.meta_dim == bundle.encoder.dim
    split = pd.read_csv(meta_run / "split.csv", dtype=str)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv", dtype={"image_id": str})
    rows = meta[meta["image_id"].isin(split.loc[split["split"] == "test", "image_id"])].head(6).reset_index(drop=True)
    paths = [str(demo_data / "images" / f"{i}.jpg") for i in rows["image_id"]]
    listing = tmp_path / "list.csv"
    rows.assign(path=paths)[["path", "age", "sex", "localization"]].to_csv(listing, index=False)
    assert main(["predict", "--model", str(meta_run / "bundle"), str(listing), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    with_meta = pd.read_csv(tmp_path / "p.csv")["probability"].to_numpy()
    assert main(["predict", "--model", str(meta_run / "bundle"), *paths, "--out", str(tmp_path / "q.csv"), "--quiet"]) == 0
    without = pd.read_csv(tmp_path / "q.csv")["probability"].to_numpy()
    predictor = Predictor.from_bundle(meta_run / "bundle")
    api = predictor.predict(paths, rows[["age", "sex", "localization"]])["probability"].to_numpy()
    np.testing.assert_allclose(with_meta, api, atol=1e-6)
    assert not np.allclose(with_meta, without, atol=1e-6)  # the fields change the output
    np.testing.assert_allclose(without, predictor.predict(paths)["probability"].to_numpy(), atol=1e-6)

    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    with TestClient(create_app(meta_run / "bundle")) as client:
        data = open(paths[0], "rb").read()
        r1 = client.post("/api/predict", files={"file": ("a.jpg", data, "image/jpeg")},
                         data={"age": str(rows.loc[0, "age"]), "sex": rows.loc[0, "sex"], "site": rows.loc[0, "localization"]})
        r0 = client.post("/api/predict", files={"file": ("a.jpg", data, "image/jpeg")})
        assert r1.json()["probability"] == pytest.approx(with_meta[0], abs=1e-6)
        assert r0.json()["probability"] == pytest.approx(without[0], abs=1e-6)
        assert client.post("/api/predict", files={"file": ("a.jpg", data, "image/jpeg")}, data={"age": "-4"}).status_code == 422
        assert client.get("/api/model").json()["metadata"]["fields"] == ["age", "sex", "localization"]

    import onnxruntime as ort
    assert main(["export", "--model", str(meta_run / "bundle"), "--out", str(tmp_path / "m.onnx"), "--quiet"]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "metadata"]
    x = torch.randn(2, 3, 32, 32)
    m = bundle.encoder.encode(rows.head(2))
    with torch.no_grad():
        ref = bundle.model(x, torch.from_numpy(m)).numpy()
    assert np.abs(session.run(["logits"], {"image": x.numpy(), "metadata": m})[0] - ref).max() < 1e-4


def test_evaluate_reports_the_model_with_and_without_its_metadata(meta_run):
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    m = evaluate_run(meta_run, opts=EvalOptions(n_boot=20, num_workers=0, progress=False)).metrics
    ab = m["metadata_ablation"]
    assert ab["fields"] == ["age", "sex", "localization"]
    assert set(ab["with_metadata"]) == {"roc_auc", "pr_auc"} and "difference" in ab["roc_auc_difference"]
    assert m["at_threshold"]["roc_auc"]["value"] == pytest.approx(ab["with_metadata"]["roc_auc"]["value"])
    assert "Metadata (age, sex, localization)" in (meta_run / "report.html").read_text()
