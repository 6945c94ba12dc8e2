"""Preprocessing defined once per backbone: decode + resize to a square uint8 tensor, then presets.

Training, evaluation, the decoded-image cache and inference all start from :meth:`Preprocessing.load`,
so the pixels a bundle sees at inference are produced exactly as in training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .images import ImageDecodeError, check_dimensions, load_rgb


#: Colour-constancy methods by name (``Preprocessing.colour_constancy``).
COLOUR_CONSTANCY = ("shades_of_gray",)
SHADES_OF_GRAY_P = 6


def shades_of_gray(x: torch.Tensor, p: int = SHADES_OF_GRAY_P) -> torch.Tensor:
    """Shades-of-gray colour constancy (Finlayson & Trezzi 2004; Minkowski p = 6 as in the ISIC 2019
    winner's pipeline) on float RGB in [0, 255], shape (..., 3, H, W): each channel is scaled so that the
    estimated illuminant (the p-norm mean of the channel) becomes neutral grey; then rounded to whole
    values and clipped, so the result is what a uint8 image holds. Written in torch so that the ONNX export
    runs the very same operations."""
    x = x.float()
    illuminant = x.clamp(min=0).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)  # (..., 3, 1, 1)
    unit = illuminant / illuminant.pow(2).sum(dim=-3, keepdim=True).sqrt().clamp(min=1e-6)
    gains = 1.0 / (unit * (3.0 ** 0.5)).clamp(min=1e-6)
    return (x * gains).round().clamp(0, 255)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize_size``, center-crop a ``resize_size`` square (cached),
    then center-crop ``image_size`` and normalise (training augments the square instead: the policies in
    :mod:`skinlesion.data.batch_augment`)."""

    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_constancy: str | None = None  # None or "shades_of_gray" (p = 6), applied to the cached square

    @classmethod
    def for_spec(cls, spec, colour_constancy: str | None = None) -> "Preprocessing":
        return cls(spec.image_size, int(round(spec.image_size / spec.crop_pct)), tuple(spec.mean), tuple(spec.std),
                   colour_constancy)

    def to_dict(self) -> dict:
        cc = (f", shades-of-gray colour constancy (Minkowski p={SHADES_OF_GRAY_P}) on that square, rounded to "
              "whole values" if self.colour_constancy else "")
        return {**asdict(self), "policy": "resize shorter side to resize_size, center-crop resize_size square" + cc
                + ", center-crop image_size, scale to [0,1], normalise with mean/std", "steps": self.steps()}

    def steps(self, in_graph_from: int | None = None) -> list[dict]:
        """Every step from a decoded image to the model's input, with each rounding pinned, so another
        implementation reading only model.json reproduces the tensor (steps numbered from 1; with
        ``in_graph_from`` the ONNX graph itself runs that step and the ones after it)."""
        R, S = self.resize_size, self.image_size
        crop = int(round((R - S) / 2.0))  # Python's round: halves to even, as torchvision's center_crop
        steps = [
            {"step": "decode", "output": "8-bit RGB, H x W x 3", "exif_orientation": "applied (PIL ImageOps.exif_transpose)",
             "alpha": "composited onto white", "16-bit or float images": "scaled to 0-255"},
            {"step": "resize", "shorter_side": R, "longer_side": f"floor({R} * longer / shorter)",
             "interpolation": "bilinear", "antialias": True, "output_dtype": "uint8 (rounded to nearest)",
             "implementation": "torchvision.transforms.v2.functional.resize(uint8 CHW tensor, %d, antialias=True); "
                               "PIL Image.resize((w, h), Image.BILINEAR) agrees within 1 grey level" % R},
            {"step": "center_crop", "size": [R, R], "top": "round((height - %d) / 2)" % R,
             "left": "round((width - %d) / 2)" % R, "rounding": "half to even (Python round; 11.5 -> 12, 12.5 -> 12)"},
        ]
        if self.colour_constancy:
            steps.append({"step": "colour_constancy", "method": "shades_of_gray", "minkowski_p": 6,
                          "then": "rounded to whole values, clipped to 0-255"})
        steps += [
            {"step": "center_crop", "size": [S, S], "top": crop, "left": crop,
             "note": f"fixed pixel offsets: ({R} - {S}) / 2 = {(R - S) / 2:g} is rounded half to even"},
            {"step": "scale", "divide_by": 255.0, "dtype": "float32"},
            {"step": "normalize", "mean": list(self.mean), "std": list(self.std), "formula": "(x - mean) / std per channel"},
            {"step": "layout", "order": "NCHW, channels RGB"},
        ]
        for i, step in enumerate(steps, 1):
            step["in_onnx_graph"] = in_graph_from is not None and i >= in_graph_from
        return steps

    def square(self, image) -> torch.Tensor:
        """A PIL image or HWC uint8 array -> (3, resize_size, resize_size) uint8 tensor. Work is bounded:
        the pixel count and aspect ratio are checked before anything is converted or resized."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ImageDecodeError(f"array of shape {image.shape}: expected H x W x 3 (RGB)", "bad_shape")
            check_dimensions(image.shape[1], image.shape[0], "array")
        else:
            check_dimensions(*image.size, getattr(image, "filename", None) or "image")
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # copy: PIL arrays are read-only
        x = F.resize(x, self.resize_size, antialias=True)
        x = F.center_crop(x, [self.resize_size, self.resize_size])
        return self.constancy(x)

    def constancy(self, x: torch.Tensor) -> torch.Tensor:
        """The colour-constancy step on uint8 square(s); the identity when the bundle has none."""
        if not self.colour_constancy:
            return x
        return shades_of_gray(x).to(torch.uint8)

    def load(self, path: str | Path) -> torch.Tensor:
        """Decode a file with the project's decoder and return its cached square form."""
        return self.square(load_rgb(path))  # full decode (no JPEG draft), so files == in-memory images

    def eval_transform(self) -> v2.Compose:
        return v2.Compose([v2.CenterCrop(self.image_size), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(list(self.mean), list(self.std))])
