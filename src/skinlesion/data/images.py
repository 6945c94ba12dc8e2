"""The one image decoder used by training, evaluation and inference."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SkinlesionError

#: Above this many pixels an image is refused (decompression-bomb guard); HAM10000 is 0.27 MP.
MAX_PIXELS = 50_000_000
#: Longer side / shorter side above this is refused: dermoscopy images are about 4:3, and resizing the
#: shorter side of a 1 x 1,000,000 strip to the model's size would ask for tens of GB.
MAX_ASPECT = 10.0


class ImageDecodeError(SkinlesionError, ValueError):
    """An image file cannot be used; the message names the file and the reason. ``kind`` is one of
    missing, not_image, too_large, bad_shape, corrupt (the server maps it to an HTTP status)."""

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


def check_dimensions(width: int, height: int, name, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse, from the header alone, images whose decoding or resizing would need unbounded memory."""
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{name}: {width}x{height} has no pixels", "bad_shape")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression-bomb guard). Remedy: downscale the image first", "too_large")
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT:
        raise ImageDecodeError(
            f"{name}: {width}x{height} has an aspect ratio of {aspect:,.1f}:1, above the limit of {MAX_ASPECT:g}:1 "
            "(not a lesion photograph; resizing it would need unbounded memory). Remedy: crop it to the lesion",
            "bad_shape")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode ``path`` (a path or a binary file object, e.g. an upload, named ``name`` in errors) to an
    8-bit RGB PIL image with EXIF orientation applied.

    Raises :class:`ImageDecodeError` for missing, non-image,
    truncated/corrupt or oversized files.
    """
    source = path if hasattr(path, "read") else Path(path)
    path = name or (getattr(path, "name", None) if hasattr(path, "read") else source) or "upload"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                check_dimensions(*img.size, path, max_pixels)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found", "missing") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{path}: is a folder, not an image file", "missing") from None
    except PermissionError:
        raise ImageDecodeError(f"{path}: permission denied", "missing") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image file PIL can read (expected JPEG, PNG, BMP or TIFF)",
                               "not_image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{path}: refused as a decompression bomb ({exc})", "too_large") from None
    except MemoryError:
        raise ImageDecodeError(f"{path}: decoding it ran out of memory", "too_large") from None
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types for damaged files
        raise ImageDecodeError(f"{path}: truncated or corrupt image ({type(exc).__name__}: {exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only, without decoding pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(f"{path}: cannot read the image header ({type(exc).__name__}: {exc})") from None
