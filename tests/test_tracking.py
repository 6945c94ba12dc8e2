"""Experiment tracking: each logger writes what it should, offline — CSV and TensorBoard per epoch, MLflow
(local file store) and W&B (offline mode) with hyper-parameters, per-epoch metrics, final validation and
test metrics and the bundle as an artifact. Skipped with a reason when an extra is not installed."""
from __future__ import annotations

import glob
import json
import struct

import pandas as pd
import pytest

from skinlesion.cli import main


def _tb_scalars(path) -> dict[str, list[float]]:
    """Scalars of a TensorBoard event file (TFRecord framing: length, crc, payload, crc)."""
    from tensorboardX.proto.event_pb2 import Event
    data, pos, out = open(path, "rb").read(), 0, {}
    while pos + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        ev = Event()
        ev.ParseFromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        for v in ev.summary.value:
            out.setdefault(v.tag, []).append(v.simple_value)
    return out


def _wandb_records(path):
    """Records of an offline W&B run file (LevelDB-style log: 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2
    data, pos, buf = open(path, "rb").read(), 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec


@pytest.fixture(scope="module")
def tracked_run(demo_data, tmp_path_factory):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'skinlesion[mlflow]')")
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'skinlesion[wandb]')")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    run = tmp_path_factory.mktemp("tracked") / "run"
    args = ["--data", str(demo_data), "--out", str(run), "--arch", "simple_cnn", "--image-size", "32", "--recipe",
            "classic", "--epochs", "3", "--phase1-epochs", "1", "--limit-train-batches", "3", "--num-workers", "0",
            "--cache-dir", str(run.parent / "cache"), "--quiet"]
    assert main(["train", *args, "--logger", "csv,tensorboard,mlflow,wandb"]) == 0
    assert main(["evaluate", str(run), "--bootstrap", "20", "--num-workers", "0", "--quiet"]) == 0
    yield run
    mp.undo()


def test_csv_and_tensorboard_have_every_epoch(tracked_run):
    history = pd.read_csv(tracked_run / "metrics.csv")
    for phase in (1, 2):
        epochs = list(history.loc[history["phase"] == phase, "val_roc_auc"])
        final = 1 if phase == 2 else 0  # the last trainer also logs the final validation of the chosen weights
        csv = pd.read_csv(tracked_run / "logs" / f"phase{phase}" / "metrics.csv")
        assert list(csv["val/roc_auc"].dropna())[:len(epochs)] == pytest.approx(epochs, abs=1e-6)
        assert csv["val/roc_auc"].notna().sum() == len(epochs) + final
        events = sorted(glob.glob(str(tracked_run / "logs" / f"phase{phase}" / "events.out.tfevents.*")))
        assert events  # (the final validation may open a second file)
        tb = [v for e in events for v in _tb_scalars(e).get("val/roc_auc", [])]
        assert tb[:len(epochs)] == pytest.approx(epochs, abs=1e-6) and len(tb) == len(epochs) + final


def test_mlflow_run_holds_params_epochs_final_and_test_metrics_and_the_bundle(tracked_run):
    import os
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient
    state = json.loads((tracked_run / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.data.params["train.arch"] == "simple_cnn" and run.data.params["train.recipe"] == "classic"
    history = pd.read_csv(tracked_run / "metrics.csv")
    # both phases in one run (and the final validation of the chosen weights)
    assert len(client.get_metric_history(state["run_id"], "val/roc_auc")) == len(history) + 1
    bundle = json.loads((tracked_run / "bundle" / "config.json").read_text())
    assert run.data.metrics["final_val_roc_auc"] == pytest.approx(bundle["metrics"]["val"]["roc_auc"])
    test = json.loads((tracked_run / "metrics.json").read_text())["at_threshold"]
    assert run.data.metrics["test_roc_auc"] == pytest.approx(test["roc_auc"]["value"])
    assert {a.path for a in client.list_artifacts(state["run_id"], "bundle")} >= {"bundle/config.json",
                                                                                  "bundle/model.safetensors"}


def test_wandb_offline_run_holds_config_history_summary_and_artifact(tracked_run):
    state = json.loads((tracked_run / "tracking.json").read_text())["wandb"]
    assert state["mode"] == "offline"
    files = sorted(glob.glob(str(tracked_run / "wandb" / f"offline-run-*-{state['id']}" / "*.wandb")))
    assert len(files) == 2  # training, then evaluate resuming the same run id
    train_recs, eval_recs = list(_wandb_records(files[0])), list(_wandb_records(files[1]))
    config = {u.key: json.loads(u.value_json) for r in train_recs if r.WhichOneof("record_type") == "config"
              for u in r.config.update}
    assert config["train.arch"] == "simple_cnn"
    history = [h for r in train_recs if r.WhichOneof("record_type") == "history" for h in r.history.item
               if (h.key or "/".join(h.nested_key)) == "val/roc_auc"]
    assert len(history) == len(pd.read_csv(tracked_run / "metrics.csv")) + 1
    assert any(r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model" for r in train_recs)
    summary = {u.key: json.loads(u.value_json) for r in eval_recs if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update}
    test = json.loads((tracked_run / "metrics.json").read_text())["at_threshold"]
    assert summary["test_roc_auc"] == pytest.approx(test["roc_auc"]["value"])


def test_unknown_or_missing_logger_is_a_clear_error(demo_data, tmp_path, capsys):
    assert main(["train", "--data", str(demo_data), "--out", str(tmp_path / "r"), "--logger", "csv,neptune"]) == 2
    err = capsys.readouterr().err
    assert "train.logger" in err and "csv, tensorboard, mlflow, wandb" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["{not json", '{"mlflow": {"run_id": 3}}', "[1, 2]"])
def test_damaged_tracking_record_stops_evaluate_before_it_writes(tracked_run, tmp_path, capsys, text):
    """A damaged tracking.json is named with a remedy (not silently ignored, which would drop the test
    metrics from the tracker run), and evaluate writes nothing before saying so."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tracked_run, run, ignore=shutil.ignore_patterns("mlruns", "wandb"))
    (run / "tracking.json").write_text(text)
    before = (run / "metrics.json").read_bytes()
    assert main(["evaluate", str(run), "--bootstrap", "20", "--num-workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tracking.json" in err and "Remedy: delete" in err
    assert (run / "metrics.json").read_bytes() == before
    (run / "tracking.json").unlink()  # the remedy works
    assert main(["evaluate", str(run), "--bootstrap", "20", "--num-workers", "0", "--quiet"]) == 0
