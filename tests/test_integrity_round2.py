"""The second hostile round (issue: Integrity II): interrupted training, a handed-on model that reproduces
from model.json alone, symlinked data, damaged run files, worker decode failures, exact float round trips,
the failed-command rollback, and the bundle fields a page renders. Bad inputs that fit the CLI table live in
test_integrity.py's CASES."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skinlesion.training.history import HistoryRecorder
from skinlesion.cli import main
from skinlesion.data.dataset import load_dataset
from skinlesion.tables import read_csv_exact
from skinlesion.training.fit import train
from conftest import state, tiny_cfg
from skinlesion.data.run import Run

REPO = Path(__file__).resolve().parents[1]


# --- symlinks ------------------------------------------------------------------------------------------------

def test_symlinked_images_folder_files_and_a_cyclic_link_are_followed_once(demo_data, tmp_path):
    real = tmp_path / "storage"
    shutil.copytree(demo_data / "images", real / "imgs")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_data / "HAM10000_metadata.csv", data)
    (data / "images").symlink_to(real / "imgs", target_is_directory=True)  # the folder is a link
    first = sorted((real / "imgs").glob("*.jpg"))[0]
    (real / "imgs" / "loop").symlink_to(real / "imgs", target_is_directory=True)  # a cycle
    os.rename(first, real / first.name)  # one image lives elsewhere, reached by a file link
    (real / "imgs" / first.name).symlink_to(real / first.name)
    ds = load_dataset(data, progress=False)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv")
    assert len(ds.frame) == len(meta) and not ds.missing_ids


def test_predict_collects_files_below_a_symlinked_subfolder(tmp_path):
    from skinlesion.inference.predict import collect_inputs
    (tmp_path / "real").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "real" / "a.png")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "back").symlink_to(tmp_path / "in", target_is_directory=True)  # cycle back up
    assert collect_inputs([tmp_path / "in"]) == [str(tmp_path / "in" / "linked" / "a.png")]


def test_mostly_missing_images_never_suggest_dropping_them_all(demo_data, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_data / "HAM10000_metadata.csv", data)
    (data / "images").symlink_to(tmp_path / "nowhere", target_is_directory=True)  # a dangling mount
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--allow-missing" not in err.split("Remedy:")[1] and "path" in err.split("Remedy:")[1]


# --- run files and inputs read back -----------------------------------------------------------------------

# the issue's boundary score, which pandas 2's default C parser read back as 0.3504213690757751, and others
MISPARSED = [0.35042136907577515, 0.1 + 0.2, 0.8979798183720917, 0.6666666666666666, 1 / 3 * 2.9]


def test_probabilities_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([MISPARSED, rng.random(5000)])
    frame = pd.DataFrame({"image_id": [f"I{i}" for i in range(len(values))], "probability": values})
    frame.to_csv(tmp_path / "p.csv", index=False)
    exact = read_csv_exact(tmp_path / "p.csv", "x")["probability"].to_numpy()
    assert np.array_equal(exact, values)  # bit for bit
    from skinlesion.tables import EXACT_FLOATS
    assert EXACT_FLOATS == ({"float_precision": "round_trip"} if pd.__version__ < "3" else {})


def test_runs_lists_damaged_runs_and_the_others(tmp_path, capsys):
    good = tmp_path / "runs" / "good"
    good.mkdir(parents=True)
    (good / "config.yaml").write_text("train: {arch: simple_cnn, epochs: 3}\n")
    for name, text in [("number", "5"), ("list", "[1, 2]"), ("nested", '{"at_threshold": 7}'),
                       ("strings", '{"at_threshold": {"roc_auc": {"value": "high", "ci_low": "x"}}}')]:
        run = tmp_path / "runs" / name
        run.mkdir()
        (run / "split.csv").write_text("image_id\n")
        (run / "metrics.json").write_text(text)
        (run / "config.yaml").write_text("train: [oops]\n" if name == "list" else "train: {epochs: many}\n")
    (tmp_path / "runs" / "strings" / "bundle").mkdir()
    (tmp_path / "runs" / "strings" / "bundle" / "config.json").write_text('{"threshold": {"value": "0.5"}}')
    for sort in ("test_roc_auc", "epochs", "threshold", "arch"):
        assert main(["runs", str(tmp_path / "runs"), "--sort", sort]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert all(n in out for n in ("good", "number", "list", "nested", "strings"))


def test_interrupted_status_in_runs(tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    (run / "checkpoints" / "phase1").mkdir(parents=True)
    (run / "split.csv").write_text("image_id\n")
    (run / "checkpoints" / "phase1" / "last.ckpt").write_bytes(b"x")
    (run / "checkpoints" / "interrupted.json").write_text("{}")
    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert "interrupted" in capsys.readouterr().out


def test_decode_failure_inside_a_dataloader_worker_is_one_line(demo_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    victim = sorted((data / "images").glob("*.jpg"))[5]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--arch", "simple_cnn", "--image-size",
                 "32", "--epochs", "1", "--num-workers", "1", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "worker" not in err, err
    assert victim.name in err and "--verify" in err and "Remedy:" in err
    assert not (tmp_path / "run").exists(), "the failed command left a run folder"


def test_a_failed_command_leaves_no_new_files_in_an_existing_run(demo_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--quiet"]) == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a tensor file")
    assert main(["train", "--out", str(run), "--arch", "simple_cnn", "--image-size", "32", "--weights", str(bad),
                 "--quiet"]) == 2
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    # the corrected command then works in the same run
    assert main(["train", "--out", str(run), "--arch", "simple_cnn", "--image-size", "32", "--epochs", "1",
                 "--num-workers", "0", "--cache-dir", str(tmp_path / "cache"), "--limit-train-batches", "2",
                 "--quiet"]) == 0


def test_runlock_rollback_keeps_saved_training_work(tmp_path):
    from skinlesion.runlock import run_lock
    run = tmp_path / "run"
    run.mkdir()
    (run / "old.txt").write_text("kept")
    with pytest.raises(ValueError):
        with run_lock(run, "x"):
            (run / "sub").mkdir()
            (run / "sub" / "new.txt").write_text("new")
            (run / "old.txt").write_text("kept")
            raise ValueError("late failure")
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["old.txt"]
    with pytest.raises(ValueError):
        with run_lock(run, "x"):
            (run / "checkpoints").mkdir()
            (run / "checkpoints" / "last.ckpt").write_bytes(b"work")
            raise ValueError("after training")
    assert (run / "checkpoints" / "last.ckpt").is_file()


# --- interrupted training -----------------------------------------------------------------------------------

TRAIN = ("from skinlesion.cli import main; import sys; sys.exit(main(sys.argv[1:]))")


def _train_argv(data, run, cache, *extra):
    return ["train", "--data", str(data), "--out", str(run), "--arch", "simple_cnn", "--image-size", "32",
            "--epochs", "3", "--phases", "1", "--batch-size", "2", "--num-workers", "0", "--cache-dir", str(cache),
            "--quiet", *extra]


def _interrupt_training(data, tmp_path, signum, workers: int = 0):
    """Start `train` in a subprocess with 1 s checkpoints inside the epoch (the first one tells the test
    training is under way), send ``signum`` then, and return the process and its (stdout, stderr)."""
    run = tmp_path / "run"
    argv = _train_argv(data, run, tmp_path / "cache", "--checkpoint-minutes", str(1 / 60))
    argv[argv.index("--num-workers") + 1] = str(workers)
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    last = run / "checkpoints" / "phase1" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before the test could interrupt it"
    proc.send_signal(signum)
    return proc, proc.communicate(timeout=120)


def test_sigterm_mid_epoch_saves_work_exits_143_and_resume_finishes(demo_data, tmp_path):
    run = tmp_path / "run"
    proc, (out, err) = _interrupt_training(demo_data, tmp_path, signal.SIGTERM)
    last = run / "checkpoints" / "phase1" / "last.ckpt"
    assert proc.returncode == 143, (out, err)
    assert "interrupted by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    marker = json.loads((run / "checkpoints" / "interrupted.json").read_text())
    assert marker["signal"] == "SIGTERM" and last.is_file()
    listing = subprocess.run([sys.executable, "-c", TRAIN, "runs", str(tmp_path)], capture_output=True, text=True)
    assert "interrupted" in listing.stdout
    resumed = subprocess.run([sys.executable, "-c", TRAIN, "train", "--out", str(run), "--resume", "--quiet"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "bundle" / "config.json").is_file() and not (run / "checkpoints" / "interrupted.json").exists()


def test_resume_with_nothing_to_resume_is_an_error(demo_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--quiet"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint to continue from" in err and "without --resume" in err


def test_resume_with_mixup_is_bit_identical(demo_data, tmp_path, monkeypatch):
    cfg = tiny_cfg(demo_data, tmp_path, epochs=3, phases=1, mixup=0.4, cutmix=0.0, mix_prob=1.0)
    train(cfg, Run.quiet(tmp_path / "full"))
    original = HistoryRecorder.on_train_epoch_end

    def crash_after_epoch_2(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch + 1 == 2:
            raise RuntimeError("simulated kill")
    monkeypatch.setattr(HistoryRecorder, "on_train_epoch_end", crash_after_epoch_2)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, Run.quiet(tmp_path / "cut"))
    monkeypatch.setattr(HistoryRecorder, "on_train_epoch_end", original)
    train(cfg, Run.quiet(tmp_path / "cut"), resume=True)
    a, b = state(tmp_path / "full/checkpoints/phase1/last.ckpt"), state(tmp_path / "cut/checkpoints/phase1/last.ckpt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- a handed-on model ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_bundle(tiny_run):
    return tiny_run / "bundle"


def _independent_input(meta: dict, png: Path) -> np.ndarray:
    """What a consumer writes from model.json alone: PIL + numpy, no skinlesion, no torchvision."""
    steps = {s["step"] if s["step"] != "center_crop" or "top" not in s or isinstance(s["top"], str)
             else "final_crop": s for s in meta["preprocessing_steps"]}
    img = Image.open(png).convert("RGB")
    w, h = img.size
    R = steps["resize"]["shorter_side"]
    size = (R, int(R * h / w)) if w <= h else (int(R * w / h), R)  # floor(R * longer / shorter)
    img = img.resize(size, Image.BILINEAR)
    left, top = round((img.size[0] - R) / 2), round((img.size[1] - R) / 2)  # Python round: half to even
    img = img.crop((left, top, left + R, top + R))
    crop = steps["final_crop"]
    S = crop["size"][0]
    x = np.asarray(img, dtype=np.float32)[crop["top"]:crop["top"] + S, crop["left"]:crop["left"] + S] / 255.0
    norm = steps["normalize"]
    x = (x - np.array(norm["mean"], np.float32)) / np.array(norm["std"], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def test_onnx_export_reproduces_from_model_json_alone(small_bundle, tmp_path):
    import onnxruntime as ort
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(small_bundle), "--out", str(out), "--quiet"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    ref = meta["reference"]
    png = out.parent / ref["image"]
    assert png.is_file() and Image.open(png).size == (ref["width"], ref["height"])
    resize = next(s for s in meta["preprocessing_steps"] if s["step"] == "resize")
    final = [s for s in meta["preprocessing_steps"] if s["step"] == "center_crop"][-1]
    assert (resize["shorter_side"] - final["size"][0]) % 2 == 1, "the fixture should exercise a .5 crop offset"
    x = _independent_input(meta, png)
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x})[0][0]
    p = 1 / (1 + np.exp(-float(logits[0])))
    assert abs(p - ref["probability_from_logits"]) <= ref["probability_tolerance"]
    assert ("malignant" if p >= meta["threshold"] else "benign") == ref["decision"]
    # the exact crop offset matters: floor division instead of half-to-even moves the input
    moved = dict(meta, preprocessing_steps=[dict(s, top=s["top"] - 1, left=s["left"] - 1)
                                            if s is final else s for s in meta["preprocessing_steps"]])
    assert not np.allclose(_independent_input(moved, png), x)


# --- bundles shown on the page ------------------------------------------------------------------------------

def test_bundle_fields_with_markup_are_refused(small_bundle, tmp_path):
    from skinlesion.inference.bundle import BundleError, load_bundle
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["threshold"]["target_sensitivity"] = "<img src=x onerror=alert(1)>"
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="target_sensitivity"):
        load_bundle(b)


def test_ensemble_size_is_checked_before_building(small_bundle, tmp_path):
    from skinlesion.inference.bundle import BundleError, load_bundle
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["ensemble"] = {"size": 100000, "combine": "mean_probability"}
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="ensemble.size"):
        load_bundle(b)
    cfg["ensemble"]["size"] = 3
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="holds 0 member"):
        load_bundle(b)


def test_model_card_escapes_dataset_values_and_flags_small_subgroups():
    from skinlesion.evaluation.report import _md, _subgroup_rows
    assert "<script>" not in _md("<script>alert(1)</script>|x")
    rows = _subgroup_rows({"subgroups": {"site": [
        {"group": "<b>ear</b>", "n": 5, "n_malignant": 2, "roc_auc": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0},
         "sensitivity": None, "specificity": None}]}})
    assert "not estimated" in rows["site"][0][3]


def test_model_card_says_training_was_cut_short():
    from skinlesion.evaluation.report import training_limit_notes
    notes = training_limit_notes({"training_limits": {"limit_train_batches": 0.1, "epochs_planned": 12,
                                                      "epochs_run": 12, "early_stopped": False}})
    assert notes and "10%" in notes[0]
    assert training_limit_notes({"training_limits": {"limit_train_batches": None}}) == []
    assert training_limit_notes({"training_limits": {"limit_train_batches": 1}}), "1 batch is a limit"


def test_old_metric_name_still_reads():
    from skinlesion.evaluation.metrics import upgrade_metric_names
    old = {"at_threshold": {"auc_sens_80": {"value": 0.1}}, "cv": [{"auc_sens_80": 0.2}]}
    new = upgrade_metric_names(old)
    assert new["at_threshold"]["pauc_above_tpr80"]["value"] == 0.1 and new["cv"][0]["pauc_above_tpr80"] == 0.2


def test_download_stops_a_stream_past_its_size_and_refuses_a_zip_bomb(tmp_path):
    import zipfile
    from skinlesion.data.download import DownloadError, extract
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images/a.jpg", b"\0" * (60 << 20))  # 60 MB of zeros: a few dozen KB zipped
    with pytest.raises(DownloadError, match="zip bomb"):
        extract(bomb, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.jpg")) if (tmp_path / "out").exists() else True


# --- unusual but legal datasets -----------------------------------------------------------------------------

@pytest.mark.parametrize("encoding,sep,newline", [("utf-8-sig", ",", "\r\n"), ("utf-8", ";", "\n"),
                                                   ("utf-8", "\t", "\r\n")])
def test_bom_crlf_semicolon_and_tab_csvs_read_like_plain_ones(demo_data, tmp_path, encoding, sep, newline):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv", dtype=str)
    text = meta.to_csv(index=False, sep=sep, lineterminator=newline)
    (data / "HAM10000_metadata.csv").write_bytes(text.encode(encoding))
    ds = load_dataset(data, progress=False)
    assert list(ds.frame["image_id"]) == list(meta["image_id"]) and set(ds.frame.columns) >= set(meta.columns)


def test_unicode_ids_match_files_whatever_their_normalisation_form(tmp_path):
    import unicodedata
    from conftest import write_dataset
    nfc = unicodedata.normalize("NFC", "läsion_é")
    rows = [{"lesion_id": f"L{i}", "image_id": f"{nfc}{i}", "dx": "nv" if i % 2 else "mel"} for i in range(4)]
    root = write_dataset(tmp_path / "d", rows)
    for p in (root / "images").glob("*.jpg"):  # files saved under the decomposed (NFD, macOS) form
        p.rename(p.with_name(unicodedata.normalize("NFD", p.name)))
    ds = load_dataset(root, progress=False)
    assert len(ds.frame) == 4 and not ds.missing_ids


def test_cv_resume_cannot_change_the_recipe_of_started_folds(demo_data, tmp_path, capsys, monkeypatch):
    import skinlesion.training.fit as fit
    real, calls = fit.train, []

    def stop_in_second_fold(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("stopped")
        return real(*a, **k)
    monkeypatch.setattr(fit, "train", stop_in_second_fold)
    argv = ["cv", "--data", str(demo_data), "--out", str(tmp_path / "cv"), "--folds", "2", "--arch", "simple_cnn",
            "--image-size", "32", "--epochs", "2", "--phases", "1", "--num-workers", "0", "--cache-dir",
            str(tmp_path / "cache"), "--limit-train-batches", "2", "--quiet"]
    assert main(argv) == 1  # the simulated crash in the second fold
    monkeypatch.undo()
    assert (tmp_path / "cv" / "folds" / "fold0" / "bundle").is_dir()
    capsys.readouterr()
    assert main([*argv[:-1], "--resume", "--epochs", "3", "--quiet"]) == 2
    assert "--resume cannot change" in capsys.readouterr().err
    assert main(["cv", "--out", str(tmp_path / "cv"), "--folds", "2", "--resume", "--quiet"]) == 0  # config reused
    import yaml
    assert yaml.safe_load((tmp_path / "cv" / "folds" / "fold1" / "config.yaml").read_text())["train"]["epochs"] == 2


def test_sigint_with_dataloader_workers_exits_130_and_keeps_work(demo_data, tmp_path):
    run = tmp_path / "run"
    proc, (out, err) = _interrupt_training(demo_data, tmp_path, signal.SIGINT, workers=1)
    last = run / "checkpoints" / "phase1" / "last.ckpt"
    assert proc.returncode == 130, (out, err)
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGINT" in err, err
    assert last.is_file() and (run / "checkpoints" / "interrupted.json").is_file()


def test_predict_csv_lists_with_bom_semicolons_and_crlf(tmp_path):
    from skinlesion.inference.predict import collect_inputs_with_metadata
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_bytes("\ufeffpath;site;age\r\na.png;back;55\r\n".encode("utf-8"))
    paths, meta = collect_inputs_with_metadata([tmp_path / "list.csv"])
    assert paths == [str(tmp_path / "a.png")]
    assert meta.iloc[0]["localization"] == "back" and meta.iloc[0]["age"] == "55"
