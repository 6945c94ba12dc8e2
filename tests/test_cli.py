import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from skinlesion.cli import build_parser, main

VERBS = ["prepare", "explore", "make-demo-data", "train", "demo"]


def test_every_verb_has_help(capsys):
    for verb in VERBS:
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        assert "usage: skinlesion " + verb in capsys.readouterr().out
    assert set(VERBS) <= set(build_parser()._subparsers._group_actions[0].choices)


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "skinlesion", "--help"], capture_output=True, text=True, check=True)
    assert "research use only" in out.stdout.lower().replace("\n", " ")


def test_prepare_writes_split_config_and_prints_table(demo_data, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("split:\n  seed: 11\n  ratios: [0.6, 0.2, 0.2]\n")
    assert main(["prepare", "--data", str(demo_data), "--out", str(tmp_path / "run"), "--config", str(cfg),
                 "--seed", "12", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "split (seed 12, ratios [0.6, 0.2, 0.2])" in out and "total" in out and "mal %" in out
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"split.csv", "split.json", "config.yaml", ".skinlesion.lock"}
    assert yaml.safe_load((run / "config.yaml").read_text())["split"]["seed"] == 12
    assert json.loads((run / "split.json").read_text())["counts"]["train"]["images"] > 0


def test_user_errors_exit_2_with_message_not_traceback(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no dataset found: no HAM10000_metadata.csv" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing half-written
    assert main(["prepare", "--out", str(tmp_path / "run")]) == 2
    assert "pass --data DIR" in capsys.readouterr().err


def test_explore_writes_plots_and_summary(demo_data, tmp_path):
    assert main(["explore", "--data", str(demo_data), "--out", str(tmp_path / "ex"), "--quiet"]) == 0
    names = {p.name for p in (tmp_path / "ex").iterdir()}
    assert {"distribution.png", "demographics.png", "summary.md", "summary.html"} <= names
    md = (tmp_path / "ex" / "summary.md").read_text()
    assert "120 images" in md and "localization by class" in md and "image size (sampled)" in md
    assert "data:image/png;base64," in (tmp_path / "ex" / "summary.html").read_text()


def test_make_demo_data_cli(tmp_path, capsys):
    assert main(["make-demo-data", str(tmp_path / "d"), "--n", "15", "--seed", "1", "--quiet"]) == 0
    assert len(list((tmp_path / "d" / "images").glob("*.jpg"))) == 15


def test_demo_generates_data_prepares_and_trains_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKINLESION_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n", "60", "--epochs", "2", "--image-size", "64", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "val ROC-AUC" in out and "efficientnet_lite0" in out
    run = tmp_path / "demo" / "run"
    assert (run / "split.csv").is_file() and (run / "bundle" / "model.safetensors").is_file()
    assert len(pd.read_csv(run / "metrics.csv")) == 2
    assert len(list((tmp_path / "demo" / "data" / "images").glob("*.jpg"))) == 60


def test_train_offline_hub_failure_is_a_clear_cli_error(demo_data, tmp_path, capsys):
    code = main(["train", "--data", str(demo_data), "--out", str(tmp_path / "run"), "--arch", "resnet50", "--quiet",
                 "--cache-dir", str(tmp_path / "cache"), "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "'resnet50'" in err and "--no-pretrained" in err and "Traceback" not in err
