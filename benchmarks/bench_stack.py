"""Stacked trees (`cv --stack gbdt`) against the MLP metadata fusion and image only, on the same 5 folds:
out-of-fold ROC-AUC (the stack's from its nested out-of-fold scores) and test ROC-AUC of each cv bundle, with
95% lesion-bootstrap CIs, and paired bootstrap tests on the test images.

    python benchmarks/bench_stack.py --image runs/cv-image --mlp runs/cv-mlp --stack runs/cv-stack \\
        [--stack runs/cv-stack-tta] --out benchmarks/results/stack_lowres

Each run is a finished `skinlesion cv` (the stack runs: `cv --resume --stack gbdt` on a copy of the image-only
cv, so the folds are the very same models). Runs without metrics.json are evaluated first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from _common import machine, table, write_results


def oof_frame(run: Path) -> pd.DataFrame:
    stacked = run / "stack_oof_predictions.csv"
    frame = pd.read_csv(stacked if stacked.is_file() else run / "oof_predictions.csv")
    split = pd.read_csv(run / "split.csv")[["image_id", "lesion_id"]]
    return frame.drop(columns=["lesion_id"], errors="ignore").merge(split, on="image_id")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True)
    p.add_argument("--mlp", required=True)
    p.add_argument("--stack", action="append", required=True)
    p.add_argument("--out")
    args = p.parse_args(argv)
    from skinlesion.evaluation.compare import compare_runs, format_comparison
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.evaluation.summary import auc_estimates
    runs = [Path(args.image), Path(args.mlp), *map(Path, args.stack)]
    names = ["image only", "MLP fusion", *[f"GBDT stack ({Path(s).name})" for s in args.stack]]
    rows = []
    for name, run in zip(names, runs):
        if not (run / "metrics.json").is_file():
            evaluate_run(run, opts=EvalOptions(progress=False))
        test = json.loads((run / "metrics.json").read_text())["at_threshold"]
        oof = auc_estimates(oof_frame(run), 1000, 0)
        features = json.loads((run / "stack.json").read_text())["features"] if (run / "stack.json").is_file() else None
        rows.append({"name": name, "run": str(run), "oof_roc_auc": oof["roc_auc"], "test_roc_auc": test["roc_auc"],
                     "test_pr_auc": test["pr_auc"], "features": features})
    comparison = compare_runs(runs)
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    text = "\n".join([table([[r["name"], r["run"], f(r["oof_roc_auc"]), f(r["test_roc_auc"]), f(r["test_pr_auc"])]
                             for r in rows], ["model", "run", "out-of-fold ROC-AUC", "test ROC-AUC", "test PR-AUC"]),
                      "", format_comparison(comparison)])
    print(text)
    write_results(args.out, {"machine": machine(), "rows": rows, "paired_test_roc_auc": comparison["paired_roc_auc"]},
                  text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
