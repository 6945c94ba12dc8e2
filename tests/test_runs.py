"""`skinlesion runs`: statuses and figures read from each run's own files (no training needed)."""
import json
import os
import time

import yaml

from skinlesion.cli import main
from skinlesion.evaluation.runs import runs_table


def _run(path, arch="simple_cnn", bundle=None, metrics=None, ckpt_age_s=None):
    path.mkdir(parents=True)
    (path / "split.csv").write_text("image_id,lesion_id,dx,label,split\n")
    (path / "config.yaml").write_text(yaml.safe_dump({"train": {"arch": arch, "epochs": 3, "recipe": "classic"}}))
    if ckpt_age_s is not None:
        (path / "checkpoints/phase1").mkdir(parents=True)
        ckpt = path / "checkpoints/phase1/last.ckpt"
        ckpt.write_bytes(b"x")
        os.utime(ckpt, (time.time() - ckpt_age_s,) * 2)
    if bundle is not None:
        (path / "bundle").mkdir()
        (path / "bundle/config.json").write_text(json.dumps(bundle))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))


def test_runs_lists_every_status_and_sorts_by_a_metric(tmp_path, capsys):
    b = lambda auc: {"architecture": "simple_cnn", "task": "binary", "preprocessing": {"image_size": 32},
                     "threshold": {"value": 0.4}, "metrics": {"val": {"roc_auc": auc}}, "recipe": {"recipe": "modern"}}
    m = lambda auc: {"split": "test", "at_threshold": {"roc_auc": {"value": auc, "ci_low": auc - 0.05, "ci_high": auc + 0.05}}}
    _run(tmp_path / "a", bundle=b(0.80), metrics=m(0.78), ckpt_age_s=5000)
    _run(tmp_path / "b", bundle=b(0.90), metrics=m(0.88), ckpt_age_s=5000)
    _run(tmp_path / "c", bundle=b(0.85), ckpt_age_s=5000)
    _run(tmp_path / "d", ckpt_age_s=10)
    _run(tmp_path / "e", ckpt_age_s=5000)
    _run(tmp_path / "f")
    (tmp_path / "g").mkdir()
    (tmp_path / "g/config.yaml").write_text("{broken")  # a damaged run is listed, not fatal
    frame = runs_table(tmp_path)
    status = dict(zip(frame["run"], frame["status"]))
    assert status == {"a": "evaluated", "b": "evaluated", "c": "finished", "d": "training", "e": "failed",
                      "f": "prepared", "g": "prepared"}
    assert list(frame["run"][:2]) == ["b", "a"]  # best test ROC-AUC first
    assert frame.set_index("run").loc["b", "test_roc_auc_ci"] == "[0.830, 0.930]"
    assert frame.set_index("run").loc["c", "recipe"] == "modern"
    assert main(["runs", str(tmp_path), "--sort", "val_roc_auc", "--out", str(tmp_path / "table")]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("wrote")]
    assert names[:3] == ["b", "c", "a"]
    assert "<table" in (tmp_path / "table.html").read_text() and (tmp_path / "table.csv").read_text().count("\n") == 8
    assert main(["runs", str(tmp_path), "--sort", "nope"]) == 2
