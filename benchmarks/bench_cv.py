"""K-fold cross-validation of the default recipe on the low-res HAM10000 set: per-fold validation ROC-AUC
(mean ± sd), the out-of-fold threshold and the test sensitivity/specificity it gives, the ensemble against
the best and the mean single fold model on the held-out test split (ROC-AUC, PR-AUC with lesion-bootstrap
CIs), total CPU time, and what the shared decoded-image cache saved.

    python benchmarks/bench_cv.py --folds 5 --epochs 4      # ~70 CPU-min on 2 cores (4 of the 12 epochs)

The cache saving is measured, not assumed: the cold decode of every image is timed once (into a fresh
cache folder that the folds then share); without the shared cache every fold would decode again, and
without any cache every epoch of every fold would. Writes benchmarks/results/cv_lowres.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import REPO, SHARED, machine
from bench_recipes import cpu_seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ham10000-lowres"))
    ap.add_argument("--out", default=str(REPO / "runs" / "cv5"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="shorter than the recipe's schedule (say so)")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--limit-train-batches", type=float, default=None, help="smoke runs only")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "cv_lowres.json"))
    args = ap.parse_args()
    if not (Path(args.data) / "HAM10000_metadata.csv").is_file():
        print(f"no data at {args.data} (set --data)", file=sys.stderr)
        return 2

    from skinlesion.config import load_config
    from skinlesion.data.run import Run
    from skinlesion.data.cache import build_cache, default_num_workers
    from skinlesion.data.transforms import Preprocessing
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.models import get_spec
    from skinlesion.training import cv
    from skinlesion.training.fit import _split_with_paths, auto_image_size

    out = Path(args.out)
    cache_dir = out / "_cache"
    overrides = {"data.root": args.data, "train.cache_dir": str(cache_dir)}
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.arch:
        overrides["train.arch"] = args.arch
    if args.limit_train_batches:
        overrides["train.limit_train_batches"] = args.limit_train_batches
    cfg = load_config(overrides=overrides).validate()
    c_start, t_start = cpu_seconds(), time.perf_counter()
    cv._split(cfg, out, args.folds, False, print)
    _, split, _ = _split_with_paths(cfg, out, False, lambda *a: None)
    t = cfg.train
    spec = get_spec(t.arch, t.image_size or auto_image_size(get_spec(t.arch).image_size, split["path"].tolist()))
    t0, c0 = time.perf_counter(), cpu_seconds()
    had_cache = any(cache_dir.glob("images-*.npy"))
    build_cache(split["path"].tolist(), Preprocessing.for_spec(spec), cache_dir,
                num_workers=default_num_workers(t.num_workers), progress=False)
    decode_wall, decode_cpu = time.perf_counter() - t0, cpu_seconds() - c0

    t0 = time.perf_counter()
    result = cv.run_cv(cfg, Run.quiet(out), cv.CVOptions(folds=args.folds, resume=(out / "folds").exists()))
    cv_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_run(out, opts=EvalOptions(n_boot=args.bootstrap, progress=False)).metrics
    eval_wall = time.perf_counter() - t0
    s = result.summary
    row = {"folds": args.folds, "recipe": cfg.train.recipe, "arch": t.arch, "image_size": spec.image_size,
           "epochs": t.epochs, "epochs_note": "shortened from the recipe's 12" if args.epochs else "recipe's own",
           "per_fold_val": s["per_fold"], "val_roc_auc": s["val_roc_auc"], "val_pr_auc": s["val_pr_auc"],
           "oof": s["oof"], "oof_threshold": s["threshold"]["chosen"],
           "test_at_oof_threshold": {k: ev["at_threshold"][k] for k in ("sensitivity", "specificity")},
           "cv_test": ev["cv"], "cpu_min_total": (cpu_seconds() - c_start) / 60,
           "wall_min": {"total": (time.perf_counter() - t_start) / 60, "cv": cv_wall / 60, "evaluate": eval_wall / 60},
           "cache": {"cold_decode_wall_s": decode_wall, "cold_decode_cpu_s": decode_cpu, "images": len(split),
                     "was_already_built": had_cache,
                     "saved_vs_per_fold_cache_s": decode_wall * (args.folds - 1),
                     "saved_vs_no_cache_s": decode_wall * (args.folds * t.epochs - 1)},
           "machine": machine()}
    Path(args.result).write_text(json.dumps(row, indent=2) + "\n")
    f = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    print(f"per-fold val ROC-AUC {s['val_roc_auc']['mean']:.3f} ± {s['val_roc_auc']['sd']:.3f}; "
          f"OOF threshold {s['threshold']['value']:.4f}; test sens {f(ev['at_threshold']['sensitivity'])}, "
          f"spec {f(ev['at_threshold']['specificity'])}")
    c = ev["cv"]
    print(f"test ROC-AUC: ensemble {f(c['ensemble']['roc_auc'])}, single mean {c['single_mean']['roc_auc']:.3f} ± "
          f"{c['single_sd']['roc_auc']:.3f}, best single ({c['best_single']}) "
          f"{max(r['roc_auc']['value'] for r in c['members']):.3f}; PR-AUC ensemble {f(c['ensemble']['pr_auc'])}")
    print(f"CPU {row['cpu_min_total']:.1f} min; cold decode {decode_wall:.1f} s, saved "
          f"{row['cache']['saved_vs_per_fold_cache_s']:.0f} s vs a cache per fold, "
          f"{row['cache']['saved_vs_no_cache_s']:.0f} s vs decoding every epoch; wrote {args.result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
