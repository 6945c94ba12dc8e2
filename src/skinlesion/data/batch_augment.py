"""Training augmentation as batched tensor ops: one implementation of each policy for every device.

The CPU recipe runs it in the DataLoader workers (a whole batch per call), the GPU recipe on the device
(after transfer, or straight from the device-resident cache); both draw from :meth:`BatchAugment.draw`,
so the model a GPU user trains is the recipe the CPU ablation chose. Per image, from a uint8 square:

1. geometry, one bilinear resampling: random resized crop, horizontal/vertical flips, (derm) a random
   number of 90-degree turns, and a rotation/zoom/shear affine (always for ``classic``, p=0.5 for ``derm``);
   outside the image is black (0), as torchvision's affine fill;
2. colour: brightness, contrast, saturation (torchvision's formulas), hue as a rotation of the chroma
   plane in YIQ space (a linear stand-in for torchvision's HSV hue shift, same range of hue turns);
3. (derm) Gaussian blur, 5-tap, reflect padding, p=0.2;
4. (derm) JPEG recompression, p=0.25, simulated exactly in its lossy steps (RGB->YCbCr, 4:2:0 chroma,
   8x8 DCT, quantisation with the IJG tables at quality q, inverse, rounding to 8 bits);
5. scale to [0, 1] and normalise.

Every random number comes from one ``torch.Generator`` per batch, so a batch is a function of its seed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

GRAY = (0.299, 0.587, 0.114)
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class Policy:
    """The random transforms of one augmentation policy and their ranges."""

    scale: tuple[float, float]  # random resized crop: area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rot90: bool = False  # random 0/90/180/270 degree turns
    affine_p: float = 1.0  # probability of the rotation/zoom/shear affine
    degrees: float = 30.0
    zoom: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0  # degrees, along x
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.1
    hue: float = 0.02  # fraction of a full hue turn
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (40, 95)


#: The policies by name (``--augment``). ``derm``: a lesion photo has no up or down, so all 8 symmetries of
#: the square are label-preserving; a wider crop, stronger colour (another dermatoscope), blur and JPEG.
POLICIES = {
    "classic": Policy(scale=(0.6, 1.0)),
    "derm": Policy(scale=(0.35, 1.0), rot90=True, affine_p=0.5, zoom=(0.9, 1.1), shear=8.0, brightness=0.3,
                   contrast=0.3, saturation=0.25, hue=0.04, blur_p=0.2, jpeg_p=0.25),
}

_JPEG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
              14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_JPEG_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32))


class BatchAugment:
    """uint8 (B, 3, R, R) -> normalised float (B, 3, S, S) with per-image random parameters."""

    def __init__(self, image_size: int, mean, std, policy: str | Policy = "classic"):
        if isinstance(policy, str) and policy not in POLICIES:
            raise ValueError(f"unknown augmentation policy {policy!r} ({' or '.join(POLICIES)})")
        self.size = image_size
        self.policy = POLICIES[policy] if isinstance(policy, str) else policy
        self.name = policy if isinstance(policy, str) else "custom"
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def describe(self) -> dict:
        return {"policy": self.name, "implementation": "skinlesion.data.batch_augment (batched tensor ops)",
                **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.policy).items()}}

    def draw(self, n: int, g: torch.Generator, device) -> dict[str, torch.Tensor]:
        """Every random parameter of ``n`` images, in a fixed order from ``g``."""
        p = self.policy
        u = lambda lo, hi: torch.rand(n, generator=g, device=device) * (hi - lo) + lo  # noqa: E731
        coin = lambda prob: torch.rand(n, generator=g, device=device) < prob  # noqa: E731
        area, log_r = u(*p.scale), u(math.log(p.ratio[0]), math.log(p.ratio[1]))
        w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)
        h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
        out = {"crop_w": w, "crop_h": h, "crop_x": u(-1, 1) * (1 - w), "crop_y": u(-1, 1) * (1 - h),
               "flip_x": coin(0.5), "flip_y": coin(0.5),
               "turns": torch.randint(0, 4 if p.rot90 else 1, (n,), generator=g, device=device),
               "affine": coin(p.affine_p), "angle": u(-p.degrees, p.degrees), "zoom": u(*p.zoom),
               "shear": u(-p.shear, p.shear)}
        for name in ("brightness", "contrast", "saturation"):
            amount = getattr(p, name)
            out[name] = u(max(0.0, 1 - amount), 1 + amount)
        out["hue"] = u(-p.hue, p.hue)
        out["blur"], out["sigma"] = coin(p.blur_p), u(*p.blur_sigma)
        out["jpeg"] = coin(p.jpeg_p)
        out["quality"] = torch.randint(p.jpeg_quality[0], p.jpeg_quality[1] + 1, (n,), generator=g, device=device)
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.draw(x.shape[0], generator, x.device))

    def apply(self, x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = x.shape[0], x.device
        x = x.float() / 255.0
        grid = F.affine_grid(self.theta(prm), [n, 3, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = colour(x, prm)
        if bool(prm["blur"].any()):
            x = torch.where(prm["blur"].view(n, 1, 1, 1), gaussian_blur(x, prm["sigma"]), x)
        if bool(prm["jpeg"].any()):
            on = prm["jpeg"]
            x = x.clone()
            x[on] = jpeg(x[on], prm["quality"][on])
        return (x - self.mean.to(device)) / self.std.to(device)

    @staticmethod
    def theta(prm: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n, 2, 3) matrices from output to input coordinates in [-1, 1]: crop . flips . turns . affine^-1."""
        n = prm["angle"].shape[0]
        a = prm["angle"] * math.pi / 180
        s = prm["shear"] * math.pi / 180
        rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], 1).view(n, 2, 2)
        shear = torch.zeros(n, 2, 2, device=a.device)
        shear[:, 0, 0], shear[:, 1, 1], shear[:, 0, 1] = 1.0, 1.0, torch.tan(s)
        forward = rot @ shear * prm["zoom"].view(n, 1, 1)
        eye = torch.eye(2, device=a.device).expand(n, 2, 2)
        inverse = torch.where(prm["affine"].view(n, 1, 1), torch.linalg.inv(forward), eye)
        k = prm["turns"].float() * (math.pi / 2)
        turn = torch.stack([torch.cos(k), -torch.sin(k), torch.sin(k), torch.cos(k)], 1).round().view(n, 2, 2)
        flip = torch.diag_embed(torch.stack([torch.where(prm["flip_x"], -1.0, 1.0),
                                             torch.where(prm["flip_y"], -1.0, 1.0)], 1))
        crop = torch.diag_embed(torch.stack([prm["crop_w"], prm["crop_h"]], 1))
        linear = crop @ flip @ turn @ inverse
        return torch.cat([linear, torch.stack([prm["crop_x"], prm["crop_y"]], 1).unsqueeze(-1)], 2)


class CenterBatch:
    """Evaluation preprocessing of uint8 squares as one tensor op: center crop (offsets rounded as
    torchvision's center_crop), scale to [0, 1], normalise — the same pixels as ``eval_transform``."""

    def __init__(self, image_size: int, mean, std):
        self.size = image_size
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        top = int(round((x.shape[-2] - self.size) / 2.0))
        left = int(round((x.shape[-1] - self.size) / 2.0))
        x = x[..., top:top + self.size, left:left + self.size].float() / 255.0
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def colour(x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, contrast, saturation (torchvision's formulas), then a hue turn of the YIQ chroma plane."""
    n = x.shape[0]
    v = lambda name: prm[name].view(n, 1, 1, 1)  # noqa: E731
    gray_w = torch.tensor(GRAY, device=x.device).view(1, 3, 1, 1)
    x = (x * v("brightness")).clamp(0, 1)
    mean_gray = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = ((x - mean_gray) * v("contrast") + mean_gray).clamp(0, 1)
    gray = (x * gray_w).sum(1, keepdim=True)
    x = ((x - gray) * v("saturation") + gray).clamp(0, 1)
    to_yiq = torch.tensor(RGB_TO_YIQ, device=x.device)
    a = prm["hue"] * 2 * math.pi
    turn = torch.zeros(n, 3, 3, device=x.device)
    turn[:, 0, 0], turn[:, 1, 1], turn[:, 2, 2] = 1.0, torch.cos(a), torch.cos(a)
    turn[:, 1, 2], turn[:, 2, 1] = -torch.sin(a), torch.sin(a)
    matrix = torch.linalg.inv(to_yiq) @ turn @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, taps: int = 5) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (reflect padding, as torchvision's)."""
    n, c, h, w = x.shape
    d = torch.arange(taps, device=x.device, dtype=x.dtype) - taps // 2
    k = torch.exp(-(d.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, taps)
    y = F.pad(x.reshape(1, n * c, h, w), (taps // 2,) * 4, mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, taps), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, taps, 1), groups=n * c)
    return y.view(n, c, h, w)


def _dct_matrix(device) -> torch.Tensor:
    i = torch.arange(8, device=device, dtype=torch.float32)
    m = torch.cos((2 * i.view(1, 8) + 1) * i.view(8, 1) * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: coefficients = m @ block @ m.T


def _quant_tables(quality: torch.Tensor) -> torch.Tensor:
    """(n, 2, 8, 8) IJG luma/chroma tables scaled to each image's quality (libjpeg's rule)."""
    q = quality.float().clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1, 1)
    base = torch.tensor([_JPEG_LUMA, _JPEG_CHROMA], device=quality.device, dtype=torch.float32).view(1, 2, 8, 8)
    return torch.floor((base * scale + 50) / 100).clamp(1, 255)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline JPEG's lossy steps on (n, 3, H, W) in [0, 1], per-image quality; returns [0, 1] in 8-bit steps."""
    n, _, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    p = F.pad(x * 255, (0, pw, 0, ph), mode="replicate")
    r, g, b = p.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)  # 4:2:0
    tables = _quant_tables(quality)
    m = _dct_matrix(x.device)

    def code(plane: torch.Tensor, table: torch.Tensor, level: float) -> torch.Tensor:  # (n, k, H, W), (n, 1, 8, 8)
        k, hh, ww = plane.shape[1], plane.shape[2], plane.shape[3]
        blocks = (plane - level).reshape(n, k, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
        coef = m @ blocks @ m.T
        t = table.view(n, 1, 1, 1, 8, 8)
        blocks = m.T @ (torch.round(coef / t) * t) @ m
        return blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, k, hh, ww) + level

    y = code(y.unsqueeze(1), tables[:, :1], 128.0)[:, 0]
    cb, cr = F.interpolate(code(chroma, tables[:, 1:], 0.0), scale_factor=2, mode="bilinear",
                            align_corners=False).unbind(1)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (torch.round(rgb.clamp(0, 255))[:, :, :h, :w]) / 255
