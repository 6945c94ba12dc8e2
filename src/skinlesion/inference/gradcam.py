"""Grad-CAM heat maps for the malignant logit (with the `grad-cam` package) and PNG overlays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..models.task import get_task
from .. import atomic
from ..data.images import ImageDecodeError
from ..paths import check_outputs
from .bundle import Bundle, load_bundle


class MalignantLogit:
    """Grad-CAM target: the binary logit, or log p(malignant) - log p(benign) for a 7-class model."""

    def __init__(self, task: str):
        self.task = task

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return get_task(self.task).malignant_score(output)


def last_spatial_layer(backbone: nn.Module, size: int = 64) -> str:
    """Name of the last module (in execution order) whose output is a 4-D map with H, W > 1."""
    seen: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: seen.append(n)
                                     if isinstance(o, torch.Tensor) and o.dim() == 4 and o.shape[-1] > 1 else None)
             for name, m in backbone.named_modules() if name]
    was_training = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    if not seen:
        raise ValueError(f"{type(backbone).__name__} has no spatial feature map for Grad-CAM")
    return seen[-1]


def cam_layer(bundle: Bundle, model=None) -> nn.Module:
    """The backbone layer named in the registry spec stored in the bundle (auto-detected if none)."""
    model = model if model is not None else bundle.model
    name = bundle.config["backbone"].get("cam_layer") or last_spatial_layer(model.backbone,
                                                                            bundle.preprocessing.image_size)
    return model.backbone.get_submodule(name)


def gradcam(bundle: Bundle, squares: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(cams in [0, 1] of shape (N, S, S), RGB crops in [0, 1] of shape (N, S, S, 3)) for uint8 squares."""
    from pytorch_grad_cam import GradCAM

    from torchvision.transforms.v2 import functional as F

    pre = bundle.preprocessing
    x = torch.stack([pre.eval_transform()(s) for s in squares])
    rgb = F.center_crop(squares, [pre.image_size, pre.image_size]).permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0
    members = list(getattr(bundle.model, "members", [bundle.model]))  # an ensemble: the mean of its members' maps
    maps = []
    for model in members:
        model = model.eval()
        with GradCAM(model=model, target_layers=[cam_layer(bundle, model)]) as cam:
            maps.append(cam(input_tensor=x, targets=[MalignantLogit(bundle.task)] * len(x)))
    return np.mean(maps, axis=0).astype(np.float32), rgb


def overlay(rgb: np.ndarray, cam: np.ndarray) -> Image.Image:
    """The heat map (jet colour map) blended over the image."""
    from pytorch_grad_cam.utils.image import show_cam_on_image
    return Image.fromarray(show_cam_on_image(rgb, cam, use_rgb=True, image_weight=0.6))


def overlay_names(paths: list[str]) -> list[str]:
    """``<stem>_gradcam.png`` per input; inputs sharing a stem (a/x.jpg, b/x.jpg, x.png) get the first 8
    hex digits of their full path's SHA-256 added, so no overlay overwrites another."""
    import hashlib
    from collections import Counter
    stems = Counter(Path(p).stem for p in paths)
    return [f"{Path(p).stem}_gradcam.png" if stems[Path(p).stem] == 1 else
            f"{Path(p).stem}_{hashlib.sha256(str(Path(p).resolve()).encode()).hexdigest()[:8]}_gradcam.png"
            for p in paths]


def explain_files(bundle_dir: str | Path, paths: list[str], out_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Write one overlay PNG per image into ``out_dir`` (see :func:`overlay_names`); return written files
    and path -> error."""
    out_dir = Path(out_dir)
    paths = list({str(Path(p).resolve()): p for p in reversed(paths)}.values())[::-1]  # each file once
    names = overlay_names(paths)
    check_outputs([out_dir / n for n in names], protected=[Path(bundle_dir)], inputs=paths)
    bundle = load_bundle(bundle_dir)
    written, errors = [], {}
    for path, name in zip(paths, names):
        try:
            square = bundle.preprocessing.load(path)
        except ImageDecodeError as exc:
            errors[path] = str(exc)
            continue
        maps, rgb = gradcam(bundle, square[None])
        target = out_dir / name
        with atomic.atomic_path(target) as tmp:
            overlay(rgb[0], maps[0]).save(tmp, format="PNG")
        written.append(target)
    return written, errors
