"""`skinlesion demo`: the pipeline end to end on generated data, offline."""
from __future__ import annotations

from ..cli_options import _add_demo_opts

NAME = "demo"
HELP = "run the pipeline end to end on freshly generated synthetic data (offline)"


def add_arguments(p) -> None:
    p.add_argument("--out", metavar="DIR", help="new folder for demo data and run (default: a temp folder)")
    _add_demo_opts(p, training=True)


def main(args, cfg) -> int:
    from ..demo import run_demo
    run_demo(cfg, args.out, progress=not args.quiet)
    return 0
