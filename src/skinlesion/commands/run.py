"""`skinlesion run`: prepare -> train -> tune-threshold -> evaluate in one go."""
from __future__ import annotations

from ..cli_options import add_training_arguments, run_of

NAME = "run"
HELP = "prepare -> train -> tune-threshold -> evaluate on a real dataset in one go"
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "run directory")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="for tune-threshold (default: 0.90)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training")


def main(args, cfg) -> int:
    from ..evaluation.site_data import EvalOptions
    from ..pipeline import train_tune_evaluate
    train_tune_evaluate(cfg, run_of(args), args.target_sensitivity, EvalOptions(progress=not args.quiet), args.resume)
    return 0
