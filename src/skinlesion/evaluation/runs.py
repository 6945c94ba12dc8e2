"""`skinlesion runs [DIR]`: one table of every run directory below DIR, from the files each run wrote."""
from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path

import pandas as pd
import yaml

from .. import atomic
from ..data.run import Run

COLUMNS = ("run", "status", "arch", "recipe", "task", "image_size", "epochs", "date", "val_roc_auc", "test_roc_auc",
           "test_roc_auc_ci", "threshold", "calibrated", "cv")
#: A run whose newest checkpoint is younger than this, without a bundle, counts as still training.
TRAINING_WINDOW_S = 15 * 60


NUMERIC = ("image_size", "epochs", "val_roc_auc", "test_roc_auc", "threshold")
TEXT = ("arch", "recipe", "task", "test_roc_auc_ci", "cv")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _get(data, *keys):
    """``data[k1][k2]...`` where every level must be a JSON object; anything else (a damaged file) is None."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _text(value) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def _status(run: Path, bundle: dict, metrics: dict, now: float) -> str:
    r = Run(run)
    ckpts = list(r.checkpoints.rglob("*.ckpt")) if r.checkpoints.is_dir() else []
    newest = max((p.stat().st_mtime for p in ckpts), default=None)
    if metrics.get("split") == "test" and bundle:
        return "evaluated"
    if bundle:
        return "finished"
    if r.interrupted_json.is_file():
        return "interrupted"  # stopped by a signal with its work saved: `train --resume` continues it
    if newest is not None and now - newest < TRAINING_WINDOW_S:
        return "training"
    return "failed" if ckpts else "prepared"


def run_row(run: Path, root: Path, now: float | None = None) -> dict:
    """What a run's own files say about it; damaged or missing files leave blanks (and a damaged run its own
    status), never an exception: one damaged run must not hide the others."""
    name = str(run.relative_to(root)) if run != root else run.name
    try:
        return _run_row(run, name, time.time() if now is None else now)
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        return {**{c: None for c in COLUMNS}, "run": name,
                "status": f"damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"}


def _run_row(run: Path, name: str, now: float) -> dict:
    layout = Run(run)
    try:
        cfg = yaml.safe_load(layout.config_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        cfg = {}
    train = _get(cfg, "train") or {}
    bundle = _json(layout.bundle / "config.json")
    metrics = _json(layout.metrics_json())  # read leniently: a partial file still shows what it has
    test = _get(metrics, "at_threshold", "roc_auc") or {}
    val = _get(bundle, "metrics", "val", "roc_auc")
    if val is None:
        val = _get(bundle, "metrics", "cv_val_roc_auc", "mean")
    stamp = max([p.stat().st_mtime for p in run.iterdir()], default=run.stat().st_mtime)
    ens = _get(bundle, "ensemble") or {}
    low, high = _number(_get(test, "ci_low")), _number(_get(test, "ci_high"))
    row = {"run": name, "status": _status(run, bundle, metrics, now),
           "arch": _get(bundle, "architecture") or _get(train, "arch"),
           "recipe": _get(bundle, "recipe", "recipe") or _get(train, "recipe"),
           "task": _get(bundle, "task") or _get(train, "task"),
           "image_size": _get(bundle, "preprocessing", "image_size") or _get(train, "image_size"),
           "epochs": _get(train, "epochs"), "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)),
           "val_roc_auc": val, "test_roc_auc": _get(test, "value"),
           "test_roc_auc_ci": f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else "",
           "threshold": _get(bundle, "threshold", "value"), "calibrated": bool(_get(bundle, "calibration")),
           "cv": f"{_get(ens, 'folds')}x{_get(ens, 'seeds')}" if ens else ""}
    # one type per column, whatever a damaged file holds, so sorting never compares a number with a string
    row.update({c: _number(row[c]) for c in NUMERIC})
    row.update({c: _text(row[c]) for c in TEXT})
    return row


def find_runs(root: str | Path) -> list[Path]:
    """Every folder below ``root`` (itself included) holding a split.csv or config.yaml; the fold runs of a
    cv run are listed too."""
    root = Path(root)
    layout = Run(root)  # the names of a run's files and folders
    skip = {p.name for p in (layout.checkpoints, layout.bundle, layout.plots)} | {"logs"}
    marks = {layout.split_csv.name, layout.config_yaml.name}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
        if marks & set(filenames):
            found.append(Path(dirpath))
    return found


def runs_table(root: str | Path, sort: str = "test_roc_auc") -> pd.DataFrame:
    from ..errors import DataError
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder. Remedy: `skinlesion runs runs/` (the folder holding your runs)")
    if sort not in COLUMNS:
        raise DataError(f"--sort {sort!r} is not a column ({', '.join(COLUMNS)}). Remedy: --sort test_roc_auc")
    frame = pd.DataFrame([run_row(r, root) for r in find_runs(root)], columns=list(COLUMNS))
    ascending = sort in ("run", "arch", "recipe", "task", "status")
    return frame.sort_values(sort, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def format_runs(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "no runs found"
    fmt = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))
    rows = [[fmt(v) for v in r] for r in frame.itertuples(index=False)]
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_runs(frame: pd.DataFrame, out: str | Path, sort: str) -> tuple[Path, Path]:
    """``<out>.csv`` and a sortable ``<out>.html`` page."""
    out = Path(out)
    csv = atomic.write_csv(out.with_suffix(".csv"), frame)
    head = "".join(f"<th onclick='sortBy({i})'>{html.escape(c)}</th>" for i, c in enumerate(COLUMNS))
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None or (isinstance(v, float) and math.isnan(v)) else (f'{v:.3f}' if isinstance(v, float) else str(v)))}</td>"
                                    for v in r) + "</tr>" for r in frame.itertuples(index=False))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skinlesion runs</title><style>body{font-family:"
            "system-ui,sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px "
            "solid #ddd}th{cursor:pointer;background:#f3f3f3}</style></head><body>"
            f"<h1>skinlesion runs</h1><p>sorted by {html.escape(sort)}; click a column to sort.</p>"
            f"<table id='t'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><script>"
            "function sortBy(i){const b=document.querySelector('#t tbody');const r=[...b.rows];const k=x=>{const t=x.cells[i]"
            ".textContent;const n=parseFloat(t);return isNaN(n)?t:n};const d=b.dataset.col==i&&b.dataset.dir=='d'?'a':'d';"
            "r.sort((a,c)=>{const p=k(a),q=k(c);return (p>q?1:p<q?-1:0)*(d=='a'?1:-1)});b.dataset.col=i;b.dataset.dir=d;"
            "r.forEach(x=>b.appendChild(x))}</script></body></html>")
    return csv, atomic.write_text(out.with_suffix(".html"), page)
