"""Output paths that can never destroy inputs: one check used by every verb that writes files."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import SkinlesionError


class OutputPathError(SkinlesionError, ValueError):
    """An output would overwrite an input, a model bundle, or another output of the same command."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_outputs(outputs: Iterable[Path], protected: Iterable[Path] = (), inputs: Iterable[Path] = ()) -> None:
    """Refuse before anything is written when an output path equals an input file, lies inside a
    protected folder (a bundle) or is the same file as another output."""
    outs = [Path(o).resolve() for o in outputs]
    folders = [Path(p).resolve() for p in protected]
    files = {Path(i).resolve() for i in inputs}
    for out in outs:
        for folder in folders:
            if _inside(out, folder):
                raise OutputPathError(f"output {out} lies inside the model bundle {folder}; writing there would "
                                      "overwrite the model or its config.json. Remedy: choose an --out outside the bundle.")
        if out in files:
            raise OutputPathError(f"output {out} is also an input of this command; writing it would destroy the "
                                  "input. Remedy: choose another --out.")
    if len(set(outs)) < len(outs):
        dup = sorted({str(o) for o in outs if outs.count(o) > 1})
        raise OutputPathError(f"two outputs of this command would be the same file ({', '.join(dup)}). Remedy: "
                              "choose an --out whose name does not collide (e.g. model.onnx).")


def walk_files(root: str | Path, hidden: bool = False):
    """Yield every file below ``root`` as (folder, name), sorted, following symbolic links to folders and
    files (how shared storage and cluster scratch are mounted) and entering each real folder once, so a
    cyclic link cannot loop. Hidden entries (a leading dot) are skipped unless ``hidden``."""
    import os
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # reached again through a link: already walked
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if hidden or not d.startswith("."))
        for name in sorted(filenames):
            if hidden or not name.startswith("."):
                yield dirpath, name
