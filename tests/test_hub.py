"""`skinlesion push` and ``--model hf-hub:ORG/NAME[@rev]`` against a stand-in Hub on 127.0.0.1 (never the real
Hub): the bundle round-trips, timm loads the image model, the cache serves it offline, bad references are clear."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hub_standin import HubStandIn
from conftest import tiny_cfg
from skinlesion.data.run import Run


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    home = tmp_path_factory.mktemp("hfhome")
    with HubStandIn() as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home),
               "HF_TOKEN": "hf_standin", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
        yield server, env


def run(env, *args, code: str | None = None):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "skinlesion", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lite_run(demo_data, tmp_path_factory):
    """A tiny EfficientNet-Lite0 run (random init): a timm architecture, so the timm copy is made."""
    from skinlesion.training.fit import train
    tmp = tmp_path_factory.mktemp("lite")
    train(tiny_cfg(demo_data, tmp, arch="efficientnet_lite0", pretrained=False, image_size=64, epochs=1,
                   phase1_epochs=1, limit_train_batches=1), Run.quiet(tmp / "run"))
    return tmp / "run"


def test_push_then_pull_predicts_the_same(hub, lite_run, demo_data, tmp_path):
    server, env = hub
    r = run(env, "push", "--model", str(lite_run / "bundle"), "--repo", "org/lite")
    assert r.returncode == 0, r.stderr
    files = server.state.repos["org/lite"]["main"]["files"]
    assert {"skinlesion/config.json", "skinlesion/model.safetensors", "config.json", "model.safetensors",
            "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "license: cc-by-nc-4.0" in card and "research use only" in card
    assert "hf-hub:org/lite" in card
    images = sorted(str(p) for p in (demo_data / "images").glob("*.jpg"))[:4]
    local = run(env, "predict", "--model", str(lite_run / "bundle"), *images, "--out", str(tmp_path / "a.csv"))
    pulled = run(env, "predict", "--model", "hf-hub:org/lite", *images, "--out", str(tmp_path / "b.csv"), "--quiet")
    assert local.returncode == 0 and pulled.returncode == 0, pulled.stderr
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a["probability"], b["probability"], atol=0)
    # and from the Hub cache alone: no server needed once downloaded
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    again = run(offline, "predict", "--model", "hf-hub:org/lite", *images, "--out", str(tmp_path / "c.csv"))
    assert again.returncode == 0, again.stderr
    np.testing.assert_allclose(pd.read_csv(tmp_path / "c.csv")["probability"], a["probability"], atol=0)


def test_revision_is_a_branch_of_its_own(hub, lite_run, tmp_path):
    server, env = hub
    assert run(env, "push", "--model", str(lite_run / "bundle"), "--repo", "org/rev", "--revision", "v1").returncode == 0
    assert "skinlesion/config.json" in server.state.repos["org/rev"]["v1"]["files"]
    assert "skinlesion/config.json" not in server.state.repos["org/rev"]["main"]["files"]
    code = ("from skinlesion.inference.bundle import load_bundle; "
            "b = load_bundle('hf-hub:org/rev@v1'); print(b.config['architecture'])")
    r = run(env, code=code)
    assert r.returncode == 0 and r.stdout.strip() == "efficientnet_lite0", r.stderr
    r = run(env, "predict", "--model", "hf-hub:org/rev@v9", str(tmp_path / "x.jpg"), "--out", str(tmp_path / "x.csv"))
    assert r.returncode == 2 and "no revision 'v9'" in r.stderr and "Remedy" in r.stderr


def test_timm_loads_the_image_model_from_the_hub(hub, lite_run, tmp_path):
    _, env = hub
    assert run(env, "push", "--model", str(lite_run / "bundle"), "--repo", "org/timm").returncode == 0
    code = f"""
import numpy as np, timm, torch
from skinlesion.inference.bundle import load_bundle
m = timm.create_model("hf-hub:org/timm", pretrained=True).eval()
b = load_bundle({str(lite_run / 'bundle')!r})
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    print(float((m(x) - b.model(x)).abs().max()), tuple(m(x).shape))
"""
    r = run(env, code=code)
    assert r.returncode == 0, r.stderr
    diff, shape = r.stdout.split(" ", 1)
    assert float(diff) < 1e-5 and shape.strip() == "(2, 1)"


def test_a_repo_without_a_bundle_and_bad_references_are_clear_errors(hub, tmp_path):
    server, env = hub
    server.state.repos["org/empty"] = {}
    server.state.commit("org/empty", "main", {"README.md": b"# not a skinlesion model\n"})
    out = ["--out", str(tmp_path / "p.csv"), str(tmp_path / "x.jpg")]
    r = run(env, "predict", "--model", "hf-hub:org/empty", *out)
    assert r.returncode == 2 and "holds no skinlesion bundle" in r.stderr and "skinlesion push" in r.stderr
    r = run(env, "predict", "--model", "hf-hub:org/nothere", *out)
    assert r.returncode == 2 and "no such model repo" in r.stderr
    r = run(env, "predict", "--model", "hf-hub:not a repo", *out)
    assert r.returncode == 2 and "not a Hub model reference" in r.stderr
    assert "Traceback" not in r.stderr and not Path(tmp_path / "p.csv").exists()


def test_push_refuses_a_folder_that_is_not_a_bundle(hub, tmp_path):
    server, env = hub
    r = run(env, "push", "--model", str(tmp_path), "--repo", "org/none")
    assert r.returncode == 2 and "not a model bundle" in r.stderr
    assert "org/none" not in server.state.repos  # nothing created on the Hub


def test_card_carries_the_test_metrics_with_their_cis():
    from huggingface_hub import ModelCard
    from skinlesion.inference.hub import hub_card
    evaluation = {"split": "test", "at_threshold": {
        "roc_auc": {"value": 0.8885, "ci_low": 0.8596, "ci_high": 0.9151},
        "sensitivity": {"value": 0.82, "ci_low": 0.75, "ci_high": 0.89}}}
    text = hub_card({"architecture": "efficientnet_lite0", "metrics": {"val": {"roc_auc": 0.92}}}, "BODY",
                    {"saved": False, "why": "test"}, "cc-by-nc-4.0", evaluation, "org/x")
    data = ModelCard(text).data.to_dict()
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert (metrics[0]["type"], metrics[0]["value"]) == ("roc_auc", 0.8885)
    assert "0.860-0.915" in metrics[0]["name"] and data["license"] == "cc-by-nc-4.0"
    assert text.rstrip().endswith("BODY") and "hf-hub:org/x" in text
