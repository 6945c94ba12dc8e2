"""The `predict` stage: files, folders and CSV lists of paths -> predictions.csv."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import atomic
from ..data.metadata import read_text_csv
from ..errors import DataError
from ..paths import check_outputs, walk_files
from .predictor import Predictor


def collect_inputs(items: list[str | Path]) -> list[str]:
    """Expand folders (recursively, every regular non-hidden file) and ``.csv`` lists (a ``path`` column,
    else the first column; relative paths are relative to the CSV) into one ordered list of files."""
    return collect_inputs_with_metadata(items)[0]


def collect_inputs_with_metadata(items: list[str | Path]) -> tuple[list[str], pd.DataFrame]:
    """:func:`collect_inputs` plus one metadata row per file: a CSV's age / sex / localization (or site)
    columns where it has them, missing values elsewhere."""
    from ..data.tabular import ALIASES, FIELDS
    out: list[str] = []
    meta: list[dict] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            found = [str(Path(dirpath) / f) for dirpath, f in walk_files(item)]
            out += found
            meta += [{}] * len(found)
        elif item.suffix.lower() == ".csv" and item.is_file():
            try:
                frame = read_text_csv(item)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise DataError(f"{item}: cannot be read as a CSV of paths ({exc}). Remedy: one path per row, in a "
                                "'path' column.") from None
            if frame.empty:
                raise DataError(f"{item}: the CSV lists no paths")
            col = "path" if "path" in frame.columns else frame.columns[0]
            frame = frame[frame[col].notna()]
            out += [str(p if Path(p).is_absolute() else item.parent / p) for p in frame[col]]
            fields = {c: ALIASES.get(c.lower(), c.lower()) for c in frame.columns
                      if ALIASES.get(c.lower(), c.lower()) in FIELDS}
            twice = {f: [c for c in fields if fields[c] == f] for f in set(fields.values())}
            twice = {f: cols for f, cols in twice.items() if len(cols) > 1}
            if twice:
                f, cols = next(iter(twice.items()))
                raise DataError(f"{item}: columns {', '.join(map(repr, cols))} all mean {f}; one would silently win. "
                                f"Remedy: keep one of them (or rename the others) in {item}.")
            meta += frame[list(fields)].rename(columns=fields).to_dict("records") if fields else [{}] * len(frame)
        else:
            out.append(str(item))  # a missing file still gets a row with its error
            meta.append({})
    if not out:
        raise DataError("no input images: pass image files, folders or a CSV with a 'path' column. Remedy: "
                        "skinlesion predict --model RUN/bundle IMAGE_OR_FOLDER")
    return out, pd.DataFrame(meta, index=range(len(out)))


@dataclass(frozen=True)
class PredictOptions:
    """How `predict` runs: test-time augmentation, batch size, DataLoader workers, progress bar."""

    tta: bool = False
    batch_size: int = 32
    num_workers: int = 0
    progress: bool = True


def predict_files(bundle: str | Path, inputs: list[str | Path], out: str | Path | None = None,
                  opts: PredictOptions = PredictOptions()) -> tuple[pd.DataFrame, int]:
    """Predict every input; write ``out`` (CSV) atomically when given. Returns the table and the failure count."""
    paths, metadata = collect_inputs_with_metadata(inputs)
    if out:
        check_outputs([Path(out)], protected=[Path(bundle)], inputs=[*paths, *inputs])
    predictor = Predictor.from_bundle(bundle, batch_size=opts.batch_size, tta=opts.tta)
    frame = predictor.predict_paths(paths, num_workers=opts.num_workers, progress=opts.progress,
                                    metadata=metadata if predictor.bundle.encoder is not None else None)
    if out:
        atomic.write_csv(out, frame)
    return frame, int((frame["error"] != "").sum())
