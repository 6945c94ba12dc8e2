"""Tests on the real HAM10000 copies in ../shared/data (skipped where absent)."""
from conftest import FULLRES, LOWRES, needs
from skinlesion.data.metadata import load_dataset
from skinlesion.data.split import make_split, summarize
from skinlesion.labels import DX_CODES


@needs(LOWRES)
def test_lowres_loads_and_splits_lesion_disjoint_with_every_dx_everywhere():
    frame = load_dataset(LOWRES).frame
    assert len(frame) == 8035 and frame["lesion_id"].nunique() == 5975 and int(frame["label"].sum()) == 1575
    split = make_split(frame, seed=42)
    assert split.groupby("lesion_id")["split"].nunique().max() == 1
    counts = summarize(split, 42, (0.7, 0.15, 0.15))["counts"]
    for name in ("train", "val", "test"):
        assert all(counts[name]["dx_images"][dx] > 0 for dx in DX_CODES), name
        assert 0.17 < counts[name]["malignant_images"] / counts[name]["images"] < 0.22


@needs(FULLRES)
def test_fullres_sample_decodes():
    ds = load_dataset(FULLRES, verify=True, progress=False)
    assert len(ds.frame) == 447 and not ds.corrupt and not ds.missing_ids
