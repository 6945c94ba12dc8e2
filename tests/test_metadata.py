import pandas as pd
import pytest
from PIL import Image

from conftest import rows_for, write_dataset
from skinlesion.data.metadata import DataError, find_images, read_metadata
from skinlesion.data.dataset import load_dataset


def test_missing_metadata_file_names_file_and_remedy(tmp_path):
    with pytest.raises(DataError, match=r"no dataset found: no HAM10000_metadata.csv.*Remedy"):
        load_dataset(tmp_path)


def test_missing_data_folder_is_named(tmp_path):
    root = write_dataset(tmp_path / "d", rows_for(3))
    with pytest.raises(DataError, match="nowhere does not exist"):
        load_dataset(tmp_path / "nowhere", metadata=root / "HAM10000_metadata.csv")


def test_missing_columns_are_listed(tmp_path):
    pd.DataFrame({"image_id": ["a"], "diagnosis": ["nv"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"missing required column\(s\) lesion_id, dx"):
        read_metadata(tmp_path / "m.csv")


def test_unknown_dx_codes_are_listed_with_rows(tmp_path):
    rows = rows_for(4)
    rows[1]["dx"], rows[3]["dx"] = "melanoma", "xx"
    write_dataset(tmp_path, rows)
    with pytest.raises(DataError, match=r"unknown dx code\(s\) 'melanoma', 'xx' in rows 3, 5"):
        load_dataset(tmp_path)


def test_dx_codes_are_normalised_to_lowercase(tmp_path):
    rows = rows_for(2)
    rows[0]["dx"] = " MEL "
    write_dataset(tmp_path, rows)
    frame = load_dataset(tmp_path).frame
    assert frame["dx"].tolist() == ["mel", "nv"] and frame["label"].tolist() == [1, 0]


def test_duplicate_image_id_is_named(tmp_path):
    rows = rows_for(3)
    rows[2]["image_id"] = rows[0]["image_id"]
    write_dataset(tmp_path, rows, images=["I0000", "I0001"])
    with pytest.raises(DataError, match=r"duplicate image_id I0000 \(rows 2, 4\)"):
        load_dataset(tmp_path)


def test_lesion_with_two_dx_is_named(tmp_path):
    rows = rows_for(4, images_per_lesion=2)
    rows[1]["dx"] = "mel"
    write_dataset(tmp_path, rows)
    with pytest.raises(DataError, match=r"lesion_id L0000 has images with different dx \(rows 2, 3\)"):
        load_dataset(tmp_path)


def test_empty_required_cell_is_named(tmp_path):
    rows = rows_for(3)
    rows[1]["lesion_id"] = ""
    write_dataset(tmp_path, rows)
    with pytest.raises(DataError, match=r"rows 3 have an empty lesion_id"):
        load_dataset(tmp_path)


def test_missing_images_are_listed_and_fail_by_default(tmp_path):
    write_dataset(tmp_path, rows_for(10), images=[f"I{i:04d}" for i in range(8)])
    with pytest.raises(DataError, match=r"2 image\(s\).*I0008, I0009.*20\.00% of 10 rows.*Remedy: check the path"):
        load_dataset(tmp_path)  # above 10% missing the path is wrong: dropping is never the suggested remedy
    write_dataset(tmp_path / "one", rows_for(10), images=[f"I{i:04d}" for i in range(9)])
    with pytest.raises(DataError, match=r"I0009.*10\.00% of 10 rows.*--allow-missing 0\.1000"):
        load_dataset(tmp_path / "one")


def test_allow_missing_drops_and_reports(tmp_path):
    write_dataset(tmp_path, rows_for(10), images=[f"I{i:04d}" for i in range(9)])
    with pytest.raises(DataError):
        load_dataset(tmp_path, allow_missing=0.05)
    ds = load_dataset(tmp_path, allow_missing=0.1)
    assert ds.missing_ids == ["I0009"] and len(ds.frame) == 9 and "I0009" not in set(ds.frame["image_id"])


def test_images_found_anywhere_below_root_with_any_extension(tmp_path):
    rows = rows_for(3)
    write_dataset(tmp_path, rows, images=["I0000"], subdir="HAM10000_images_part_1")
    (tmp_path / "HAM10000_images_part_2" / "deeper").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "HAM10000_images_part_2" / "I0001.jpeg")
    Image.new("RGB", (8, 8)).save(tmp_path / "HAM10000_images_part_2" / "deeper" / "I0002.PNG")
    frame = load_dataset(tmp_path).frame
    assert [p.split("/")[-1] for p in frame["path"]] == ["I0000.jpg", "I0001.jpeg", "I0002.PNG"]


def test_same_image_id_in_two_files_is_ambiguous(tmp_path):
    write_dataset(tmp_path, rows_for(1))
    (tmp_path / "other").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "other" / "I0000.png")
    with pytest.raises(DataError, match=r"I0000: .*images/I0000.jpg and .*other/I0000.png"):
        find_images(tmp_path)


def test_verify_finds_corrupt_images_and_tolerance_applies(tmp_path):
    write_dataset(tmp_path, rows_for(4))
    (tmp_path / "images" / "I0002.jpg").write_bytes(b"this is not a jpeg")
    good = (tmp_path / "images" / "I0003.jpg").read_bytes()
    (tmp_path / "images" / "I0003.jpg").write_bytes(good[: len(good) // 2])
    assert len(load_dataset(tmp_path).frame) == 4  # no decode without --verify
    with pytest.raises(DataError, match=r"2 image\(s\) cannot be decoded: I0002: .*not an image.*I0003: .*truncated"):
        load_dataset(tmp_path, verify=True, progress=False)
    ds = load_dataset(tmp_path, verify=True, allow_missing=0.5, progress=False)
    assert sorted(ds.corrupt) == ["I0002", "I0003"] and ds.frame["image_id"].tolist() == ["I0000", "I0001"]
