"""Read and validate a HAM10000-layout dataset: ``HAM10000_metadata.csv`` plus images below the root."""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..paths import walk_files
from ..labels import ALL_DX, BINARY_LABEL, DX_CODES

METADATA_FILENAME = "HAM10000_metadata.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx")
OPTIONAL_COLUMNS: tuple[str, ...] = ("dx_type", "age", "sex", "localization")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _rows(index: pd.Index | list, limit: int = 10) -> str:
    """CSV line numbers (header is line 1) for DataFrame indices, shortened after ``limit``."""
    lines = [str(int(i) + 2) for i in index]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ", ".join(lines[:limit]) + more


def _ids(values, limit: int = 10) -> str:
    values = [str(v) for v in values]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def csv_delimiter(header: str) -> str:
    """The field separator of a CSV from its header line: a comma, else a semicolon (spreadsheets in locales
    with a decimal comma) or a tab, whichever the header uses."""
    if "," in header:
        return ","
    return max((";", "\t", "|"), key=header.count) if any(c in header for c in ";\t|") else ","


def read_text_csv(csv_path: str | Path) -> pd.DataFrame:
    """A user's CSV as text columns, however it was saved: BOM or not, CRLF or LF, comma, semicolon or tab
    (sniffed from the header); only empty cells are missing ("NA" is a value). Column names stripped and
    NFC-normalised. pandas' parse errors propagate for the caller to name the file."""
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        sep = csv_delimiter(f.readline())
    frame = pd.read_csv(csv_path, dtype=str, encoding="utf-8-sig", skipinitialspace=True, sep=sep,
                        keep_default_na=False, na_values=[""])
    frame.columns = [unicodedata.normalize("NFC", str(c).strip()) for c in frame.columns]
    return frame


def read_csv_checked(csv_path: str | Path) -> pd.DataFrame:
    """A CSV read as text columns, or a DataError naming the file (absent, unreadable, empty)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(
            f"metadata file {csv_path} not found. Remedy: put HAM10000_metadata.csv in the data root "
            f"(columns {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}), pass --metadata FILE, or see --format.")
    try:
        frame = read_text_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: cannot be read as CSV ({exc}). Remedy: export it as comma-separated UTF-8.")
    if frame.empty:
        raise DataError(f"{csv_path}: has a header but no rows. Remedy: point --data at the full dataset.")
    return frame


def validate_table(frame: pd.DataFrame, where: str, groups_are_lesions: bool = True) -> pd.DataFrame:
    """The checks every dataset format shares: no empty ids or dx, known dx codes, each image once, one dx
    per lesion (when the groups are lesions, not patients); adds ``label`` (0 benign, 1 malignant). Row
    numbers are the CSV's lines."""
    for col in REQUIRED_COLUMNS:
        frame[col] = frame[col].astype("string").str.strip()
        empty = frame.index[frame[col].isna() | (frame[col] == "")]
        if len(empty):
            raise DataError(f"{where}: rows {_rows(empty)} have an empty {col}. Remedy: fill them in or remove those rows.")
        frame[col] = frame[col].astype(str).map(lambda v: unicodedata.normalize("NFC", v))  # as file names are read
    frame["dx"] = frame["dx"].str.lower()
    unknown = sorted(set(frame["dx"]) - set(ALL_DX))
    if unknown:
        bad = frame.index[frame["dx"].isin(unknown)]
        raise DataError(
            f"{where}: unknown dx code(s) {', '.join(map(repr, unknown))} in rows {_rows(bad)}. "
            f"Remedy: use the HAM10000 codes {', '.join(DX_CODES)} (or scc, benign, malignant), or read the file with "
            "--format csv --columns ... --values RAW=CODE to map them.")
    dup = frame.index[frame["image_id"].duplicated(keep=False)]
    if len(dup):
        ids = frame.loc[dup, "image_id"].unique()
        raise DataError(
            f"{where}: duplicate image_id {_ids(ids)} (rows {_rows(dup)}). Remedy: each image must appear once.")
    dx_per_lesion = frame.groupby("lesion_id")["dx"].nunique()
    conflicting = dx_per_lesion.index[dx_per_lesion > 1]
    if groups_are_lesions and len(conflicting):
        rows = frame.index[frame["lesion_id"].isin(conflicting)]
        raise DataError(
            f"{where}: lesion_id {_ids(conflicting)} has images with different dx (rows {_rows(rows)}). "
            f"Remedy: a lesion has one diagnosis; correct the dx or the lesion_id of those rows.")
    frame["label"] = frame["dx"].map(BINARY_LABEL).astype(int)
    if "age" in frame.columns:
        frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    return frame


def read_metadata(csv_path: str | Path, map_dx=None) -> pd.DataFrame:
    """Read and validate a HAM10000 metadata CSV; return it with an added ``label`` (0 benign, 1 malignant).
    ``map_dx`` (the --values mapping) turns the raw dx column into codes first."""
    csv_path = Path(csv_path)
    frame = read_csv_checked(csv_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing required column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns))}). "
            f"Remedy: the CSV needs columns {', '.join(REQUIRED_COLUMNS)}; rename yours to match, or read it with "
            "--format csv --columns image=NAME,dx=NAME (see docs/datasets.md).")
    if map_dx is not None:
        frame["dx"] = map_dx(frame["dx"])
    return validate_table(frame, str(csv_path))


def find_images(root: str | Path) -> dict[str, Path]:
    """Map image_id (file stem) -> path for every .jpg/.jpeg/.png/.bmp/.tif/.tiff (any case) anywhere below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist. Remedy: pass the folder holding {METADATA_FILENAME} and the images.")
    found: dict[str, Path] = {}
    clashes: list[str] = []
    for dirpath, name in walk_files(root):
        stem, ext = os.path.splitext(unicodedata.normalize("NFC", name))
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        path = Path(dirpath) / name
        if stem in found:
            if found[stem].resolve() != path.resolve():  # the same file reached by two links is one image
                clashes.append(f"{stem}: {found[stem]} and {path}")
            continue
        found[stem] = path
    if clashes:
        raise DataError(
            f"{root}: {len(clashes)} image_id(s) found in more than one file ({'; '.join(clashes[:5])}). "
            "Remedy: keep one file per image_id below the data root.")
    return found
