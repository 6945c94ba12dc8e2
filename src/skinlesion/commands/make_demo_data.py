"""`skinlesion make-demo-data`: a synthetic dataset in the HAM10000 layout."""
from __future__ import annotations

from ..cli_options import _add_demo_opts

NAME = "make-demo-data"
HELP = "write a synthetic dermoscopy-like dataset in the HAM10000 layout"


def add_arguments(p) -> None:
    p.add_argument("out", metavar="OUT", help="new (or empty) folder to write the dataset into")
    _add_demo_opts(p)


def main(args, cfg) -> int:
    from ..data.synthetic import make_demo_data
    out = make_demo_data(args.out, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=not args.quiet)
    print(f"wrote {cfg.demo.n} synthetic images and HAM10000_metadata.csv to {out}")
    return 0
