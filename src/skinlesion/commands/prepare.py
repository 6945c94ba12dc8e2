"""`skinlesion prepare`: validate a dataset and write a lesion-level split."""
from __future__ import annotations

from ..cli_options import _add_data_opts, _add_split_opts, run_of

NAME = "prepare"
HELP = ("validate a dataset (HAM10000, ISIC, class folders or any CSV) and write a lesion-level split to "
        "RUN_DIR")
LOCK = "out"


def add_arguments(p) -> None:
    _add_data_opts(p)
    _add_split_opts(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write split.csv/split.json into")


def main(args, cfg) -> int:
    from ..data.prepare import prepare
    print(prepare(cfg, run_of(args)).report())
    return 0
