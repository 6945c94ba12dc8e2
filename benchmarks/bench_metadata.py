"""Metadata fusion vs image only, on the same low-res dev split and the same frozen ImageNet backbone:
the head (and, with metadata, the metadata branch) is trained on cached backbone features, so the
difference isolates what age, sex and site add. Test ROC-AUC / PR-AUC with lesion-bootstrap CIs and the
paired bootstrap difference.

    python benchmarks/bench_metadata.py            # ~5 CPU-min (two head-only trainings)
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import REPO, SHARED, machine, table
from skinlesion.data.run import Run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ham10000-lowres"))
    ap.add_argument("--out", default=str(REPO / "runs" / "metadata"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()

    import pandas as pd

    from skinlesion.config import load_config
    from skinlesion.data.prepare import prepare
    from skinlesion.evaluation.bootstrap import paired_difference
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.evaluation.metrics import roc_auc
    from skinlesion.training.fit import train

    out = Path(args.out)
    results, preds = {}, {}
    for name, fields in (("image_only", ""), ("with_metadata", "age,sex,localization")):
        overrides = {"data.root": args.data, "train.phases": 2, "train.epochs": args.epochs,
                     "train.phase1_epochs": args.epochs, "train.cache_features": 1, "train.lr": 1e-3,
                     "train.metadata": fields, "train.patience": args.epochs}
        cfg = load_config(overrides=overrides).validate()
        run = out / name
        if run.exists():
            shutil.rmtree(run)
        if not (out / "_split" / "split.csv").is_file():
            prepare(cfg, Run.quiet(out / "_split"))
        run.mkdir(parents=True)
        for f in ("split.csv", "split.json"):
            shutil.copy(out / "_split" / f, run / f)
        t0 = time.perf_counter()
        train(cfg, Run.quiet(run))
        m = evaluate_run(run, opts=EvalOptions(n_boot=args.bootstrap, progress=False)).metrics
        preds[name] = pd.read_csv(run / "test_predictions.csv", dtype={"image_id": str, "lesion_id": str})
        results[name] = {"minutes": (time.perf_counter() - t0) / 60,
                         **{k: m["at_threshold"][k] for k in ("roc_auc", "pr_auc", "sensitivity", "specificity")}}
    a, b = preds["with_metadata"], preds["image_only"].set_index("image_id").loc[preds["with_metadata"]["image_id"]]
    diff = paired_difference(roc_auc, a["label"], (a["probability"], b["probability"].to_numpy()), a["lesion_id"],
                             args.bootstrap, 0)
    ci = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    print(table([[k, f"{v['minutes']:.1f}", ci(v["roc_auc"]), ci(v["pr_auc"]), ci(v["sensitivity"]), ci(v["specificity"])]
                 for k, v in results.items()], ["variant", "min", "test ROC-AUC", "test PR-AUC", "sens@thr", "spec@thr"]))
    print(f"ROC-AUC difference (metadata - image only): {diff['difference']:+.4f} [{diff['ci_low']:+.4f}, "
          f"{diff['ci_high']:+.4f}], paired bootstrap p = {diff['p_value']:.4f}")
    target = REPO / "benchmarks" / "results" / "metadata_lowres.json"
    target.write_text(json.dumps({"protocol": "frozen lite0 backbone, cached features, head (+ metadata MLP) "
                                  f"trained {args.epochs} epochs; threshold 0.5 (untuned)", "results": results,
                                  "roc_auc_difference": diff, "machine": machine()}, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
