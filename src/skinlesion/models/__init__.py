"""Backbone registry, pretrained weights and the classifier."""
from .classifier import LesionClassifier, build_model, class_probabilities, malignant_probability, set_trainable
from .registry import BackboneSpec, get_spec, list_backbones
from .weights import WeightsUnavailableError

__all__ = ["BackboneSpec", "LesionClassifier", "WeightsUnavailableError", "build_model", "class_probabilities",
           "get_spec", "list_backbones", "malignant_probability", "set_trainable"]
