"""Layered configuration: dataclass defaults, then a YAML file, then CLI flags.

Each pipeline stage owns one dataclass (a section of :class:`RunConfig`). The resolved config is
written to the run directory as ``config.yaml`` so every run can be reproduced from its own files.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import atomic
from .data.run import Run
from .errors import SkinlesionError
from .options import (AUGMENT_POLICIES, LOCKED_KEYS, LOGGERS, RECIPE_KEYS, TASKS, DataConfig,  # noqa: F401
                      DemoConfig, SplitConfig, TrainConfig, declared)

#: The sections of a RunConfig, each declared once in options.py.
SECTIONS = {"data": DataConfig, "split": SplitConfig, "demo": DemoConfig, "train": TrainConfig}


class ConfigError(SkinlesionError, ValueError):
    """A config file or override is invalid (message names the key and the remedy)."""


#: (dotted key, check, what it must be, a value that works) — checked before a stage writes anything.
RULES: tuple[tuple[str, Any, str, str], ...] = tuple(
    (f"{section}.{f.name}", f.metadata["check"], f.metadata["what"], f.metadata["example"])
    for section, kind in SECTIONS.items() for f in declared(kind) if f.metadata["check"] is not None)


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
_RECIPE_KEYS = ("phases", "epochs", "phase1_epochs", "lr", "phase2_lr_factor", "patience", "schedule", "warmup_epochs",
                "ema", "ema_decay", "mixup", "cutmix", "mix_prob", "label_smoothing", "layer_decay", "drop_path",
                "augment")
#: The declared defaults are the default recipe (``modern``), so ``RunConfig()`` in Python is what the CLI trains.
_MODERN = {k: getattr(TrainConfig(), k) for k in _RECIPE_KEYS}
# the original default: frozen backbone, then the last stages at lr/10, plateau schedule
_CLASSIC = {**_MODERN, "phases": 2, "epochs": 15, "phase1_epochs": 5, "lr": 1e-4, "phase2_lr_factor": 0.1,
            "patience": 5, "schedule": "plateau", "warmup_epochs": 0.0, "ema": False, "mixup": 0.0, "cutmix": 0.0,
            "mix_prob": 1.0, "label_smoothing": 0.0, "layer_decay": None, "drop_path": 0.0, "augment": "classic"}
RECIPES: dict[str, dict[str, Any]] = {
    "classic": _CLASSIC,
    # full fine-tuning at a higher rate with warmup + cosine
    "finetune": {**_CLASSIC, "phases": 1, "epochs": 12, "lr": 5e-4, "schedule": "cosine", "warmup_epochs": 1.0},
    # timm-style: full fine-tuning with layer decay, EMA, label smoothing, light mixup, drop-path and
    # dermoscopy augmentation (90-degree turns, affine, blur, JPEG)
    "modern": _MODERN,
}
#: The recipe `train`, `run`, `cv` and `lr-find` use when none is named (chosen by benchmarks/bench_recipes.py);
#: the dataclass defaults hold it, so ``RunConfig()`` equals ``load_config()``.
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


def plain(v: Any) -> Any:
    """``v`` with tuples as lists, at any depth: what YAML and JSON write and read back."""
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""
    return plain(dataclasses.asdict(cfg))


def save_config(cfg: RunConfig, run_dir) -> Path:
    """Write the resolved config to the run's config.yaml atomically (``run_dir``: a data.run.Run or folder)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic.write_text(Run.of(run_dir).config_yaml, text)


def field_default(dotted: str) -> Any:
    """The dataclass default of a dotted key (for CLI help texts)."""
    section, _, name = dotted.partition(".")
    return getattr(getattr(RunConfig(), section), name)
