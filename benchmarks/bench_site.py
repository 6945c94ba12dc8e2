"""Numbers at the user's own site, measured: for trained runs on the low-res HAM10000 split, the calibration
on HAM test (ECE before/after), then on an external set from another clinic (isic2017-dev): ROC-AUC, ECE
before/after, sensitivity/specificity at the HAM-tuned threshold (the drift), the threshold adapted with 25,
50, 100 and 200 local malignant cases and scored on the held-back rest (sensitivity vs the 0.90 target, over
repeated draws), the unlabelled prevalence estimate against the truth, and the shifted HAM test (the
acquisition shifts of bench_recipes) for the colour-constancy comparison.

    python benchmarks/bench_site.py --run runs/lowres-default --run runs/lowres-cc \\
        --external ../shared/data/isic2017-dev --out benchmarks/results/site_lowres

Baseline in the same run: the unadapted HAM threshold and the uncalibrated probabilities.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import SHARED, machine, table

SIZES = (25, 50, 100, 200)


def external_figures(run: Path, external: Path, repeats: int, n_boot: int, seed: int = 0) -> dict:
    from skinlesion.data.formats import TableSpec
    from skinlesion.evaluation.calibration import Calibration
    from skinlesion.evaluation.site_data import read_site, site_predictions
    from skinlesion.evaluation.metrics import expected_calibration_error, roc_auc, threshold_metrics, top_label_ece
    from skinlesion.evaluation.site import Cases, local_cases_curve, unlabelled_estimate
    from skinlesion.evaluation.summary import auc_estimates
    from skinlesion.inference.bundle import load_bundle
    bundle = load_bundle(run / "bundle")
    ds = read_site(bundle, external, TableSpec(), 0.0, False, "use another external set")
    preds = site_predictions(bundle, ds, False, 0, False)
    y, p, g = preds["label"].to_numpy(), preds["probability"].to_numpy(), preds["lesion_id"].to_numpy()
    cal = Calibration.from_config(bundle.config.get("calibration"))
    q = cal.apply(p) if cal else p
    at_ham = threshold_metrics(y, p, bundle.threshold)
    curve = local_cases_curve(Cases(y, p, g), 0.90, sizes=SIZES, repeats=repeats, seed=seed)
    entry = bundle.config.get("calibration") or {}
    pi0 = entry["n_malignant"] / entry["n_images"]
    unl = unlabelled_estimate(q, g, pi0, float(cal.apply(bundle.threshold)) if cal else bundle.threshold,
                              n_boot, seed)
    from skinlesion.evaluation.site import adjusted_mean
    pacc = adjusted_mean(q, entry["mean_probability_malignant"], entry["mean_probability_benign"]) \
        if entry.get("mean_probability_malignant") is not None else None
    return {"n_images": int(len(y)), "n_malignant": int(y.sum()), "prevalence": float(y.mean()),
            **auc_estimates(preds, n_boot, seed),
            "roc_auc_point": roc_auc(y, p),
            "ece_raw": expected_calibration_error(y, p), "ece_calibrated": expected_calibration_error(y, q),
            "ece_top_label_raw": top_label_ece(y, p), "ece_top_label_calibrated": top_label_ece(y, q),
            "mean_probability_raw": float(p.mean()), "mean_probability_calibrated": float(q.mean()),
            "ham_threshold": bundle.threshold, "sensitivity_at_ham_threshold": at_ham["sensitivity"],
            "specificity_at_ham_threshold": at_ham["specificity"], "adapted": curve,
            "unlabelled": {k: v.to_dict() for k, v in unl.items()}, "reference_prevalence": pi0,
            "prevalence_adjusted_mean": pacc}


def ham_figures(run: Path, n_boot: int) -> dict:
    import pandas as pd

    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.evaluation.tune import tune_threshold
    if not (run / "threshold.json").is_file() or "calibration" not in json.loads((run / "bundle/config.json").read_text()):
        tune_threshold(run, 0.90)  # fits the calibration too
    m = evaluate_run(run, opts=EvalOptions(n_boot=n_boot, progress=False)).metrics
    c = m["calibration"]
    val = pd.read_csv(run / "val_predictions.csv")
    return {"test_roc_auc": m["at_threshold"]["roc_auc"], "test_sensitivity": m["at_threshold"]["sensitivity"],
            "test_specificity": m["at_threshold"]["specificity"], "raw": c["raw"], "calibrated": c.get("calibrated"),
            "calibration": c.get("calibration"), "val_mean_probability": float(val["probability"].mean())}


def shifted_figures(run: Path, data: Path, n_boot: int) -> dict:
    """Mean ROC-AUC of the HAM test split under bench_recipes' acquisition shifts."""
    import pandas as pd

    from bench_recipes import SHIFTS, auc_ci, shift
    from skinlesion.data.images import load_rgb
    from skinlesion.data.metadata import find_images
    from skinlesion.inference.predictor import Predictor
    from skinlesion.inference.bundle import load_bundle
    test = pd.read_csv(run / "test_predictions.csv", dtype={"image_id": str, "lesion_id": str})
    images, predictor = find_images(data), Predictor(load_bundle(run / "bundle"), batch_size=64, calibrated=False)
    out = {}
    for s in SHIFTS:
        probs = [predictor.predict([shift(load_rgb(images[k]), s) for k in test["image_id"][i:i + 64]])["probability"]
                 for i in range(0, len(test), 64)]
        out[s] = auc_ci(test.assign(probability=np.concatenate(probs)), n_boot)["roc_auc"]["value"]
    return {"per_shift": out, "mean": float(np.mean(list(out.values())))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="a trained run (repeatable)")
    ap.add_argument("--external", default=str(SHARED / "isic2017-dev"))
    ap.add_argument("--data", default=str(SHARED / "ham10000-lowres"), help="the runs' HAM data (for shifts)")
    ap.add_argument("--repeats", type=int, default=200, help="draws per local-case count")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-shifts", action="store_true")
    ap.add_argument("--out", default=None, help="write OUT.json, OUT.md and OUT_curve.png")
    args = ap.parse_args()
    rows = []
    for r in map(Path, args.run):
        print(f"{r}: HAM test", flush=True)
        row = {"run": str(r), "ham": ham_figures(r, args.bootstrap)}
        cfg = json.loads((r / "bundle/config.json").read_text())
        row["colour_constancy"] = bool(cfg["preprocessing"].get("colour_constancy"))
        print(f"{r}: external {args.external}", flush=True)
        row["external"] = external_figures(r, Path(args.external), args.repeats, args.bootstrap)
        if not args.no_shifts:
            print(f"{r}: shifted test", flush=True)
            row["shifted"] = shifted_figures(r, Path(args.data), args.bootstrap)
        rows.append(row)
    text = report(rows)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"runs": rows, "machine": machine()}, indent=2) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
        from skinlesion.evaluation.plots import local_cases_plot
        if rows[0]["external"]["adapted"]:
            local_cases_plot(rows[0]["external"]["adapted"], 0.90, Path(str(out) + "_curve.png"))
        print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}, {out}_curve.png")
    return 0


def report(rows: list[dict]) -> str:
    ci = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    lines = []
    for r in rows:
        h, e = r["ham"], r["external"]
        lines += [f"## {r['run']}" + (" (colour constancy)" if r["colour_constancy"] else ""), "",
                  table([["HAM test ROC-AUC", ci(h["test_roc_auc"])],
                         ["HAM test ECE raw -> calibrated", f"{h['raw']['ece']:.3f} -> {h['calibrated']['ece']:.3f}"],
                         ["HAM test top-label ECE raw -> calibrated",
                          f"{h['raw']['ece_top_label']:.3f} -> {h['calibrated']['ece_top_label']:.3f}"],
                         ["HAM test Brier raw -> calibrated", f"{h['raw']['brier']:.3f} -> {h['calibrated']['brier']:.3f}"],
                         ["HAM test mean probability raw / calibrated / prevalence",
                          f"{h['raw']['mean_probability']:.3f} / {h['calibrated']['mean_probability']:.3f} / "
                          f"{h['raw']['prevalence']:.3f}"],
                         ["shifted HAM test mean ROC-AUC", f"{r['shifted']['mean']:.3f}" if "shifted" in r else "-"],
                         ["external ROC-AUC", ci(e["roc_auc"])],
                         ["external ECE raw -> calibrated", f"{e['ece_raw']:.3f} -> {e['ece_calibrated']:.3f}"],
                         ["external sens / spec at the HAM threshold",
                          f"{e['sensitivity_at_ham_threshold']:.3f} / {e['specificity_at_ham_threshold']:.3f}"],
                         ["external prevalence: EM estimate (truth)",
                          f"{ci(e['unlabelled']['prevalence'])} ({e['prevalence']:.3f})"],
                         ["external prevalence: adjusted mean probability (PACC)",
                          "-" if e.get("prevalence_adjusted_mean") is None else f"{e['prevalence_adjusted_mean']:.3f}"]],
                        ["figure", "value"]), "",
                  table([[c["malignant_cases"], c["benign_cases"], f"{c['sensitivity_mean']:.3f}",
                          f"[{c['sensitivity_low']:.3f}, {c['sensitivity_high']:.3f}]", f"{c['ci_half_width']:.3f}"]
                         for c in e["adapted"]],
                        ["local malignant", "local benign", "sensitivity on the rest (mean)", "95% range",
                         "half-width"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
