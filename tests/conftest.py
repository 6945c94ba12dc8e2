"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything imports it."""
from __future__ import annotations

import dataclasses
import hashlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skinlesion.config import RunConfig  # noqa: E402
from skinlesion.data.run import Run  # noqa: E402
from skinlesion.runlock import LOCK_NAME  # noqa: E402

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


@pytest.fixture(scope="session")
def external_data(tmp_path_factory) -> Path:
    """A second synthetic dataset ("another site": other seed, ids prefixed EXT so none is a training image of
    models trained on ``demo_data``); read-only."""
    from skinlesion.data.synthetic import make_demo_data
    root = make_demo_data(tmp_path_factory.mktemp("site") / "data", n=200, seed=11, progress=False)
    meta = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str)
    for image_id in meta["image_id"]:
        (root / "images" / f"{image_id}.jpg").rename(root / "images" / f"EXT{image_id}.jpg")
    meta["image_id"], meta["lesion_id"] = "EXT" + meta["image_id"], "EXT" + meta["lesion_id"]
    meta.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def tiny_cfg(data, tmp_path, **train_kw) -> RunConfig:
    """A tiny run config on the ``classic`` (two-phase) recipe, as the tests were written for it."""
    from skinlesion.config import RECIPES
    cfg = RunConfig()
    base = dict(RECIPES["classic"], recipe="classic", arch="simple_cnn", image_size=32, epochs=2, phase1_epochs=1, batch_size=16, lr=1e-3,
                num_workers=0, cache_dir=str(tmp_path / "cache"), limit_train_batches=3, channels_last=False)
    base.update(train_kw)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(data)),
                               train=dataclasses.replace(cfg.train, **base))


def state(ckpt) -> dict:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]  # as --resume reads them
    return {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}


@pytest.fixture(scope="session")
def base(demo_data, tmp_path_factory):
    """A tiny trained and tuned run shared by the session (read-only: tests work on a copy)."""
    from skinlesion.evaluation.tune import tune_threshold
    from skinlesion.training.fit import train
    tmp = tmp_path_factory.mktemp("integrity")
    train(tiny_cfg(demo_data, tmp, epochs=2, limit_train_batches=2), Run.quiet(tmp / "run"))
    tune_threshold(tmp / "run", 0.9)
    return tmp / "run"


@pytest.fixture(scope="session")
def tiny_run(demo_data, tmp_path_factory):
    """A tiny trained run (48 px, untuned) for the tests that only read its bundle: never write into it."""
    from skinlesion.training.fit import train
    tmp = tmp_path_factory.mktemp("tiny")
    train(tiny_cfg(demo_data, tmp, epochs=2, image_size=48), Run.quiet(tmp / "run"))
    return tmp / "run"


@pytest.fixture(scope="session")
def bundle(tiny_run):
    return tiny_run / "bundle"


@pytest.fixture(scope="session")
def zoo(demo_data, tmp_path_factory):
    """A folder of good, odd and broken inputs."""
    d = tmp_path_factory.mktemp("zoo")
    good = Image.open(next((demo_data / "images").glob("*.jpg")))
    good.save(d / "good.jpg")
    good.convert("L").save(d / "gray.png")
    good.convert("RGBA").save(d / "rgba.png")
    good.convert("CMYK").save(d / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8
    good.save(d / "rotated.jpg", exif=exif.tobytes())
    raw = (d / "good.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(raw[: len(raw) // 3])
    (d / "notes.txt").write_text("not an image")
    Image.new("L", (8000, 7000)).save(d / "huge.png")  # 56 MP > the 50 MP decompression-bomb guard
    return d


def snapshot(root: Path) -> dict[str, str]:
    """Every file's hash, except the run's empty lock file (skinlesion.runlock): the first command that
    writes into a run creates it, refused or not, and it holds no data."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME}
