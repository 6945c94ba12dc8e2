"""`skinlesion run`: prepare -> train -> tune-threshold -> evaluate in one go."""
from __future__ import annotations

from ..cli_options import add_training_arguments
from .train import print_train_result

NAME = "run"
HELP = "prepare -> train -> tune-threshold -> evaluate on a real dataset in one go"
LOCK = "out"


def add_arguments(p) -> None:
    add_training_arguments(p, "run directory")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="for tune-threshold (default: 0.90)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training")


def main(args, cfg) -> int:
    from ..evaluation.evaluate import evaluate_run, format_headline
    from ..evaluation.site_data import EvalOptions
    from ..evaluation.tune import format_result, tune_threshold
    from ..training.fit import train
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a DDP rank other than 0: only rank 0 tunes and evaluates
        return 0
    print_train_result(result)
    print(format_result(tune_threshold(args.out, args.target_sensitivity)))
    result = evaluate_run(args.out, opts=EvalOptions(progress=not args.quiet))
    print(format_headline(result.metrics))
    print(f"report: {result.report}")
    return 0
