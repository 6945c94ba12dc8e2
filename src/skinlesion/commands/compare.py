"""`skinlesion compare`: runs side by side with a paired bootstrap ROC-AUC test."""
from __future__ import annotations

NAME = "compare"
HELP = "headline metrics of runs side by side with a paired bootstrap ROC-AUC test"


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default: 1000)")


def main(args, cfg) -> int:
    from ..evaluation.compare import compare_runs, format_comparison
    print(format_comparison(compare_runs(args.runs, args.bootstrap)))
    return 0
