"""The `predict` stage: files, folders and CSV lists of paths -> predictions.csv."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .. import atomic
from ..data.metadata import DataError
from ..paths import check_outputs
from .predictor import Predictor


def collect_inputs(items: list[str | Path]) -> list[str]:
    """Expand folders (recursively, every regular non-hidden file) and ``.csv`` lists (a ``path`` column,
    else the first column; relative paths are relative to the CSV) into one ordered list of files."""
    out: list[str] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out += [str(Path(dirpath) / f) for f in sorted(filenames) if not f.startswith(".")]
        elif item.suffix.lower() == ".csv" and item.is_file():
            try:
                frame = pd.read_csv(item, dtype=str)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise DataError(f"{item}: cannot be read as a CSV of paths ({exc}). Remedy: one path per row, in a "
                                "'path' column.") from None
            if frame.empty:
                raise DataError(f"{item}: the CSV lists no paths")
            col = "path" if "path" in frame.columns else frame.columns[0]
            out += [str(p if Path(p).is_absolute() else item.parent / p) for p in frame[col].dropna()]
        else:
            out.append(str(item))  # a missing file still gets a row with its error
    if not out:
        raise DataError("no input images: pass image files, folders or a CSV with a 'path' column")
    return out


def predict_files(bundle: str | Path, inputs: list[str | Path], out: str | Path | None = None, tta: bool = False,
                  batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> tuple[pd.DataFrame, int]:
    """Predict every input; write ``out`` (CSV) atomically when given. Returns the table and the failure count."""
    paths = collect_inputs(inputs)
    if out:
        check_outputs([Path(out)], protected=[Path(bundle)], inputs=[*paths, *inputs])
    predictor = Predictor.from_bundle(bundle, batch_size=batch_size, tta=tta)
    frame = predictor.predict_paths(paths, num_workers=num_workers, progress=progress)
    if out:
        atomic.write_csv(out, frame)
    return frame, int((frame["error"] != "").sum())
