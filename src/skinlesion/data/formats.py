"""Dataset readers behind one interface: each turns a dataset folder into the same validated table
(image_id, lesion_id = the group used for splitting, dx, label, optional age/sex/localization).

Formats (``--format``): ``ham10000`` (HAM10000_metadata.csv), ``isic`` (the ISIC 2018 Task 3 / 2019
one-column-per-diagnosis ground truth, with 2019's metadata CSV, or the ISIC 2020 training CSV),
``folders`` (one folder per class: benign/malignant or dx codes) and ``csv`` (any CSV with
``--columns image=NAME,dx=NAME|label=NAME,group=NAME,...`` and ``--values RAW=CODE,...``); ``auto`` picks
by the files present and says which. The code mappings are in docs/datasets.md.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..paths import walk_files
from ..labels import ALL_DX, BINARY_LABEL, LABEL_MAPS
from ..errors import DataError
from .metadata import IMAGE_EXTENSIONS, METADATA_FILENAME, _rows, csv_delimiter, read_csv_checked, validate_table

FORMATS: tuple[str, ...] = ("auto", "ham10000", "isic", "folders", "csv")
COLUMN_KEYS: tuple[str, ...] = ("image", "dx", "label", "group", "age", "sex", "site")
#: ISIC 2018/2019 one-hot ground-truth columns -> dx code ("target": from a benign/malignant column).
ISIC_ONEHOT: dict[str, str] = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "AK": "akiec", "BKL": "bkl",
                               "DF": "df", "VASC": "vasc", "SCC": "scc", "UNK": "target"}
#: ISIC 2020 free-text diagnoses -> dx code; anything else takes benign/malignant from ``target``.
ISIC2020_DIAGNOSIS: dict[str, str] = {
    "nevus": "nv", "melanoma": "mel", "seborrheic keratosis": "bkl", "lentigo nos": "bkl", "lichenoid keratosis": "bkl",
    "solar lentigo": "bkl", "cafe-au-lait macule": "benign", "atypical melanocytic proliferation": "benign",
    "unknown": "target"}
#: Words accepted for a benign/malignant value (``label`` columns, class folders, ISIC 2020 benign_malignant).
LABEL_WORDS: dict[str, str] = {"0": "benign", "1": "malignant", "benign": "benign", "malignant": "malignant",
                               "0.0": "benign", "1.0": "malignant"}
META_SOURCES: dict[str, tuple[str, ...]] = {"age": ("age", "age_approx"), "sex": ("sex",),
                                            "localization": ("localization", "anatom_site_general",
                                                             "anatom_site_general_challenge")}


@dataclass(frozen=True)
class TableSpec:
    """How to read a dataset folder (from ``DataConfig`` or recorded in split.json)."""

    format: str = "auto"
    metadata: str | None = None
    columns: str | None = None
    values: str | None = None

    @classmethod
    def from_config(cls, data) -> "TableSpec":
        return cls(data.format, data.metadata, data.columns, data.values)

    @classmethod
    def from_record(cls, record: dict | None) -> "TableSpec":
        r = (record or {}).get("format") or {}
        meta = (record or {}).get("metadata")
        return cls(r.get("name", "auto"), r.get("metadata", meta), r.get("columns"), r.get("values"))


@dataclass
class Table:
    frame: pd.DataFrame  # image_id, lesion_id, dx, label (+ age, sex, localization; + path for folders)
    format: str
    source: Path  # the CSV (or folder) the labels came from
    group_source: str  # which column became the split group: lesion_id, patient_id, a --columns name, or image
    detected: str  # how the format was chosen, said in the output

    def record(self, spec: TableSpec) -> dict:
        return {"name": self.format, "metadata": str(self.source.resolve()), "columns": spec.columns,
                "values": spec.values, "group_source": self.group_source}


def parse_pairs(text: str | None, what: str, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """``"a=b,c=d"`` -> {"a": "b", "c": "d"}; a ConfigError-style DataError names the bad part."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        k, v = k.strip(), v.strip()
        if not sep or not k or not v:
            raise DataError(f"{what}: {part.strip()!r} is not NAME=VALUE. Remedy: e.g. {what} "
                            + ("image=Image Name,dx=Clinical Diagnosis" if keys else "0=nv,1=nv,2=mel"))
        if keys is not None and k.lower() not in keys:
            raise DataError(f"{what}: unknown key {k!r}; expected {', '.join(keys)}. Remedy: e.g. {what} image=NAME,dx=NAME")
        key = k.lower() if keys is not None or what == "--values" else k
        if key in out:
            raise DataError(f"{what}: {k!r} is given twice ({out[key]!r} and {v!r}); one would silently win. "
                            f"Remedy: keep one {k}=... in {what}.")
        out[key] = v
    return out


def _stem(value: str) -> str:
    base = os.path.basename(str(value).strip())
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS else base


def _csvs(root: Path) -> list[Path]:
    found = sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv"))
    return [p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            line = f.readline().strip()
        return [c.strip().strip('"') for c in line.split(csv_delimiter(line))]
    except (OSError, UnicodeDecodeError):
        return []


def _is_isic_gt(cols: list[str]) -> bool:
    return ("image" in cols and sum(c in ISIC_ONEHOT for c in cols) >= 3) or \
        ("image_name" in cols and bool({"target", "benign_malignant", "diagnosis"} & set(cols)))


def _class_folders(root: Path, values: str | None = None) -> list[Path]:
    names = set(ALL_DX) | set(parse_pairs(values, "--values"))
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in names) if root.is_dir() else []


def detect(root: Path, spec: TableSpec) -> tuple[str, str]:
    """(format, why) for ``spec.format`` 'auto': by the files present."""
    if spec.format != "auto":
        return spec.format, f"--format {spec.format}"
    if spec.columns:
        return "csv", "--columns given"
    if spec.metadata:
        cols = _header(Path(spec.metadata))
        if _is_isic_gt(cols):
            return "isic", f"{spec.metadata} has ISIC ground-truth columns"
        return "ham10000", f"--metadata {spec.metadata}"
    if (root / METADATA_FILENAME).is_file():
        return "ham10000", f"found {METADATA_FILENAME}"
    for path in _csvs(root):
        if _is_isic_gt(_header(path)):
            return "isic", f"found ISIC ground truth {path.relative_to(root)}"
    folders = _class_folders(root, spec.values)
    if folders:
        return "folders", f"found class folders {', '.join(d.name for d in folders)}"
    raise DataError(
        f"{root}: no dataset found: no {METADATA_FILENAME}, no ISIC ground-truth CSV (image,MEL,NV,... or image_name,"
        f"target,...), no class folders ({', '.join(ALL_DX)}). Remedy: pass --format csv --metadata FILE --columns "
        "image=NAME,dx=NAME (or label=NAME) for any other CSV, or arrange the images in benign/ and malignant/.")


def _apply_values(raw: pd.Series, values: dict[str, str], defaults: dict[str, str], where: str) -> pd.Series:
    """Raw diagnosis values -> dx codes (or 'target'); --values overrides the defaults; case-insensitive."""
    table = {k.lower(): v for k, v in defaults.items()}
    table.update({k.lower(): v.lower() for k, v in values.items()})
    mapped = raw.astype(str).str.strip().map(lambda v: table.get(v.lower(), v.lower() if v.lower() in ALL_DX else None))
    bad = mapped.isna() | ~mapped.isin(list(ALL_DX) + ["target"])
    if bad.any():
        unknown = sorted(set(raw[bad].astype(str)))
        raise DataError(f"{where}: value(s) {', '.join(map(repr, unknown[:10]))} (rows {_rows(raw.index[bad])}) are not "
                        f"dx codes ({', '.join(ALL_DX)}) and have no mapping. Remedy: map them, e.g. --values "
                        f"\"{unknown[0]}=benign\" (or =mel, =nv, ...).")
    return mapped


def _resolve_target(frame: pd.DataFrame, target: pd.Series | None, where: str) -> pd.DataFrame:
    """Rows mapped to 'target' take benign/malignant from the target column; rows with a dx must agree with it."""
    need = frame["dx"] == "target"
    if target is not None:
        words = target.astype(str).str.strip().str.lower().map(LABEL_WORDS)
        if words.isna().any():
            raise DataError(f"{where}: benign/malignant values must be 0/1 or benign/malignant; rows "
                            f"{_rows(target.index[words.isna()])} are not. Remedy: correct those rows.")
        frame.loc[need, "dx"] = words[need]
        disagree = frame.index[~need & (frame["dx"].map(BINARY_LABEL) != words.map(BINARY_LABEL))]
        if len(disagree):
            raise DataError(f"{where}: rows {_rows(disagree)} have a diagnosis whose benign/malignant class disagrees "
                            "with their target column. Remedy: map those diagnoses with --values \"NAME=benign\" or "
                            "\"NAME=malignant\" so the two agree.")
    elif need.any():
        raise DataError(f"{where}: rows {_rows(frame.index[need])} have an unknown diagnosis and no benign/malignant "
                        "column. Remedy: map it, e.g. --values UNK=benign, or remove those rows.")
    return frame


def _group(raw: pd.DataFrame, image_ids: pd.Series, explicit: str | None) -> tuple[pd.Series, str]:
    for col in ([explicit] if explicit else []) + ["lesion_id", "patient_id"]:
        if col in raw.columns:
            g = raw[col].astype("string").str.strip()
            return g.where(g.notna() & (g != ""), "img:" + image_ids).astype(str), col
    return image_ids.astype(str), "image (no lesion or patient id: every image its own group)"


def _finish(raw: pd.DataFrame, image: pd.Series, dx: pd.Series, grouping: tuple[pd.Series, str], where: str,
            meta_cols: dict[str, str] | None = None) -> pd.DataFrame:
    """The checked table: image ids, ``grouping`` = (group per row, where the groups came from) from
    :func:`_group`, dx and the metadata fields found."""
    group, gsrc = grouping
    frame = pd.DataFrame({"image_id": image.map(_stem), "lesion_id": group, "dx": dx})
    for field, names in META_SOURCES.items():
        col = (meta_cols or {}).get(field) or next((c for c in names if c in raw.columns), None)
        if col and col in raw.columns:
            frame[field] = raw[col].to_numpy()
    return validate_table(frame, where, groups_are_lesions=gsrc == "lesion_id")


def read_isic(root: Path, spec: TableSpec) -> Table:
    gt = Path(spec.metadata) if spec.metadata else next((p for p in _csvs(root) if _is_isic_gt(_header(p))), None)
    if gt is None:
        raise DataError(f"{root}: no ISIC ground-truth CSV below it. Remedy: pass --metadata GROUND_TRUTH.csv.")
    raw = read_csv_checked(gt)
    values = parse_pairs(spec.values, "--values")
    if "image_name" in raw.columns:  # ISIC 2020
        if "diagnosis" in raw.columns:
            dx = _apply_values(raw["diagnosis"], values, ISIC2020_DIAGNOSIS, str(gt))
        else:
            dx = pd.Series("target", index=raw.index)
        target = raw["target"] if "target" in raw.columns else raw.get("benign_malignant")
        frame_dx = _resolve_target(pd.DataFrame({"dx": dx}), target, str(gt))["dx"]
        group, gsrc = _group(raw, raw["image_name"].astype(str), None)
        return Table(_finish(raw, raw["image_name"], frame_dx, (group, gsrc), str(gt)), "isic", gt, gsrc, "")
    onehot = [c for c in raw.columns if c in ISIC_ONEHOT]
    scores = raw[onehot].apply(pd.to_numeric, errors="coerce")
    bad = raw.index[scores.isna().any(axis=1) | (scores.sum(axis=1) != 1) | ~scores.isin([0, 1]).all(axis=1)]
    if len(bad):
        raise DataError(f"{gt}: rows {_rows(bad)} do not have exactly one diagnosis column set to 1 (of "
                        f"{', '.join(onehot)}). Remedy: correct those rows; ground truth is one-hot.")
    picked = scores.idxmax(axis=1)
    dx = _apply_values(picked, values, ISIC_ONEHOT, str(gt))
    dx = _resolve_target(pd.DataFrame({"dx": dx}), None, str(gt))["dx"]
    meta = next((p for p in _csvs(gt.parent) + _csvs(root) if p != gt and "image" in (h := _header(p))
                 and ("age_approx" in h or "lesion_id" in h)), None)
    if meta is not None:  # ISIC 2019's separate metadata CSV (lesion_id, age_approx, anatom_site_general, sex)
        side = read_csv_checked(meta)
        raw = raw.merge(side.drop(columns=[c for c in onehot if c in side.columns]), on="image", how="left")
    group, gsrc = _group(raw, raw["image"].astype(str), None)
    detected = f" (+ metadata {meta.name})" if meta is not None else ""
    return Table(_finish(raw, raw["image"], dx, (group, gsrc), str(gt)), "isic", gt, gsrc, detected)


def read_folders(root: Path, spec: TableSpec) -> Table:
    """One folder per class below ``root``: dx codes or benign/malignant (any case), or names mapped with
    ``--values NAME=CODE``; a folder holding images whose name maps to no class is an error, never dropped."""
    values = {k.lower(): v.lower() for k, v in parse_pairs(spec.values, "--values").items()}
    rows, unknown = [], []
    for d in sorted(x for x in root.iterdir() if x.is_dir() and not x.name.startswith(".")):
        dx = values.get(d.name.lower(), d.name.lower())
        images = [(dirpath, name) for dirpath, name in walk_files(d)
                  if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS]
        if images and dx not in ALL_DX:
            unknown.append(f"{d.name}/ ({len(images)} images)")
            continue
        rows += [{"image_id": unicodedata.normalize("NFC", os.path.splitext(name)[0]), "dx": dx,
                  "path": str(Path(dirpath) / name)} for dirpath, name in images]
    if unknown:
        first = unknown[0].split("/")[0]
        raise DataError(f"{root}: folder(s) {', '.join(unknown)} are not class names ({', '.join(ALL_DX)}), so their "
                        f"images have no label. Remedy: map each, e.g. --values \"{first}=mel\" (or =benign, "
                        "=malignant), or move them out of the data folder.")
    if not rows:
        raise DataError(f"{root}: the class folders hold no images (.jpg .jpeg .png .bmp .tif .tiff). Remedy: put the "
                        "images in benign/ and malignant/ (or folders named by dx code).")
    frame = pd.DataFrame(rows)
    frame["lesion_id"] = frame["image_id"]
    frame = validate_table(frame[["image_id", "lesion_id", "dx", "path"]], str(root))
    return Table(frame, "folders", root, "image (class folders carry no lesion ids: every image its own group)", "")


def read_mapped_csv(root: Path, spec: TableSpec) -> Table:
    if not spec.metadata:
        raise DataError("--format csv needs --metadata FILE.csv and --columns image=NAME,dx=NAME (or label=NAME). "
                        "Remedy: add them.")
    path = Path(spec.metadata)
    raw = read_csv_checked(path)
    cols = parse_pairs(spec.columns, "--columns", COLUMN_KEYS)
    if "image" not in cols or not ({"dx", "label"} & set(cols)):
        raise DataError("--columns needs image=NAME and dx=NAME or label=NAME. Remedy: e.g. --columns "
                        "\"image=Image Name,dx=Clinical Diagnosis\"")
    absent = [f"{k}={v}" for k, v in cols.items() if v not in raw.columns]
    if absent:
        raise DataError(f"{path}: --columns names column(s) that are not there: {', '.join(absent)} (found: "
                        f"{', '.join(map(str, raw.columns))}). Remedy: use the CSV's exact header names.")
    values = parse_pairs(spec.values, "--values")
    dx = _apply_values(raw[cols["dx"]], values, {}, str(path)) if "dx" in cols else pd.Series("target", index=raw.index)
    dx = _resolve_target(pd.DataFrame({"dx": dx}), raw[cols["label"]].map(lambda v: values.get(str(v).strip().lower(), v))
                         if "label" in cols else None, str(path))["dx"]
    group, gsrc = _group(raw, raw[cols["image"]].astype(str).map(_stem), cols.get("group"))
    meta_cols = {"age": cols.get("age"), "sex": cols.get("sex"), "localization": cols.get("site")}
    return Table(_finish(raw, raw[cols["image"]], dx, (group, gsrc), str(path), meta_cols), "csv", path, gsrc, "")


def read_ham(root: Path, spec: TableSpec) -> Table:
    from .metadata import read_metadata
    path = Path(spec.metadata) if spec.metadata else root / METADATA_FILENAME
    values = parse_pairs(spec.values, "--values")
    if values:  # --values maps the dx column's values, as for every other format
        return Table(read_metadata(path, lambda dx: _apply_values(dx, values, {}, str(path))), "ham10000", path,
                     "lesion_id", "")
    return Table(read_metadata(path), "ham10000", path, "lesion_id", "")


READERS = {"ham10000": read_ham, "isic": read_isic, "folders": read_folders, "csv": read_mapped_csv}


def read_table(root: str | Path, spec: TableSpec) -> Table:
    """The validated table of the dataset at ``root`` in format ``spec.format`` (auto-detected if 'auto')."""
    root = Path(root)
    if spec.format not in FORMATS:
        raise DataError(f"--format {spec.format!r} is not known. Remedy: one of {', '.join(FORMATS)}")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist. Remedy: pass the folder holding the dataset.")
    name, why = detect(root, spec)
    table = READERS[name](root, spec)
    table.detected = f"format {name} ({why}{table.detected}); groups for splitting: {table.group_source}"
    return table


def recorded_table(record: dict | None, root: str | Path | None = None) -> pd.DataFrame | None:
    """The table a run's split was made from, read again as split.json recorded it (None if it is gone)."""
    record = record or {}
    root = root or record.get("root")
    if not root or not Path(root).is_dir():
        return None
    spec = TableSpec.from_record(record)
    if spec.metadata and not Path(spec.metadata).is_file():
        return None
    return read_table(root, spec).frame


def check_task(frame: pd.DataFrame, task: str, where: str) -> None:
    """Every row's dx must have a target in ``task`` (the 7-class task needs HAM10000's codes: rows with
    scc/benign/malignant are refused, by name)."""
    known = LABEL_MAPS[task]
    other = frame.index[~frame["dx"].isin(list(known))]
    if len(other):
        raise DataError(f"{where}: {len(other)} image(s) have dx {', '.join(sorted(set(frame.loc[other, 'dx'])))}, "
                        f"outside the {len(set(known.values()))} classes of --task {task} ({', '.join(known)}). Remedy: train --task binary, or map "
                        "them to HAM10000 codes with --values.")
