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

COLUMNS = ("run", "status", "arch", "recipe", "task", "image_size", "epochs", "date", "val_roc_auc", "test_roc_auc",
           "test_roc_auc_ci", "threshold", "calibrated", "cv")
#: A run whose newest checkpoint is younger than this, without a bundle, counts as still training.
TRAINING_WINDOW_S = 15 * 60


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def run_row(run: Path, root: Path, now: float | None = None) -> dict:
    """What a run's own files say about it; damaged or missing files leave blanks, never an exception."""
    now = time.time() if now is None else now
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    train = cfg.get("train", {}) if isinstance(cfg, dict) else {}
    bundle = _json(run / "bundle" / "config.json") or {}
    metrics = _json(run / "metrics.json") or {}
    ckpts = list((run / "checkpoints").rglob("*.ckpt")) if (run / "checkpoints").is_dir() else []
    newest = max((p.stat().st_mtime for p in ckpts), default=None)
    if metrics.get("split") == "test" and bundle:
        status = "evaluated"
    elif bundle:
        status = "finished"
    elif newest is not None and now - newest < TRAINING_WINDOW_S:
        status = "training"
    elif ckpts:
        status = "failed"
    else:
        status = "prepared"
    test = (metrics.get("at_threshold") or {}).get("roc_auc") or {}
    val = ((bundle.get("metrics") or {}).get("val") or {}).get("roc_auc")
    if val is None:
        val = ((bundle.get("metrics") or {}).get("cv_val_roc_auc") or {}).get("mean")
    stamp = max([p.stat().st_mtime for p in run.iterdir()], default=run.stat().st_mtime)
    ens = bundle.get("ensemble") or {}
    return {"run": str(run.relative_to(root)) if run != root else run.name, "status": status,
            "arch": bundle.get("architecture") or train.get("arch"),
            "recipe": (bundle.get("recipe") or {}).get("recipe") or train.get("recipe"),
            "task": bundle.get("task") or train.get("task"),
            "image_size": (bundle.get("preprocessing") or {}).get("image_size") or train.get("image_size"),
            "epochs": train.get("epochs"), "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)),
            "val_roc_auc": val, "test_roc_auc": test.get("value"),
            "test_roc_auc_ci": f"[{test['ci_low']:.3f}, {test['ci_high']:.3f}]" if test.get("ci_low") is not None else "",
            "threshold": (bundle.get("threshold") or {}).get("value"), "calibrated": bool(bundle.get("calibration")),
            "cv": f"{ens.get('folds')}x{ens.get('seeds')}" if ens else ""}


def find_runs(root: str | Path) -> list[Path]:
    """Every folder below ``root`` (itself included) holding a split.csv or config.yaml; the fold runs of a
    cv run are listed too."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("checkpoints", "bundle",
                                                                                           "logs", "plots"))
        if "split.csv" in filenames or "config.yaml" in filenames:
            found.append(Path(dirpath))
    return found


def runs_table(root: str | Path, sort: str = "test_roc_auc") -> pd.DataFrame:
    from ..data.metadata import DataError
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
