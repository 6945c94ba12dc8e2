"""Reading the CSV files skinlesion writes (predictions, metrics history): every float exactly as written.

pandas 2's default C float parser can return a value one unit in the last place off (e.g. 0.35042136907577515
read back as 0.3504213690757751); a threshold tuned on such a value can flip the decision for the image at the
boundary. ``float_precision="round_trip"`` parses each float exactly as Python's ``float()`` does, and
``DataFrame.to_csv`` writes Python's shortest round-tripping repr, so write -> read is the identity.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import SkinlesionError

#: pandas 2's C parser needs ``round_trip`` to be exact; pandas 3 parses exactly by default and deprecates the
#: argument, so it is passed only where it is needed.
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}

ID_COLUMNS = {"image_id": str, "lesion_id": str, "original_lesion_id": str, "dx": str, "path": str}


class RunFileError(SkinlesionError, ValueError):
    """A file in a run folder or bundle is missing, damaged or of the wrong shape; the message names it."""


def read_csv_exact(path: str | Path, remedy: str, columns: tuple[str, ...] = (), **kwargs) -> pd.DataFrame:
    """A CSV written by skinlesion, floats parsed exactly (round trip), id columns as text; a RunFileError
    naming the file and ``remedy`` when it cannot be read or lacks one of ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path} not found. Remedy: {remedy}")
    try:
        frame = pd.read_csv(path, dtype={**ID_COLUMNS, **kwargs.pop("dtype", {})}, **EXACT_FLOATS, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise RunFileError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0][:200]}). Remedy: {remedy}") \
            from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunFileError(f"{path}: missing column(s) {', '.join(missing)}. Remedy: {remedy}")
    return frame
