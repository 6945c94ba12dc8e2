"""A bundle's config.json: written by :func:`bundle_config`, read and validated once by
:meth:`BundleConfig.from_json` (every stage that loads a bundle gets a :class:`BundleConfig`). The format is
versioned (``format_version``); a version this skinlesion does not know is refused with a remedy, and the
format written by earlier versions (the same version 1) still loads — tests/fixtures/run-5a09157 keeps one."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch

from .. import __version__
from ..data.transforms import COLOUR_CONSTANCY, Preprocessing
from ..errors import SkinlesionError
from ..records import JsonRecord
from ..labels import DX_CODES, TASKS
from ..models.registry import BackboneSpec
from ..models.task import Task, get_task

FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)


class BundleError(SkinlesionError, ValueError):
    """A bundle folder is missing, damaged or inconsistent; the message names the file."""


def library_versions() -> dict[str, str]:
    import lightning
    import timm
    import torchvision
    return {"skinlesion": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "lightning": lightning.__version__, "python": platform.python_version()}


def bundle_config(spec: BackboneSpec, pre: Preprocessing, task: str, dropout: float, metrics: dict,
                  fingerprint: dict) -> dict:
    """The config.json content (format version 1)."""
    return {
        "format_version": FORMAT_VERSION,
        "architecture": spec.name, "timm_id": spec.timm_id, "backbone": spec.to_dict(),
        "preprocessing": pre.to_dict(),
        "task": task, "class_names": list(get_task(task).class_names),
        "dx_to_label": dict(get_task(task).label_map),
        "dx_codes": list(DX_CODES),
        "head": {"dropout": dropout, "outputs": get_task(task).outputs},
        "threshold": {"value": 0.5, "source": "default 0.5 (run `skinlesion tune-threshold`)"},
        "metrics": metrics, "training_data": fingerprint, "library_versions": library_versions(),
        "intended_use": "research and education only; not a medical device",
    }


def read_config(path: Path) -> dict:
    """The parsed config.json of bundle folder ``path``, or a BundleError naming what is wrong."""
    cfg_path = path / "config.json"
    if not path.is_dir() or not cfg_path.is_file() or not (path / "model.safetensors").is_file():
        raise BundleError(f"{path} is not a model bundle (needs config.json and model.safetensors). Remedy: pass "
                          "the bundle/ folder of a trained run (`skinlesion train --out RUN` writes RUN/bundle).")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise BundleError(f"{cfg_path}: not valid JSON ({exc}); the bundle is damaged. Remedy: copy the bundle "
                          "again or re-train.") from None
    if not isinstance(config, dict):
        raise BundleError(f"{cfg_path}: expected a JSON object; the bundle is damaged. Remedy: copy it again.")
    return config


def _check_metadata(config: dict, cfg_path: Path) -> None:
    meta = config.get("metadata")
    if not meta:
        return
    from ..data.tabular import MetadataEncoder, parse_fields
    try:
        enc = MetadataEncoder.from_dict(meta)
        parse_fields(enc.fields)
        assert enc.dim == int(meta["dim"]) and _finite(enc.age_mean) and _finite(enc.age_std) and enc.age_std > 0
    except SkinlesionError:
        raise
    except Exception:  # noqa: BLE001
        raise BundleError(f"{cfg_path}: its 'metadata' encoder is damaged. Remedy: copy the bundle again or "
                          "re-train.") from None


#: Shown by predict, serve's page, reports and model cards: (path, allowed types). Checked by type so a
#: hostile config.json cannot smuggle markup or script into a page, or a huge number into memory.
_TYPED_FIELDS = (
    (("threshold", "target_sensitivity"), (int, float, type(None))),
    (("threshold", "source"), (str, type(None))),
    (("threshold", "tta"), (bool, type(None))),
    (("threshold", "operating_point"), (dict, type(None))),
    (("architecture",), (str,)),
    (("intended_use",), (str, type(None))),
    (("limitations",), (list, type(None))),
    (("class_names",), (list, type(None))),
    (("metrics",), (dict, type(None))),
    (("ensemble",), (dict, type(None))),
    (("stack",), (dict, type(None))),
)
MAX_ENSEMBLE = 100


def _check_fields(config: dict, cfg_path: Path) -> None:
    for keys, types in _TYPED_FIELDS:
        value = config
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if not isinstance(value, types) or (isinstance(value, float) and not math.isfinite(value)):
            raise BundleError(f"{cfg_path}: {'.'.join(keys)} = {str(value)[:60]!r} is not a "
                              f"{' or '.join(t.__name__.replace('NoneType', 'null') for t in types)}; the bundle is "
                              "damaged or was edited. Remedy: copy it again or re-train.")
    op = (config.get("threshold") or {}).get("operating_point") or {}
    texts = [*(config.get("limitations") or []), *(config.get("class_names") or [])]
    if any(isinstance(v, str) for v in op.values()) or not all(isinstance(v, str) for v in texts):
        raise BundleError(f"{cfg_path}: threshold.operating_point must hold no text, and limitations/class_names only text. "
                          "Remedy: copy the bundle again or re-train.")
    stack = config.get("stack")
    if stack is not None:
        tr = stack.get("trees")  # a dict: _TYPED_FIELDS checked it above
        limits = {"n_trees": 10_000, "width": 100_000, "depth": 64}
        ok = isinstance(tr, dict) and all(isinstance(tr.get(k), int) and not isinstance(tr.get(k), bool)
                                          and 1 <= tr[k] <= hi for k, hi in limits.items())
        if not ok or config.get("task") != "binary" or not isinstance(stack.get("base_uses_metadata"), bool) \
                or not isinstance(stack.get("base_metadata_dim"), int):
            raise BundleError(f"{cfg_path}: its 'stack' entry is damaged (trees n_trees/width/depth, "
                              "base_uses_metadata, base_metadata_dim; binary task). Remedy: copy the bundle again or "
                              "re-run `skinlesion cv --resume --stack gbdt`.")
    ens = config.get("ensemble")
    if ens is not None:
        size = ens.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_ENSEMBLE:
            raise BundleError(f"{cfg_path}: ensemble.size {size!r} must be a whole number from 1 to {MAX_ENSEMBLE}. "
                              "Remedy: copy the bundle again or re-train.")


def _check_size_before_building(path: Path, build) -> None:
    """The model config.json describes, built on the meta device (no memory), has as many weights as
    model.safetensors holds (read from its header): a hostile or mismatched config cannot make skinlesion
    allocate a model far larger than the file it came with."""
    from safetensors import safe_open
    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            in_file = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as exc:  # noqa: BLE001
        raise BundleError(f"{path / 'model.safetensors'}: not a readable safetensors file ({str(exc)[:200]}); the "
                          "bundle is damaged. Remedy: copy it again or re-train.") from None
    try:
        with torch.device("meta"):
            described = sum(t.numel() for t in build().state_dict().values())
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta: the real build reports it
        return
    if described != in_file:
        raise BundleError(f"{path / 'config.json'} describes a model with {described:,} weights but "
                          f"model.safetensors holds {in_file:,}. Remedy: keep config.json and model.safetensors of "
                          "the same bundle together, or re-train.")


def _check_ensemble_weights(path: Path, size: int, prefix: str = "members.") -> None:
    """Before an ensemble is built: model.safetensors (read from its header only) holds ``size`` members."""
    from safetensors import safe_open
    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            members = {k[len(prefix):].split(".")[0] for k in f.keys() if k.startswith(prefix)}
    except Exception as exc:  # noqa: BLE001
        raise BundleError(f"{path / 'model.safetensors'}: not a readable safetensors file ({str(exc)[:200]}); the "
                          "bundle is damaged. Remedy: copy it again or re-train.") from None
    if len(members) != size:
        raise BundleError(f"{path / 'config.json'}: ensemble.size is {size} but model.safetensors holds {len(members)} "
                          "member models. Remedy: keep config.json and model.safetensors of the same bundle together.")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_config(config: dict, cfg_path: Path) -> None:
    """Known format, known task, a finite threshold in [0, 1], a positive finite temperature."""
    version = config.get("format_version")
    if version not in SUPPORTED_FORMATS:
        raise BundleError(f"{cfg_path}: bundle format {version!r} is not supported by skinlesion {__version__} "
                          f"(supported: {', '.join(map(str, SUPPORTED_FORMATS))}). Remedy: use the skinlesion "
                          "version that wrote it, or re-train.")
    for key in ("architecture", "task", "backbone", "preprocessing", "head", "threshold"):
        if key not in config:
            raise BundleError(f"{cfg_path}: missing key {key!r}; the bundle is damaged. Remedy: copy it again or re-train.")
    if config["task"] not in TASKS:
        raise BundleError(f"{cfg_path}: unknown task {config['task']!r} (expected {' or '.join(TASKS)}); the bundle "
                          "is damaged. Remedy: copy it again or re-train.")
    t = (config.get("threshold") or {}).get("value") if isinstance(config.get("threshold"), dict) else None
    if not _finite(t) or not 0.0 <= t <= 1.0:
        raise BundleError(f"{cfg_path}: threshold {t!r} is not a number in [0, 1]. Remedy: re-run `skinlesion "
                          "tune-threshold RUN_DIR`, or set threshold.value to 0.5.")
    _check_metadata(config, cfg_path)
    _check_fields(config, cfg_path)
    cal = config.get("calibration")
    if cal is not None:
        keys = ("slope", "intercept", "offset") if isinstance(cal, dict) and "slope" in cal else ("temperature",)
        values = [cal.get(k, 0.0) if isinstance(cal, dict) else cal for k in keys]
        bad = [(k, v) for i, (k, v) in enumerate(zip(keys, values)) if not _finite(v) or (i == 0 and v <= 0)]
        if bad:
            raise BundleError(f"{cfg_path}: calibration {bad[0][0]} {bad[0][1]!r} must be a "
                              f"{'positive' if bad[0][0] == keys[0] else 'finite'} number. Remedy: re-run "
                              "`skinlesion tune-threshold RUN_DIR` (it refits the calibration), or remove the key.")
    try:
        size = int(config["preprocessing"]["image_size"])
        resize = int(config["preprocessing"]["resize_size"])
        assert 16 <= size <= 2048 and size <= resize <= 4096
        assert len(config["preprocessing"]["mean"]) == 3 and len(config["preprocessing"]["std"]) == 3
        assert all(_finite(v) and v > 0 for v in config["preprocessing"]["std"])
        assert all(_finite(v) for v in config["preprocessing"]["mean"])
        assert config["preprocessing"].get("colour_constancy") in (None, *COLOUR_CONSTANCY)
    except (KeyError, TypeError, ValueError, AssertionError):
        raise BundleError(f"{cfg_path}: preprocessing {config.get('preprocessing')!r} is invalid (image_size 16-2048 "
                          "<= resize_size, 3 means, 3 positive stds, colour_constancy null or shades_of_gray). Remedy: copy the bundle again or re-train.") from None


class BundleConfig(JsonRecord):
    """A validated config.json: a read-only mapping over the stored JSON (keys this version does not model
    are kept, so a bundle round-trips unchanged) with typed views of the fields stages use."""

    @classmethod
    def from_json(cls, data: dict, where: str | Path = "config.json") -> "BundleConfig":
        """The one validation of a bundle config (format version, task, threshold, calibration, typed fields,
        preprocessing, metadata encoder, ensemble and stack entries): a BundleError naming ``where``."""
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected a JSON object; the bundle is damaged. Remedy: copy it again.")
        validate_config(data, Path(where))
        return cls(data)

    @classmethod
    def read(cls, bundle_dir: Path) -> "BundleConfig":
        """config.json of bundle folder ``bundle_dir``, parsed and validated."""
        return cls.from_json(read_config(bundle_dir), bundle_dir / "config.json")

    def __repr__(self) -> str:
        return f"BundleConfig(format {self.format_version}, {self.architecture}, {self.task})"

    format_version = property(lambda self: int(self._data["format_version"]))
    architecture = property(lambda self: str(self._data["architecture"]))
    task = property(lambda self: str(self._data["task"]))
    threshold = property(lambda self: float(self._data["threshold"]["value"]))
    calibration = property(lambda self: self._data.get("calibration"))
    ensemble = property(lambda self: self._data.get("ensemble"))
    stack = property(lambda self: self._data.get("stack"))
    metadata = property(lambda self: self._data.get("metadata"))
    training_data = property(lambda self: self._data.get("training_data") or {})
    metrics = property(lambda self: self._data.get("metrics") or {})

    @property
    def task_spec(self) -> Task:
        return get_task(self.task)

    @property
    def backbone(self) -> BackboneSpec:
        b = dict(self._data["backbone"])
        return BackboneSpec(**{**b, "mean": tuple(b["mean"]), "std": tuple(b["std"])})

    @property
    def preprocessing(self) -> Preprocessing:
        p = self._data["preprocessing"]
        return Preprocessing(p["image_size"], p["resize_size"], tuple(p["mean"]), tuple(p["std"]),
                             p.get("colour_constancy"))
