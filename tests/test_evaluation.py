"""tune-threshold, evaluate (run and external), report, model card and compare on a tiny trained run."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinlesion.cli import main
from skinlesion.errors import DataError
from skinlesion.evaluation.compare import compare_runs
from skinlesion.evaluation.evaluate import evaluate_external, evaluate_run
from skinlesion.evaluation.site_data import EvalOptions, SiteData
from skinlesion.evaluation.summary import summarize
from skinlesion.evaluation.tune import tune_threshold
from skinlesion.inference.bundle import BundleError
from skinlesion.training.fit import train
from conftest import tiny_cfg
from skinlesion.data.run import Run


@pytest.fixture(scope="module")
def trained_run(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = tiny_cfg(demo_data, tmp, epochs=2, limit_train_batches=None)
    train(cfg, Run.quiet(tmp / "run"))
    return tmp / "run"


def test_tune_threshold_writes_threshold_and_updates_bundle(trained_run, capsys):
    assert main(["tune-threshold", str(trained_run), "--target-sensitivity", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "Youden's J" in out and "sensitivity >= 0.95" in out
    thr = json.loads((trained_run / "threshold.json").read_text())
    val = pd.read_csv(trained_run / "val_predictions.csv")
    sens = ((val["probability"] >= thr["threshold"]) & (val["label"] == 1)).sum() / val["label"].sum()
    assert sens >= 0.8 and thr["source_split"] == "val" and thr["target_sensitivity"] == 0.8
    bundle = json.loads((trained_run / "bundle/config.json").read_text())
    assert bundle["threshold"]["value"] == thr["threshold"] and bundle["threshold"]["target_sensitivity"] == 0.8
    assert (trained_run / "plots/val_roc.png").is_file() and (trained_run / "plots/val_thresholds.png").is_file()


def test_evaluate_run_writes_metrics_report_and_card(trained_run):
    tune_threshold(trained_run, 0.9)
    result = evaluate_run(trained_run, calibrate=True, opts=EvalOptions(n_boot=100, num_workers=0, progress=False))
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "pauc_above_tpr80", "accuracy", "balanced_accuracy", "sensitivity", "specificity",
                "ppv", "npv", "f1", "brier", "ece"):
        assert set(m["at_threshold"][key]) == {"value", "ci_low", "ci_high"}, key
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"):
        assert key in m["at_0.5"], key  # threshold-free metrics (AUCs, Brier, ECE) are reported once
    assert m["threshold"]["value"] == json.loads((trained_run / "threshold.json").read_text())["threshold"]
    preds = pd.read_csv(trained_run / "test_predictions.csv")
    split = pd.read_csv(trained_run / "split.csv")
    assert set(preds["image_id"]) == set(split.loc[split["split"] == "test", "image_id"])
    assert {"sex", "age", "localization", "probability_calibrated"} <= set(preds.columns)
    assert {"sex", "age_band", "localization"} == set(m["subgroups"])
    assert sum(r["n"] for r in m["subgroups"]["sex"]) == len(preds)
    assert m["calibration"]["calibration"]["slope"] > 0 and "calibrated" in m  # slope + intercept (Platt)
    c = m["confusion_at_threshold"]
    assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == len(preds)
    html = result.report.read_text()
    for section in ("Headline metrics", "Calibration", "Per diagnosis", "Subgroups", "Threshold (validation operating points)",
                    "Training curves", "Split", "Run config", "Research and education use only"):
        assert section in html, section
    assert html.count("data:image/png;base64,") >= 8 and "src=\"http" not in html  # self-contained
    card = result.model_card.read_text()
    for section in ("## Intended use", "## Training data and split", "### Per diagnosis", "### Subgroup: sex",
                    "## Known limitations", "## How to reproduce", "fair skin", "Not a medical device"):
        assert section in card, section
    bundle = json.loads((trained_run / "bundle/config.json").read_text())
    assert bundle["metrics"]["test"]["roc_auc"]["value"] == m["at_threshold"]["roc_auc"]["value"]
    assert {k: bundle["calibration"][k] for k in ("slope", "intercept", "offset")} == \
        {k: m["calibration"]["calibration"][k] for k in ("slope", "intercept", "offset")}


def _held_out_metadata(run, demo_data, path):
    """The demo metadata restricted to the run's test images: data the model never saw."""
    split = pd.read_csv(run / "split.csv", dtype=str)
    meta = pd.read_csv(demo_data / "HAM10000_metadata.csv", dtype=str)
    meta[meta["image_id"].isin(split.loc[split["split"] == "test", "image_id"])].to_csv(path, index=False)
    return path


def test_evaluate_external_dataset_with_a_bundle(trained_run, demo_data, tmp_path, capsys):
    meta = _held_out_metadata(trained_run, demo_data, tmp_path / "held_out.csv")
    n = len(pd.read_csv(meta))
    code = main(["evaluate", "--model", str(trained_run / "bundle"), "--data", str(demo_data), "--metadata", str(meta),
                 "--out", str(tmp_path / "ext"), "--bootstrap", "50", "--num-workers", "0", "--quiet"])
    assert code == 0
    assert f"external ({n} images" in capsys.readouterr().out
    m = json.loads((tmp_path / "ext/metrics.json").read_text())
    assert m["n_images"] == n and (tmp_path / "ext/report.html").is_file() and (tmp_path / "ext/model_card.md").is_file()


def test_external_evaluation_refuses_the_models_own_training_images(trained_run, demo_data, tmp_path, capsys):
    code = main(["evaluate", "--model", str(trained_run / "bundle"), "--data", str(demo_data), "--out",
                 str(tmp_path / "ext"), "--bootstrap", "50", "--num-workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "were used to train or select this model" in err and "Traceback" not in err
    assert not (tmp_path / "ext").exists()


def test_external_data_errors_are_clear(trained_run, demo_data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(demo_data, bad)
    _held_out_metadata(trained_run, demo_data, bad / "HAM10000_metadata.csv")
    meta = pd.read_csv(bad / "HAM10000_metadata.csv")
    meta.loc[3, "dx"] = "lentigo"
    meta.to_csv(bad / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="unknown dx code.*'lentigo'"):
        evaluate_external(trained_run / "bundle", SiteData(str(bad)), tmp_path / "o1", EvalOptions(n_boot=10, num_workers=0, progress=False))
    meta.loc[3, "dx"] = "nv"
    meta.to_csv(bad / "HAM10000_metadata.csv", index=False)
    (bad / "images" / f"{meta.loc[5, 'image_id']}.jpg").unlink()
    with pytest.raises(DataError, match=f"{meta.loc[5, 'image_id']}.*--allow-missing"):
        evaluate_external(trained_run / "bundle", SiteData(str(bad)), tmp_path / "o2", EvalOptions(n_boot=10, num_workers=0, progress=False))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    with pytest.raises(BundleError, match="not a model bundle"):
        evaluate_external(tmp_path, SiteData(str(demo_data)), tmp_path / "o3", EvalOptions(n_boot=10, progress=False))


def test_compare_two_runs_on_the_same_images(trained_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    preds = pd.read_csv(other / "test_predictions.csv")
    preds["probability"] = np.random.default_rng(0).random(len(preds))  # an uninformative model
    preds.to_csv(other / "test_predictions.csv", index=False)
    result = compare_runs([trained_run, other], n_boot=200)
    assert 0 < result["paired_roc_auc"][0]["p_value"] <= 1  # never 0: bounded below by 2 / (B + 1)
    assert main(["compare", str(trained_run), str(other), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap p =" in out and str(other) in out
    with pytest.raises(DataError, match="listed twice"):
        compare_runs([trained_run, trained_run], n_boot=50)


def test_summary_per_dx_counts_and_one_class_error():
    frame = pd.DataFrame({"label": [0, 0, 1, 1, 1, 0], "probability": [0.1, 0.7, 0.8, 0.3, 0.9, 0.2],
                          "lesion_id": list("aabcde"), "dx": ["nv", "nv", "mel", "bcc", "mel", "bkl"]})
    s = summarize(frame, 0.5, "test", n_boot=20)
    per = {r["dx"]: r for r in s["per_dx"]}
    assert per["mel"]["called_malignant"]["value"] == 1.0 and per["bcc"]["called_malignant"]["value"] == 0.0
    assert per["nv"]["called_malignant"]["value"] == 0.5 and per["nv"]["n"] == 2
    with pytest.raises(ValueError, match="all benign"):
        summarize(frame.assign(label=0), 0.5, "test", n_boot=10)


def test_model_card_checklist_fills_what_the_run_knows_and_lists_the_rest(trained_run):
    from skinlesion.evaluation.checklist import AUTHOR, FILLED, checklist
    tune_threshold(trained_run, 0.9)
    evaluate_run(trained_run, opts=EvalOptions(n_boot=20, num_workers=0, progress=False))
    card = (trained_run / "model_card.md").read_text()
    assert "## Reporting checklist (TRIPOD+AI / CLAIM)" in card and "Still to write by the author:" in card
    m = json.loads((trained_run / "metrics.json").read_text())
    config = json.loads((trained_run / "bundle/config.json").read_text())
    split = json.loads((trained_run / "split.json").read_text())
    items = {i.topic: i for i in checklist(m, config, split)}
    assert items["Data partitions"].status == FILLED and "lesion-level" in items["Data partitions"].text
    assert items["Sample size and class balance"].status == FILLED and "malignant" in items["Sample size and class balance"].text
    assert items["Subgroups and fairness"].status == FILLED  # the demo data has age, sex and site
    assert items["Ethics approval and consent"].status == AUTHOR and items["External validation"].status == AUTHOR
    todo = card.split("Still to write by the author:")[1]
    assert "Ethics approval" in todo and "Data partitions" not in todo
    no_subgroups = checklist({**m, "subgroups": {}, "split": "external"}, config, None)
    by = {i.topic: i for i in no_subgroups}
    assert by["Subgroups and fairness"].status == AUTHOR and by["External validation"].status == FILLED
    assert by["Sample size and class balance"].status == AUTHOR


def test_error_gallery_lists_the_worst_mistakes_with_overlays(trained_run):
    evaluate_run(trained_run, opts=EvalOptions(n_boot=20, num_workers=0, progress=False))
    m = json.loads((trained_run / "metrics.json").read_text())
    preds = pd.read_csv(trained_run / "test_predictions.csv", dtype={"image_id": str})
    t = m["threshold"]["value"]
    g = m["gallery"]["groups"]
    fn = preds[(preds["label"] == 1) & (preds["probability"] < t)].sort_values("probability")["image_id"].head(8).tolist()
    fp = preds[(preds["label"] == 0) & (preds["probability"] >= t)].sort_values("probability", ascending=False)
    assert [i["image_id"] for i in g["false_negatives"]["items"]] == fn
    assert [i["image_id"] for i in g["false_positives"]["items"]] == fp["image_id"].head(8).tolist()
    assert all(i["dx"] == "bkl" and i["probability"] >= t for i in g["bkl_called_malignant"]["items"])
    for item in g["false_positives"]["items"][:2]:
        png = trained_run / item["png"]
        assert png.is_file() and Image.open(png).size[0] == 2 * Image.open(png).size[1]  # image | overlay
        assert {"age", "sex", "localization"} <= set(item)
    html = (trained_run / "report.html").read_text()
    assert ("Error analysis" in html) and (not fp.empty) == ("Most confident false positives" in html)


def test_several_external_sets_in_one_report_with_threshold_drift(trained_run, demo_data, tmp_path, capsys):
    tune_threshold(trained_run, 0.9)
    sets = []
    for name, keep in (("clinicA", slice(0, None, 2)), ("clinicB", slice(1, None, 2))):
        d = tmp_path / name
        shutil.copytree(demo_data, d)
        _held_out_metadata(trained_run, demo_data, d / "HAM10000_metadata.csv")
        meta = pd.read_csv(d / "HAM10000_metadata.csv")
        both = meta[meta["dx"].isin(["mel", "bcc", "akiec"])].head(4)  # keep both classes in each half
        pd.concat([meta.iloc[keep], both]).drop_duplicates("image_id").to_csv(d / "HAM10000_metadata.csv", index=False)
        sets.append(d)
    out = tmp_path / "ext"
    assert main(["evaluate", "--model", str(trained_run / "bundle"), "--data", str(sets[0]), "--data", str(sets[1]),
                 "--out", str(out), "--bootstrap", "20", "--num-workers", "0", "--quiet"]) == 0
    summary = json.loads((out / "external_summary.json").read_text())
    assert [r["dataset"] for r in summary["datasets"]] == ["clinicA", "clinicB"]
    thr = json.loads((trained_run / "bundle/config.json").read_text())["threshold"]["value"]
    for r, d in zip(summary["datasets"], sets):
        preds = pd.read_csv(out / r["dataset"] / "external_predictions.csv")
        y, p = preds["label"], preds["probability"]
        assert r["drift"]["sensitivity_reached"] == pytest.approx(((p >= thr) & (y == 1)).sum() / y.sum())
        needed = r["drift"]["threshold_needed"]
        assert ((p >= needed) & (y == 1)).sum() / y.sum() >= 0.9
        assert (out / r["dataset"] / "report.html").is_file()
    page = (out / "report.html").read_text()
    assert "Thresholds do not transfer" in page and "clinicA/report.html" in page and "threshold needed" in page


def test_external_validation_on_isic_ph2_and_class_folder_layouts(trained_run, tmp_path, capsys):
    """The README's walkthrough: an ISIC 2018 ground-truth folder and class folders in one report (format
    detected per set), and a PH2-like set (nested .bmp, 0/1/2 diagnosis) through a column/value mapping."""
    from PIL import Image
    from skinlesion.data.synthetic import make_demo_data
    fresh = make_demo_data(tmp_path / "fresh", n=48, seed=11, progress=False)
    meta = pd.read_csv(fresh / "HAM10000_metadata.csv")
    meta["label"] = meta["dx"].isin(["mel", "bcc", "akiec"]).astype(int)
    imgs = {p.stem: p for p in fresh.rglob("*.jpg")}
    isic, folders, ph2 = tmp_path / "isic2018", tmp_path / "folders", tmp_path / "ph2"
    cols = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    lines = ["image," + ",".join(cols)]
    for k, r in meta.iloc[:16].iterrows():
        (isic / "ISIC2018_Task3_Validation_Input").mkdir(parents=True, exist_ok=True)
        Image.open(imgs[r.image_id]).save(isic / "ISIC2018_Task3_Validation_Input" / f"ISIC_9{k:06d}.jpg")
        lines.append(f"ISIC_9{k:06d}," + ",".join("1.0" if c.lower() == r.dx else "0.0" for c in cols))
    (isic / "ISIC2018_Task3_Validation_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    for k, r in meta.iloc[16:32].iterrows():
        d = folders / ("malignant" if r.label else "benign")
        d.mkdir(parents=True, exist_ok=True)
        Image.open(imgs[r.image_id]).save(d / f"F{k:04d}.png")
    rows = []
    for k, r in meta.iloc[32:].iterrows():
        name = f"IMD{k:03d}"
        d = ph2 / "PH2 Dataset images" / name / f"{name}_Dermoscopic_Image"
        d.mkdir(parents=True)
        Image.open(imgs[r.image_id]).save(d / f"{name}.bmp")
        rows.append({"Image Name": name, "Clinical Diagnosis": 2 if r.label else (k % 2)})
    pd.DataFrame(rows).to_csv(ph2 / "PH2_dataset.csv", index=False)
    bundle = str(trained_run / "bundle")
    assert main(["evaluate", "--model", bundle, "--data", str(isic), "--data", str(folders), "--out",
                 str(tmp_path / "ext"), "--bootstrap", "20", "--num-workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "read as format isic" in out and "read as format folders" in out
    summary = json.loads((tmp_path / "ext" / "external_summary.json").read_text())
    assert [r["n_images"] for r in summary["datasets"]] == [16, 16]
    assert set(summary["datasets"][1]["per_dx"]) <= {"benign", "malignant"}  # folders give the label only
    assert main(["evaluate", "--model", bundle, "--data", str(ph2), "--format", "csv", "--metadata",
                 str(ph2 / "PH2_dataset.csv"), "--columns", "image=Image Name,dx=Clinical Diagnosis",
                 "--values", "0=nv,1=nv,2=mel", "--out", str(tmp_path / "ph2-eval"), "--bootstrap", "20",
                 "--num-workers", "0", "--quiet"]) == 0
    m = json.loads((tmp_path / "ph2-eval" / "metrics.json").read_text())
    assert m["n_images"] == 16 and {r["dx"] for r in m["per_dx"]} <= {"nv", "mel"}
