"""Command-line options shared by the verbs: config-key flags (file < flags), the option groups of each
stage, and the checks of plain flags that run before any stage."""
from __future__ import annotations

import argparse
import math

from .config import ConfigError, field_default


def _opt(parser: argparse.ArgumentParser, flag: str, key: str, help: str, **kw) -> None:
    """A flag that overrides config key ``section.field`` only when given (file < CLI)."""
    default = field_default(key)
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    parser.add_argument(flag, dest=key, default=argparse.SUPPRESS, help=f"{help} (default: {shown})", **kw)


class _MetadataFlag(argparse.Action):
    """``--metadata`` on training verbs: a list of fields (``age,sex,localization``) selects metadata
    features; anything else is the metadata CSV's path, as on every other verb."""

    def __call__(self, parser, namespace, value, option_string=None):
        from .data.tabular import ALIASES, FIELDS, REFUSED
        parts = [v.strip().lower() for v in value.split(",")]
        known = set(FIELDS) | set(ALIASES) | set(REFUSED)
        looks_like_path = value.lower().endswith(".csv") or "/" in value or "\\" in value
        is_fields = not looks_like_path and ("," in value or all(p in known for p in parts))
        setattr(namespace, "train.metadata" if is_fields else "data.metadata", value)


def overrides_of(args) -> dict:
    """The config keys the command line set (dotted ``section.key`` destinations of the flags given)."""
    return {k: v for k, v in vars(args).items() if "." in k}


def _section_flags(p: argparse.ArgumentParser, section: str, names: tuple[str, ...] | None = None) -> None:
    """The flags of config section ``section`` (all declared with a flag, or those in ``names``)."""
    from .config import SECTIONS, declared
    for f in declared(SECTIONS[section]):
        if f.metadata["flag"] is not False and (names is None or f.name in names):
            _declared_flag(p, section, f)


def _add_data_opts(p: argparse.ArgumentParser, required: bool = True, features: bool = False) -> None:
    """The dataset flags; with ``features`` (training verbs) --metadata also takes the fields to fuse, and
    --merge-near-duplicates is offered (train makes the split when a run has none)."""
    _section_flags(p, "data", ("root",))
    if features:
        p.add_argument("--metadata", action=_MetadataFlag, default=argparse.SUPPRESS, metavar="CSV|FIELDS",
                       help="metadata CSV if not DIR/HAM10000_metadata.csv; or, as a comma list of age,sex,"
                            "localization, the patient fields fused with the image (dx_type is refused: it "
                            "encodes the label)")
    _section_flags(p, "data", ("allow_missing", "verify", "format", "columns", "values")
                   + (() if features else ("metadata",)) + (("merge_near_duplicates",) if features else ()))


def _add_split_opts(p: argparse.ArgumentParser) -> None:
    _section_flags(p, "data", ("merge_near_duplicates",))
    _section_flags(p, "split")


def _add_demo_opts(p: argparse.ArgumentParser, training: bool = False) -> None:
    """The demo data's flags (and with ``training``, the demo training's: --epochs, --image-size)."""
    _section_flags(p, "demo", None if training else ("n", "seed"))


def add_training_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """What every training verb takes: data options (with metadata fields), training options, the run directory."""
    _add_data_opts(p, features=True)
    _add_train_opts(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help=out_help)


def _declared_flag(parser, section: str, f) -> None:
    """The CLI flag of a field declared with config.opt (help, argparse keywords, default in the help)."""
    md = f.metadata
    flag = md["flag"] or "--" + f.name.replace("_", "-")
    help = md["help"]
    if "{backbones}" in help:
        from .models.registry import list_backbones
        help = help.replace("{backbones}", ", ".join(list_backbones()))
    cli = dict(md["cli"])
    if md["show_default"]:
        _opt(parser, flag, f"{section}.{f.name}", help, **cli)
    else:
        parser.add_argument(flag, dest=f"{section}.{f.name}", default=argparse.SUPPRESS, help=help, **cli)


def _add_train_opts(p: argparse.ArgumentParser) -> None:
    """Every train option with a flag, from its one declaration in config.TrainConfig; the recipe's in a group."""
    from .config import DEFAULT_RECIPE, RECIPES, TrainConfig, declared
    fields = [f for f in declared(TrainConfig) if f.metadata["flag"] is not False]
    for f in fields:
        if f.metadata["group"] != "recipe":
            _declared_flag(p, "train", f)
    g = p.add_argument_group("recipe", "a named recipe sets the options below; flags given here override it")
    g.add_argument("--recipe", dest="train.recipe", default=argparse.SUPPRESS, choices=list(RECIPES),
                   help=f"named recipe: {', '.join(RECIPES)} (default: {DEFAULT_RECIPE})")
    for f in fields:
        if f.metadata["group"] == "recipe":
            _declared_flag(g, "train", f)


#: Checks of flags that are not config keys: (attribute, check, what it must be, a value that works).
ARG_RULES = (
    ("bootstrap", lambda v: 10 <= v <= 1_000_000, "a whole number from 10 to 1000000", "1000"),
    ("batch_size", lambda v: v >= 1, "a whole number >= 1", "16"),
    ("num_workers", lambda v: v is None or v >= 0, "a whole number >= 0", "0"),
    ("allow_missing", lambda v: math.isfinite(v) and 0 <= v < 1, "a fraction in [0, 1)", "0.01"),
    ("max_upload_mb", lambda v: math.isfinite(v) and 0 < v <= 1024, "a size in MB in (0, 1024]", "10"),
    ("port", lambda v: 0 <= v <= 65535, "a TCP port 0-65535", "8000"),
)


def check_fraction(flag: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(f"{flag} must be a fraction in (0, 1], got {value!r}. Remedy: {flag} 0.9")


def check_args(args) -> None:
    """Validate the plain (non-config) flags before any stage runs."""
    for name, check, what, remedy in ARG_RULES:
        if name in vars(args) and "." not in name and not check(getattr(args, name)):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be {what}, got {getattr(args, name)!r}. Remedy: {flag} {remedy}")
    if vars(args).get("target_sensitivity") is not None:
        check_fraction("--target-sensitivity", args.target_sensitivity)
    if vars(args).get("adapt_fraction") is not None:
        check_fraction("--adapt-fraction", args.adapt_fraction)
        if args.adapt_fraction >= 1:
            raise ConfigError("--adapt-fraction must leave images to score, got 1. Remedy: --adapt-fraction 0.3")


def resume_base(args) -> str | None:
    """With --resume, the run's saved config.yaml is the base layer (flags still override it)."""
    if getattr(args, "resume", False) and getattr(args, "out", None):
        from .data.run import Run
        saved = Run(args.out).config_yaml
        return str(saved) if saved.is_file() else None
    return None


def written_run(args) -> tuple[str | None, bool]:
    """The run directory this command writes into (None: none) and whether the command may create it:
    verbs declare ``lock="out"`` (they make the run) or ``lock="run_dir"`` (they write into an existing
    one); `evaluate --model` writes into its --out, not a run."""
    lock = getattr(args, "lock", None)
    if getattr(args, "model", None):  # evaluate --model writes its report folder: one writer there too
        return (args.out, True) if lock and getattr(args, "out", None) else (None, False)
    if lock is None:
        return None, False
    return getattr(args, lock), lock == "out"


def run_of(args, attr: str = "out"):
    """The Run a verb works on: the folder in ``args.<attr>``, the console (``--quiet``) and ``--num-workers``."""
    from .console import Console
    from .data.run import Run
    return Run(getattr(args, attr), Console(progress=not args.quiet), getattr(args, "num_workers", None))
