"""Read and validate a HAM10000-layout dataset: ``HAM10000_metadata.csv`` plus images below the root."""
from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import console
from ..errors import SkinlesionError
from ..paths import walk_files
from ..labels import ALL_DX, BINARY_LABEL, DX_CODES
from .images import ImageDecodeError, load_rgb

METADATA_FILENAME = "HAM10000_metadata.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx")
OPTIONAL_COLUMNS: tuple[str, ...] = ("dx_type", "age", "sex", "localization")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DataError(SkinlesionError, ValueError):
    """The dataset is unusable as given; the message names the file, rows and the remedy."""


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


@dataclass
class LoadedDataset:
    """A validated dataset: one row per usable image (metadata columns, ``label`` and ``path``)."""

    root: Path
    metadata_path: Path
    frame: pd.DataFrame
    missing_ids: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)  # image_id -> error
    table: object = None  # formats.Table: format, group source, how it was detected
    spec: object = None  # formats.TableSpec it was read with

    def record(self) -> dict:
        """What split.json keeps so later stages read the same table again."""
        return self.table.record(self.spec) if self.table is not None else {}

    @property
    def dropped(self) -> int:
        return len(self.missing_ids) + len(self.corrupt)


#: The largest share of a dataset an error message may suggest dropping with --allow-missing; above it the
#: data folder itself is wrong (a moved mount, a dangling link) and dropping would leave almost nothing.
MAX_SUGGESTED_DROP = 0.10


def _link_note(root: Path) -> str:
    links = [p for p in [root, *sorted(root.iterdir())] if p.is_symlink()] if root.is_dir() else []
    dangling = [f"{p} -> {os.readlink(p)}" for p in links if not p.exists()]
    return ("dangling: " + "; ".join(dangling[:3])) if dangling else "none is dangling at the top level"


def verify_images(paths: dict[str, Path], progress: bool = True) -> dict[str, str]:
    """Decode every image once; return image_id -> error text for those that fail."""

    bad: dict[str, str] = {}
    for image_id, path in console.bar(paths.items(), desc="verify images", unit="img", disable=not progress):
        try:
            load_rgb(path)
        except ImageDecodeError as exc:
            bad[image_id] = str(exc)
    return bad


def load_dataset(root: str | Path, metadata: str | Path | None = None, allow_missing: float = 0.0,
                 verify: bool = False, progress: bool = True, spec=None) -> LoadedDataset:
    """Read the dataset at ``root`` in any format (``spec``: formats.TableSpec; default auto-detected),
    validate metadata and images; drop missing/corrupt images only within ``allow_missing``."""
    from .formats import TableSpec, read_table
    root = Path(root)
    if not (math.isfinite(allow_missing) and 0.0 <= allow_missing < 1.0):
        raise DataError(f"--allow-missing must be a fraction in [0, 1), got {allow_missing}. Remedy: --allow-missing 0.01")
    spec = spec or TableSpec(metadata=str(metadata) if metadata else None)
    table = read_table(root, spec)
    frame, metadata_path = table.frame, table.source
    if "path" not in frame.columns:
        images = find_images(root)
        frame["path"] = frame["image_id"].map(lambda i: str(images[i]) if i in images else None)
    missing_ids = frame.loc[frame["path"].isna(), "image_id"].tolist()
    corrupt: dict[str, str] = {}
    if verify:
        present = dict(zip(frame.loc[frame["path"].notna(), "image_id"], frame.loc[frame["path"].notna(), "path"]))
        corrupt = verify_images(present, progress=progress)
    n_bad = len(missing_ids) + len(corrupt)
    if n_bad:
        fraction = n_bad / len(frame)
        if fraction > allow_missing:
            suggest = math.ceil(fraction * 10_000) / 10_000  # rounded up, so the suggested value works
            parts = []
            if missing_ids:
                parts.append(f"{len(missing_ids)} image(s) listed in {metadata_path} have no image file (.jpg .jpeg .png .bmp .tif .tiff) "
                             f"below {root}: {_ids(missing_ids, 20)}")
            if corrupt:
                parts.append(f"{len(corrupt)} image(s) cannot be decoded: "
                             + "; ".join(f"{k}: {v}" for k, v in list(corrupt.items())[:10]))
            if fraction > MAX_SUGGESTED_DROP:  # not a few bad files: the path (or a link's target) is wrong
                raise DataError(
                    ". ".join(parts) + f". That is {fraction:.2%} of {len(frame)} rows. Remedy: check the path: the "
                    f"images must lie below {root} (a symbolic link there must point at an existing folder: "
                    f"{_link_note(root)}), and the file names must be the image ids of {metadata_path}.")
            raise DataError(
                ". ".join(parts) + f". That is {fraction:.2%} of {len(frame)} rows, above the allowed "
                f"{allow_missing:.2%}. Remedy: add or replace those files, or pass --allow-missing {suggest:.4f} "
                "to drop them from the run (they are reported).")
        frame = frame[frame["path"].notna() & ~frame["image_id"].isin(list(corrupt))].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{metadata_path}: no usable images remain below {root}.")
    return LoadedDataset(root=root, metadata_path=metadata_path, frame=frame,
                         missing_ids=missing_ids, corrupt=corrupt, table=table, spec=spec)
