"""`skinlesion lr-find`: Lightning's learning-rate finder on the run's training split."""
from __future__ import annotations

from ..cli_options import add_training_arguments, run_of

NAME = "lr-find"
HELP = "Lightning's learning-rate finder on the run's training split: a plot and a suggested --lr"
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "run directory (its split is made if absent)")
    p.add_argument("--num-training", type=int, default=100, help="steps of the sweep (default: 100)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="start of the sweep (default: 1e-7)")
    p.add_argument("--max-lr", type=float, default=1.0, help="end of the sweep (default: 1)")


def main(args, cfg) -> int:
    from ..training.lr_find import lr_find
    run = run_of(args)
    result = lr_find(cfg, run, args.num_training, (args.min_lr, args.max_lr))
    lr = result["suggested_lr"]
    print(f"suggested learning rate: {lr:.2e}  (use it as --lr {lr:.2e}; plot: {run.plots / 'lr_find.png'})"
          if lr else "no suggestion (the loss did not fall); see the plot")
    return 0
