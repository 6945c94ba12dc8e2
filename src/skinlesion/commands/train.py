"""`skinlesion train`: train a classifier on a run's split and save a bundle."""
from __future__ import annotations

from ..cli_options import add_training_arguments, run_of

NAME = "train"
HELP = "train a classifier on a run's split (running prepare first if needed) and save a bundle"
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "run directory (split, checkpoints, bundle)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")


def main(args, cfg) -> int:
    from ..training.fit import train
    result = train(cfg, run_of(args), resume=args.resume)
    if result is None:  # a DDP rank other than 0: rank 0 reports and writes the run's artifacts
        return 0
    from ..pipeline import format_train_result
    print(format_train_result(result))
    return 0
