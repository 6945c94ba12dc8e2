"""Shades-of-gray colour constancy: what it does to pixels, and that training, the cache, predict, serve and
the ONNX export apply the very same step (parity)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from skinlesion.cli import main
from skinlesion.data.cache import build_cache
from skinlesion.data.transforms import Preprocessing, shades_of_gray
from skinlesion.inference.predictor import Predictor
from skinlesion.training.fit import train
from conftest import tiny_cfg
from skinlesion.data.run import Run


def _minkowski(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    return x.float().pow(p).mean(dim=(-2, -1)).pow(1 / p)


def test_a_colour_cast_is_removed_and_grey_is_left_alone():
    rng = np.random.RandomState(0)
    scene = torch.from_numpy(rng.randint(40, 200, (3, 64, 64))).float()
    grey = scene.mean(0, keepdim=True).repeat(3, 1, 1).round()
    cast = (grey * torch.tensor([1.2, 0.9, 0.6]).view(3, 1, 1)).round()
    est = _minkowski(shades_of_gray(cast))
    assert (est.max() - est.min()) / est.mean() < 0.02  # the estimated illuminant is now neutral
    assert _minkowski(cast).max() / _minkowski(cast).min() > 1.9  # ... and it was not before
    assert torch.equal(shades_of_gray(grey), grey)  # a neutral image keeps its values
    out = shades_of_gray(cast)
    assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())


def test_preprocessing_applies_it_to_the_square_and_caches_separately(tmp_path):
    img = Image.fromarray(np.random.RandomState(1).randint(0, 255, (90, 120, 3), dtype=np.uint8))
    img.save(tmp_path / "a.png")
    plain = Preprocessing(32, 36, (0.5,) * 3, (0.25,) * 3)
    cc = Preprocessing(32, 36, (0.5,) * 3, (0.25,) * 3, "shades_of_gray")
    assert torch.equal(cc.square(img), shades_of_gray(plain.square(img)).to(torch.uint8))
    assert not torch.equal(cc.square(img), plain.square(img))
    a, b = build_cache([str(tmp_path / "a.png")], plain, tmp_path / "c", progress=False), \
        build_cache([str(tmp_path / "a.png")], cc, tmp_path / "c", progress=False)
    assert a != b and "shades_of_gray" in b.name
    assert np.array_equal(np.load(b)[0], cc.load(tmp_path / "a.png").numpy())


@pytest.fixture(scope="module")
def cc_bundle(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cc")
    train(tiny_cfg(demo_data, tmp, epochs=1, phases=1, lr=1e-2, image_size=40, colour_constancy=True), Run.quiet(tmp / "run"))
    return tmp / "run" / "bundle"


def test_bundle_records_it_and_predict_serve_onnx_agree(cc_bundle, demo_data, tmp_path):
    import onnxruntime as ort
    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    config = json.loads((cc_bundle / "config.json").read_text())
    assert config["preprocessing"]["colour_constancy"] == "shades_of_gray"
    paths = sorted((demo_data / "images").glob("*.jpg"))[:4]
    predictor = Predictor.from_bundle(cc_bundle, calibrated=False)
    pre = predictor.bundle.preprocessing
    # predict == the model on colour-constant squares (the same pixels training cached)
    x = torch.stack([pre.eval_transform()(pre.load(p)) for p in paths])
    with torch.no_grad():
        manual = torch.sigmoid(predictor.model(x)[:, 0]).numpy()
    got = predictor.predict_paths([str(p) for p in paths], 0, False)["probability"].to_numpy()
    assert np.abs(got - manual).max() < 1e-6
    # and without colour constancy the model would say something else (compared as logits: a tiny model's
    # sigmoid may saturate)
    plain = Preprocessing(pre.image_size, pre.resize_size, pre.mean, pre.std)
    with torch.no_grad():
        other = predictor.model(torch.stack([plain.eval_transform()(plain.load(p)) for p in paths]))[:, 0]
        logits = predictor.model(x)[:, 0]
    assert (other - logits).abs().max().item() > 1e-4
    # serve
    client = TestClient(create_app(cc_bundle))
    r = client.post("/api/predict", files={"file": ("x.jpg", paths[0].read_bytes(), "image/jpeg")})
    assert r.status_code == 200 and abs(r.json()["probability"] - manual[0]) < 1e-6
    # ONNX: the graph runs colour constancy itself on the raw square; parity with PyTorch on real images
    assert main(["export", "--model", str(cc_bundle), "--out", str(tmp_path / "m.onnx"),
                 "--images", *map(str, paths)]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["parity_max_abs_diff"] <= 1e-4 and "colour constancy" in meta["input"]
    raw = Preprocessing(pre.image_size, pre.resize_size, pre.mean, pre.std)
    squares = torch.stack([raw.load(p) for p in paths]).float().numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": squares})[0][:, 0]
    assert np.abs(1 / (1 + np.exp(-logits)) - manual).max() < 1e-4
