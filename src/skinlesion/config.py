"""Layered configuration: dataclass defaults, then a YAML file, then CLI flags.

Each pipeline stage owns one dataclass (a section of :class:`RunConfig`). The resolved config is
written to the run directory as ``config.yaml`` so every run can be reproduced from its own files.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import atomic
from .data.formats import FORMATS
from .errors import SkinlesionError


class ConfigError(SkinlesionError, ValueError):
    """A config file or override is invalid (message names the key and the remedy)."""


@dataclass
class DataConfig:
    """Where the HAM10000-layout dataset is and how strictly to check it."""

    root: str | None = None  # data root: HAM10000_metadata.csv + images anywhere below
    metadata: str | None = None  # metadata CSV; default <root>/HAM10000_metadata.csv
    allow_missing: float = 0.0  # fraction of images allowed missing/corrupt (they are dropped)
    verify: bool = False  # decode every image once to find corrupt files
    format: str = "auto"  # auto | ham10000 | isic | folders | csv (docs/datasets.md)
    columns: str | None = None  # csv format: image=NAME,dx=NAME|label=NAME,group=NAME,age=..,sex=..,site=..
    values: str | None = None  # RAW=CODE,... mapping of diagnosis/label values to dx codes (or benign/malignant)
    merge_near_duplicates: bool = False  # prepare: near-duplicate images (audit) become one split group


@dataclass
class SplitConfig:
    """Lesion-level stratified split."""

    seed: int = 42
    ratios: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train, val, test
    folds: int | None = None  # grouped K-fold over train+val (test still held out)


@dataclass
class DemoConfig:
    """Synthetic demo dataset."""

    n: int = 600
    seed: int = 0
    image_size: tuple[int, int] = (300, 225)  # width, height of the generated JPEGs
    arch: str = "efficientnet_lite0"  # trained by the demo (its ImageNet weights ship with pip)
    epochs: int = 6  # demo training: a few epochs so the whole demo takes minutes on a CPU
    phase1_epochs: int = 3
    lr: float = 1e-3  # higher than train's 1e-4: few epochs on a small synthetic set
    train_size: int = 160  # model input size for the demo
    bootstrap: int = 1000  # lesion-level bootstrap resamples in the demo's evaluation


def _positive_int(v) -> bool:
    return isinstance(v, int) and v >= 1


def _count(v) -> bool:
    return isinstance(v, int) and v >= 0


def _finite(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    def ok(v) -> bool:
        return (isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo)
                and (v < hi if hi_open else v <= hi))
    return ok


def _num(text: str):
    return float(text) if "." in text else int(text)


def _optional(check):
    return lambda v: v is None or check(v)


def opt(default, help: str, check=None, what: str = "", example: str = "", *, flag: str | bool | None = None,
        locked: bool = False, group: str | None = None, show_default: bool = True, **cli):
    """Declare an option once: its default, help, validator (``check`` with ``what`` it must be and an
    ``example`` that works), its CLI flag (None: ``--field-name``; False: config/YAML only), whether
    ``--resume`` refuses a change of it (``locked``), its help group, and argparse keywords (``cli``).
    ``choices`` (in ``cli``) is also the validator. The dataclass field, RULES, the flag and LOCKED_KEYS
    are all derived from this."""
    choices = cli.get("choices")
    if choices is not None and check is None:
        check = (lambda v, c=tuple(choices): v in c)
        names = [str(c) for c in choices]
        what = what or (" or ".join(names) if len(names) == 2 else "one of " + ", ".join(names))
        example = example or names[0]
    meta = {"help": help, "check": check, "what": what, "example": example, "flag": flag, "locked": locked,
            "group": group, "show_default": show_default, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


TASKS = ("binary", "7class")
LOGGERS: tuple[str, ...] = ("csv", "tensorboard", "mlflow", "wandb")
AUGMENT_POLICIES = ("classic", "derm")  # skinlesion.data.batch_augment.POLICIES (a test keeps them equal)


def _loggers(v) -> bool:
    return isinstance(v, str) and bool(v.strip()) and all(
        n.strip().lower() in LOGGERS for n in v.split(",") if n.strip())


@dataclass
class TrainConfig:
    """Model, fine-tuning, Trainer and recipe options. Each is declared once with :func:`opt`."""

    arch: str = opt("efficientnet_lite0", "backbone: {backbones} or any timm model name", locked=True)
    task: str = opt("binary", "binary (benign/malignant) or 7class (dx)", locked=True, choices=list(TASKS))
    epochs: int = opt(15, "total epochs over both phases", _positive_int, "a whole number >= 1", "15", locked=True,
                      type=int)
    batch_size: int | None = opt(None, "batch size (None: 32 on a CPU; 128 with CUDA, with the lr scaled by "
                                 "sqrt(128/32))", _optional(_positive_int), "a whole number >= 1", "32", locked=True,
                                 type=int)
    image_size: int | None = opt(None, "input size in pixels (None: the backbone's default)",
                                 _optional(lambda v: isinstance(v, int) and 32 <= v <= 2048), "None or 32-2048 pixels",
                                 "224", locked=True, type=int)
    weights: str | None = opt(None, "local .safetensors/state-dict file with ImageNet weights", locked=True,
                              metavar="FILE")
    pretrained: bool = opt(True, "random initialisation (default: pretrained weights)", flag="--no-pretrained",
                           locked=True, show_default=False, action="store_false")
    phases: int = opt(2, "2: frozen backbone, then partial unfreeze; 1: full fine-tuning", locked=True, type=int,
                      choices=[1, 2])
    phase1_epochs: int = opt(5, "epochs with the backbone frozen", _count, "a whole number >= 0", "5", locked=True,
                             type=int)
    lr: float = opt(1e-4, "phase-1 learning rate (phase 2: lr * --phase2-lr-factor)", _finite(0, 10),
                    "a number in [0, 10]", "1e-4", locked=True, type=float)
    phase2_lr_factor: float = opt(0.1, "phase-2 lr multiplier", _finite(0, 100, lo_open=True), "a number in (0, 100]",
                                  "0.1", locked=True, type=float)
    unfreeze_groups: int | None = opt(None, "backbone groups (stages) trained in phase 2 (None: per-architecture "
                                      "default)", _optional(_count), "a whole number >= 0", "2", locked=True, type=int)
    dropout: float = opt(0.3, "dropout before the linear head", _finite(0, 1, hi_open=True), "a probability in [0, 1)",
                         "0.3", locked=True, type=float)
    balanced_sampler: bool = opt(False, "class-balanced sampling instead of loss weights", locked=True,
                                 action="store_true")
    patience: int = opt(5, "early-stopping patience (epochs) on val PR-AUC", _count, "a whole number >= 0", "5",
                        locked=True, type=int)
    num_workers: int | None = opt(None, "DataLoader workers (None: min(4, cores/2))", _optional(_count),
                                  "a whole number >= 0", "2", type=int)
    cache_dir: str | None = opt(None, "decoded-image cache folder (None: ~/.cache/skinlesion)", metavar="DIR")
    accelerator: str = opt("auto", "Lightning accelerator: auto, cpu, gpu, mps")
    devices: str = opt("auto", "Lightning devices: auto, N")
    strategy: str = opt("auto", "Lightning strategy: auto, ddp, ...")
    num_nodes: int = opt(1, "machines for multi-node DDP (with torchrun / SLURM)", _positive_int, "a whole number >= 1",
                         "1", type=int)
    compile: bool = opt(False, "torch.compile the model", action="store_true")
    gpu_augment: bool | None = opt(None, "augment uint8 batches on the device (default: on with CUDA)",
                                   show_default=False, action=argparse.BooleanOptionalAction)
    device_cache: bool | None = opt(None, "hold the training and validation images in device memory and draw batches "
                                    "there (default: on with device augmentation when they fit in 40%% of free "
                                    "memory)", show_default=False, action=argparse.BooleanOptionalAction)
    cache_features: int = opt(0, "phase 1: precompute K augmented views of the frozen backbone's features and train "
                              "the head on them (0: off)", _count, "a whole number >= 0", "0", type=int, metavar="K")
    precision: str | None = opt(None, "Lightning precision (None: bf16/fp16 mixed on CUDA, else 32-true)")
    seed: int = opt(42, "seed for weights init, sampling and augmentation", locked=True, type=int)
    fold: int | None = opt(None, "with a --folds split: the fold used for validation", _optional(_count),
                           "a fold number >= 0", "0", locked=True, type=int)
    checkpoint_minutes: float = opt(5.0, "inside long epochs, save a resumable checkpoint this often; SIGTERM/Ctrl-C "
                                    "also save one (0: only at epoch ends)", _finite(0, 10_000),
                                    "a number of minutes >= 0 (0: only at epoch ends)", "5", type=float, metavar="MIN")
    limit_train_batches: float | None = opt(None, "batches (int) or fraction per epoch, for quick checks", _optional(
        lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0), "a positive count or fraction", "1.0",
        locked=True, type=_num)
    # config/YAML only
    weight_decay: float = opt(1e-4, "AdamW weight decay", _finite(0, 10), "a number in [0, 10]", "1e-4", flag=False,
                              locked=True)
    lr_patience: int = opt(2, "ReduceLROnPlateau patience on val PR-AUC", _count, "a whole number >= 0", "2", flag=False,
                           locked=True)
    channels_last: bool = opt(True, "channels_last memory format", flag=False, locked=True)
    lr_scaling: str | None = opt(None, "written when the device's default batch scaled the lr (the rule, as text)",
                                 flag=False)
    # the recipe (timm / torch building blocks): a named recipe sets these; flags override it
    recipe: str = opt("classic", "a named set of the recipe keys (see RECIPES)", flag=False, locked=True)
    schedule: str = opt("plateau", "LR schedule: plateau (ReduceLROnPlateau) or cosine (warmup + cosine)",
                        example="cosine", locked=True, group="recipe", choices=["plateau", "cosine"])
    warmup_epochs: float = opt(0.0, "cosine: linear warmup epochs", _finite(0, 1000), "a number of epochs >= 0", "1",
                               locked=True, group="recipe", type=float)
    min_lr_factor: float = opt(0.01, "cosine: final lr = lr * factor", _finite(0, 1), "a fraction in [0, 1]", "0.01",
                               locked=True, group="recipe", type=float)
    ema: bool = opt(False, "EMA of weights, validated and saved as the model (default: off)", locked=True,
                    group="recipe", show_default=False, action=argparse.BooleanOptionalAction)
    ema_decay: float = opt(0.998, "EMA decay", _finite(0, 1, lo_open=True, hi_open=True), "a number in (0, 1)", "0.998",
                           locked=True, group="recipe", type=float)
    mixup: float = opt(0.0, "mixup alpha (0: off)", _finite(0, 100), "an alpha >= 0 (0: off)", "0.2", locked=True,
                       group="recipe", type=float)
    cutmix: float = opt(0.0, "cutmix alpha (0: off)", _finite(0, 100), "an alpha >= 0 (0: off)", "1.0", locked=True,
                        group="recipe", type=float)
    mix_prob: float = opt(1.0, "probability of mixing a batch", _finite(0, 1), "a probability in [0, 1]", "0.5",
                          locked=True, group="recipe", type=float)
    label_smoothing: float = opt(0.0, "label smoothing", _finite(0, 0.5, hi_open=True), "a number in [0, 0.5)", "0.1",
                                 locked=True, group="recipe", type=float)
    layer_decay: float | None = opt(None, "layer-wise LR decay, e.g. 0.75 (None: off)", _optional(
        lambda v: isinstance(v, (int, float)) and 0 < v <= 1), "None or in (0, 1]", "0.75", locked=True, group="recipe",
        type=float)
    drop_path: float = opt(0.0, "stochastic depth rate", _finite(0, 1, hi_open=True), "a rate in [0, 1)", "0.1",
                           locked=True, group="recipe", type=float)
    augment: str = opt("classic", "augmentation policy", example="derm", locked=True, group="recipe",
                       choices=list(AUGMENT_POLICIES))
    logger: str = opt("csv,tensorboard", "experiment trackers, any of csv,tensorboard,mlflow,wandb (mlflow and wandb "
                      "are extras: pip install 'skinlesion[mlflow,wandb]')", _loggers,
                      "a comma list of " + ", ".join(LOGGERS), "csv,tensorboard", group="recipe", metavar="NAMES")
    experiment: str = opt("skinlesion", "MLflow experiment / W&B project name", group="recipe")
    mlflow_uri: str | None = opt(None, "MLflow tracking URI (default: a file store in RUN_DIR/mlruns)", group="recipe",
                                 metavar="URI")
    colour_constancy: bool = opt(False, "shades-of-gray colour constancy (Minkowski p=6) in training and in everything "
                                 "the bundle does afterwards", locked=True, group="recipe",
                                 action=argparse.BooleanOptionalAction)
    metadata_dropout: float = opt(0.2, "probability of hiding a metadata field in training", _finite(0, 1, hi_open=True),
                                  "a probability in [0, 1)", "0.2", locked=True, group="recipe", type=float)
    metadata: tuple[str, ...] = opt((), "patient fields fused with the image (age, sex, localization; set by "
                                    "--metadata FIELDS)", flag=False, locked=True, group="recipe")


def declared(section_type) -> list[dataclasses.Field]:
    """The fields of a config section declared with :func:`opt`."""
    return [f for f in dataclasses.fields(section_type) if "help" in f.metadata]


#: Keys that ``--resume`` refuses to change (they would change the model being continued).
LOCKED_KEYS: tuple[str, ...] = tuple(f.name for f in declared(TrainConfig) if f.metadata["locked"])
#: The recipe keys a bundle records.
RECIPE_KEYS: tuple[str, ...] = tuple(f.name for f in declared(TrainConfig)
                                     if f.metadata["group"] == "recipe" and f.metadata["locked"])


#: (dotted key, check, what it must be, a value that works) — checked before a stage writes anything.
RULES: tuple[tuple[str, Any, str, str], ...] = (
    ("data.allow_missing", _finite(0, 1, hi_open=True), "a fraction in [0, 1)", "0.01"),
    ("data.format", lambda v: v in FORMATS, "one of " + ", ".join(FORMATS), "auto"),
    *((f"train.{f.name}", f.metadata["check"], f.metadata["what"], f.metadata["example"])
      for f in declared(TrainConfig) if f.metadata["check"] is not None),
    ("demo.n", lambda v: isinstance(v, int) and 10 <= v <= 100_000, "a whole number from 10 to 100000", "600"),
    ("demo.epochs", _positive_int, "a whole number >= 1", "6"),
    ("demo.train_size", lambda v: isinstance(v, int) and 32 <= v <= 1024, "32-1024 pixels", "160"),
)


def check_value(dotted: str, value: Any, check, what: str, remedy: str) -> None:
    """Raise ConfigError in the project's form when ``value`` fails ``check``."""
    if not check(value):
        flag = "--" + dotted.split(".", 1)[1].replace("_", "-")
        raise ConfigError(f"{flag} (config key {dotted}) must be {what}, got {value!r}. Remedy: {flag} {remedy}")


@dataclass
class RunConfig:
    """Every option of a run, one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "RunConfig":
        """Check every value against :data:`RULES` (and the split's ratios/folds); return self."""
        from .data.split import check_ratios
        for dotted, check, what, remedy in RULES:
            section, _, name = dotted.partition(".")
            check_value(dotted, getattr(getattr(self, section), name), check, what, remedy)
        check_ratios(self.split.ratios)
        from .data.tabular import parse_fields
        parse_fields(self.train.metadata)
        if self.split.folds is not None and self.split.folds < 2:
            raise ConfigError(f"--folds must be at least 2, got {self.split.folds}. Remedy: --folds 5")
        return self


#: Named recipes: each sets recipe keys of ``train`` (a layer above the defaults, below --config and flags).
_CLASSIC = {k: getattr(TrainConfig(), k) for k in (  # the declared defaults are the classic recipe
    "phases", "epochs", "phase1_epochs", "lr", "phase2_lr_factor", "patience", "schedule", "warmup_epochs", "ema",
    "ema_decay", "mixup", "cutmix", "mix_prob", "label_smoothing", "layer_decay", "drop_path", "augment")}
RECIPES: dict[str, dict[str, Any]] = {
    # the original default: frozen backbone, then the last stages at lr/10, plateau schedule
    "classic": _CLASSIC,
    # full fine-tuning at a higher rate with warmup + cosine
    "finetune": {**_CLASSIC, "phases": 1, "epochs": 12, "lr": 5e-4, "schedule": "cosine", "warmup_epochs": 1.0},
    # timm-style: full fine-tuning with layer decay, EMA, label smoothing, light mixup, drop-path and
    # dermoscopy augmentation (90-degree turns, affine, blur, JPEG)
    "modern": {**_CLASSIC, "phases": 1, "epochs": 12, "lr": 6e-4, "schedule": "cosine", "warmup_epochs": 1.0,
               "ema": True, "ema_decay": 0.998, "layer_decay": 0.8, "drop_path": 0.1, "label_smoothing": 0.05,
               "mixup": 0.2, "cutmix": 0.0, "mix_prob": 0.5, "augment": "derm", "patience": 20},
}
#: The recipe `train`, `run`, `cv` and `lr-find` use when none is named (chosen by benchmarks/bench_recipes.py).
#: ``RunConfig()`` built in Python holds the dataclass defaults, which are the ``classic`` recipe.
DEFAULT_RECIPE = "modern"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated field type, or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str) and args[-1] is Ellipsis and args[0] is str:  # "age,sex" from a flag
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise ConfigError(f"config key {key!r}: expected a list of {len(args)} values, got {value!r}")
        elem_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        return tuple(_coerce(v, t, key) for v, t in zip(value, elem_types))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {value!r}") from None
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r}: expected one of {list(args)}, got {value!r}")
        return value
    return value


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any], source: str = "command line") -> RunConfig:
    """Return a copy of ``cfg`` with dotted ``section.field`` overrides applied and type-checked."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        section, _, name = dotted.partition(".")
        if section not in sections:
            raise ConfigError(f"{source}: unknown config section {section!r} (known: {', '.join(sections)}). "
                              "Remedy: use one of the known sections.")
        hints = _section_types(type(sections[section]))
        if name not in hints:
            raise ConfigError(
                f"{source}: unknown config key {dotted!r} (known in {section!r}: {', '.join(hints)}). "
                "Remedy: correct the key's spelling (see `skinlesion COMMAND --help`).")
        changes.setdefault(section, {})[name] = _coerce(value, hints[name], dotted)
    new_sections = {s: dataclasses.replace(obj, **changes.get(s, {})) for s, obj in sections.items()}
    return dataclasses.replace(cfg, **new_sections)


def flatten(mapping: dict[str, Any], source: str) -> dict[str, Any]:
    """``{'split': {'seed': 1}}`` -> ``{'split.seed': 1}``; each section must be a mapping."""
    flat: dict[str, Any] = {}
    for section, values in mapping.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys to values")
        for name, value in values.items():
            flat[f"{section}.{name}"] = value
    return flat


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                base: str | Path | None = None) -> RunConfig:
    """Defaults, then ``base`` (a run's saved config.yaml, for --resume), then the YAML file at ``path``
    (if any), then ``overrides`` (dotted keys)."""
    cfg = RunConfig()
    recipe = _chosen_recipe(path, overrides, base)
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe {recipe!r} is not a known recipe ({', '.join(RECIPES)}). Remedy: --recipe classic")
    cfg = apply_overrides(cfg, {"train.recipe": recipe, **{f"train.{k}": v for k, v in RECIPES[recipe].items()}},
                          source=f"recipe {recipe}")
    for path in (base, path):
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1}: {getattr(exc, 'problem', '')})" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}. Remedy: fix the file, e.g. "
                              "`split:` then `  seed: 1` on the next line.") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections (data:, split:, ...)")
        cfg = apply_overrides(cfg, flatten(loaded, str(path)), source=str(path))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


def _read_yaml(path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}  # load_config reports a broken file with its own message
    return loaded if isinstance(loaded, dict) else {}


def _chosen_recipe(path, overrides, base) -> str:
    """The recipe named by the highest layer that names one (flags, then --config, then the saved run)."""
    if overrides and "train.recipe" in overrides:
        return str(overrides["train.recipe"])
    for p in (path, base):
        if p is not None:
            train = _read_yaml(p).get("train")
            if isinstance(train, dict) and "recipe" in train:
                return str(train["recipe"])
    return DEFAULT_RECIPE


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def save_config(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml`` atomically."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic.write_text(Path(run_dir) / "config.yaml", text)


def field_default(dotted: str) -> Any:
    """The dataclass default of a dotted key (for CLI help texts)."""
    section, _, name = dotted.partition(".")
    return getattr(getattr(RunConfig(), section), name)
