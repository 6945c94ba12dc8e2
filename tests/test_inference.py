"""predict, Predictor API, TTA, Grad-CAM, ONNX export and the REST API on a tiny trained bundle."""
import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skinlesion.cli import main
from skinlesion.inference.gradcam import gradcam
from skinlesion.inference.predictor import Predictor, forward_probs, tta_views


def test_predict_folder_reports_each_outcome(bundle, zoo, tmp_path, capsys):
    code = main(["predict", "--model", str(bundle), str(zoo), "--out", str(tmp_path / "p.csv"), "--quiet"])
    frame = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index(
        pd.read_csv(tmp_path / "p.csv")["path"].map(lambda p: p.split("/")[-1]))
    assert code == 3 and "3 of 8 file(s) failed" in capsys.readouterr().err
    for ok in ("good.jpg", "gray.png", "rgba.png", "cmyk.jpg", "rotated.jpg"):
        row = frame.loc[ok]
        assert row["error"] == "" and 0 <= float(row["probability"]) <= 1 and row["decision"] in ("benign", "malignant")
        assert row["decision"] == ("malignant" if float(row["probability"]) >= float(row["threshold"]) else "benign")
    assert "truncated or corrupt" in frame.loc["corrupt.jpg", "error"]
    assert "not an image" in frame.loc["notes.txt", "error"]
    assert "decompression-bomb guard" in frame.loc["huge.png", "error"]
    assert float(frame.loc["rotated.jpg", "probability"]) != pytest.approx(float(frame.loc["good.jpg", "probability"]), abs=1e-7)


def test_csv_of_paths_and_api_inputs_agree(bundle, zoo, tmp_path):
    pd.DataFrame({"path": ["good.jpg", "gray.png"]}).to_csv(zoo / "list.csv", index=False)
    predictor = Predictor.from_bundle(bundle)
    from skinlesion.inference.predict import PredictOptions, predict_files
    frame, failed = predict_files(bundle, [zoo / "list.csv"], opts=PredictOptions(progress=False))
    (zoo / "list.csv").unlink()
    assert failed == 0 and len(frame) == 2
    pil = Image.open(zoo / "good.jpg")
    by_path = predictor.predict([zoo / "good.jpg"])["probability"][0]
    by_pil = predictor.predict([pil])["probability"][0]
    by_array = predictor.predict([np.asarray(pil)])["probability"][0]
    assert by_path == pytest.approx(by_pil, abs=1e-6) == by_array
    assert frame["probability"][0] == pytest.approx(by_path, abs=1e-6)


def test_tta_is_the_mean_over_views_and_a_no_op_on_symmetric_input(bundle):
    predictor = Predictor.from_bundle(bundle)
    model, task = predictor.model, predictor.bundle.task
    x = torch.randn(2, 3, 48, 48)
    p_tta, _ = forward_probs(model, x, task, tta=True)
    manual = torch.stack([forward_probs(model, v, task)[0] for v in tta_views(x, True)]).mean(0)
    assert torch.allclose(p_tta, manual, atol=1e-6)
    assert not torch.allclose(p_tta, forward_probs(model, x, task)[0], atol=1e-6)
    flat = torch.full((1, 3, 48, 48), 0.3)
    assert torch.allclose(forward_probs(model, flat, task, tta=True)[0], forward_probs(model, flat, task)[0], atol=1e-6)


class RedDetector(torch.nn.Module):
    """A backbone whose single feature is the mean redness: the malignant logit rises with red pixels."""

    num_features = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def planted_bundle():
    from skinlesion.data.transforms import Preprocessing
    from skinlesion.inference.bundle import Bundle
    from skinlesion.models.classifier import LesionClassifier
    model = LesionClassifier(RedDetector(), "binary", dropout=0.0)
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
    pre = Preprocessing(32, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Bundle(model.eval(), {"task": "binary", "backbone": {"cam_layer": "conv"}}, pre)


def test_gradcam_highlights_a_planted_region():
    bundle = planted_bundle()
    squares = torch.full((2, 3, 32, 32), 120, dtype=torch.uint8)
    squares[0, 0, 4:10, 20:28] = 250   # a red patch top right
    squares[1, 0, 22:30, 2:8] = 250    # and bottom left
    maps, rgb = gradcam(bundle, squares)
    assert maps.shape == (2, 32, 32) and rgb.shape == (2, 32, 32, 3) and maps.min() >= 0 and maps.max() <= 1
    for m, (ys, xs) in zip(maps, [(slice(4, 10), slice(20, 28)), (slice(22, 30), slice(2, 8))]):
        inside = m[ys, xs].mean()
        outside = (m.sum() - m[ys, xs].sum()) / (m.size - m[ys, xs].size)
        assert inside > 0.8 and outside < 0.2, (inside, outside)
    assert np.abs(maps[0] - maps[1]).mean() > 0.05


def test_explain_writes_overlays_for_a_trained_bundle(bundle, demo_data, zoo, tmp_path, capsys):
    paths = sorted((demo_data / "images").glob("*.jpg"))[:2]
    predictor = Predictor.from_bundle(bundle)
    maps, _ = gradcam(predictor.bundle, torch.stack([predictor.square(p) for p in paths]))
    assert maps.shape == (2, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    code = main(["explain", "--model", str(bundle), *map(str, paths), str(zoo / "notes.txt"), "--out", str(tmp_path / "cam")])
    assert code == 1 and "not an image" in capsys.readouterr().err
    out = Image.open(tmp_path / "cam" / f"{paths[0].stem}_gradcam.png")
    assert out.size == (48, 48) and out.mode == "RGB"


def test_onnx_export_has_dynamic_batch_and_matches_pytorch(bundle, demo_data, tmp_path):
    import onnxruntime as ort
    images = [str(p) for p in sorted((demo_data / "images").glob("*.jpg"))[:3]]
    assert main(["export", "--model", str(bundle), "--out", str(tmp_path / "m.onnx"), "--images", *images]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["preprocessing"]["image_size"] == 48
    predictor = Predictor.from_bundle(bundle)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = torch.randn(n, 3, 48, 48)
        got = session.run(["logits"], {"image": x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - predictor.model(x).numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def client(bundle):
    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    return TestClient(create_app(bundle, max_upload_bytes=200_000))


def _upload(client, data: bytes, name="x.jpg", explain=False):
    return client.post("/api/predict" + ("?explain=1" if explain else ""), files={"file": (name, data, "image/jpeg")})


def test_api_endpoints(client, zoo):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["architecture"] == "simple_cnn" and "threshold" in info and "notice" in info
    r = _upload(client, (zoo / "good.jpg").read_bytes())
    body = r.json()
    assert r.status_code == 200 and 0 <= body["probability"] <= 1 and body["decision"] in ("benign", "malignant")
    assert "gradcam_png_base64" not in body
    r = _upload(client, (zoo / "good.jpg").read_bytes(), explain=True)
    png = Image.open(io.BytesIO(base64.b64decode(r.json()["gradcam_png_base64"])))
    assert png.size == (48, 48)
    page = client.get("/")
    assert page.status_code == 200 and "Research use only" in page.text and "/api/predict" in page.text
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]


def test_api_errors(client, zoo):
    r = _upload(client, b"x" * 300_000)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = _upload(client, b"hello, not an image", name="notes.txt")
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    r = _upload(client, (zoo / "corrupt.jpg").read_bytes(), name="corrupt.jpg")
    assert r.status_code == 422 and "corrupt.jpg" in r.json()["detail"]
    assert client.post("/api/predict").status_code == 422  # no file field
