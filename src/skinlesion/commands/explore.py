"""`skinlesion explore`: plots and a summary of a dataset."""
from __future__ import annotations

from ..cli_options import _add_data_opts
from ..config import ConfigError

NAME = "explore"
HELP = "plots and a summary of a dataset's classes, lesions, demographics and image sizes"


def add_arguments(p) -> None:
    _add_data_opts(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG plots and summary.md/.html")


def main(args, cfg) -> int:
    from ..data.dataset import load_dataset
    from ..data.explore import explore
    from ..data.formats import TableSpec
    if cfg.data.root is None:
        raise ConfigError("no data folder given: pass --data DIR")
    ds = load_dataset(cfg.data.root, cfg.data.metadata, cfg.data.allow_missing, cfg.data.verify, not args.quiet,
                      spec=TableSpec.from_config(cfg.data))
    print(f"read as {ds.table.detected}")
    path = explore(ds.frame, args.out, title=str(cfg.data.root))
    print(f"wrote {path} (plots and summary.md beside it)")
    return 0
