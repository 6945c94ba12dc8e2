import numpy as np
import pytest
from PIL import Image

from skinlesion.data.dataset import load_dataset
from skinlesion.data.synthetic import generate_metadata, make_demo_data


def test_demo_data_is_a_valid_ham10000_layout_with_both_classes(demo_data):
    ds = load_dataset(demo_data, verify=True, progress=False)
    frame = ds.frame
    assert len(frame) == 120 and not ds.missing_ids and not ds.corrupt
    assert set(frame["label"]) == {0, 1}
    assert (frame.groupby("lesion_id").size() > 1).any()  # multi-image lesions exercise the lesion split
    assert list(frame.columns[:7]) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert frame["image_id"].str.startswith("SYN_").all() and frame["lesion_id"].str.startswith("SYNL_").all()
    assert Image.open(frame["path"][0]).size == (300, 225)
    assert "SYNTHETIC" in (demo_data / "README.txt").read_text()


def test_dx_follows_ham10000_proportions():
    frame, _ = generate_metadata(n=3000, seed=1)
    share = frame["dx"].value_counts(normalize=True)
    assert abs(share["nv"] - 0.67) < 0.04 and abs(share["mel"] - 0.111) < 0.025 and share.get("df", 0) > 0


def test_malignant_lesions_are_larger_and_darker_on_average(demo_data):
    """Diameter and extra colours (ABCD) show up in pixels: more lesion area, more dark pixels."""
    frame = load_dataset(demo_data).frame
    def dark_fraction(path):
        px = np.asarray(Image.open(path).convert("L"), dtype=np.float32)[20:-20, 30:-30]
        return float((px < 0.8 * np.median(px)).mean())
    frame["dark"] = frame["path"].map(dark_fraction)
    mal, ben = frame.loc[frame["label"] == 1, "dark"], frame.loc[frame["label"] == 0, "dark"]
    assert mal.mean() > 1.3 * ben.mean()
    assert (mal < ben.quantile(0.75)).any()  # overlap: not perfectly separable


def test_views_of_one_lesion_differ_but_generation_is_deterministic(tmp_path):
    a = make_demo_data(tmp_path / "a", n=12, seed=5, progress=False)
    b = make_demo_data(tmp_path / "b", n=12, seed=5, progress=False)
    assert (a / "HAM10000_metadata.csv").read_text() == (b / "HAM10000_metadata.csv").read_text()
    for img in (a / "images").iterdir():
        assert img.read_bytes() == (b / "images" / img.name).read_bytes()
    frame, _ = generate_metadata(n=12, seed=5)
    multi = frame.groupby("lesion_id")["image_id"].apply(list)
    ids = next(v for v in multi if len(v) > 1)
    x, y = (np.asarray(Image.open(a / "images" / f"{i}.jpg"), dtype=np.int16) for i in ids[:2])
    assert np.abs(x - y).mean() > 2


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        make_demo_data(tmp_path / "x", n=12, progress=False)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp folder left behind
