"""metrics.json as `evaluate` writes it, read and validated in one place (:meth:`MetricsFile.from_json`):
``compare``, ``runs``, ``push`` and the reports read it through this class. Versioned like the bundle config
(``format_version``; files written before the field existed are version 1), with the metric names of
earlier versions renamed on reading (:func:`~skinlesion.evaluation.metrics.upgrade_metric_names`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DataError
from ..records import JsonRecord
from .metrics import upgrade_metric_names

METRICS_FORMAT = 1
#: The headline metrics every metrics.json has under ``at_threshold``, each {value, ci_low, ci_high}.
HEADLINE = ("roc_auc", "pr_auc", "pauc_above_tpr80", "sensitivity", "specificity")


def _number_or_null(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


class MetricsFile(JsonRecord):
    """A validated metrics.json: a read-only mapping over the stored JSON, with typed views."""

    @classmethod
    def from_json(cls, data, where: str | Path = "metrics.json") -> "MetricsFile":
        remedy = "Remedy: run `skinlesion evaluate` again to re-create it."
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected a JSON object of metrics. {remedy}")
        version = data.get("format_version", 1)
        if version != METRICS_FORMAT:
            raise DataError(f"{where}: metrics format {version!r} is not supported (this skinlesion reads "
                            f"{METRICS_FORMAT}). Remedy: use the skinlesion version that wrote it, or evaluate again.")
        data = upgrade_metric_names(data)  # new dicts and lists; JsonRecord keeps its own copy
        n = data.get("n_images")
        if not isinstance(data.get("split"), str) or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise DataError(f"{where}: needs 'split' (a name) and 'n_images' (a whole number >= 1). {remedy}")
        at = data.get("at_threshold")
        ok = isinstance(at, dict) and all(
            isinstance(at.get(k), dict) and all(_number_or_null(at[k].get(f)) for f in ("value", "ci_low", "ci_high"))
            for k in HEADLINE)
        if not ok:
            raise DataError(f"{where}: 'at_threshold' must hold {', '.join(HEADLINE)}, each with a number (or null) "
                            f"value, ci_low and ci_high. {remedy}")
        return cls(data)

    @classmethod
    def read(cls, path: Path) -> "MetricsFile":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path} not found. Remedy: run `skinlesion evaluate` first.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON ({exc}). Remedy: run `skinlesion evaluate` again.") from None
        return cls.from_json(data, path)

    split = property(lambda self: self._data["split"])
    n_images = property(lambda self: int(self._data["n_images"]))
    fold = property(lambda self: self._data.get("fold"))

    def headline(self, key: str) -> dict:
        """{value, ci_low, ci_high} of a headline metric at the tuned threshold."""
        return self._data["at_threshold"][key]
