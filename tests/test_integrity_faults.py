"""Faults that need more than one command: partial success, bounded memory, concurrent Grad-CAM, the
service's statuses, fold binding, resume safety, operating points under TTA and calibration."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skinlesion.cli import main
from skinlesion.data.run import Run
from skinlesion.evaluation.evaluate import evaluate_run
from skinlesion.evaluation.site_data import EvalOptions
from skinlesion.evaluation.tune import tune_threshold
from skinlesion.inference.predictor import Predictor
from skinlesion.training.fit import train
from conftest import tiny_cfg


def _copy(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def zoo(demo_data, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faultzoo")
    good = sorted((demo_data / "images").glob("*.jpg"))
    shutil.copy(good[0], d / "good1.jpg")
    shutil.copy(good[1], d / "good2.jpg")
    Image.new("L", (1, 1_000_000)).save(d / "strip.png")  # ~200 bytes; 36 GB if resized naively
    Image.new("L", (30_000, 1)).save(d / "wide.png")
    raw = good[2].read_bytes()
    (d / "corrupt.jpg").write_bytes(raw[: len(raw) // 3])
    return d


def test_predict_keeps_going_past_strips_and_corrupt_files(base, zoo, tmp_path, capsys):
    code = main(["predict", "--model", str(base / "bundle"), str(zoo), "--out", str(tmp_path / "p.csv"), "--quiet"])
    frame = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    frame.index = frame["path"].map(lambda p: Path(p).name)
    assert code == 3 and "3 of 5 file(s) failed" in capsys.readouterr().err
    for ok in ("good1.jpg", "good2.jpg"):
        assert frame.loc[ok, "error"] == "" and 0 <= float(frame.loc[ok, "probability"]) <= 1
    assert "aspect ratio of 1,000,000.0:1" in frame.loc["strip.png", "error"]
    assert "aspect ratio" in frame.loc["wide.png", "error"]
    assert "truncated or corrupt" in frame.loc["corrupt.jpg", "error"]


BOMB_SCRIPT = r"""
import resource, sys
from skinlesion.data.run import Run
from skinlesion.inference.predictor import Predictor
p = Predictor.from_bundle(sys.argv[1])
p.predict_paths([sys.argv[2]], progress=False)  # warm up: model, allocator, thread pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 1_500_000_000, hard))  # 1.5 GB above what is mapped now
out = p.predict_paths(sys.argv[3:] + [sys.argv[2]], progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(out["error"].tolist())
print("RSS_GROWTH_KB", after - before)
"""


def test_aspect_ratio_bombs_use_bounded_memory(base, zoo):
    """Under an address-space cap 1.5 GB above the warmed-up process, the strip and the wide PNG get
    error rows, the good image still gets its prediction, and resident memory barely moves."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(base / "bundle"), str(zoo / "good1.jpg"),
                          str(zoo / "strip.png"), str(zoo / "wide.png")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    errors = eval(out.stdout.splitlines()[0])  # a printed list of strings
    assert "aspect ratio" in errors[0] and "aspect ratio" in errors[1] and errors[2] == ""
    growth = int(out.stdout.split("RSS_GROWTH_KB")[1])
    assert growth < 200_000, f"resident memory grew by {growth} KB"


def test_gradcam_is_right_while_plain_predictions_run(base, zoo):
    """Explain requests under concurrent predict load give exactly the stand-alone overlay."""
    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    images = [(zoo / "good1.jpg").read_bytes(), (zoo / "good2.jpg").read_bytes()]
    with TestClient(create_app(base / "bundle")) as solo:
        expected = [solo.post("/api/predict?explain=1", files={"file": ("x.jpg", im, "image/jpeg")}).json()
                    ["gradcam_png_base64"] for im in images]
    assert expected[0] != expected[1]
    with TestClient(create_app(base / "bundle")) as client:
        stop, errors, got = threading.Event(), [], []

        def load():
            while not stop.is_set():
                r = client.post("/api/predict", files={"file": ("y.jpg", images[1], "image/jpeg")})
                if r.status_code != 200:
                    errors.append(r.status_code)
        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        try:
            for i in range(6):
                r = client.post("/api/predict?explain=1", files={"file": ("x.jpg", images[i % 2], "image/jpeg")})
                got.append((i % 2, r.json()["gradcam_png_base64"]))
        finally:
            stop.set()
            for w in workers:
                w.join()
    assert not errors
    for which, png in got:
        assert png == expected[which]
    cam = np.asarray(Image.open(__import__("io").BytesIO(base64.b64decode(expected[0]))))
    assert cam.std() > 1  # a real map, not a flat (all-zero) one


def test_api_statuses_for_hostile_uploads(base, zoo):
    from fastapi.testclient import TestClient
    from skinlesion.serving.app import create_app
    with TestClient(create_app(base / "bundle", max_upload_bytes=200_000)) as client:
        def up(data, name="x.png"):
            return client.post("/api/predict", files={"file": (name, data, "image/png")})
        for name, status, text in (("strip.png", 422, "aspect ratio"), ("wide.png", 422, "aspect ratio"),
                                   ("corrupt.jpg", 422, "corrupt")):
            r = up((zoo / name).read_bytes(), name)
            assert r.status_code == status and text in r.json()["detail"], (name, r.text)
        assert up(b"").status_code in (415, 422)
        assert up(b"GIF89a not really").status_code in (415, 422)

        def chunks():  # a chunked upload (no Content-Length) far over the limit
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(100):
                yield b"x" * 10_000
        r = client.post("/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        r = client.post("/api/predict", content=b"abc", headers={"content-length": "abc",
                                                                  "content-type": "multipart/form-data; boundary=b"})
        assert r.status_code in (400, 413)
        assert up((zoo / "good1.jpg").read_bytes(), "good.jpg").status_code == 200  # still serving


def test_fold_runs_tune_calibrate_and_evaluate_on_their_own_fold(demo_data, tmp_path):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--folds", "3", "--quiet"]) == 0
    train(tiny_cfg(demo_data, tmp_path, epochs=1, fold=2), Run.quiet(run))
    split = pd.read_csv(run / "split.csv", dtype=str)
    fold2 = set(split.loc[split["fold"] == "2", "image_id"])
    tune_threshold(run, 0.9)
    evaluate_run(run, "val", calibrate=True, opts=EvalOptions(n_boot=10, num_workers=0, progress=False))
    val = pd.read_csv(run / "eval-val" / "val_predictions.csv", dtype=str)
    assert set(val["image_id"]) == fold2 and set(pd.read_csv(run / "val_predictions.csv", dtype=str)["image_id"]) == fold2
    assert json.loads((run / "eval-val" / "metrics_val.json").read_text())["fold"] == 2
    bundle = json.loads((run / "bundle/config.json").read_text())
    assert bundle["calibration"]["fold"] == 2 and bundle["threshold"]["fold"] == 2
    before = (run / "val_predictions.csv").read_bytes()
    evaluate_run(run, "val", opts=EvalOptions(n_boot=10, num_workers=0, progress=False))
    assert (run / "val_predictions.csv").read_bytes() == before  # training artifacts are never overwritten


def test_resume_of_a_finished_tuned_run_keeps_threshold_and_calibration(base, tmp_path):
    run = _copy(base, tmp_path)
    evaluate_run(run, calibrate=True, opts=EvalOptions(n_boot=10, num_workers=0, progress=False))
    before = json.loads((run / "bundle/config.json").read_text())
    assert before["threshold"]["target_sensitivity"] == 0.9 and before["calibration"]["slope"] > 0
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0  # config.yaml supplies every setting
    after = json.loads((run / "bundle/config.json").read_text())
    assert after["threshold"] == before["threshold"] and after["calibration"] == before["calibration"]


def test_a_copied_run_resumes_from_its_own_checkpoints(base, tmp_path):
    """Checkpoint paths are stored relative to the run: a copy never reads the original's weights."""
    run = _copy(base, tmp_path)
    phase = json.loads((run / "checkpoints/phase1/phase.json").read_text())
    assert not Path(phase["best_path"]).is_absolute()
    (run / "checkpoints/phase2/phase.json").unlink()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert json.loads((run / "checkpoints/best.json").read_text())["best_path"].startswith("checkpoints/")


def test_threshold_tuned_with_tta_holds_for_tta_and_calibration_never_flips_a_decision(base, tmp_path):
    run = _copy(base, tmp_path)
    result = tune_threshold(run, 0.9, tta=True)
    assert result["tta"] is True
    m = evaluate_run(run, calibrate=True, opts=EvalOptions(tta=True, n_boot=10, num_workers=0, progress=False)).metrics
    assert m["tta"] is True
    with pytest.raises(Exception, match="tuned with test-time augmentation"):
        Predictor.from_bundle(run / "bundle", tta=False)
    predictor = Predictor.from_bundle(run / "bundle", tta=True)
    t = predictor.bundle.threshold
    raw = np.array([t, np.nextafter(t, 0), np.nextafter(t, 1)])  # exactly on, just under, just over
    frame = predictor.to_frame(raw, np.stack([1 - raw, raw], 1))
    assert frame["decision"].tolist() == ["malignant", "benign", "malignant"]


def test_calibrated_seven_class_columns_sum_to_the_probability():
    from skinlesion.evaluation.calibration import apply_temperature, rescale_classes
    rng = np.random.default_rng(0)
    classes = rng.dirichlet(np.ones(7), 50)
    p = classes[:, [0, 1, 4]].sum(1)
    q = apply_temperature(p, 2.5)
    c = rescale_classes(classes, p, q)
    np.testing.assert_allclose(c[:, [0, 1, 4]].sum(1), q, atol=1e-9)
    np.testing.assert_allclose(c.sum(1), 1.0, atol=1e-9)


def test_phase_two_does_not_replay_phase_one_augmentation(demo_data, tmp_path):
    from skinlesion.data.cache import build_cache
    from skinlesion.data.run import open_run
    from skinlesion.data.transforms import Preprocessing
    from skinlesion.models import get_spec
    from skinlesion.training.loaders import build_data
    cfg = tiny_cfg(demo_data, tmp_path)
    assert main(["prepare", "--data", str(demo_data), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    split = open_run(tmp_path / "r").with_paths(demo_data)
    pre = Preprocessing.for_spec(get_spec("simple_cnn", 32))
    data = build_data(split, build_cache(split["path"].tolist(), pre, tmp_path / "c", 0, False), pre, cfg.train, False)
    first = [next(iter(data.train_loader(cfg.train.seed + 1000 * phase)))[0] for phase in (1, 2)]
    again = next(iter(data.train_loader(cfg.train.seed + 1000)))[0]
    assert torch.equal(first[0], again) and not torch.equal(first[0], first[1])


def test_a_killed_cache_build_leaves_no_orphan(tmp_path):
    from skinlesion.data.cache import build_cache
    from skinlesion.data.transforms import Preprocessing
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".images-64px-1-abc.{dead.pid}.tmp.npy"
    orphan.write_bytes(b"x" * 1000)
    live = tmp_path / f".images-64px-1-abc.{os.getpid()}.tmp.npy"  # our own build in progress: kept
    live.write_bytes(b"x")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(img)
    build_cache([str(img)], Preprocessing(32, 36, (0.5,) * 3, (0.5,) * 3), tmp_path, 0, False)
    assert not orphan.exists() and live.exists()


def test_interrupt_and_internal_errors_are_one_line(monkeypatch, capsys, tmp_path):
    import skinlesion.commands.prepare as verb

    def boom(args, cfg):
        raise KeyboardInterrupt
    monkeypatch.setattr(verb, "main", boom)
    assert main(["prepare", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err

    def bug(args, cfg):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(verb, "main", bug)
    assert main(["prepare", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error (ZeroDivisionError" in err and "SKINLESION_DEBUG=1" in err


def test_suggested_allow_missing_value_works(demo_data, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(demo_data, data)
    for p in sorted((data / "images").glob("*.jpg"))[:1]:
        p.unlink()
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err
    value = err.split("--allow-missing ")[1].split()[0]
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "b"), "--allow-missing", value, "--quiet"]) == 0


def test_explain_writes_one_overlay_per_input_even_with_the_same_name(base, demo_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    imgs = sorted((demo_data / "images").glob("*.jpg"))
    shutil.copy(imgs[0], a / "x.jpg")
    shutil.copy(imgs[1], b / "x.jpg")
    assert main(["explain", "--model", str(base / "bundle"), str(a / "x.jpg"), str(b / "x.jpg"), "--out",
                 str(tmp_path / "cam"), "--quiet"]) == 0
    outs = sorted((tmp_path / "cam").glob("*.png"))
    assert len(outs) == 2 and outs[0].read_bytes() != outs[1].read_bytes()
