"""Synthetic dermoscopy-like images in the HAM10000 layout, for the offline demo and tests.

Malignant lesions differ from benign ones the way the ABCD rule says — Asymmetry, irregular Border,
several Colours, larger Diameter — but the features overlap between classes and ~8% of lesions
look like the other class, so a model can learn the task well but not perfectly. Every image and
lesion id starts with ``SYN`` so synthetic data can never be mistaken for real HAM10000 data.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .. import console
from ..labels import BINARY_LABEL, HAM10000_DX_COUNTS
from .metadata import METADATA_FILENAME

#: Mean ABCD feature (0..~1.3) per class; the within-class spread is FEATURE_SD.
FEATURE_MEAN = {0: 0.3, 1: 0.85}
FEATURE_SD = 0.30
LOOKALIKE_FRACTION = 0.08  # lesions whose appearance is drawn from the other class
IMAGES_PER_LESION = ((1, 0.75), (2, 0.15), (3, 0.07), (4, 0.03))

DX_BASE_COLOUR = {  # RGB of the lesion's main pigment
    "nv": (120, 80, 55), "bkl": (145, 105, 75), "df": (135, 95, 75), "vasc": (150, 50, 70),
    "mel": (105, 70, 50), "bcc": (150, 100, 95), "akiec": (150, 95, 75),
}
EXTRA_COLOURS = np.array([(45, 30, 25), (95, 105, 130), (175, 70, 70), (215, 205, 200), (70, 45, 35)], np.float32)
LOCALIZATIONS = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot",
                 "neck", "scalp", "hand", "ear", "genital", "acral", "unknown")
LOCALIZATION_P = np.array([22, 21, 14, 11, 10, 7, 4, 3, 2, 1.5, 1, 0.5, 0.5, 0.3, 2.2])


@dataclass
class LesionLook:
    """Appearance parameters shared by every image of one lesion."""

    dx: str
    asymmetry: float
    border: float
    colours: float
    diameter: float
    seed: int


def _draw_dx(rng: np.random.RandomState, n: int) -> np.ndarray:
    codes = list(HAM10000_DX_COUNTS)
    p = np.array([HAM10000_DX_COUNTS[c] for c in codes], dtype=float)
    return np.array(codes)[rng.choice(len(codes), size=n, p=p / p.sum())]


def _lowfreq(rng: np.random.RandomState, shape: tuple[int, int], cells: tuple[int, int], channels: int) -> np.ndarray:
    """Smooth noise: a small random grid bilinearly upsampled to ``shape`` (H, W)."""
    grid = rng.normal(0.0, 1.0, (cells[0], cells[1], channels)).astype(np.float32)
    up = [np.asarray(Image.fromarray(grid[..., c]).resize((shape[1], shape[0]), Image.BILINEAR)) for c in range(channels)]
    return np.stack(up, axis=-1)


def render(look: LesionLook, view: int, size: tuple[int, int] = (300, 225)) -> Image.Image:
    """One dermoscopy-like view of a lesion (``view`` varies pose, lighting and hair)."""
    W, H = size
    shape_rng = np.random.RandomState(look.seed)  # lesion shape: same for every view
    rng = np.random.RandomState((look.seed * 7919 + view * 104729) % (2**31 - 1))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

    skin = np.array([225, 180, 155], np.float32) * rng.uniform(0.85, 1.05) + rng.normal(0, 6, 3)
    img = skin + 5.0 * _lowfreq(rng, (H, W), (6, 8), 3) + rng.normal(0, 2.5, (H, W, 1)).astype(np.float32)

    scale = rng.uniform(0.9, 1.1)
    r0 = H * (0.13 + 0.11 * np.clip(look.diameter, 0, 1.4)) * scale
    cx, cy = W / 2 + rng.uniform(-0.08, 0.08) * W, H / 2 + rng.uniform(-0.08, 0.08) * H
    rot = rng.uniform(0, 2 * np.pi)
    dx_, dy_ = xx - cx, yy - cy
    dist = np.hypot(dx_, dy_)
    theta = np.arctan2(dy_, dx_) - rot
    a = np.clip(look.asymmetry, 0, 1.4)
    radius = 1 + (0.04 + 0.22 * a) * np.cos(2 * theta) + 0.18 * a * np.cos(theta + shape_rng.uniform(0, 2 * np.pi))
    b = np.clip(look.border, 0, 1.4)
    for k in range(3, 13):
        amp = (0.01 + 0.10 * b) * shape_rng.uniform(0.2, 1.0) / np.sqrt(k / 3)
        radius = radius + amp * np.cos(k * theta + shape_rng.uniform(0, 2 * np.pi))
    edge = 7.0 - 4.5 * min(b, 1.2)
    inside = np.clip((r0 * radius - dist) / edge + 0.5, 0.0, 1.0)[..., None]

    base = np.array(DX_BASE_COLOUR[look.dx], np.float32) * shape_rng.uniform(0.85, 1.15)
    centre_dark = 1.0 - 0.25 * np.clip(1 - dist / (r0 + 1e-6), 0, 1)[..., None]
    texture = 1.0 + 0.10 * _lowfreq(rng, (H, W), (H // 12, W // 12), 1)
    lesion = base * centre_dark * texture
    n_blotch = int(np.clip(np.round(look.colours * 4.0 + shape_rng.uniform(-0.7, 0.7)), 0, 6))
    for _ in range(n_blotch):
        colour = EXTRA_COLOURS[shape_rng.randint(len(EXTRA_COLOURS))]
        ang, rad = shape_rng.uniform(0, 2 * np.pi), shape_rng.uniform(0, 0.6) * r0
        bx, by = cx + rad * np.cos(ang + rot), cy + rad * np.sin(ang + rot)
        sigma = r0 * shape_rng.uniform(0.15, 0.35)
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))[..., None] * 0.85
        lesion = lesion * (1 - blob) + colour * blob
    img = img * (1 - 0.92 * inside) + lesion * 0.92 * inside
    img = img * rng.uniform(0.9, 1.08)

    if rng.rand() < 0.6:  # dermoscope's circular field of view
        R = rng.uniform(0.55, 0.75) * W
        vign = np.clip((R - np.hypot(xx - W / 2, yy - H / 2)) / 25.0, 0.0, 1.0)[..., None]
        img = img * vign + 15.0 * (1 - vign)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(out)
    for _ in range(rng.poisson(2.5)):  # hair: dark quadratic curves
        p0, p1, p2 = (rng.uniform(-0.1, 1.1, 2) * (W, H) for _ in range(3))
        t = np.linspace(0, 1, 30)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        shade = int(rng.uniform(20, 60))
        draw.line([tuple(p) for p in pts], fill=(shade, shade - 10 if shade > 10 else 0, 0), width=int(rng.randint(1, 3)))
    return out


def _features(rng: np.random.RandomState, label: int) -> tuple[float, float, float, float]:
    look_like = 1 - label if rng.rand() < LOOKALIKE_FRACTION else label
    return tuple(float(v) for v in rng.normal(FEATURE_MEAN[look_like], FEATURE_SD, 4))  # type: ignore[return-value]


def _metadata_row(rng: np.random.RandomState, dx: str, label: int) -> dict:
    age = rng.normal(65, 12) if label else rng.normal(45, 15)
    loc_p = LOCALIZATION_P.copy()
    if dx in ("akiec", "bcc"):
        loc_p[LOCALIZATIONS.index("face")] *= 5
    return {
        "dx_type": rng.choice(["histo", "consensus"]) if label else rng.choice(["follow_up", "histo", "consensus"], p=[0.5, 0.3, 0.2]),
        "age": float(np.clip(5 * round(age / 5), 0, 85)),
        "sex": rng.choice(["male", "female", "unknown"], p=[0.54, 0.45, 0.01]),
        "localization": rng.choice(LOCALIZATIONS, p=loc_p / loc_p.sum()),
    }


def generate_metadata(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, list[LesionLook]]:
    """Lesions (with 1-4 images each) until ``n`` images; returns metadata rows and lesion looks."""
    if n < 10:
        raise ValueError(f"--n must be at least 10 images, got {n}")
    rng = np.random.RandomState(seed)
    counts, probs = zip(*IMAGES_PER_LESION)
    rows, looks = [], []
    dxs = _draw_dx(rng, n)
    lesion_idx = 0
    while len(rows) < n:
        dx = str(dxs[lesion_idx % n])
        label = BINARY_LABEL[dx]
        look = LesionLook(dx, *_features(rng, label), seed=int(rng.randint(0, 2**31 - 1)))
        meta = _metadata_row(rng, dx, label)
        lesion_id = f"SYNL_{lesion_idx:07d}"
        for _ in range(min(int(rng.choice(counts, p=probs)), n - len(rows))):
            rows.append({"lesion_id": lesion_id, "image_id": f"SYN_{len(rows):07d}", "dx": dx, **meta})
            looks.append(look)
        lesion_idx += 1
    columns = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    return pd.DataFrame(rows, columns=columns), looks


def make_demo_data(out: str | Path, n: int = 600, seed: int = 0, size: tuple[int, int] = (300, 225),
                   progress: bool = True) -> Path:
    """Write a synthetic dataset (metadata CSV + ``images/*.jpg``) to ``out``, atomically.

    ``out`` must not exist or be empty; the data is built in a temp folder beside it and renamed.
    """

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; choose a new folder for the demo data")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame, looks = generate_metadata(n, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        view_of: dict[str, int] = {}
        for row, look in console.bar(list(zip(frame.itertuples(), looks)), desc="demo images", unit="img", disable=not progress):
            view = view_of[row.lesion_id] = view_of.get(row.lesion_id, -1) + 1
            render(look, view, size).save(tmp / "images" / f"{row.image_id}.jpg", quality=90)
        frame.to_csv(tmp / METADATA_FILENAME, index=False)
        (tmp / "README.txt").write_text(
            "SYNTHETIC dermoscopy-like data generated by `skinlesion make-demo-data` "
            f"(n={n}, seed={seed}). Not real patients; for demos and tests only.\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
