"""The one image decoder used by training, evaluation and inference."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SkinlesionError

#: Above this many pixels an image is refused (decompression-bomb guard); HAM10000 is 0.27 MP.
MAX_PIXELS = 50_000_000


class ImageDecodeError(SkinlesionError, ValueError):
    """An image file cannot be used; the message names the file and the reason."""


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
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageDecodeError(
                        f"{path}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                        "(decompression-bomb guard); downscale the image first")
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image file PIL can read (expected JPEG or PNG)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{path}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: truncated or corrupt image ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only, without decoding pixels."""
    with Image.open(path) as img:
        return img.size
