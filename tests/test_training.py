"""Training on tiny synthetic data: phases, class weights, resume, bundle round trip."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from skinlesion.inference.bundle import load_bundle
from skinlesion.models import get_spec
from skinlesion.models.classifier import parameter_groups
from skinlesion.models.weights import create_backbone
from skinlesion.training.history import HistoryRecorder
from skinlesion.training.fit import train
from skinlesion.training.module import class_weights
from conftest import state, tiny_cfg  # noqa: F401 - re-exported: other test modules import them from here
from skinlesion.data.run import Run


def test_class_weights():
    y = np.array([0] * 30 + [1] * 10)
    assert class_weights(y, "binary").item() == pytest.approx(3.0)
    w = class_weights(np.array([0, 0, 0, 1, 5, 5]), "7class")
    assert w[0] < w[5] < w[1] and w[2] == 0 and w[[0, 1, 5]].mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both classes"):
        class_weights(np.zeros(5), "binary")


def test_two_phases_freeze_then_train_last_groups_and_write_a_complete_run(demo_data, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tiny_cfg(demo_data, tmp_path, arch="efficientnet_lite0", image_size=64, epochs=2, pretrained=True)
    result = train(cfg, Run.quiet(run))
    out = capsys.readouterr().out
    split = Run(run).load_split()
    ratio = (split.query("split == 'train'")["label"] == 0).sum() / split.query("split == 'train'")["label"].sum()
    assert f"pos_weight = benign/malignant = {ratio:.3f}" in out

    init = create_backbone(get_spec("efficientnet_lite0"), pretrained=True).state_dict()
    p1, p2 = state(run / "checkpoints/phase1/last.ckpt"), state(run / "checkpoints/phase2/last.ckpt")
    for k, v in init.items():  # phase 1: backbone weights AND BatchNorm statistics untouched
        assert torch.equal(p1[f"backbone.{k}"], v), k
    assert not torch.equal(p1["head.weight"], p2["head.weight"])
    groups = parameter_groups(create_backbone(get_spec("efficientnet_lite0"), pretrained=False))
    trained = {n for g in groups[-2:] for n in g}
    for name in {n for g in groups for n in g}:
        changed = not torch.equal(p1[f"backbone.{name}"], p2[f"backbone.{name}"])
        assert changed == (name in trained), name
    frozen_bn = "backbone.blocks.0.0.bn1.running_mean"
    assert torch.equal(p1[frozen_bn], p2[frozen_bn])  # frozen BN stays in eval mode in phase 2

    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "split.csv", "split.json", "metrics.csv", "val_predictions.csv", "checkpoints", "plots", "bundle"} <= names
    history = pd.read_csv(run / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2] and history["phase"].tolist() == [1, 2]
    assert history["lr"].tolist() == pytest.approx([1e-3, 1e-4])
    assert (run / "plots/training_history.png").stat().st_size > 1000
    preds = pd.read_csv(run / "val_predictions.csv")
    assert list(preds.columns) == ["image_id", "lesion_id", "dx", "label", "probability"]
    assert set(preds["image_id"]) == set(split.query("split == 'val'")["image_id"])
    assert preds["probability"].between(0, 1).all()
    config = json.loads((run / "bundle/config.json").read_text())
    assert config["architecture"] == "efficientnet_lite0" and config["preprocessing"]["image_size"] == 64
    assert config["threshold"]["value"] == 0.5 and config["metrics"]["val"]["roc_auc"] == pytest.approx(result.val_metrics["roc_auc"])
    assert config["training_data"]["split_lesion_hash"] == json.loads((run / "split.json").read_text())["lesion_hash"]["all"]


def test_bundle_round_trip_gives_the_same_outputs(demo_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(demo_data, tmp_path, epochs=1), Run.quiet(run))
    bundle = load_bundle(run / "bundle")
    x = torch.randn(3, 3, 32, 32)
    ckpt = run / json.loads((run / "checkpoints/best.json").read_text())["best_path"]  # relative to the run
    from skinlesion.models import build_model
    ref = build_model(get_spec("simple_cnn", 32), pretrained=False)
    ref.load_state_dict(state(ckpt))
    with torch.no_grad():
        assert torch.allclose(bundle.model(x), ref.eval()(x), atol=1e-6)
    preds = pd.read_csv(run / "val_predictions.csv")
    first = preds.iloc[0]
    split = Run(run).load_split()
    path = next((demo_data / "images").glob(f"{first['image_id']}.jpg"))
    pre = bundle.preprocessing
    with torch.no_grad():
        p = torch.sigmoid(bundle.model(pre.eval_transform()(pre.load(path))[None]))[0, 0].item()
    assert p == pytest.approx(first["probability"], abs=1e-5)  # inference preprocessing == training's
    assert len(split) > 0


def test_resume_continues_an_interrupted_run_to_the_same_state(demo_data, tmp_path, monkeypatch, capsys):
    cfg = tiny_cfg(demo_data, tmp_path, epochs=4, phase1_epochs=1)
    train(cfg, Run.quiet(tmp_path / "full"))

    original = HistoryRecorder.on_train_epoch_end

    def crash_after_epoch_2(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if self.epoch_offset + trainer.current_epoch + 1 == 3:  # mid phase 2, after its first checkpoint
            raise RuntimeError("simulated crash")
    monkeypatch.setattr(HistoryRecorder, "on_train_epoch_end", crash_after_epoch_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, Run.quiet(tmp_path / "cut"))
    monkeypatch.setattr(HistoryRecorder, "on_train_epoch_end", original)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, Run.quiet(tmp_path / "cut"))
    capsys.readouterr()
    train(cfg, Run.quiet(tmp_path / "cut"), resume=True)
    out = capsys.readouterr().out
    assert "phase 1: already complete" in out and "resuming from" in out and "phase2/last.ckpt" in out

    a, b = state(tmp_path / "full/checkpoints/phase2/last.ckpt"), state(tmp_path / "cut/checkpoints/phase2/last.ckpt")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    ha, hb = pd.read_csv(tmp_path / "full/metrics.csv"), pd.read_csv(tmp_path / "cut/metrics.csv")
    assert hb["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(ha["val_roc_auc"], hb["val_roc_auc"], atol=1e-6)
    np.testing.assert_allclose(ha["lr"], hb["lr"])


def test_seven_class_single_phase_balanced_sampler_and_a_fold(demo_data, tmp_path, capsys):
    from skinlesion.cli import main
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    assert main(["prepare", "--data", str(demo_data), "--out", str(tmp_path / "run"), "--folds", "3", "--quiet"]) == 0
    cfg = tiny_cfg(demo_data, tmp_path, task="7class", phases=1, epochs=1, balanced_sampler=True, fold=1)
    result = train(cfg, Run.quiet(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "balanced sampler (no loss weight)" in out and "training the last 4 of 4" in out
    preds = pd.read_csv(tmp_path / "run/val_predictions.csv")
    split = pd.read_csv(tmp_path / "run/split.csv")
    assert set(preds["image_id"]) == set(split.loc[split["fold"] == 1, "image_id"])  # fold 1 validated
    dx_cols = [f"p_{d}" for d in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")]
    assert np.allclose(preds[dx_cols].sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(preds["probability"], preds[["p_akiec", "p_bcc", "p_mel"]].sum(axis=1), atol=1e-5)
    assert json.loads((tmp_path / "run/bundle/config.json").read_text())["class_names"][4] == "mel"
    assert 0 <= result.val_metrics["roc_auc"] <= 1
    m = evaluate_run(tmp_path / "run", opts=EvalOptions(n_boot=20, num_workers=0, progress=False, tta=True)).metrics
    assert m["tta"] is True and m["task"] == "7class" and m["n_images"] == int((split["split"] == "test").sum())


def test_logs_that_are_not_a_terminal_get_one_line_per_epoch(demo_data, tmp_path):
    import os
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "skinlesion", "train", "--data", str(demo_data), "--out", str(tmp_path / "run"),
           "--arch", "simple_cnn", "--image-size", "32", "--epochs", "2", "--phase1-epochs", "1", "--num-workers", "0",
           "--cache-dir", str(tmp_path / "cache"), "--limit-train-batches", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "\r" not in text and "Tip" not in text and "litmodels" not in text
    lines = [line for line in out.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"] and "val ROC-AUC" in lines[0]
