"""`skinlesion search`: a tiny Optuna study end to end, best.yaml into train, two processes sharing one SQLite
study, and the bad inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from skinlesion.cli import main
from skinlesion.config import load_config
from skinlesion.search.space import DEFAULT_SPACE, Space
from skinlesion.console import Console
from skinlesion.search.study import SearchOptions, run_search

SILENT = Console(progress=False, echo=lambda *_: None)

TINY = ["--arch", "simple_cnn", "--batch-size", "16", "--num-workers", "0", "--limit-train-batches", "2",
        "--phase1-epochs", "1"]
SPACE = "lr: {low: 1.0e-4, high: 1.0e-2, log: true}\nepochs: {low: 2, high: 3}\nrecipe: {choices: [classic, modern]}\n" \
        "image_size: 32\n"


class PruneTrialTwo(optuna.pruners.BasePruner):
    """Prunes trial 2 at its first report, so the pruning path runs in every test session."""

    def prune(self, study, trial) -> bool:
        return trial.number == 2


def _overrides(data: Path, tmp: Path) -> dict:
    return {"data.root": str(data), "train.arch": "simple_cnn", "train.batch_size": 16, "train.num_workers": 0,
            "train.limit_train_batches": 2, "train.phase1_epochs": 1, "train.cache_dir": str(tmp / "cache"),
            "train.channels_last": False}


@pytest.fixture(scope="module")
def study(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    (tmp / "space.yaml").write_text(SPACE)
    opts = SearchOptions(tmp / "study", 3, str(tmp / "space.yaml"), console=SILENT)
    result = run_search(opts, None, _overrides(demo_data, tmp), pruner=PruneTrialTwo())
    return tmp, result


def test_tiny_study_end_to_end(study):
    tmp, result = study
    d = tmp / "study"
    trials = pd.read_csv(d / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2]
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert result.finished == 3
    for n in (0, 1):  # every completed trial is an ordinary run folder with its bundle and validation predictions
        run = d / "trials" / f"trial-{n:04d}"
        assert (run / "bundle" / "config.json").is_file() and (run / "val_predictions.csv").is_file()
        assert json.loads((run / "trial.json").read_text())["state"] == "COMPLETE"
        assert (run / "split.csv").read_bytes() == (d / "split.csv").read_bytes()
        assert not (run / "test_predictions.csv").exists()  # the search never scores the test share
    assert json.loads((d / "trials" / "trial-0002" / "trial.json").read_text())["state"] == "PRUNED"
    assert not (d / "trials" / "trial-0002" / "bundle").exists()
    best = trials.loc[trials["state"] == "COMPLETE", "value"].max()
    assert result.best_value == pytest.approx(best)
    assert (d / "plots" / "history.png").stat().st_size > 1000
    imp = json.loads((d / "importance.json").read_text())
    assert imp["completed_trials"] == 2 and (imp["importance"] or imp["why_empty"])
    assert Space.load(d / "space.yaml") == Space.load(tmp / "space.yaml")


def test_resume_adds_trials_and_keeps_numbers(study, demo_data):
    tmp, _ = study
    opts = SearchOptions(tmp / "study", 4, None, console=SILENT)  # the saved space is reused
    result = run_search(opts, None, _overrides(demo_data, tmp))
    trials = pd.read_csv(tmp / "study" / "trials.csv")
    assert result.finished == 4 and list(trials["number"]) == [0, 1, 2, 3]


def test_best_yaml_round_trips_into_train(study, demo_data, tmp_path):
    tmp, _ = study
    best = tmp / "study" / "best.yaml"
    cfg = load_config(best)
    trials = pd.read_csv(tmp / "study" / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]  # a pruned trial's value is its last intermediate one
    top = done.loc[done["value"].idxmax()]
    assert best.read_text().startswith(f"# skinlesion search: trial {top['number']},")
    assert cfg.train.lr == pytest.approx(float(top["param_lr"]), rel=1e-12)
    assert cfg.train.epochs == int(top["param_epochs"]) and cfg.train.recipe == top["param_recipe"]
    out = tmp_path / "run"
    assert main(["train", "--config", str(best), "--out", str(out), "--quiet"]) == 0
    trained = yaml.safe_load((out / "config.yaml").read_text())["train"]
    searched = yaml.safe_load((tmp / "study" / top["run_dir"] / "config.yaml").read_text())["train"]
    assert trained == searched  # the same resolved training config as the best trial


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(demo_data, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    cmd = [sys.executable, "-m", "skinlesion", "search", "--data", str(demo_data), "--out", str(tmp_path / "study"),
           "--trials", "6", "--space", str(tmp_path / "space.yaml"), "--cache-dir", str(tmp_path / "cache"),
           "--quiet", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) >= 6
    done = [t for t in study.trials if t.state.is_finished()]
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, outs  # both processes completed trials of the one study
    dirs = sorted(p.name for p in (tmp_path / "study" / "trials").iterdir())
    assert dirs == [f"trial-{n:04d}" for n in sorted(numbers)]


@pytest.mark.parametrize("space, message", [
    ("learning_rate: {low: 0.1, high: 0.2}\n", "not a key a search can vary"),
    ("lr: {low: 0.01, high: 0.01}\n", "empty range"),
    ("lr: {low: 0, high: 0.01, log: true}\n", "log range needs low > 0"),
    ("recipe: {choices: []}\n", "non-empty list"),
    ("recipe: {choices: [classic, fancy]}\n", "is not a recipe"),
    ("dropout: {low: 0.1, high: 1.5}\n", "is not valid"),
])
def test_bad_space_is_a_clear_error(demo_data, tmp_path, capsys, space, message):
    (tmp_path / "space.yaml").write_text(space)
    rc = main(["search", "--data", str(demo_data), "--out", str(tmp_path / "study"), "--trials", "2", "--space",
               str(tmp_path / "space.yaml"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Remedy" in err and "Traceback" not in err
    assert not (tmp_path / "study").exists()  # nothing left behind


def test_storage_that_cannot_be_opened(demo_data, tmp_path, capsys):
    rc = main(["search", "--data", str(demo_data), "--out", str(tmp_path / "study"), "--trials", "2", "--storage",
               "nosuchdb://user@localhost/x", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "--storage nosuchdb://" in err and "Remedy" in err
    rc = main(["search", "--data", str(demo_data), "--out", str(tmp_path / "study2"), "--trials", "2", "--storage",
               f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'study.db'}", *TINY])
    assert rc == 2 and "cannot open" in capsys.readouterr().err


def test_flag_and_space_may_not_both_set_a_key(demo_data, tmp_path, capsys):
    rc = main(["search", "--data", str(demo_data), "--out", str(tmp_path / "study"), "--trials", "2", "--lr", "0.01",
               *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "--lr: searched by the space" in err


def test_default_space_is_valid_and_holds_the_issue_keys():
    keys = {p.key for p in Space.from_mapping(DEFAULT_SPACE, "default").params}
    assert {"lr", "weight_decay", "layer_decay", "mixup", "cutmix", "drop_path", "label_smoothing", "epochs",
            "image_size", "recipe", "metadata"} <= keys


def test_folds_objective_is_the_mean_over_lesion_grouped_folds(demo_data, tmp_path):
    (tmp_path / "space.yaml").write_text("lr: {low: 1.0e-4, high: 1.0e-2, log: true}\nepochs: 2\nimage_size: 32\n")
    opts = SearchOptions(tmp_path / "study", 1, str(tmp_path / "space.yaml"), folds=2, pruner="none", console=SILENT)
    result = run_search(opts, None, _overrides(demo_data, tmp_path))
    trial = json.loads((tmp_path / "study" / "trials" / "trial-0000" / "trial.json").read_text())
    assert len(trial["fold_scores"]) == 2 and trial["value"] == pytest.approx(sum(trial["fold_scores"]) / 2)
    assert result.best_value == pytest.approx(trial["value"])
    split = pd.read_csv(tmp_path / "study" / "split.csv")
    assert sorted(split.loc[split["split"] != "test", "fold"].unique()) == [0, 1]  # test rows: fold -1
    for k in (0, 1):  # each fold a run folder validated on its own fold
        val = pd.read_csv(tmp_path / "study" / "trials" / "trial-0000" / f"fold{k}" / "val_predictions.csv")
        assert set(val["image_id"]) == set(split.loc[(split["fold"] == k) & (split["split"] != "test"), "image_id"])
