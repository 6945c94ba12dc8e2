"""`skinlesion tune-threshold`: the decision threshold (and calibration) on validation probabilities."""
from __future__ import annotations

from ..cli_options import run_of

NAME = "tune-threshold"
HELP = "choose the decision threshold on validation probabilities (writes threshold.json, updates the bundle)"
LOCK = "run_dir"


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="minimum validation sensitivity (default: 0.90)")
    p.add_argument("--tta", action="store_true", help="tune on TTA predictions (for `predict/evaluate --tta`)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (with --tta)")


def main(args, cfg) -> int:
    from ..evaluation.tune import format_result, tune_threshold
    run = run_of(args, "run_dir")
    print(format_result(tune_threshold(run, args.target_sensitivity, args.tta)))
    print(f"wrote {run.threshold_json}; bundle threshold updated")
    return 0
