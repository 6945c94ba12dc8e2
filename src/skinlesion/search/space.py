"""The search space of `skinlesion search`: which training keys a study samples, and from what.

A space is a mapping of training keys (``skinlesion.options.TrainConfig`` fields, plus ``recipe`` and
``metadata``) to one of

- ``{low: 1e-5, high: 3e-3, log: true}``: a float range (an int range when both ends are whole numbers;
  ``step`` optional),
- ``{choices: [classic, modern]}``: a categorical choice,
- a plain value: pinned for every trial.

A ``--space FILE.yaml`` replaces the default space as a whole (what is searched is exactly what the file
says); every value is checked with the option's own validator before the study starts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import RECIPES, ConfigError, RunConfig
from ..options import TrainConfig, declared

#: Locked training keys a search may not vary: they define the task or the data, not the recipe.
NOT_SEARCHED = ("task", "fold", "seed", "weights", "pretrained", "limit_train_batches")
#: The metadata choice meaning "image only".
NO_METADATA = "none"

DEFAULT_SPACE: dict[str, Any] = {
    "recipe": {"choices": ["classic", "finetune", "modern"]},
    "lr": {"low": 1e-5, "high": 3e-3, "log": True},
    "weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "layer_decay": {"choices": [None, 0.65, 0.75, 0.85]},
    "mixup": {"low": 0.0, "high": 0.4},
    "cutmix": {"low": 0.0, "high": 1.0},
    "drop_path": {"low": 0.0, "high": 0.3},
    "label_smoothing": {"low": 0.0, "high": 0.15},
    "epochs": {"low": 6, "high": 20},
    "image_size": {"choices": [128, 160, 192, 224]},
    "metadata": {"choices": [NO_METADATA, "age,sex,localization"]},
}


def searchable() -> dict[str, Any]:
    """Key -> its declared field (``recipe`` has no field check beyond RECIPES)."""
    return {f.name: f for f in declared(TrainConfig) if f.metadata["locked"] and f.name not in NOT_SEARCHED}


@dataclass(frozen=True)
class Param:
    """One key of the space: a range, a choice or a pinned value."""

    key: str
    kind: str  # float | int | categorical | fixed
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    value: Any = None

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        return self.value

    def contains(self, value: Any) -> bool:
        if self.kind in ("float", "int"):
            return isinstance(value, (int, float)) and self.low <= value <= self.high
        if self.kind == "categorical":
            return value in self.choices
        return value == self.value

    def to_yaml(self) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        return {**out, **({"log": True} if self.log else {}), **({"step": self.step} if self.step else {})}


def _where(source: str, key: str) -> str:
    return f"{source}: {key}"


def _check_value(source: str, key: str, value: Any) -> None:
    """The option's own validator (recipe: a known recipe; metadata: known fields)."""
    if key == "recipe":
        if value not in RECIPES:
            raise ConfigError(f"{_where(source, key)}: {value!r} is not a recipe ({', '.join(RECIPES)}). Remedy: "
                              "choices: [classic, modern]")
        return
    if key == "metadata":
        metadata_fields(value)  # unknown or label-leaking fields are refused by the parser
        return
    md = searchable()[key].metadata
    check = md["check"]
    if check is not None and not check(value):
        raise ConfigError(f"{_where(source, key)}: {value!r} is not valid: the option must be {md['what']}. "
                          f"Remedy: e.g. {md['example']}")


def metadata_fields(value: Any) -> tuple[str, ...]:
    """A metadata choice ("none", "" or None: image only; "age,sex"): the TrainConfig.metadata tuple."""
    from ..data.tabular import parse_fields
    if value is None or str(value).strip().lower() in ("", NO_METADATA):
        return ()
    return parse_fields(str(value))


def parse_param(key: str, spec: Any, source: str) -> Param:
    """One entry of a space, validated (unknown key, empty range, bad bounds, invalid values)."""
    keys = ("recipe", "metadata", *searchable())
    if key not in keys:
        raise ConfigError(f"{_where(source, key)}: not a key a search can vary. Remedy: use one of "
                          f"{', '.join(sorted(keys))}")
    if not isinstance(spec, dict):
        _check_value(source, key, spec)
        return Param(key, "fixed", value=spec)
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{_where(source, key)}: unknown field(s) {', '.join(sorted(unknown))}. Remedy: "
                          "{low: .., high: .., log: true} or {choices: [..]}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{_where(source, key)}: choices must be a non-empty list. Remedy: choices: [a, b]")
        for c in choices:
            _check_value(source, key, c)
        return Param(key, "categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers:
        raise ConfigError(f"{_where(source, key)}: needs numeric low and high (got {low!r}, {high!r}). Remedy: "
                          "{low: 1e-5, high: 1e-3}")
    if not low < high:
        raise ConfigError(f"{_where(source, key)}: empty range (low {low} must be below high {high}). Remedy: widen "
                          f"it, or pin the key: `{key}: {low}`")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{_where(source, key)}: a log range needs low > 0 (got {low}). Remedy: low: 1e-6")
    for v in (low, high):
        _check_value(source, key, v)
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return Param(key, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high, log,
                 spec.get("step"))


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @classmethod
    def load(cls, path: str | Path | None) -> "Space":
        """The default space, or the one in ``path`` (YAML), validated."""
        if path is None:
            return cls.from_mapping(DEFAULT_SPACE, "the default space")
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--space {path}: no such file. Remedy: pass an existing YAML file (see "
                              "docs/search.md), or drop --space for the default space.") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--space {path}: not valid YAML ({str(exc).splitlines()[0]}). Remedy: a mapping "
                              "such as `lr: {low: 1e-5, high: 1e-3, log: true}`") from None
        if not isinstance(loaded, dict) or not loaded:
            raise ConfigError(f"--space {path}: must be a non-empty mapping of keys to ranges. Remedy: e.g. "
                              "`lr: {low: 1e-5, high: 1e-3, log: true}`")
        return cls.from_mapping(loaded, str(path))

    @classmethod
    def from_mapping(cls, mapping: dict, source: str) -> "Space":
        return cls(tuple(parse_param(str(k), v, source) for k, v in mapping.items()))

    def suggest(self, trial) -> dict[str, Any]:
        return {p.key: p.suggest(trial) for p in self.params}

    def to_yaml(self) -> str:
        return yaml.safe_dump({p.key: p.to_yaml() for p in self.params}, sort_keys=False)

    def defaults_inside(self, cfg: RunConfig) -> dict[str, Any]:
        """The searched keys' values in ``cfg`` (the run a user gets without a search), when each lies in
        the space: the study's first trial, so the search is measured against the default at equal budget."""
        out = {}
        for p in self.params:
            if p.kind == "fixed":
                continue
            value = (NO_METADATA if not cfg.train.metadata else ",".join(cfg.train.metadata)) \
                if p.key == "metadata" else getattr(cfg.train, p.key)
            if not p.contains(value):
                return {}
            out[p.key] = value
        return out


def as_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as dotted config overrides (``train.<key>``)."""
    return {f"train.{k}": (metadata_fields(v) if k == "metadata" else v) for k, v in params.items()}
