"""Two CPU processes (gloo) with Lightning's DDP: validation predictions are gathered from both ranks
with every val image exactly once (DistributedSampler's padding removed)."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from skinlesion.config import RunConfig
from skinlesion.data.prepare import prepare
from skinlesion.data.run import Run


def _odd_val_split(demo_data, run):
    """A split whose val set has an odd number of images, so 2 ranks need a padded sample."""
    import dataclasses
    for ratios in ((0.7, 0.15, 0.15), (0.65, 0.2, 0.15), (0.6, 0.25, 0.15), (0.55, 0.3, 0.15)):
        cfg = RunConfig()
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(demo_data)),
                                  split=dataclasses.replace(cfg.split, ratios=ratios))
        split = prepare(cfg, Run.quiet(run)).split
        if (split["split"] == "val").sum() % 2 == 1:
            return split
    raise AssertionError("no ratio gave an odd validation set")


def _train(run, cache, *extra):
    cmd = [sys.executable, "-m", "skinlesion", "train", "--out", str(run), "--arch", "simple_cnn", "--image-size", "32",
           "--epochs", "2", "--phase1-epochs", "1", "--num-workers", "0", "--cache-dir", str(cache), "--quiet",
           "--accelerator", "cpu", "--batch-size", "8", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("device_path", [[], ["--gpu-augment", "--device-cache"]], ids=["loaders", "device-cache"])
def test_ddp_two_processes_gather_each_val_image_once(demo_data, tmp_path, device_path):
    """Also with the GPU recipe's device-resident batches (here on CPU tensors): each rank its shard."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    split = _odd_val_split(demo_data, single)
    _odd_val_split(demo_data, ddp)
    _train(single, tmp_path / "cache", "--devices", "1", *device_path)
    _train(ddp, tmp_path / "cache", "--devices", "2", "--strategy", "ddp", *device_path)
    val_ids = split.loc[split["split"] == "val", "image_id"]
    for run in (single, ddp):
        preds = pd.read_csv(run / "val_predictions.csv")
        assert len(preds) == len(val_ids) and preds["image_id"].is_unique
        assert set(preds["image_id"]) == set(val_ids)
        assert preds["probability"].between(0, 1).all()
    a, b = pd.read_csv(single / "val_predictions.csv"), pd.read_csv(ddp / "val_predictions.csv")
    assert list(a["image_id"]) == list(b["image_id"])
    history = pd.read_csv(ddp / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]  # written once, by rank 0
    assert (ddp / "bundle" / "model.safetensors").is_file()


def _cli(args, env_extra=None, launcher=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    prefix = launcher or [sys.executable, "-m", "skinlesion"]
    return subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_ddp_run_finishes_cleanly_on_every_rank_and_rank_0_evaluates(demo_data, tmp_path, launcher):
    """`skinlesion run` under 2 gloo processes: no rank crashes at the end (non-zero ranks return
    quietly), and rank 0 tunes the threshold and evaluates the test split."""
    run = tmp_path / "run"
    args = ["run", "--data", str(demo_data), "--out", str(run), "--arch", "simple_cnn", "--image-size", "32",
            "--epochs", "1", "--num-workers", "0", "--cache-dir", str(tmp_path / "cache"), "--quiet",
            "--accelerator", "cpu", "--batch-size", "16", "--devices", "2", "--strategy", "ddp"]
    if launcher == "torchrun":
        out = _cli(args, launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                   "--master-port", str(_free_port()), "-m", "skinlesion"])
    else:
        out = _cli(args)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "Traceback" not in text and "None" not in out.stdout, text[-4000:]
    assert out.stdout.count("report:") == 1  # rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_images"] == int((pd.read_csv(run / "split.csv")["split"] == "test").sum())
    assert json.loads((run / "bundle/config.json").read_text())["threshold"]["target_sensitivity"] == 0.9


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
