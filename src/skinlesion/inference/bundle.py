"""Model bundle: ``model.safetensors`` (weights only) + ``config.json`` that makes the model self-describing."""
from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.task import get_task
from .. import __version__, atomic
from ..errors import SkinlesionError
from ..data.transforms import COLOUR_CONSTANCY, Preprocessing
from ..labels import DX_CODES
from ..models.classifier import LesionClassifier, ModelOptions, build_model
from ..models.registry import BackboneSpec

FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)


class BundleError(SkinlesionError, ValueError):
    """A bundle folder is missing, damaged or inconsistent; the message names the file."""


def seen_ids(rows) -> list[str]:
    """Short SHA-256 digests of the image ids a model trained or was selected on (train + val), stored
    in the bundle so that ``evaluate --model`` can refuse to score a model on its own training images."""
    return sorted(hashlib.sha256(str(i).encode()).hexdigest()[:12] for i in rows["image_id"])


def overlap_with_training(config: dict, image_ids) -> list[str]:
    """The ``image_ids`` that the bundle's model trained or was selected on."""
    seen = set((config.get("training_data") or {}).get("seen_image_ids") or ())
    return [i for i in image_ids if hashlib.sha256(str(i).encode()).hexdigest()[:12] in seen]


def check_inference_mode(config: dict, tta: bool, where: str = "this bundle") -> None:
    """The tuned threshold holds only for the inference mode it was tuned in (with or without TTA)."""
    thr = config.get("threshold") or {}
    if thr.get("target_sensitivity") is None:
        return  # the untuned default 0.5 states no operating point
    tuned_tta = bool(thr.get("tta", False))
    if tuned_tta != bool(tta):
        fix = ("drop --tta" if tuned_tta is False else "add --tta")
        raise BundleError(f"the threshold of {where} was tuned {'with' if tuned_tta else 'without'} test-time "
                          f"augmentation, so its stated sensitivity does not hold {'without' if tuned_tta else 'with'} "
                          f"it. Remedy: {fix}, or re-tune for this mode with `skinlesion tune-threshold RUN_DIR"
                          f"{'' if tuned_tta else ' --tta'}`.")


def keep_tuning(bundle: Path, config: dict) -> dict:
    """``config`` with the threshold, calibration and test metrics of the existing bundle (same weights)."""
    try:
        old = json.loads((Path(bundle) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return config
    if (old.get("training_data") or {}).get("split_fingerprint") != config["training_data"]["split_fingerprint"]:
        return config
    out = dict(config)
    for key in ("threshold", "calibration"):
        if key in old:
            out[key] = old[key]
    if "test" in (old.get("metrics") or {}):
        out["metrics"] = {**config["metrics"], "test": old["metrics"]["test"]}
    return out


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


def save_bundle(model, config: dict, out: str | Path) -> Path:
    """Write the bundle folder atomically (built in a temp folder, then renamed over ``out``)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def operating_point_line(config: dict) -> str:
    """Which operating point a bundle uses, in one line (predict, evaluate and the page say it)."""
    t = config.get("threshold") if isinstance(config.get("threshold"), dict) else {}
    site = config.get("site_adaptation") if isinstance(config.get("site_adaptation"), dict) else None
    where = f"adapted at site {site.get('site')} on {site.get('n_images')} local images ({site.get('date')})" if site \
        else "as tuned on the training data's validation split"
    value = t.get("value")
    return (f"operating point: threshold {value:.4f} " if isinstance(value, (int, float)) else "operating point: ") + \
        f"({where}; {t.get('source')})"


def update_config(bundle: str | Path, **changes) -> dict:
    """Update top-level keys of a bundle's config.json atomically (after validating the result)."""
    path = Path(bundle) / "config.json"
    config = read_config(Path(bundle))
    config.update(changes)
    validate_config(config, path)
    atomic.write_json(path, config)
    return config


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
    if config["task"] not in ("binary", "7class"):
        raise BundleError(f"{cfg_path}: unknown task {config['task']!r} (expected binary or 7class); the bundle "
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


@dataclass
class Bundle:
    """A loaded bundle: the model in eval mode, its config and its preprocessing."""

    model: LesionClassifier
    config: dict
    preprocessing: Preprocessing

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def threshold(self) -> float:
        return float(self.config["threshold"]["value"])

    @property
    def encoder(self):
        """The metadata encoder of a model trained with --metadata (None for image-only models)."""
        from ..data.tabular import MetadataEncoder
        meta = self.config.get("metadata")
        return MetadataEncoder.from_dict(meta) if meta else None

    def encode_metadata(self, frame) -> torch.Tensor | None:
        """Encoded metadata rows for ``frame`` (missing columns and values allowed), or None."""
        enc = self.encoder
        return None if enc is None or frame is None else torch.from_numpy(enc.encode(frame))


def load_bundle(path: str | Path, map_location: str = "cpu") -> Bundle:
    """Rebuild the model from config.json (no weights download) and load model.safetensors."""
    from safetensors.torch import load_file

    from .hub_ref import resolve
    path = resolve(path)  # a local folder, or hf-hub:ORG/NAME[@rev] downloaded to the Hub cache
    cfg_path = path / "config.json"
    config = read_config(path)
    validate_config(config, cfg_path)
    try:
        b = dict(config["backbone"])
        spec = BackboneSpec(**{**b, "mean": tuple(b["mean"]), "std": tuple(b["std"])})
        meta_dim = int((config.get("metadata") or {}).get("dim", 0))
        stack = config.get("stack")
        base_dim = int(stack["base_metadata_dim"]) if stack else meta_dim
        shape = ModelOptions(dropout=float(config["head"]["dropout"]), meta_dim=base_dim)
        build = lambda: build_model(spec, config["task"], pretrained=False, opts=shape)
        ensemble = config.get("ensemble")
        if ensemble:
            from ..models.ensemble import EnsembleClassifier
            _check_ensemble_weights(path, int(ensemble["size"]), "base.members." if stack else "members.")
            one = build
            build = lambda: EnsembleClassifier([one() for _ in range(int(ensemble["size"]))], config["task"],
                                               ensemble.get("combine", "mean_probability"))
        if stack:  # cv --stack gbdt: the fold models, then boosted trees on their score and the metadata
            from ..models.stack import StackedClassifier
            from ..models.trees import TreeEnsemble
            inner, tr = build, stack["trees"]
            build = lambda: StackedClassifier(inner(), TreeEnsemble(tr["n_trees"], tr["width"], tr["depth"]),
                                              meta_dim, bool(stack["base_uses_metadata"]), bool(stack.get("tta")))
        _check_size_before_building(path, build)
        model = build()
    except SkinlesionError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unknown architecture or a damaged backbone entry
        raise BundleError(f"{cfg_path}: cannot build the model it describes ({type(exc).__name__}: "
                          f"{str(exc)[:200]}). Remedy: install the skinlesion/timm versions listed under "
                          "library_versions, or re-train.") from None
    try:
        state = load_file(str(path / "model.safetensors"), device=map_location)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise BundleError(f"{path / 'model.safetensors'}: not a readable safetensors file ({str(exc)[:200]}); the "
                          "bundle is damaged. Remedy: copy it again or re-train.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f"{path / 'model.safetensors'}: its tensors do not fit the architecture in config.json "
                          f"({config['architecture']}, task {config['task']}): {str(exc).splitlines()[0][:200]} ... "
                          "Remedy: keep model.safetensors and config.json of the same bundle together.") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BundleError(f"{path / 'model.safetensors'}: tensor(s) {', '.join(bad[:5])} hold NaN or infinite "
                          "values. Remedy: re-train (lower --lr) or use another bundle.")
    p = config["preprocessing"]
    pre = Preprocessing(p["image_size"], p["resize_size"], tuple(p["mean"]), tuple(p["std"]), p.get("colour_constancy"))
    return Bundle(model.eval(), config, pre)
