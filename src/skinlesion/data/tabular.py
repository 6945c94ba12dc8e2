"""Patient metadata as model input: age, sex and anatomical site encoded with vocabularies and scaling
fitted on the training split, missing values handled, and stored in the bundle (``to_dict``).

Encoding per field: ``age`` -> (standardised age, missing flag); ``sex`` / ``localization`` -> one-hot over
the training vocabulary plus one slot for unknown or missing values (HAM10000 writes "unknown").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import SkinlesionError

FIELDS: tuple[str, ...] = ("age", "sex", "localization")
ALIASES = {"site": "localization", "anatom_site": "localization", "anatom_site_general": "localization",
           "age_approx": "age"}
#: Fields that must never be features, and why.
REFUSED: dict[str, str] = {
    "dx_type": "it records how the diagnosis was confirmed (histopathology is done for suspicious lesions), so "
               "it encodes the label",
    "dx": "it is the label", "label": "it is the label",
    "lesion_id": "it identifies lesions, not patients' traits", "image_id": "it identifies images",
}
MISSING_TEXT = {"", "unknown", "nan", "none", "na", "n/a", "?"}


class MetadataError(SkinlesionError, ValueError):
    """A metadata feature cannot be used (refused, unknown or absent); the message names it."""


def parse_fields(text) -> tuple[str, ...]:
    """``"age,sex,site"`` -> ("age", "sex", "localization"); refused and unknown names are errors."""
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if str(t).strip()]
    out = []
    for name in names:
        if name in REFUSED:
            raise MetadataError(f"--metadata: {name!r} is refused as a feature: {REFUSED[name]}. Remedy: "
                                f"--metadata {','.join(FIELDS)}")
        name = ALIASES.get(name, name)
        if name not in FIELDS:
            raise MetadataError(f"--metadata: unknown field {name!r} (known: {', '.join(FIELDS)}). Remedy: "
                                f"--metadata {','.join(FIELDS)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _clean(values) -> list[str | None]:
    out = []
    for v in values:
        s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip().lower()
        out.append(None if s in MISSING_TEXT else s)
    return out


def _ages(values) -> np.ndarray:
    a = np.array(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)  # a copy
    a[(a < 0) | (a > 120)] = np.nan  # impossible ages count as missing
    return a


@dataclass
class MetadataEncoder:
    """Fitted on training rows; ``encode`` turns any frame (missing columns allowed) into float32 features."""

    fields: tuple[str, ...]
    age_mean: float = 50.0
    age_std: float = 15.0
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, fields: tuple[str, ...]) -> "MetadataEncoder":
        absent = [f for f in fields if f not in frame.columns]
        if absent:
            raise MetadataError(f"--metadata: the dataset has no column(s) {', '.join(absent)}. Remedy: drop them "
                                "from --metadata or add them to the metadata CSV.")
        enc = cls(tuple(fields))
        if "age" in fields:
            a = _ages(frame["age"])
            if np.isfinite(a).any():
                enc.age_mean = float(np.nanmean(a))
                enc.age_std = float(np.nanstd(a)) or 1.0
        for f in fields:
            if f != "age":
                enc.vocab[f] = sorted({v for v in _clean(frame[f]) if v is not None})
        return enc

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for f in self.fields:
            width = 2 if f == "age" else len(self.vocab[f]) + 1
            out[f] = slice(start, start + width)
            start += width
        return out

    @property
    def dim(self) -> int:
        return sum(s.stop - s.start for s in self.slices().values())

    def missing_vector(self) -> np.ndarray:
        """The encoding of a row with every field missing (used when no metadata is given)."""
        return self.encode(pd.DataFrame(index=[0]))[0]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        out = np.zeros((n, self.dim), dtype=np.float32)
        for f, sl in self.slices().items():
            if f == "age":
                a = _ages(frame["age"]) if "age" in frame else np.full(n, np.nan)
                ok = np.isfinite(a)
                out[ok, sl.start] = (a[ok] - self.age_mean) / self.age_std
                out[~ok, sl.start + 1] = 1.0
            else:
                values = _clean(frame[f]) if f in frame else [None] * n
                index = {v: i for i, v in enumerate(self.vocab[f])}
                cols = [index.get(v, len(self.vocab[f])) if v is not None else len(self.vocab[f]) for v in values]
                out[np.arange(n), sl.start + np.asarray(cols, dtype=int)] = 1.0
        return out

    def to_dict(self) -> dict:
        return {"fields": list(self.fields), "age_mean": self.age_mean, "age_std": self.age_std,
                "vocab": {k: list(v) for k, v in self.vocab.items()}, "dim": self.dim,
                "encoding": "age: (standardised, missing flag); categorical: one-hot over vocab + unknown slot"}

    @classmethod
    def from_dict(cls, d: dict) -> "MetadataEncoder":
        return cls(tuple(d["fields"]), float(d["age_mean"]), float(d["age_std"]),
                   {k: list(v) for k, v in d.get("vocab", {}).items()})
