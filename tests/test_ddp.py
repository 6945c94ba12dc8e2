"""Two CPU processes (gloo) with Lightning's DDP: validation predictions are gathered from both ranks
with every val image exactly once (DistributedSampler's padding removed)."""
import os
import subprocess
import sys

import pandas as pd

from skinlesion.config import RunConfig
from skinlesion.data.prepare import prepare


def _odd_val_split(demo_data, run):
    """A split whose val set has an odd number of images, so 2 ranks need a padded sample."""
    import dataclasses
    for ratios in ((0.7, 0.15, 0.15), (0.65, 0.2, 0.15), (0.6, 0.25, 0.15), (0.55, 0.3, 0.15)):
        cfg = RunConfig()
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(demo_data)),
                                  split=dataclasses.replace(cfg.split, ratios=ratios))
        split = prepare(cfg, run, progress=False).split
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


def test_ddp_two_processes_gather_each_val_image_once(demo_data, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    split = _odd_val_split(demo_data, single)
    _odd_val_split(demo_data, ddp)
    _train(single, tmp_path / "cache", "--devices", "1")
    _train(ddp, tmp_path / "cache", "--devices", "2", "--strategy", "ddp")
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
