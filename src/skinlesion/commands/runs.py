"""`skinlesion runs`: one table of every run below a folder."""
from __future__ import annotations

NAME = "runs"
HELP = "one table of every run below DIR: status, architecture, recipe, metrics with CIs, threshold"


def add_arguments(p) -> None:
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding run directories (default: runs)")
    p.add_argument("--sort", default="test_roc_auc", help="column to sort by (default: test_roc_auc, best first)")
    p.add_argument("--out", metavar="PATH", help="also write PATH.csv and a sortable PATH.html")


def main(args, cfg) -> int:
    from ..evaluation.runs import format_runs, runs_table, write_runs
    frame = runs_table(args.dir, args.sort)
    print(format_runs(frame))
    if args.out:
        csv, page = write_runs(frame, args.out, args.sort)
        print(f"wrote {csv} and {page}")
    return 0
