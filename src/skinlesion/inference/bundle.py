"""Model bundle: ``model.safetensors`` (weights only) + ``config.json`` that makes the model self-describing."""
from __future__ import annotations

import json
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__, atomic
from ..data.transforms import Preprocessing
from ..labels import BINARY_LABEL, DX_CODES, SEVEN_CLASS_LABEL, class_names
from ..models.classifier import LesionClassifier, build_model
from ..models.registry import BackboneSpec

FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    import lightning
    import timm
    import torchvision
    return {"skinlesion": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "lightning": lightning.__version__, "python": platform.python_version()}


def bundle_config(spec: BackboneSpec, pre: Preprocessing, task: str, dropout: float, metrics: dict,
                  fingerprint: dict, threshold: float = 0.5) -> dict:
    """The config.json content (format version 1)."""
    return {
        "format_version": FORMAT_VERSION,
        "architecture": spec.name, "timm_id": spec.timm_id, "backbone": spec.to_dict(),
        "preprocessing": pre.to_dict(),
        "task": task, "class_names": list(class_names(task)),
        "dx_to_label": dict(BINARY_LABEL) if task == "binary" else dict(SEVEN_CLASS_LABEL),
        "dx_codes": list(DX_CODES),
        "head": {"dropout": dropout, "outputs": 1 if task == "binary" else 7},
        "threshold": {"value": threshold, "source": "default 0.5 (run `skinlesion tune-threshold`)"},
        "metrics": metrics, "training_data": fingerprint, "library_versions": library_versions(),
        "intended_use": "research and education only; not a medical device",
    }


def save_bundle(model: LesionClassifier, config: dict, out: str | Path) -> Path:
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


def update_config(bundle: str | Path, **changes) -> dict:
    """Update top-level keys of a bundle's config.json atomically."""
    path = Path(bundle) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(changes)
    atomic.write_json(path, config)
    return config


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


def load_bundle(path: str | Path, map_location: str = "cpu") -> Bundle:
    """Rebuild the model from config.json (no weights download) and load model.safetensors."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a model bundle (needs config.json and model.safetensors); "
                                "pass the bundle/ folder of a trained run")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: bundle format {config.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    b = dict(config["backbone"])
    spec = BackboneSpec(**{**b, "mean": tuple(b["mean"]), "std": tuple(b["std"])})
    model = build_model(spec, config["task"], pretrained=False, dropout=config["head"]["dropout"])
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=map_location))
    p = config["preprocessing"]
    pre = Preprocessing(p["image_size"], p["resize_size"], tuple(p["mean"]), tuple(p["std"]))
    return Bundle(model.eval(), config, pre)
