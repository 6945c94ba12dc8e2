"""The near-duplicate audit: planted copies (resized, re-encoded, flipped, rotated) are found, distinct
lesions are not paired, merging leaves no pair across splits, label leaks are reported; the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from conftest import LOWRES, needs
from skinlesion.data.audit import DEFAULT_THRESHOLD, audit, cross_group_pairs, image_hashes, merge_near_duplicates
from skinlesion.data.dataset import load_dataset
from skinlesion.data.split import make_split
from skinlesion.data.synthetic import make_demo_data

T = Image.Transpose
COPIES = {"resized": lambda im: im.resize((im.width // 2, im.height // 2), Image.BILINEAR),
          "flipped": lambda im: im.transpose(T.FLIP_LEFT_RIGHT),
          "rotated": lambda im: im.transpose(T.ROTATE_270),
          "all": lambda im: im.transpose(T.ROTATE_90).transpose(T.FLIP_TOP_BOTTOM).resize((im.height // 2, im.width // 2))}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """40 synthetic lesions (one image each) plus 4 copies of 4 of them filed under new lesion ids."""
    root = make_demo_data(tmp_path_factory.mktemp("audit") / "d", n=40, seed=3, progress=False)
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    meta = meta.drop_duplicates("lesion_id").reset_index(drop=True)
    images = {p.stem: p for p in root.rglob("*.jpg")}
    for p in list(images.values()):
        if p.stem not in set(meta["image_id"]):
            p.unlink()
    extra = []
    for k, (name, fn) in enumerate(COPIES.items()):
        src = meta.iloc[k]
        img = Image.open(images[src["image_id"]]).convert("RGB")
        new_id = f"COPY_{name}"
        fn(img).save(root / "images" / f"{new_id}.jpg", quality=70)  # every copy also re-encoded
        extra.append({**src.to_dict(), "image_id": new_id, "lesion_id": f"HAM_COPY_{name}"})
    meta = pd.concat([meta, pd.DataFrame(extra)], ignore_index=True)
    meta["dx_type"] = meta["dx"].map(lambda d: "histo" if d in ("mel", "bcc", "akiec") else "follow_up")
    meta.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root, meta


def test_planted_copies_are_found_and_distinct_lesions_are_not_paired(planted):
    root, meta = planted
    frame = load_dataset(root, progress=False).frame
    result = audit(frame)
    pairs = {frozenset(p) for p in zip(result.pairs["image_a"], result.pairs["image_b"])}
    expected = {frozenset({meta.iloc[k]["image_id"], f"COPY_{name}"}) for k, name in enumerate(COPIES)}
    assert pairs == expected, (pairs, result.pairs)  # every copy found, nothing else paired
    assert result.summary["near_duplicate_groups"] == len(COPIES)
    # dx_type leaks the label and is reported, by name
    assert [x["column"] for x in result.leaks] == ["dx_type"] and result.leaks[0]["roc_auc_alone"] > 0.95


def test_merging_leaves_no_pair_across_splits(planted):
    root, meta = planted
    frame = load_dataset(root, progress=False).frame
    pairs = cross_group_pairs(frame, image_hashes(frame["path"].tolist()), DEFAULT_THRESHOLD)
    assert len(pairs) == len(COPIES)
    crossing = lambda split: sum(dict(zip(split["image_id"], split["split"]))[a] !=
                                 dict(zip(split["image_id"], split["split"]))[b]
                                 for a, b in zip(pairs["image_a"], pairs["image_b"]))
    seeds_with_crossing = [s for s in range(10) if crossing(make_split(frame, s, (0.5, 0.25, 0.25)))]
    assert seeds_with_crossing, "fixture too small: no seed puts a copy in another split"
    merged = merge_near_duplicates(frame, pairs)
    assert (merged["original_lesion_id"] == frame["lesion_id"]).all()
    assert merged["lesion_id"].nunique() == frame["lesion_id"].nunique() - len(COPIES)
    for s in seeds_with_crossing:
        assert crossing(make_split(merged, s, (0.5, 0.25, 0.25))) == 0


def test_audit_and_prepare_merge_through_the_cli(planted, tmp_path):
    root, _ = planted
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "skinlesion"]
    r = subprocess.run(cmd + ["prepare", "--data", str(root), "--out", str(run), "--ratios", "0.5", "0.25", "0.25",
                              "--seed", "1", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["audit", "--data", str(root), "--run", str(run), "--out", str(tmp_path / "a"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert summary["cross_group_pairs"] == len(COPIES) and "cross_split_pairs" in summary
    assert "warning: column 'dx_type' leaks the label" in r.stdout
    page = (tmp_path / "a" / "audit.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 2 * len(COPIES) and "COPY_rotated" in page
    r = subprocess.run(cmd + ["prepare", "--data", str(root), "--out", str(tmp_path / "m"), "--ratios", "0.5", "0.25",
                              "0.25", "--seed", "1", "--merge-near-duplicates", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"near-duplicates: {len(COPIES)} pair(s)" in r.stdout
    r = subprocess.run(cmd + ["audit", "--data", str(root), "--run", str(tmp_path / "m"), "--out", str(tmp_path / "b"),
                              "--quiet"], capture_output=True, text=True)
    assert json.loads((tmp_path / "b" / "audit.json").read_text())["cross_split_pairs"] == 0
    split = pd.read_csv(tmp_path / "m" / "split.csv")
    assert split.groupby("lesion_id")["split"].nunique().max() == 1


@needs(LOWRES)
def test_known_missed_duplicate_of_the_lowres_set_is_found():
    """HAM10000's ISIC_0030074 / ISIC_0025226 (two lesion ids, one lesion; Abhishek et al. 2025)."""
    frame = load_dataset(LOWRES, progress=False).frame
    frame = frame[frame["image_id"].isin(["ISIC_0030074", "ISIC_0025226", "ISIC_0024306", "ISIC_0024307"])]
    result = audit(frame.reset_index(drop=True))
    assert {frozenset(p) for p in zip(result.pairs["image_a"], result.pairs["image_b"])} == \
        {frozenset({"ISIC_0030074", "ISIC_0025226"})}
