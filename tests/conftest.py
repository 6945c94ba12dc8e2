"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything imports it."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKINLESION_SHARED_DATA", REPO.parent / "shared" / "data"))
LOWRES = SHARED_DATA / "ham10000-lowres"
FULLRES = SHARED_DATA / "ham10000-fullres-sample"


def needs(path: Path):
    """Skip marker for tests that read ../shared/data (absent outside this project's machines)."""
    return pytest.mark.skipif(not (path / "HAM10000_metadata.csv").is_file(),
                              reason=f"real HAM10000 data not found at {path} (set SKINLESION_SHARED_DATA)")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small synthetic dataset (120 images) shared by the session's tests; treat it as read-only."""
    from skinlesion.data.synthetic import make_demo_data
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", n=120, seed=3, progress=False)


def write_dataset(root: Path, rows: list[dict], images: list[str] | None = None, subdir: str = "images") -> Path:
    """A tiny HAM10000-layout dataset from metadata rows; writes a small JPEG for each of ``images``."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    ids = [r["image_id"] for r in rows] if images is None else images
    (root / subdir).mkdir(exist_ok=True)
    for i, image_id in enumerate(ids):
        Image.new("RGB", (40, 30), (120 + i % 100, 80, 60)).save(root / subdir / f"{image_id}.jpg")
    return root


def rows_for(n: int, dx: str = "nv", images_per_lesion: int = 1) -> list[dict]:
    return [{"lesion_id": f"L{i // images_per_lesion:04d}", "image_id": f"I{i:04d}", "dx": dx} for i in range(n)]
