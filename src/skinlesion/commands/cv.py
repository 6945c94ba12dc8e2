"""`skinlesion cv`: lesion-grouped K-fold cross-validation and an ensemble bundle."""
from __future__ import annotations

from ..cli_options import add_training_arguments, run_of

NAME = "cv"
HELP = ("lesion-grouped K-fold cross-validation: every fold trained as a run under RUN_DIR/folds/, out-of-fold "
        "predictions and threshold, an ensemble bundle")
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "cv run directory")
    p.add_argument("--folds", type=int, default=5, help="K folds over train+val; the test share stays held out (default: 5)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per fold (default: 1)")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="for the out-of-fold threshold (default: 0.90)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted cv at its fold and epoch (a "
                   "finished one: re-pool, e.g. to add --stack)")
    p.add_argument("--stack", choices=["gbdt"], help="gbdt: gradient-boosted trees on the out-of-fold CNN scores and "
                   "the metadata fields, bundled with the fold models (the fold ensemble stays in RUN_DIR/bundle-image)")
    p.add_argument("--stack-tta", action="store_true", help="with --stack: the mean over four TTA views of the fold "
                   "models' score is a feature too (prediction then runs the four views)")


def main(args, cfg) -> int:
    from ..training.cv import CVOptions, run_cv
    opts = CVOptions(args.folds, args.seeds, args.target_sensitivity, args.resume, args.stack, args.stack_tta)
    result = run_cv(cfg, run_of(args), opts)
    if result is None:
        return 0
    s = result.summary
    print(f"{s['folds']}-fold cv ({s['seeds']} seed(s)): val ROC-AUC {s['val_roc_auc']['mean']:.3f} ± "
          f"{s['val_roc_auc']['sd']:.3f}, PR-AUC {s['val_pr_auc']['mean']:.3f} ± {s['val_pr_auc']['sd']:.3f} (mean ± sd "
          f"over folds); out-of-fold ROC-AUC {s['oof']['roc_auc']:.3f}")
    t = s["threshold"]
    print(f"out-of-fold threshold {t['value']:.4f} (sensitivity {t['chosen']['sensitivity']:.3f}, specificity "
          f"{t['chosen']['specificity']:.3f} on {t['n_images']} images, {t['n_malignant']} malignant)")
    if "stack" in s:
        st = s["stack"]
        print(f"stacked trees ({', '.join(st['features'])}): out-of-fold ROC-AUC {st['oof_stack']['roc_auc']:.3f} "
              f"(image only {st['oof_image']['roc_auc']:.3f}; the trees' own nested out-of-fold scores), threshold "
              f"{st['threshold']['value']:.4f}")
    print(f"{'stacked' if 'stack' in s else 'ensemble'} bundle: {result.bundle}  (evaluate it: skinlesion evaluate "
          f"{result.run_dir})")
    return 0
