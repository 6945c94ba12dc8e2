"""Backbone registry, pretrained weights and the classifier (torch is imported on first use)."""
from .registry import BackboneSpec, get_spec, list_backbones

_LAZY = {"LesionClassifier": "classifier", "build_model": "classifier", "class_probabilities": "classifier",
         "malignant_probability": "classifier", "set_trainable": "classifier", "WeightsUnavailableError": "weights"}

__all__ = ["BackboneSpec", "get_spec", "list_backbones", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
