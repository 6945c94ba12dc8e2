"""A finished `skinlesion search` against baselines on the same split: the study's trials (states, minutes),
then the best trial's run and each baseline run tuned and evaluated, validation and test ROC-AUC with 95%
lesion-bootstrap CIs, and paired bootstrap tests on the test images.

    python benchmarks/bench_search.py --study runs/search-lowres --baseline runs/search-default \\
        --baseline runs/lowres-batched --out benchmarks/results/search_lowres

The best trial's folder is copied (to STUDY_DIR-best) before it is tuned and evaluated, so the study folder
never holds a test-set figure. Baselines measured in the same run: the default recipe at the search's
per-trial budget, and the default recipe fully trained.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from _common import machine, table, write_results


def ready(run: Path) -> Path:
    """Tune (when the run has no threshold) and evaluate (when it has no metrics.json) the run."""
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.evaluation.tune import tune_threshold
    if not (run / "threshold.json").is_file():
        tune_threshold(run, 0.90)
    if not (run / "metrics.json").is_file():
        evaluate_run(run, opts=EvalOptions(progress=False))
    return run


def figures(run: Path) -> dict:
    from skinlesion.evaluation.summary import auc_estimates
    val = pd.read_csv(run / "val_predictions.csv")
    test = json.loads((run / "metrics.json").read_text())["at_threshold"]
    return {"run": str(run), "val": auc_estimates(val, 1000, 0)["roc_auc"], "test": test["roc_auc"],
            "test_sensitivity": test.get("sensitivity"), "test_specificity": test.get("specificity")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True)
    p.add_argument("--baseline", action="append", default=[])
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    from skinlesion.evaluation.compare import compare_runs, format_comparison
    study = Path(args.study)
    trials = pd.read_csv(study / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    best_row = done.loc[done["value"].idxmax()]
    best = study.parent / f"{study.name}-best"
    if not best.exists():
        shutil.copytree(study / best_row["run_dir"], best)
    runs = [ready(best)] + [ready(Path(b)) for b in args.baseline]
    rows = [figures(r) for r in runs]
    comparison = compare_runs(runs)
    params = {k.removeprefix("param_"): (best_row[k].item() if hasattr(best_row[k], "item") else best_row[k])
              for k in trials.columns if k.startswith("param_")}
    result = {"machine": machine(), "study": str(study), "trials": {
        "states": trials["state"].value_counts().to_dict(), "minutes_total": float(trials["minutes"].sum()),
        "minutes_per_trial_mean": float(trials["minutes"].mean()), "best_trial": int(best_row["number"]),
        "best_validation_value": float(best_row["value"]), "best_params": params},
        "runs": rows, "paired_test_roc_auc": comparison["paired_roc_auc"]}
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    text = "\n".join([
        f"study {study}: {result['trials']['states']}; {result['trials']['minutes_total']:.0f} trial-minutes in all "
        f"({result['trials']['minutes_per_trial_mean']:.1f} per trial)",
        f"best trial {result['trials']['best_trial']} (validation {best_row['value']:.4f}): {params}", "",
        table([[r["run"], f(r["val"]), f(r["test"])] for r in rows], ["run", "val ROC-AUC [95% CI]",
                                                                       "test ROC-AUC [95% CI]"]),
        "", format_comparison(comparison)])
    print(text)
    write_results(args.out, result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
