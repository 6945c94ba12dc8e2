"""Dataset readers on small fixtures written in the published formats (headers exactly as the challenges
publish them), their errors, and the CLI stages accepting each format."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinlesion.data.formats import TableSpec, read_table
from skinlesion.data.metadata import DataError
from skinlesion.data.dataset import load_dataset

ISIC2018_HEADER = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
ISIC2019_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
ISIC2019_META_HEADER = "image,age_approx,anatom_site_general,lesion_id,sex"
ISIC2020_HEADER = ("image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,"
                   "benign_malignant,target")


def _img(path, seed=0, ext=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _onehot(codes, header):
    cols = header.split(",")[1:]
    return [[1.0 if c == code else 0.0 for c in cols] for code in codes]


def isic2018(root, codes=("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC", "NV")):
    lines = [ISIC2018_HEADER]
    for i, row in enumerate(_onehot(codes, ISIC2018_HEADER)):
        _img(root / "ISIC2018_Task3_Training_Input" / f"ISIC_{i:07d}.jpg", i)
        lines.append(f"ISIC_{i:07d}," + ",".join(str(v) for v in row))
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    gt.parent.mkdir(parents=True)
    gt.write_text("\n".join(lines) + "\n")
    return root


def test_isic2018_one_hot_ground_truth_is_detected_and_mapped(tmp_path):
    t = read_table(isic2018(tmp_path), TableSpec())
    assert t.format == "isic" and "ISIC2018_Task3_Training_GroundTruth" in t.detected
    assert list(t.frame["dx"]) == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc", "nv"]
    assert list(t.frame["label"]) == [1, 0, 1, 1, 0, 0, 0, 0]
    assert t.group_source.startswith("image")  # 2018 has no lesion ids: each image its own group
    ds = load_dataset(tmp_path, progress=False)
    assert ds.frame["path"].str.endswith(".jpg").all() and len(ds.frame) == 8


def test_isic2019_with_scc_unk_and_its_metadata_csv(tmp_path):
    codes = ["MEL", "SCC", "AK", "NV", "NV", "BKL"]
    lines = [ISIC2019_HEADER] + [f"ISIC_{i:07d}," + ",".join(map(str, r)) for i, r in
                                 enumerate(_onehot(codes, ISIC2019_HEADER))]
    for i in range(len(codes)):
        _img(tmp_path / "ISIC_2019_Training_Input" / f"ISIC_{i:07d}.jpg", i)
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "ISIC_2019_Training_Metadata.csv").write_text(
        ISIC2019_META_HEADER + "\n" + "\n".join(
            f"ISIC_{i:07d},{40 + 5 * i},anterior torso,{'BCN_0001' if i in (3, 4) else f'L{i}'},{'male' if i % 2 else 'female'}"
            for i in range(len(codes))) + "\n")
    t = read_table(tmp_path, TableSpec())
    f = t.frame
    assert list(f["dx"]) == ["mel", "scc", "akiec", "nv", "nv", "bkl"] and list(f["label"]) == [1, 1, 1, 0, 0, 0]
    assert t.group_source == "lesion_id" and f.loc[3, "lesion_id"] == f.loc[4, "lesion_id"] == "BCN_0001"
    assert list(f["age"])[:2] == [40, 45] and f.loc[0, "localization"] == "anterior torso" and f.loc[1, "sex"] == "male"
    # UNK has no benign/malignant meaning in 2019: refused unless mapped
    lines.append("ISIC_0000099," + ",".join(map(str, _onehot(["UNK"], ISIC2019_HEADER)[0])))
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"rows 8 have an unknown diagnosis.*Remedy: map it, e\.g\. --values UNK=benign"):
        read_table(tmp_path, TableSpec())
    assert read_table(tmp_path, TableSpec(values="UNK=benign")).frame["dx"].iloc[-1] == "benign"


def test_isic_one_hot_rows_must_be_one_hot(tmp_path):
    isic2018(tmp_path)
    gt = next(tmp_path.glob("*/*GroundTruth.csv"))
    gt.write_text(gt.read_text().replace("ISIC_0000002,0.0,0.0,1.0", "ISIC_0000002,0.0,1.0,1.0"))
    with pytest.raises(DataError, match=r"GroundTruth.csv: rows 4 do not have exactly one diagnosis column"):
        read_table(tmp_path, TableSpec())


def test_isic2020_free_text_diagnoses_target_and_patient_groups(tmp_path):
    rows = [("ISIC_2637011", "IP_7279968", "", "male", "45.0", "head/neck", "unknown", "benign", "0"),
            ("ISIC_0015719", "IP_3075186", "", "female", "45.0", "upper extremity", "unknown", "benign", "0"),
            ("ISIC_0052212", "IP_2842074", "", "female", "50.0", "lower extremity", "nevus", "benign", "0"),
            ("ISIC_0068279", "IP_6890425", "", "female", "45.0", "head/neck", "melanoma", "malignant", "1"),
            ("ISIC_0074268", "IP_6890425", "", "female", "", "upper extremity", "seborrheic keratosis", "benign", "0"),
            ("ISIC_0074311", "IP_2950485", "", "female", "40.0", "lower extremity", "unknown", "malignant", "1")]
    for i, r in enumerate(rows):
        _img(tmp_path / "train" / f"{r[0]}.jpg", i)
    text = ISIC2020_HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    (tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv").write_text(text)
    t = read_table(tmp_path, TableSpec())
    f = t.frame
    assert list(f["dx"]) == ["benign", "benign", "nv", "mel", "bkl", "malignant"]
    assert list(f["label"]) == [0, 0, 0, 1, 0, 1]
    # empty lesion_id: grouped by lesion_id where given, else the image; here every lesion_id is empty
    assert t.group_source == "lesion_id"
    assert pd.isna(f.loc[4, "age"]) and f.loc[0, "localization"] == "head/neck"
    # a diagnosis whose class disagrees with target is an error naming the row and the remedy
    (tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv").write_text(text.replace("nevus,benign,0", "nevus,malignant,1"))
    with pytest.raises(DataError, match=r"rows 4 have a diagnosis whose benign/malignant class disagrees.*--values"):
        read_table(tmp_path, TableSpec())
    # without lesion_id the patient groups the split (both IP_6890425 images together)
    (tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv").write_text(text)
    no_lesion = pd.read_csv(tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv").drop(columns=["lesion_id"])
    no_lesion.loc[3, ["diagnosis", "benign_malignant", "target"]] = ["nevus", "benign", 0]
    no_lesion.to_csv(tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv", index=False)
    t = read_table(tmp_path, TableSpec())
    # a patient may have lesions with different diagnoses: allowed when the groups are patients
    assert t.group_source == "patient_id" and t.frame.loc[3, "lesion_id"] == t.frame.loc[4, "lesion_id"] == "IP_6890425"
    assert list(t.frame.loc[3:4, "dx"]) == ["nv", "bkl"]


def test_class_folders_benign_malignant_and_dx_codes_any_image_type(tmp_path):
    for i, (folder, ext) in enumerate([("benign", "JPG"), ("benign", "png"), ("malignant", "bmp"),
                                       ("malignant", "TIFF"), ("malignant", "tif")]):
        _img(tmp_path / folder / "sub" / f"img{i}.{ext}", i)
    t = read_table(tmp_path, TableSpec())
    assert t.format == "folders" and "benign, malignant" in t.detected
    assert sorted(zip(t.frame["image_id"], t.frame["label"])) == [("img0", 0), ("img1", 0), ("img2", 1), ("img3", 1),
                                                                   ("img4", 1)]
    ds = load_dataset(tmp_path, progress=False, verify=True)
    assert ds.dropped == 0 and len(ds.frame) == 5
    by_dx = tmp_path / "bydx"
    _img(by_dx / "MEL" / "a.jpg")
    _img(by_dx / "nv" / "b.jpg", 1)
    assert dict(zip(*[read_table(by_dx, TableSpec()).frame[c] for c in ("image_id", "dx")])) == {"a": "mel", "b": "nv"}
    empty = tmp_path / "empty"
    (empty / "benign").mkdir(parents=True)
    with pytest.raises(DataError, match="class folders hold no images"):
        read_table(empty, TableSpec())


def ph2_like(root):
    """PH2's layout: nested folders per image (with mask .bmp files beside) and a diagnosis 0/1/2 column."""
    rows = [("IMD002", 0), ("IMD003", 0), ("IMD009", 1), ("IMD058", 2), ("IMD061", 2), ("IMD063", 1)]
    for i, (name, _) in enumerate(rows):
        _img(root / "PH2 Dataset images" / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp", i)
        _img(root / "PH2 Dataset images" / name / f"{name}_lesion" / f"{name}_lesion.bmp", 100 + i)
    pd.DataFrame({"Image Name": [r[0] for r in rows], "Histological Diagnosis": ["", "", "", "", "", ""],
                  "Clinical Diagnosis": [r[1] for r in rows]}).to_csv(root / "PH2_dataset.csv", index=False)
    return root


def test_csv_with_column_and_value_mapping_reads_ph2(tmp_path):
    root = ph2_like(tmp_path)
    spec = TableSpec("auto", str(root / "PH2_dataset.csv"), "image=Image Name,dx=Clinical Diagnosis", "0=nv,1=nv,2=mel")
    ds = load_dataset(root, progress=False, spec=spec)
    assert ds.table.format == "csv"
    assert list(ds.frame["dx"]) == ["nv", "nv", "nv", "mel", "mel", "nv"]
    assert ds.frame["path"].str.endswith(".bmp").all() and not ds.frame["path"].str.contains("_lesion").any()
    with pytest.raises(DataError, match=r"value\(s\) '2' .*Remedy: map them, e\.g\. --values \"2=benign\""):
        read_table(root, TableSpec("csv", spec.metadata, spec.columns, "0=nv,1=nv"))
    with pytest.raises(DataError, match=r"not there: dx=Diagnosis.*Image Name, Histological Diagnosis"):
        read_table(root, TableSpec("csv", spec.metadata, "image=Image Name,dx=Diagnosis"))
    with pytest.raises(DataError, match=r"--columns: unknown key 'picture'"):
        read_table(root, TableSpec("csv", spec.metadata, "picture=Image Name"))
    # label-only CSV with its own words
    pd.DataFrame({"file": ["IMD002.bmp", "IMD058.bmp"], "malignant": ["no", "yes"]}).to_csv(root / "l.csv", index=False)
    f = read_table(root, TableSpec("csv", str(root / "l.csv"), "image=file,label=malignant", "no=benign,yes=malignant")).frame
    assert list(f["image_id"]) == ["IMD002", "IMD058"] and list(f["label"]) == [0, 1]


def test_nothing_recognisable_is_one_clear_error(tmp_path):
    _img(tmp_path / "x" / "a.jpg")
    with pytest.raises(DataError, match="no dataset found.*Remedy: pass --format csv"):
        read_table(tmp_path, TableSpec())


def test_seven_class_training_refuses_codes_outside_the_seven(tmp_path):
    from skinlesion.data.formats import check_task
    frame = pd.DataFrame({"dx": ["mel", "scc"]})
    check_task(frame, "binary", "x")
    with pytest.raises(DataError, match=r"dx scc, outside the 7 classes.*--task binary"):
        check_task(frame, "7class", "x")


def test_prepare_and_explore_accept_each_format_via_the_cli(tmp_path):
    """prepare on ISIC 2018 ground truth and on PH2 with a mapping: the format is said, split.json records it."""
    import json
    root = isic2018(tmp_path / "isic", codes=["MEL", "NV"] * 12)
    r = subprocess.run([sys.executable, "-m", "skinlesion", "prepare", "--data", str(root), "--out",
                        str(tmp_path / "run"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "read as format isic" in r.stdout
    rec = json.loads((tmp_path / "run" / "split.json").read_text())["dataset"]["format"]
    assert rec["name"] == "isic" and rec["metadata"].endswith("ISIC2018_Task3_Training_GroundTruth.csv")
    ph2 = ph2_like(tmp_path / "ph2")
    r = subprocess.run([sys.executable, "-m", "skinlesion", "explore", "--data", str(ph2), "--format", "csv",
                        "--metadata", str(ph2 / "PH2_dataset.csv"), "--columns", "image=Image Name,dx=Clinical Diagnosis",
                        "--values", "0=nv,1=nv,2=mel", "--out", str(tmp_path / "ex"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "read as format csv" in r.stdout
    r = subprocess.run([sys.executable, "-m", "skinlesion", "prepare", "--data", str(ph2), "--format", "csv",
                        "--metadata", str(ph2 / "PH2_dataset.csv"), "--columns", "image=Image Name,dx=Clinical Diagnosis",
                        "--out", str(tmp_path / "run2")], capture_output=True, text=True)
    assert r.returncode == 2 and "Remedy" in r.stderr and "Traceback" not in r.stderr
