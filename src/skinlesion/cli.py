"""Command line: parse arguments, resolve the config, call the stage's public function."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, field_default, load_config
from .data.images import ImageDecodeError
from .data.metadata import DataError

USER_ERRORS = (DataError, ConfigError, ImageDecodeError, FileExistsError, FileNotFoundError)


def _opt(parser: argparse.ArgumentParser, flag: str, key: str, help: str, **kw) -> None:
    """A flag that overrides config key ``section.field`` only when given (file < CLI)."""
    default = field_default(key)
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    parser.add_argument(flag, dest=key, default=argparse.SUPPRESS, help=f"{help} (default: {shown})", **kw)


def _add_data_opts(p: argparse.ArgumentParser, required: bool = True) -> None:
    _opt(p, "--data", "data.root", "dataset root: HAM10000_metadata.csv plus images anywhere below", metavar="DIR")
    _opt(p, "--metadata", "data.metadata", "metadata CSV if not DIR/HAM10000_metadata.csv", metavar="CSV")
    _opt(p, "--allow-missing", "data.allow_missing", "fraction of images that may be missing or corrupt; "
         "they are dropped and reported", type=float, metavar="FRACTION")
    _opt(p, "--verify", "data.verify", "decode every image once to find corrupt files", action="store_true")


def _add_split_opts(p: argparse.ArgumentParser) -> None:
    _opt(p, "--seed", "split.seed", "random seed of the split", type=int)
    _opt(p, "--ratios", "split.ratios", "train val test fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    _opt(p, "--folds", "split.folds", "grouped K-fold over train+val (test held out); fold 0 is val", type=int, metavar="K")


def _add_demo_opts(p: argparse.ArgumentParser) -> None:
    _opt(p, "--n", "demo.n", "number of synthetic images", type=int)
    _opt(p, "--seed", "demo.seed", "random seed of the synthetic data", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinlesion", description=(
        "Train, evaluate and serve dermoscopic skin-lesion classifiers (HAM10000). "
        "Research use only; not a medical device."))
    parser.add_argument("--version", action="version", version=f"skinlesion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", metavar="FILE.yaml", help="YAML config; CLI flags override it")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        return p

    p = verb("prepare", "validate a HAM10000-layout dataset and write a lesion-level split to RUN_DIR")
    _add_data_opts(p)
    _add_split_opts(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write split.csv/split.json into")
    p.set_defaults(func=cmd_prepare)

    p = verb("explore", "plots and a summary of a dataset's classes, lesions, demographics and image sizes")
    _add_data_opts(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG plots and summary.md/.html")
    p.set_defaults(func=cmd_explore)

    p = verb("make-demo-data", "write a synthetic dermoscopy-like dataset in the HAM10000 layout")
    p.add_argument("out", metavar="OUT", help="new (or empty) folder to write the dataset into")
    _add_demo_opts(p)
    p.set_defaults(func=cmd_make_demo_data)

    p = verb("demo", "run the pipeline end to end on freshly generated synthetic data (offline)")
    p.add_argument("--out", metavar="DIR", help="new folder for demo data and run (default: a temp folder)")
    _add_demo_opts(p)
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_prepare(args, cfg) -> int:
    from .data.prepare import prepare
    print(prepare(cfg, args.out, progress=not args.quiet).report())
    return 0


def cmd_explore(args, cfg) -> int:
    from .data.explore import explore
    from .data.metadata import load_dataset
    if cfg.data.root is None:
        raise ConfigError("no data folder given: pass --data DIR")
    ds = load_dataset(cfg.data.root, cfg.data.metadata, cfg.data.allow_missing, cfg.data.verify, not args.quiet)
    path = explore(ds.frame, args.out, title=str(cfg.data.root))
    print(f"wrote {path} (plots and summary.md beside it)")
    return 0


def cmd_make_demo_data(args, cfg) -> int:
    from .data.synthetic import make_demo_data
    out = make_demo_data(args.out, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=not args.quiet)
    print(f"wrote {cfg.demo.n} synthetic images and HAM10000_metadata.csv to {out}")
    return 0


def cmd_demo(args, cfg) -> int:
    from .demo import run_demo
    run_demo(cfg, args.out, progress=not args.quiet)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    try:
        cfg = load_config(args.config, overrides)
        return args.func(args, cfg)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
