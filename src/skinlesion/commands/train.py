"""`skinlesion train`: train a classifier on a run's split and save a bundle."""
from __future__ import annotations

from ..cli_options import add_training_arguments

NAME = "train"
HELP = "train a classifier on a run's split (running prepare first if needed) and save a bundle"
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "run directory (split, checkpoints, bundle)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")


def print_train_result(result) -> None:
    v = result.val_metrics
    print(f"val ROC-AUC {v['roc_auc']:.3f}, PR-AUC {v['pr_auc']:.3f}, sensitivity {v['sensitivity']:.3f} / "
          f"specificity {v['specificity']:.3f} at 0.5 ({result.epochs} epochs, {result.seconds / 60:.1f} min, "
          f"{result.train_images_per_s:.1f} train img/s)")
    print(f"bundle: {result.bundle}")


def main(args, cfg) -> int:
    from ..training.fit import train
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a DDP rank other than 0: rank 0 reports and writes the run's artifacts
        return 0
    print_train_result(result)
    return 0
