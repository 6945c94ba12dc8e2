"""Lesion-level, dx-stratified train/val/test split and grouped K-fold; writing, loading and checking."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from ..labels import ALL_DX, BINARY_LABEL, DX_CODES
from ..errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLUMNS: tuple[str, ...] = ("image_id", "lesion_id", "dx", "label", "split")


def check_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    """Three non-negative fractions (train, val, test) that sum to 1 with train > 0."""
    try:
        ratios = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        ratios = (math.nan,)
    if (len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6
            or ratios[0] <= 0):
        raise DataError(f"--ratios must be three finite, non-negative fractions TRAIN VAL TEST summing to 1 with "
                        f"TRAIN > 0, got {ratios}. Remedy: --ratios 0.7 0.15 0.15")
    return ratios  # type: ignore[return-value]


def check_folds(folds: int | None, n_lesions: int) -> None:
    """``--folds K`` needs 2 <= K <= the number of lesions outside the test share."""
    if folds is None:
        return
    if not 2 <= folds <= max(n_lesions, 2):
        raise DataError(f"--folds must be between 2 and the {n_lesions} lesions outside the test share, got {folds}. "
                        f"Remedy: --folds {min(5, max(n_lesions, 2))}")


def check_both_classes(split: pd.DataFrame, ratios, source: str = "split") -> None:
    """Every split (and fold) with a positive share must hold benign and malignant images: metrics,
    checkpoint selection and thresholds are meaningless on one class."""
    parts = [(name, split["split"] == name) for name, r in zip(SPLITS, ratios) if r > 0]
    if "fold" in split.columns:
        parts += [(f"fold {k}", split["fold"] == k) for k in sorted(set(split["fold"]) - {-1})]
    for name, mask in parts:
        labels = split.loc[mask, "label"]
        n_mal, n_ben = int((labels == 1).sum()), int((labels == 0).sum())
        if n_mal == 0 or n_ben == 0:
            raise DataError(
                f"{source}: the {name} split has {n_mal} malignant and {n_ben} benign image(s); training, checkpoint "
                "selection and threshold tuning need both classes in every split. Remedy: add images of the missing "
                "class (each split needs at least one lesion of each class), or change --ratios / --folds / --seed.")


def _lesions_by_dx(frame: pd.DataFrame) -> dict[str, list[str]]:
    lesion_dx = frame.groupby("lesion_id", sort=True)["dx"].first()
    return {dx: sorted(lesion_dx.index[lesion_dx == dx]) for dx in ALL_DX}


def _split_counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Lesions per split for one dx; every split with a positive ratio gets one when n allows."""
    n_val = int(round(n * ratios[1]))
    n_test = int(round(n * ratios[2]))
    if n >= 3:
        n_val = max(n_val, 1 if ratios[1] > 0 else 0)
        n_test = max(n_test, 1 if ratios[2] > 0 else 0)
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    return n - n_val - n_test, n_val, n_test


def make_split(frame: pd.DataFrame, seed: int = 42, ratios=(0.70, 0.15, 0.15),
               folds: int | None = None) -> pd.DataFrame:
    """Assign each lesion (with all its images) to one split, stratified by dx.

    Deterministic for a seed on any machine (NumPy's legacy ``RandomState`` stream is frozen).
    With ``folds=K`` the test share is still held out; the other lesions get ``fold`` 0..K-1
    (round-robin within each dx after shuffling) and fold 0 is the validation split.
    """
    ratios = check_ratios(ratios)
    if folds is not None:
        n_test = sum(_split_counts(len(v), ratios)[2] for v in _lesions_by_dx(frame).values())
        check_folds(folds, frame["lesion_id"].nunique() - n_test)
    rng = np.random.RandomState(seed)
    lesion_split: dict[str, str] = {}
    lesion_fold: dict[str, int] = {}
    offset = 0
    for dx, lesions in _lesions_by_dx(frame).items():
        order = [lesions[i] for i in rng.permutation(len(lesions))]
        if folds is None:
            n_train, n_val, _ = _split_counts(len(order), ratios)
            for i, lesion in enumerate(order):
                lesion_split[lesion] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        else:
            _, _, n_test = _split_counts(len(order), ratios)
            for i, lesion in enumerate(order):
                if i < n_test:
                    lesion_split[lesion], lesion_fold[lesion] = "test", -1
                else:
                    fold = (offset + i - n_test) % folds
                    lesion_split[lesion], lesion_fold[lesion] = ("val" if fold == 0 else "train"), fold
            offset += len(order) - n_test
    out = frame.loc[:, ["image_id", "lesion_id", "dx", "label"]].copy()
    out["split"] = out["lesion_id"].map(lesion_split)
    if folds is not None:
        out["fold"] = out["lesion_id"].map(lesion_fold).astype(int)
    out = out.sort_values(["split", "lesion_id", "image_id"], key=_split_order).reset_index(drop=True)
    check_lesion_disjoint(out)
    return out


def _split_order(col: pd.Series) -> pd.Series:
    return col.map({s: i for i, s in enumerate(SPLITS)}) if col.name == "split" else col


def use_fold(split: pd.DataFrame, fold: int) -> pd.DataFrame:
    """Return a copy whose ``split`` makes ``fold`` the validation split (K-fold split files only)."""
    if "fold" not in split.columns:
        raise DataError("--fold: this run's split has no 'fold' column. Remedy: make a K-fold split with "
                        "`skinlesion prepare --folds 5 --out NEW_RUN`, or drop --fold.")
    k = int(split["fold"].max()) + 1
    if not 0 <= fold < k:
        raise DataError(f"--fold {fold} does not exist; this split has folds 0..{k - 1}. Remedy: --fold 0")
    out = split.copy()
    cv = out["fold"] >= 0
    out.loc[cv, "split"] = np.where(out.loc[cv, "fold"] == fold, "val", "train")
    check_lesion_disjoint(out)
    return out


def check_lesion_disjoint(split: pd.DataFrame, source: str = "split") -> None:
    """Raise DataError if any lesion_id is in two splits (or two folds)."""
    for col in ("split", "fold"):
        if col not in split.columns:
            continue
        n = split.groupby("lesion_id")[col].nunique()
        leaked = n.index[n > 1].tolist()
        if leaked:
            raise DataError(
                f"{source}: lesion_id(s) {', '.join(leaked[:10])}{' ...' if len(leaked) > 10 else ''} appear in "
                f"more than one {col} — images of one lesion in two splits leak information. "
                "Remedy: re-create the split with `skinlesion prepare`.")


def lesion_hash(split: pd.DataFrame) -> dict[str, str]:
    """SHA-256 of the sorted lesion ids of each split (and of all splits together)."""
    hashes = {}
    for name in SPLITS:
        ids = sorted(split.loc[split["split"] == name, "lesion_id"].unique())
        hashes[name] = hashlib.sha256(("\n".join(ids)).encode()).hexdigest()
    hashes["all"] = hashlib.sha256("".join(hashes[s] for s in SPLITS).encode()).hexdigest()
    return hashes


def split_fingerprint(split: pd.DataFrame, fold: int | None = None) -> str:
    """SHA-256 of every row (image_id, lesion_id, dx, label, split[, fold]) and the fold in use: it changes
    when any image moves, is added or dropped, or changes label or dx. Models, checkpoints, thresholds,
    calibrations and metrics record it; every stage that reads them checks it."""
    cols = [c for c in (*SPLIT_COLUMNS, "fold") if c in split.columns]
    rows = split.loc[:, cols].astype(str).sort_values("image_id")
    text = "\n".join(",".join(r) for r in rows.itertuples(index=False, name=None))
    return hashlib.sha256(f"{','.join(cols)}|fold={fold}\n{text}".encode()).hexdigest()


def summarize(split: pd.DataFrame, seed: int, ratios, folds: int | None = None) -> dict:
    """The split.json content: seed, ratios, counts per split and dx, lesion hashes."""
    counts = {}
    for name in SPLITS:
        part = split[split["split"] == name]
        counts[name] = {
            "images": int(len(part)),
            "lesions": int(part["lesion_id"].nunique()),
            "malignant_images": int(part["label"].sum()),
            "malignant_lesions": int(part.loc[part["label"] == 1, "lesion_id"].nunique()),
            "dx_images": {dx: int((part["dx"] == dx).sum()) for dx in _present(split)},
        }
    summary = {"seed": int(seed), "ratios": [float(r) for r in ratios], "folds": folds,
               "counts": counts, "lesion_hash": lesion_hash(split), "fingerprint": split_fingerprint(split)}
    if folds:
        summary["fold_images"] = {int(k): int(v) for k, v in split[split["fold"] >= 0]["fold"].value_counts().sort_index().items()}
    return summary


def _present(split: pd.DataFrame) -> list[str]:
    """HAM10000's seven codes always (stable split.json keys), the other codes when the data has them."""
    return list(DX_CODES) + [dx for dx in ALL_DX[len(DX_CODES):] if (split["dx"] == dx).any()]


def format_table(summary: dict) -> str:
    """Per-split table: images, lesions, malignant and images per dx."""
    codes = list(summary["counts"][SPLITS[0]]["dx_images"])
    head = ["split", "images", "lesions", "malignant", "mal %"] + codes
    rows = []
    for name in SPLITS:
        c = summary["counts"][name]
        pct = 100.0 * c["malignant_images"] / c["images"] if c["images"] else 0.0
        rows.append([name, c["images"], c["lesions"], c["malignant_images"], f"{pct:.1f}"]
                    + [c["dx_images"][dx] for dx in codes])
    total = [sum(summary["counts"][s][k] for s in SPLITS) for k in ("images", "lesions", "malignant_images")]
    pct = 100.0 * total[2] / total[0] if total[0] else 0.0
    rows.append(["total", *total, f"{pct:.1f}"] + [sum(summary["counts"][s]["dx_images"][dx] for s in SPLITS) for dx in codes])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def write_split(split: pd.DataFrame, summary: dict, csv_path: Path, json_path: Path) -> tuple[Path, Path]:
    """Write the split table and its summary atomically (a run's split.csv and split.json: data.run.Run)."""
    check_lesion_disjoint(split)
    return atomic.write_csv(csv_path, split), atomic.write_json(json_path, summary)


def load_split(path: Path, json_path: Path) -> pd.DataFrame:
    """Read the split table ``path``, check its columns, lesion-disjointness and its hash in the summary
    ``json_path`` (a run's split.csv and split.json: data.run.Run)."""
    if not path.is_file():
        raise DataError(f"{path} not found. Remedy: run `skinlesion prepare --data DIR --out {path.parent}` first.")
    try:
        split = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str, "dx": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0][:200]}). Remedy: restore it, or "
                        "re-create the split with `skinlesion prepare` in a new --out.") from None
    if split.empty:
        raise DataError(f"{path}: has no rows. Remedy: re-create the split with `skinlesion prepare` in a new --out.")
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}. Remedy: re-create it with `skinlesion prepare`.")
    bad = sorted(set(split["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: unknown split name(s) {bad}; expected {', '.join(SPLITS)}.")
    if split["image_id"].duplicated().any():
        dup = split.loc[split["image_id"].duplicated(), "image_id"].tolist()
        raise DataError(f"{path}: image_id(s) listed twice: {', '.join(dup[:10])}. Remedy: re-create it with `skinlesion prepare`.")
    for col in ("image_id", "lesion_id", "dx"):
        empty = split.index[split[col].isna()]
        if len(empty):
            raise DataError(f"{path}: row(s) {', '.join(str(i + 2) for i in empty[:10])} have an empty {col}. "
                            "Remedy: re-create the split with `skinlesion prepare`.")
    unknown = sorted(set(split["dx"]) - set(ALL_DX))
    if unknown:
        raise DataError(f"{path}: unknown dx code(s) {unknown}. Remedy: re-create the split with `skinlesion prepare`.")
    expected = split["dx"].map(BINARY_LABEL)
    label = pd.to_numeric(split["label"], errors="coerce")
    wrong = split.index[label != expected]
    if len(wrong):
        rows = ", ".join(f"{i + 2} ({split.at[i, 'image_id']}: dx {split.at[i, 'dx']}, label {split.at[i, 'label']})"
                         for i in wrong[:5])
        raise DataError(f"{path}: 'label' disagrees with 'dx' in {len(wrong)} row(s), e.g. line(s) {rows}; labels "
                        "follow from dx (akiec, bcc, mel, scc, malignant -> 1, others -> 0). Remedy: re-create the split with "
                        "`skinlesion prepare` (in a new --out if this run has a model).")
    split["label"] = label.astype(int)
    if "fold" in split.columns:
        split["fold"] = pd.to_numeric(split["fold"], errors="coerce").fillna(-2).astype(int)
    recorded = _recorded(json_path)
    groups = ((recorded or {}).get("dataset") or {}).get("format", {}).get("group_source", "lesion_id")
    dx_per_lesion = split.groupby("lesion_id")["dx"].nunique()
    if groups == "lesion_id" and (dx_per_lesion > 1).any():
        bad = dx_per_lesion.index[dx_per_lesion > 1].tolist()
        raise DataError(f"{path}: lesion(s) {', '.join(bad[:10])} have images with different dx. "
                        "Remedy: re-create the split with `skinlesion prepare`.")
    check_lesion_disjoint(split, source=str(path))
    if recorded is not None:
        if recorded.get("lesion_hash", {}).get("all") not in (None, lesion_hash(split)["all"]) or \
                recorded.get("fingerprint") not in (None, split_fingerprint(split)):
            raise DataError(f"{path} no longer matches the fingerprint in {json_path}: images were moved, added, "
                            "dropped or relabelled by hand. Remedy: restore the original split.csv, or re-create the "
                            "split with `skinlesion prepare` into a new --out and train there.")
    return split


def _recorded(json_path: Path) -> dict | None:
    if not json_path.is_file():
        return None
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_path} is not valid JSON ({exc}). Remedy: re-create the split with "
                        "`skinlesion prepare` in a new --out.") from None
    if not isinstance(data, dict):
        raise DataError(f"{json_path}: expected a JSON object, found {type(data).__name__}. Remedy: re-create the "
                        "split with `skinlesion prepare` in a new --out.")
    return data


def attach_paths(split: pd.DataFrame, root: str | Path, source: str = "split.csv") -> pd.DataFrame:
    """A copy of ``split`` with each image's file ``path`` below ``root``; every image must be found."""
    from .metadata import find_images
    images = find_images(root)
    out = split.copy()
    out["path"] = out["image_id"].map(lambda i: str(images[i]) if i in images else None)
    missing = out.loc[out["path"].isna(), "image_id"].tolist()
    if missing:
        raise DataError(f"{len(missing)} image(s) of {source} are not below {root}: {', '.join(missing[:10])}. "
                        "Remedy: pass the --data folder the split was made from.")
    return out
