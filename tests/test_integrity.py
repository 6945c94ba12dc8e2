"""Bad inputs and faults across every verb, table-driven: each case asserts the exit status, that the
message names the problem (and a remedy), that no traceback is shown, and that no artifact was changed or
left half-written. Special cases (partial success, memory bounds, planted pickles, the API) follow."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch
from PIL import Image

from skinlesion.cli import main
from conftest import snapshot


@dataclass
class Env:
    run: Path  # a fresh copy of the trained run
    data: Path  # the demo dataset (read-only)
    tmp: Path

    @property
    def bundle(self) -> Path:
        return self.run / "bundle"

    def image(self, n: int = 0) -> Path:
        return sorted((self.data / "images").glob("*.jpg"))[n]

    def edit_json(self, path: Path, fn) -> None:
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data))

    def dataset(self, name: str, edit) -> Path:
        """A copy of the demo dataset whose metadata frame is passed through ``edit``."""
        out = self.tmp / name
        shutil.copytree(self.data, out)
        meta = pd.read_csv(out / "HAM10000_metadata.csv", dtype=str)
        edit(meta, out).to_csv(out / "HAM10000_metadata.csv", index=False)
        return out

    def remake_split(self) -> None:
        """Re-split the same data with another seed and put it into the trained run (behind prepare's back)."""
        other = self.tmp / "other"
        assert main(["prepare", "--data", str(self.data), "--out", str(other), "--seed", "7", "--quiet"]) == 0
        for name in ("split.csv", "split.json"):
            shutil.copy(other / name, self.run / name)


@dataclass
class Case:
    id: str
    argv: Callable[[Env], list[str]]  # may also plant the fault in env.run / env.tmp
    message: str  # a regex the error must match
    code: int = 2


def _csv_of(env: Env, text: str) -> Path:
    path = env.tmp / "list.csv"
    path.write_text(text)
    return path


def _strip_png(path: Path, size=(1, 1_000_000)) -> Path:
    Image.new("L", size).save(path)
    return path


def _prepare(*flags):
    return lambda e: ["prepare", "--data", str(e.data), "--out", str(e.tmp / "new"), *flags]


def _train(*flags):
    return lambda e: ["train", "--data", str(e.data), "--out", str(e.tmp / "new"), "--arch", "simple_cnn",
                      "--image-size", "32", *flags]


def _resume(*flags, plant=None):
    def argv(e):
        if plant:
            plant(e)
        return ["train", "--out", str(e.run), "--resume", *flags]
    return argv


def _evaluate(*flags, plant=None):
    def argv(e):
        if plant:
            plant(e)
        return ["evaluate", str(e.run), "--bootstrap", "20", "--num-workers", "0", *flags]
    return argv


def _tune(*flags, plant=None):
    def argv(e):
        if plant:
            plant(e)
        return ["tune-threshold", str(e.run), *flags]
    return argv


def _with_bundle(verb, fn):
    """``verb`` on a bundle whose config.json (a dict) was changed by ``fn``."""
    def argv(e):
        e.edit_json(e.bundle / "config.json", fn)
        return verb(e)
    return argv


def _predict(e, *extra):
    return ["predict", "--model", str(e.bundle), str(e.image()), *extra]


def _bad_pickle(path: Path) -> None:
    """A checkpoint whose unpickling would create ``path.parent/PWNED``."""
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (path.parent / "PWNED",))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "x": Exploit()}, path)


def _set_threshold(v):
    return lambda c: c["threshold"].__setitem__("value", v)


def _corrupt_safetensors(e):
    p = e.bundle / "model.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    return ["predict", "--model", str(e.bundle), str(e.image())]


def _foreign_tensors(e):
    from safetensors.torch import save_file
    save_file({"head.weight": torch.zeros(7, 5), "head.bias": torch.zeros(7)}, str(e.bundle / "model.safetensors"))
    return ["predict", "--model", str(e.bundle), str(e.image())]


def _reshaped_tensors(e):
    """Every tensor present with the right number of values, one of them in the wrong shape."""
    from safetensors.torch import load_file, save_file
    state = load_file(str(e.bundle / "model.safetensors"))
    state["head.weight"] = state["head.weight"].reshape(-1, 1).contiguous()
    save_file(state, str(e.bundle / "model.safetensors"))
    return ["predict", "--model", str(e.bundle), str(e.image())]


def _nan_tensors(e):
    from safetensors.torch import load_file, save_file
    state = load_file(str(e.bundle / "model.safetensors"))
    state["head.weight"][:] = float("nan")
    save_file(state, str(e.bundle / "model.safetensors"))
    return ["predict", "--model", str(e.bundle), str(e.image())]


def _drop_val_rows(e):
    p = e.run / "val_predictions.csv"
    pd.read_csv(p).iloc[2:].to_csv(p, index=False)


def _edit_split(e):
    """Drop one image of the split behind the tool's back."""
    p = e.run / "split.csv"
    pd.read_csv(p, dtype=str).iloc[1:].to_csv(p, index=False)


def _no_class(cls):
    return lambda meta, root: meta.assign(dx="nv") if cls == "malignant" else meta.assign(dx="mel")


def _missing_image(meta, root):
    (root / "images" / f"{meta.loc[0, 'image_id']}.jpg").unlink()
    return meta


CASES = [
    # prepare
    Case("prepare-ratios-nan", _prepare("--ratios", "nan", "0.5", "0.5"), r"--ratios must be three finite.*Remedy: --ratios"),
    Case("prepare-ratios-sum", _prepare("--ratios", "0.5", "0.2", "0.2"), r"summing to 1"),
    Case("prepare-ratios-negative", _prepare("--ratios", "-0.1", "0.6", "0.5"), r"non-negative"),
    Case("prepare-ratios-no-train", _prepare("--ratios", "0", "0.5", "0.5"), r"TRAIN > 0"),
    Case("prepare-folds-1", _prepare("--folds", "1"), r"--folds must be at least 2.*Remedy: --folds 5"),
    Case("prepare-folds-too-many", _prepare("--folds", "100000"), r"--folds must be between 2 and the \d+ lesions"),
    Case("prepare-over-trained-run", lambda e: ["prepare", "--data", str(e.data), "--out", str(e.run)],
         r"already has checkpoints.*Remedy: prepare into a new --out"),
    Case("prepare-missing-data", lambda e: ["prepare", "--data", str(e.tmp / "nope"), "--out", str(e.tmp / "new")],
         r"nope.*not found|does not exist"),
    Case("prepare-no-malignant", lambda e: ["prepare", "--data", str(e.dataset("benign", _no_class("malignant"))),
                                            "--out", str(e.tmp / "new")], r"0 malignant.*need both classes.*Remedy"),
    Case("prepare-no-benign", lambda e: ["prepare", "--data", str(e.dataset("mal", _no_class("benign"))),
                                         "--out", str(e.tmp / "new")], r"0 benign.*Remedy"),
    Case("prepare-unknown-dx", lambda e: ["prepare", "--data", str(e.dataset("lentigo", lambda m, r: m.assign(dx="lentigo"))),
                                          "--out", str(e.tmp / "new")], r"unknown dx code.*'lentigo'.*Remedy"),
    Case("prepare-missing-column", lambda e: ["prepare", "--data", str(e.dataset("nocol", lambda m, r: m.drop(columns="dx"))),
                                              "--out", str(e.tmp / "new")], r"missing required column.*dx"),
    Case("prepare-header-only", lambda e: ["prepare", "--data", str(e.dataset("empty", lambda m, r: m.iloc[:0])),
                                           "--out", str(e.tmp / "new")], r"no rows"),
    Case("prepare-missing-image", lambda e: ["prepare", "--data", str(e.dataset("miss", _missing_image)),
                                             "--out", str(e.tmp / "new")], r"have no .* file.*--allow-missing 0\.0084"),
    Case("prepare-allow-missing-1.5", _prepare("--allow-missing", "1.5"), r"--allow-missing.*\[0, 1\).*Remedy"),
    Case("prepare-bad-yaml", lambda e: [*_prepare()(e), "--config", str(_csv_of(e, "split: [unclosed"))], r"not valid YAML"),
    Case("prepare-unknown-config-key", lambda e: [*_prepare()(e), "--config", str(_csv_of(e, "split:\n  sed: 1\n"))],
         r"unknown config key 'split.sed'"),
    # train
    Case("train-epochs-0", _train("--epochs", "0"), r"--epochs .*>= 1.*Remedy: --epochs 15"),
    Case("train-batch-size-0", _train("--batch-size", "0"), r"--batch-size .*>= 1.*Remedy: --batch-size 32"),
    Case("train-lr-nan", _train("--lr", "nan"), r"--lr .*Remedy: --lr 1e-4"),
    Case("train-dropout-1.5", _train("--dropout", "1.5"), r"--dropout .*\[0, 1\)"),
    Case("train-image-size-8", _train("--image-size", "8"), r"--image-size .*32-2048"),
    Case("train-workers-negative", _train("--num-workers", "-1"), r"--num-workers .*>= 0"),
    Case("train-limit-batches-0", _train("--limit-train-batches", "0"), r"--limit-train-batches"),
    Case("train-missing-data", lambda e: ["train", "--data", str(e.tmp / "nope"), "--out", str(e.tmp / "new")],
         r"does not exist|not found"),
    Case("train-existing-run", lambda e: ["train", "--data", str(e.data), "--out", str(e.run), "--arch", "simple_cnn"],
         r"already has checkpoints. Remedy: pass --resume"),
    Case("train-fold-without-folds", _train("--fold", "1"), r"has no split yet.*Remedy: .*--folds 5"),
    Case("resume-other-arch", _resume("--arch", "efficientnet_lite0"), r"--resume cannot change.*arch.*Remedy"),
    Case("resume-other-image-size", _resume("--image-size", "64"), r"image_size: 32 in the run, 64 now"),
    Case("resume-after-split-edit", _resume(plant=_edit_split), r"no longer matches the fingerprint"),
    Case("resume-after-split-remade", _resume(plant=lambda e: e.remake_split()), r"different split.*Remedy"),
    Case("resume-planted-last-ckpt", _resume(plant=lambda e: (
        (e.run / "checkpoints/phase2/phase.json").unlink(), _bad_pickle(e.run / "checkpoints/phase2/last.ckpt"))),
         r"last.ckpt: not a loadable skinlesion checkpoint"),
    Case("resume-planted-best-ckpt", _resume(plant=lambda e: _bad_pickle(e.run / "checkpoints/phase1/best.ckpt")),
         r"best.ckpt: not a loadable skinlesion checkpoint"),
    Case("resume-path-outside-run", _resume(plant=lambda e: e.edit_json(
        e.run / "checkpoints/phase1/phase.json", lambda s: s.__setitem__("best_path", "/etc/passwd"))),
         r"points outside"),
    # tune-threshold
    Case("tune-target-0", _tune("--target-sensitivity", "0"), r"--target-sensitivity must be a fraction in \(0, 1\]"),
    Case("tune-target-1.5", _tune("--target-sensitivity", "1.5"), r"Remedy: --target-sensitivity 0.9"),
    Case("tune-target-nan", _tune("--target-sensitivity", "nan"), r"--target-sensitivity"),
    Case("tune-missing-run", lambda e: ["tune-threshold", str(e.tmp / "nope")], r"does not exist"),
    Case("evaluate-run-is-a-file", lambda e: ["evaluate", str(_csv_of(e, "image_id\n"))],
         r"run directory .*\.csv is a file, not a folder\. Remedy"),
    Case("tune-no-val-predictions", _tune(plant=lambda e: (e.run / "val_predictions.csv").unlink()),
         r"val_predictions.csv not found.*Remedy"),
    Case("tune-val-predictions-edited", _tune(plant=_drop_val_rows), r"does not hold the validation images"),
    Case("tune-split-remade", _tune(plant=lambda e: e.remake_split()), r"different split.*training lesions"),
    Case("tune-split-edited", _tune(plant=_edit_split), r"no longer matches the fingerprint"),
    Case("tune-bundle-json-corrupt", _tune(plant=lambda e: (e.bundle / "config.json").write_text("{oops")),
         r"config.json: not valid JSON.*damaged"),
    # evaluate
    Case("evaluate-bootstrap-0", lambda e: ["evaluate", str(e.run), "--bootstrap", "0"], r"--bootstrap .*Remedy: --bootstrap 1000"),
    Case("evaluate-bootstrap-negative", lambda e: ["evaluate", str(e.run), "--bootstrap", "-5"], r"--bootstrap"),
    Case("evaluate-split-remade", _evaluate(plant=lambda e: e.remake_split()), r"different split"),
    Case("evaluate-split-json-corrupt", _evaluate(plant=lambda e: (e.run / "split.json").write_text("{")),
         r"split.json is not valid JSON"),
    Case("evaluate-threshold-nan", _with_bundle(_evaluate(), _set_threshold(float("nan"))), r"threshold nan is not a number in \[0, 1\]"),
    Case("evaluate-threshold-2", _with_bundle(_evaluate(), _set_threshold(2.0)), r"threshold 2.0 is not a number in \[0, 1\]"),
    Case("evaluate-format-99", _with_bundle(_evaluate(), lambda c: c.__setitem__("format_version", 99)),
         r"bundle format 99 is not supported"),
    Case("evaluate-tta-mismatch", _evaluate("--tta"), r"tuned without test-time augmentation.*Remedy: drop --tta"),
    Case("evaluate-model-without-data", lambda e: ["evaluate", "--model", str(e.bundle)], r"needs --data DIR"),
    Case("evaluate-out-inside-bundle", lambda e: ["evaluate", "--model", str(e.bundle), "--data", str(e.data),
                                                  "--out", str(e.bundle)], r"inside the model bundle"),
    Case("evaluate-external-on-training-data", lambda e: ["evaluate", "--model", str(e.bundle), "--data", str(e.data),
                                                          "--out", str(e.tmp / "ext"), "--bootstrap", "20"],
         r"were used to train or select this model"),
    Case("evaluate-nothing", lambda e: ["evaluate"], r"evaluate needs a RUN_DIR"),
    # compare
    Case("compare-unevaluated", lambda e: ["compare", str(e.run), str(e.run) + "x"], r"no metrics.json.*Remedy"),
    Case("compare-same-run-twice", lambda e: ["compare", str(e.run), str(e.run)], r"listed twice"),
    # predict
    Case("predict-not-a-bundle", lambda e: ["predict", "--model", str(e.run), str(e.image())], r"is not a model bundle"),
    Case("predict-out-in-bundle", lambda e: _predict(e, "--out", str(e.bundle / "config.json")), r"inside the model bundle"),
    Case("predict-out-is-input", lambda e: ["predict", "--model", str(e.bundle), str(_csv_of(e, f"path\n{e.image()}\n")),
                                            "--out", str(e.tmp / "list.csv")], r"is also an input"),
    Case("predict-batch-size-0", lambda e: _predict(e, "--batch-size", "0"), r"--batch-size must be"),
    Case("predict-tta-mismatch", lambda e: _predict(e, "--tta"), r"tuned without test-time augmentation"),
    Case("predict-corrupt-config", lambda e: (e.bundle.joinpath("config.json").write_bytes(b"\xff\xfe"), _predict(e))[1],
         r"config.json: not valid JSON"),
    Case("predict-temperature-negative", _with_bundle(_predict, lambda c: c.__setitem__("calibration", {"temperature": -1})),
         r"temperature -1 must be a positive number"),
    Case("predict-safetensors-truncated", _corrupt_safetensors, r"model.safetensors: not a readable safetensors file"),
    Case("predict-tensors-do-not-fit", _foreign_tensors,
         r"describes a model with [\d,]+ weights but model.safetensors holds 42"),  # refused before building
    Case("predict-tensors-reshaped", _reshaped_tensors, r"do not fit the architecture"),
    Case("predict-nan-tensors", _nan_tensors, r"NaN or infinite"),
    Case("predict-unknown-task", _with_bundle(_predict, lambda c: c.__setitem__("task", "3class")), r"unknown task '3class'"),
    Case("predict-missing-key", _with_bundle(_predict, lambda c: c.pop("preprocessing")), r"missing key 'preprocessing'"),
    Case("predict-bad-csv", lambda e: ["predict", "--model", str(e.bundle), str(_csv_of(e, 'path\n"unclosed\n'))],
         r"cannot be read as a CSV of paths.*Remedy"),
    Case("predict-out-is-a-folder", lambda e: _predict(e, "--out", str(e.tmp)), r"is a folder, not a file.*Remedy"),
    Case("predict-calibration-garbage", _with_bundle(_predict, lambda c: c.__setitem__("calibration", "warm")),
         r"temperature 'warm' must be a positive number"),
    Case("predict-metadata-encoder-damaged", _with_bundle(_predict, lambda c: c.__setitem__("metadata", {"fields": ["x"]})),
         r"'metadata' encoder is damaged|unknown field"),
    Case("evaluate-split-csv-garbage", _evaluate(plant=lambda e: (e.run / "split.csv").write_bytes(b"\x00\xff" * 50)),
         r"split.csv: cannot be read as CSV|no longer matches|missing column"),
    Case("evaluate-split-csv-empty", _evaluate(plant=lambda e: (e.run / "split.csv").write_text("")),
         r"split.csv: (cannot be read as CSV|has no rows)"),
    Case("evaluate-threshold-json-corrupt", _evaluate(plant=lambda e: (e.run / "threshold.json").write_text("[1, 2")),
         r"threshold.json is not valid JSON"),
    Case("train-metadata-dx-type", _train("--metadata", "dx_type"), r"'dx_type' is refused as a feature"),
    Case("train-metadata-unknown", _train("--metadata", "age,shoe_size"), r"(unknown field|no column).*Remedy"),
    Case("train-recipe-unknown", lambda e: [*_train()(e), "--config", str(_csv_of(e, "train:\n  recipe: turbo\n"))],
         r"--recipe 'turbo' is not a known recipe"),
    Case("train-ema-decay-1", _train("--ema-decay", "1.0"), r"--ema-decay .*\(0, 1\)"),
    Case("train-label-smoothing-0.7", _train("--label-smoothing", "0.7"), r"--label-smoothing"),
    Case("lr-find-bad-range", lambda e: ["lr-find", "--data", str(e.data), "--out", str(e.tmp / "lr"), "--min-lr", "1",
                                         "--max-lr", "0.1"], r"--min-lr 1.0 and --max-lr 0.1 must satisfy"),
    # explain / export
    Case("explain-out-in-bundle", lambda e: ["explain", "--model", str(e.bundle), str(e.image()), "--out", str(e.bundle)],
         r"inside the model bundle"),
    Case("export-out-json", lambda e: ["export", "--model", str(e.bundle), "--out", str(e.tmp / "x.json")],
         r"needs a .onnx name.*Remedy: --out .*x.onnx"),
    Case("export-out-in-bundle", lambda e: ["export", "--model", str(e.bundle), "--out", str(e.bundle / "model.onnx")],
         r"inside the model bundle"),
    Case("export-missing-image", lambda e: ["export", "--model", str(e.bundle), "--out", str(e.tmp / "m.onnx"),
                                            "--images", str(e.tmp / "nope.jpg")], r"nope.jpg: file not found"),
    Case("export-strip-image", lambda e: ["export", "--model", str(e.bundle), "--out", str(e.tmp / "m.onnx"),
                                          "--images", str(_strip_png(e.tmp / "strip.png"))], r"aspect ratio"),
    # serve / demo data
    Case("serve-bad-bundle", lambda e: ["serve", "--model", str(e.tmp)], r"is not a model bundle"),
    Case("serve-upload-0", lambda e: ["serve", "--model", str(e.bundle), "--max-upload-mb", "0"], r"--max-upload-mb"),
    Case("serve-port", lambda e: ["serve", "--model", str(e.bundle), "--port", "70000"], r"--port must be a TCP port"),
    Case("make-demo-data-n-0", lambda e: ["make-demo-data", str(e.tmp / "d"), "--n", "0"], r"--n .*Remedy: --n 600"),
    Case("demo-n-0", lambda e: ["demo", "--out", str(e.tmp / "d"), "--n", "0"], r"--n "),
]


def _pickled_weights(e) -> Path:
    path = e.tmp / "weights.pth"
    _bad_pickle(path)
    return path


def _class_folders(e, names=("benign", "malignant", "melanoma")) -> Path:
    root = e.tmp / "folders"
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(3):
            shutil.copy(e.image(3 * i + j), root / name / f"{name}{j}.jpg")
    return root


def _prepared(e) -> Path:
    assert main(["prepare", "--data", str(e.data), "--out", str(e.tmp / "prepared"), "--quiet"]) == 0
    return e.tmp / "prepared"


def _two_site_columns(e) -> Path:
    return _csv_of(e, f"path,site,localization\n{e.image()},back,face\n")


def _site(e, keep: str = "all") -> Path:
    """The demo images as another site's (ids prefixed EXT, so none is a training image); ``keep`` benign."""
    def edit(meta, root):
        for image_id in meta["image_id"]:
            (root / "images" / f"{image_id}.jpg").rename(root / "images" / f"EXT{image_id}.jpg")
        meta = meta.assign(image_id="EXT" + meta["image_id"], lesion_id="EXT" + meta["lesion_id"])
        return meta[meta["dx"].isin(["nv", "bkl", "df", "vasc"])] if keep == "benign" else meta
    return e.dataset(f"site-{keep}", edit)


def _adapt(*flags, data=_site):
    return lambda e: ["adapt", "--model", str(e.bundle), "--data", str(data(e)), "--out", str(e.tmp / "adapted"),
                      "--bootstrap", "20", *flags]


ROUND2_CASES = [
    Case("predict-bundle-describes-a-bigger-model", _with_bundle(_predict, lambda c: c["backbone"].update(
        timm_id="resnet152", name="resnet152")), r"describes a model with [\d,]+ weights but model.safetensors holds"),
    Case("cv-resume-nothing", lambda e: ["cv", "--data", str(e.data), "--out", str(e.tmp / "cv"), "--folds", "2",
                                         "--resume"], r"no folds/ to continue.*without --resume"),
    Case("evaluate-threshold-json-damaged", _evaluate(plant=lambda e: (e.run / "threshold.json").write_text(
        '{"operating_points": [{"operating_point": "x", "threshold": "high"}]}')), r"threshold.json: its operating_points"),
    Case("adapt-no-malignant", _adapt(data=lambda e: _site(e, "benign")), r"0 malignant.*needs both.*--unlabelled"),
    Case("adapt-training-images", _adapt(data=lambda e: e.data), r"were used to train or select this model"),
    Case("adapt-target-0", _adapt("--target-sensitivity", "0"), r"--target-sensitivity must be a fraction in \(0, 1\]"),
    Case("adapt-target-1.5", _adapt("--target-sensitivity", "1.5"), r"--target-sensitivity must be a fraction"),
    Case("adapt-out-is-the-bundle", lambda e: ["adapt", "--model", str(e.bundle), "--data", str(_site(e)), "--out",
                                               str(e.bundle)], r"inside the model bundle|replace the original bundle"),
    Case("evaluate-adapt-fraction-1", lambda e: ["evaluate", "--model", str(e.bundle), "--data", str(_site(e)),
                                                 "--out", str(e.tmp / "ev"), "--adapt-fraction", "1"],
         r"--adapt-fraction must leave images to score"),
    Case("train-pickled-weights", lambda e: _train("--weights", str(_pickled_weights(e)))(e),
         r"refused.*could run arbitrary code.*Remedy:.*safetensors"),
    Case("train-resume-nothing", lambda e: ["train", "--out", str(_prepared(e)), "--resume"],
         r"no checkpoint to continue from.*Remedy: train without --resume"),
    Case("prepare-values-twice", _prepare("--values", "mel=mel,MEL=nv"), r"'MEL' is given twice"),
    Case("prepare-unknown-class-folder", lambda e: ["prepare", "--data", str(_class_folders(e)), "--out",
                                                    str(e.tmp / "new")], r"melanoma/ \(3 images\).*--values"),
    Case("evaluate-model-into-a-run", lambda e: ["evaluate", "--model", str(e.bundle), "--data", str(e.data), "--out",
                                                 str(e.run)], r"is a training run.*Remedy: choose a new folder"),
    Case("audit-run-of-another-dataset", lambda e: ["audit", "--data", str(e.dataset("subset", lambda m, r: m.head(30))),
                                                    "--run", str(e.run), "--out", str(e.tmp / "audit")],
         r"prepared from another dataset"),
    Case("predict-two-site-columns", lambda e: ["predict", "--model", str(e.bundle), str(_two_site_columns(e))],
         r"'site', 'localization' all mean localization"),
    Case("predict-bundle-markup", _with_bundle(_predict, lambda c: c["threshold"].__setitem__(
        "target_sensitivity", "<script>alert(1)</script>")), r"threshold.target_sensitivity"),
    Case("predict-bundle-huge-ensemble", _with_bundle(_predict, lambda c: c.__setitem__(
        "ensemble", {"size": 100000})), r"ensemble.size 100000"),
    Case("tune-threshold-cv-run", _tune(plant=lambda e: (e.run / "cv.json").write_text("{}")),
         r"cross-validation run.*Remedy: re-tune it with `skinlesion cv"),
]

CASES += ROUND2_CASES


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base, demo_data, tmp_path, capsys):
    env = Env(tmp_path / "run", demo_data, tmp_path / "work")
    shutil.copytree(base, env.run)
    env.tmp.mkdir()
    argv = [*case.argv(env), "--quiet"]
    before_run, before_tmp = snapshot(env.run), snapshot(env.tmp)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == case.code, (code, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err
    if case.code == 2:
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert "Remedy: " in err, err
    import re
    assert re.search(case.message, err, re.S), err
    assert snapshot(env.run) == before_run, "the run directory was changed"
    after_tmp = snapshot(env.tmp)
    assert {k: v for k, v in after_tmp.items() if k in before_tmp} == before_tmp, "an input was changed"
    assert not [k for k in after_tmp if ".tmp" in k], "a temp file was left behind"
    if case.code == 2:
        assert set(after_tmp) == set(before_tmp), f"files were written: {set(after_tmp) - set(before_tmp)}"
    assert not (env.run / "checkpoints" / "phase1" / "PWNED").exists()
    assert not (env.run / "checkpoints" / "phase2" / "PWNED").exists()
