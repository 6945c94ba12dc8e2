"""Model bundle: ``model.safetensors`` (weights only) + ``config.json`` that makes the model self-describing."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import atomic
from ..errors import SkinlesionError
from ..data.transforms import Preprocessing
from ..models.classifier import LesionClassifier, ModelOptions, build_model
from .bundle_config import (FORMAT_VERSION, SUPPORTED_FORMATS, BundleConfig, BundleError,  # noqa: F401 - the API
                            _check_ensemble_weights, _check_size_before_building, bundle_config, library_versions,
                            read_config, validate_config)

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
    BundleConfig.from_json(config, path)
    atomic.write_json(path, config)
    return config


@dataclass
class Bundle:
    """A loaded bundle: the model in eval mode, its config and its preprocessing."""

    model: LesionClassifier
    config: BundleConfig
    preprocessing: Preprocessing

    def __post_init__(self):
        if not isinstance(self.config, BundleConfig):  # a config built in this process (not read from disk)
            self.config = BundleConfig(self.config)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def threshold(self) -> float:
        return self.config.threshold

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
    config = BundleConfig.read(path)
    try:
        spec = config.backbone
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
    return Bundle(model.eval(), config, config.preprocessing)
