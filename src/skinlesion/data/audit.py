"""`skinlesion audit`: near-duplicate images filed under different groups (HAM10000's "missed duplicates":
one lesion under two lesion ids), found with perceptual hashes from ``imagehash``, and metadata columns that
leak the label.

Each image is turned grey and histogram-equalised (HAM10000's missed duplicates are often the same photo
with other colour processing), then gets the 256-bit pHash (``imagehash.phash``, hash_size 16) of each of
its 8 dihedral variants (flips and 90° rotations are the same lesion); the distance of two images is the
smallest Hamming distance between one's hash and any variant of the other's. pHash works on a low-
frequency DCT, so resizing and re-encoding barely move it. The default threshold (``DEFAULT_THRESHOLD``)
is justified by figures measured on real data in docs/datasets.md (benchmarks/bench_audit.py)."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import console
from .. import atomic
from .images import ImageDecodeError, load_rgb
from ..errors import DataError

#: Largest Hamming distance (of 256 bits) called a near-duplicate; see docs/datasets.md for the figures.
DEFAULT_THRESHOLD = 44
HASH_BITS = 256
_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
ID_LIKE = {"image_id", "lesion_id", "path", "label", "dx", "split", "fold", "image", "image_name", "patient_id"}


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances of packed hashes (uint8, last axis the bytes), broadcast over the other axes."""
    x = a ^ b
    bits = np.bitwise_count(x) if hasattr(np, "bitwise_count") else _POP[x]
    return bits.sum(-1, dtype=np.int32)


def dihedral(img: Image.Image) -> list[Image.Image]:
    """The 8 flips/rotations of ``img`` (the identity first)."""
    T = Image.Transpose
    out = []
    for base in (img, img.transpose(T.FLIP_LEFT_RIGHT)):
        out += [base, base.transpose(T.ROTATE_90), base.transpose(T.ROTATE_180), base.transpose(T.ROTATE_270)]
    return out


def image_hash(img: Image.Image) -> np.ndarray:
    """(8, 32) uint8: the packed 256-bit pHash of the equalised grey image's 8 dihedral variants."""
    import imagehash
    from PIL import ImageOps
    grey = ImageOps.equalize(img.convert("L"))
    return np.stack([np.packbits(imagehash.phash(v, hash_size=16).hash.flatten()) for v in dihedral(grey)])


def hash_distance(img_hash: np.ndarray, other: np.ndarray) -> int:
    """Distance of an image (its identity hash) to another image (any of its variants)."""
    return int(_distance(img_hash[0][None], other).min())


def image_hashes(paths: list[str], progress: bool = False) -> np.ndarray:
    """(N, 8, 32) uint8: each image's hashes (:func:`image_hash`). Undecodable files are errors by name."""
    out = np.zeros((len(paths), 8, HASH_BITS // 8), dtype=np.uint8)
    for i, p in enumerate(console.bar(paths, desc="hash images", unit="img", disable=not progress)):
        try:
            img = load_rgb(p)
        except ImageDecodeError as exc:
            raise DataError(f"{exc}. Remedy: fix or remove the file (prepare --verify lists every bad file).") from None
        img.thumbnail((512, 512))  # pHash looks at 64x64: a smaller copy hashes the same, faster
        out[i] = image_hash(img)
    return out


def close_pairs(hashes: np.ndarray, threshold: int, block: int = 32) -> pd.DataFrame:
    """Every pair i < j with min over variants of Hamming(h[i, 0], h[j, k]) <= threshold: columns i, j, distance."""
    n = len(hashes)
    rows_i, rows_j, dist = [], [], []
    for s in range(0, n, block):
        a = hashes[s:s + block, 0]
        d = _distance(a[:, None, None], hashes[None]).min(axis=2)  # (B, N)
        ii, jj = np.nonzero(d <= threshold)
        keep = jj > ii + s
        rows_i.append(ii[keep] + s)
        rows_j.append(jj[keep])
        dist.append(d[ii[keep], jj[keep]])
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=int)
    return pd.DataFrame({"i": cat(rows_i), "j": cat(rows_j), "distance": cat(dist).astype(int)})


def nearest_distances(hashes: np.ndarray, groups: np.ndarray, block: int = 32) -> np.ndarray:
    """For each image, the distance to the closest image of a different group (for choosing a threshold)."""
    out = np.full(len(hashes), HASH_BITS, dtype=int)
    for s in range(0, len(hashes), block):
        d = _distance(hashes[s:s + block, 0][:, None, None], hashes[None]).min(axis=2)
        d[groups[s:s + block][:, None] == groups[None, :]] = HASH_BITS
        out[s:s + block] = d.min(axis=1)
    return out


def _components(n: int, pairs: pd.DataFrame) -> np.ndarray:
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, j in zip(pairs["i"], pairs["j"]):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(x) for x in range(n)])


@dataclass
class AuditResult:
    pairs: pd.DataFrame  # image_a, image_b, group_a, group_b, distance (+ split_a, split_b, crosses_split)
    groups: pd.DataFrame  # one row per image in a near-duplicate group across different group ids
    leaks: list[dict]
    summary: dict


def cross_group_pairs(frame: pd.DataFrame, hashes: np.ndarray, threshold: int) -> pd.DataFrame:
    """Near-duplicate pairs whose images are filed under different groups (lesion ids)."""
    pairs = close_pairs(hashes, threshold)
    g = frame["lesion_id"].to_numpy()
    pairs = pairs[g[pairs["i"]] != g[pairs["j"]]].reset_index(drop=True)
    ids = frame["image_id"].to_numpy()
    return pairs.assign(image_a=ids[pairs["i"]], image_b=ids[pairs["j"]], group_a=g[pairs["i"]], group_b=g[pairs["j"]])


def merge_near_duplicates(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each near-duplicate group's lesion ids joined into one group (the smallest id, so the
    same data always gives the same groups); the original id is kept in ``original_lesion_id``."""
    if pairs.empty:
        return frame
    codes, uniques = pd.factorize(frame["lesion_id"])
    gp = pd.DataFrame({"i": codes[pairs["i"].to_numpy()], "j": codes[pairs["j"].to_numpy()]})
    roots = _components(len(uniques), gp)
    names = pd.Series(uniques).groupby(roots).transform("min").to_numpy()
    return frame.assign(original_lesion_id=frame["lesion_id"], lesion_id=names[codes])


#: Columns that record how or whether the label was obtained: reported whatever their statistics.
KNOWN_LEAKS: dict[str, str] = {
    "dx_type": "it records how the diagnosis was confirmed: 'histo' means a biopsy was taken, which is done for "
               "suspicious lesions",
    "diagnosis_confirm_type": "it records how the diagnosis was confirmed (histopathology for suspicious lesions)",
    "benign_malignant": "it is the label", "target": "it is the label", "diagnosis": "it is the diagnosis"}


def _out_of_fold_share(values: pd.Series, y: np.ndarray, groups: np.ndarray, k: int = 5, m: float = 10.0) -> np.ndarray:
    """Each row's score = malignant share of its value among rows of the other folds (folds by group),
    shrunk toward the overall share with ``m`` pseudo-rows: a value seen once cannot score perfectly."""
    fold = pd.factorize(pd.Series(groups))[0] % k
    prior = y.mean()
    score = np.empty(len(y))
    for f in range(k):
        train, test = fold != f, fold == f
        stats = pd.DataFrame({"v": values[train].to_numpy(), "y": y[train]}).groupby("v")["y"].agg(["sum", "count"])
        enc = (stats["sum"] + m * prior) / (stats["count"] + m)
        score[test] = values[test].map(enc).fillna(prior).to_numpy()
    return score


def label_leaks(frame: pd.DataFrame, min_auc: float = 0.85) -> list[dict]:
    """Columns (other than ids, dx and label) that leak the label: the known ones (``KNOWN_LEAKS``) always,
    any other whose values alone reach ``min_auc`` out-of-fold ROC-AUC (folds by lesion, so a lesion's own
    images do not vouch for each other)."""
    from sklearn.metrics import roc_auc_score  # (data does not import evaluation; both classes are checked below)
    y = frame["label"].to_numpy()
    out = []
    if not 0 < y.sum() < len(y):
        return out
    for col in frame.columns:
        if col.lower() in ID_LIKE or col == "original_lesion_id":
            continue
        values = frame[col].astype(str)
        if values.nunique() > 200 or values.nunique() < 2:
            continue
        auc = float(roc_auc_score(y, _out_of_fold_share(values, y, frame["lesion_id"].to_numpy())))
        known = KNOWN_LEAKS.get(col.lower())
        if known or auc >= min_auc:
            out.append({"column": col, "roc_auc_alone": auc,
                        "why": known or "its values alone separate benign from malignant; check that it is not "
                                        "recorded because of the diagnosis",
                        "advice": "never use it as a model input (--metadata refuses dx_type); report it as an "
                                  "acquisition variable, not a predictor"})
    return out


def audit(frame: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD, split: pd.DataFrame | None = None,
          progress: bool = False, hashes: np.ndarray | None = None) -> AuditResult:
    """Near-duplicate pairs across groups, their groups, label leaks; with ``split`` (a run's split.csv),
    which pairs cross the run's train/val/test."""
    if not 0 <= threshold <= HASH_BITS // 2:
        raise DataError(f"--threshold must be 0-{HASH_BITS // 2} bits of {HASH_BITS}, got {threshold}. Remedy: "
                        f"--threshold {DEFAULT_THRESHOLD}")
    frame = frame.reset_index(drop=True)
    hashes = image_hashes(frame["path"].tolist(), progress) if hashes is None else hashes
    if progress:
        console.step(f"audit: comparing {len(frame)} hashes (pairs across group ids at distance <= {threshold})")
    pairs = cross_group_pairs(frame, hashes, threshold)
    comp = _components(len(frame), pairs)
    in_group = np.zeros(len(frame), dtype=bool)
    in_group[pairs["i"].to_numpy()] = in_group[pairs["j"].to_numpy()] = True
    groups = frame.loc[in_group, ["image_id", "lesion_id", "dx", "label", "path"]].assign(group=comp[in_group])
    groups["group"] = pd.factorize(groups["group"])[0] + 1
    summary = {"images": int(len(frame)), "threshold": threshold, "hash": "pHash 256-bit of the equalised grey image, min over 8 flips/rotations",
               "cross_group_pairs": int(len(pairs)), "near_duplicate_groups": int(groups["group"].nunique()),
               "images_in_groups": int(len(groups)),
               "groups_with_different_dx": int((groups.groupby("group")["dx"].nunique() > 1).sum())}
    if split is not None:
        where = dict(zip(split["image_id"], split["split"]))
        pairs = pairs.assign(split_a=pairs["image_a"].map(where), split_b=pairs["image_b"].map(where))
        pairs["crosses_split"] = pairs["split_a"].notna() & pairs["split_b"].notna() & (pairs["split_a"] != pairs["split_b"])
        groups["split"] = groups["image_id"].map(where)
        summary["cross_split_pairs"] = int(pairs["crosses_split"].sum())
    return AuditResult(pairs.drop(columns=["i", "j"]), groups, label_leaks(frame), summary)


def _thumb(path: str, size: int = 96) -> str:
    try:
        img = load_rgb(path)
    except ImageDecodeError:
        return ""
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_audit(result: AuditResult, out_dir: str | Path, title: str, max_groups: int = 200) -> Path:
    """near_duplicates.csv (pairs), near_duplicate_groups.csv, audit.json and audit.html (thumbnails inline)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_csv(out / "near_duplicates.csv", result.pairs)
    atomic.write_csv(out / "near_duplicate_groups.csv", result.groups.drop(columns=["path"]))
    atomic.write_json(out / "audit.json", {**result.summary, "label_leaks": result.leaks})
    e = html.escape
    s = result.summary
    parts = [f"<h1>Audit of {e(title)}</h1>",
             f"<p>{s['images']} images; {s['cross_group_pairs']} near-duplicate pairs across different lesion/group ids "
             f"in {s['near_duplicate_groups']} groups (pHash distance &le; {s['threshold']} of {HASH_BITS}, flips and rotations "
             "included)." + (f" <b>{s['cross_split_pairs']} pairs cross the run's splits</b>: the same lesion is in "
                             "training and evaluation. Re-split with <code>prepare --merge-near-duplicates</code>."
                             if s.get("cross_split_pairs") else "") + "</p>"]
    if result.leaks:
        parts.append("<h2>Columns that leak the label</h2><ul>" + "".join(
            f"<li><b>{e(x['column'])}</b> (ROC-AUC alone {x['roc_auc_alone']:.3f}): {e(x['why'])}; {e(x['advice'])}</li>"
            for x in result.leaks) + "</ul>")
    parts.append("<h2>Near-duplicate groups</h2>")
    for gid, g in list(result.groups.groupby("group"))[:max_groups]:
        cells = "".join(f"<figure><img src='{_thumb(r.path)}' alt='{e(r.image_id)}'><figcaption>{e(r.image_id)}<br>"
                        f"{e(str(r.lesion_id))} · {e(r.dx)}" + (f" · {e(str(r.split))}" if "split" in g else "")
                        + "</figcaption></figure>" for r in g.itertuples())
        parts.append(f"<div class='group'><h3>group {gid}</h3>{cells}</div>")
    page = ("<!doctype html><meta charset='utf-8'><title>skinlesion audit</title><style>body{font-family:sans-serif;"
            "margin:2em}figure{display:inline-block;margin:4px;font-size:12px}.group{border-top:1px solid #ccc}</style>"
            + "".join(parts))
    return atomic.write_text(out / "audit.html", page)
