"""Reading a dataset in any format into one validated table with image paths (``load_dataset``): the
format is detected and read by :mod:`.formats`, the rows checked by :mod:`.metadata`'s helpers, missing and
undecodable images dropped only within ``--allow-missing``."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import console
from ..errors import DataError
from .formats import TableSpec, read_table
from .images import ImageDecodeError, load_rgb
from .metadata import _ids, find_images


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
