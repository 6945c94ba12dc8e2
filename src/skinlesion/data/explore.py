"""The `explore` stage: distribution plots and a Markdown + HTML summary of a dataset."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from ..labels import BINARY_CLASS_NAMES, DX_CODES, EXTRA_DX
from .images import image_size

AGE_BANDS = (0, 30, 50, 70, 200)
AGE_BAND_NAMES = ("<30", "30-49", "50-69", ">=70")
AGE_BAND_ORDER = (*AGE_BAND_NAMES, "unknown")


def age_band(age: pd.Series) -> pd.Series:
    """Age in years -> '<30', '30-49', '50-69', '>=70' or 'unknown' (strings)."""
    band = pd.cut(pd.to_numeric(age, errors="coerce"), AGE_BANDS, right=False, labels=AGE_BAND_NAMES)
    return band.astype(str).replace("nan", "unknown")


def _bar_by_class(ax, table: pd.DataFrame, title: str) -> None:
    table.plot.bar(ax=ax, color=["#4c9be8", "#e8604c"][: table.shape[1]])
    ax.set_title(title)
    ax.set_ylabel("images")
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def summary_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Count tables: dx, class, images per lesion, and sex / age band / localization by class."""
    cls = frame["label"].map(dict(enumerate(BINARY_CLASS_NAMES)))
    tables = {
        "dx": frame["dx"].value_counts().reindex(list(DX_CODES) + [d for d in EXTRA_DX if (frame["dx"] == d).any()],
                                                 fill_value=0).rename("images").to_frame(),
        "class": cls.value_counts().reindex(BINARY_CLASS_NAMES, fill_value=0).rename("images").to_frame(),
        "images per lesion": frame.groupby("lesion_id").size().value_counts().sort_index().rename("lesions")
        .rename_axis("images per lesion").to_frame(),
    }
    if "sex" in frame:
        tables["sex by class"] = pd.crosstab(frame["sex"].fillna("unknown"), cls)
    if "age" in frame:
        table = pd.crosstab(age_band(frame["age"]), cls)
        tables["age band by class"] = table.reindex([b for b in AGE_BAND_ORDER if b in table.index])
    if "localization" in frame:
        tables["localization by class"] = pd.crosstab(frame["localization"].fillna("unknown"), cls)
    return tables


def size_stats(paths: list[str], sample: int = 200, seed: int = 0) -> pd.DataFrame:
    """Width/height statistics of up to ``sample`` images (read from headers only)."""
    rng = np.random.RandomState(seed)
    chosen = [paths[i] for i in rng.choice(len(paths), size=min(sample, len(paths)), replace=False)]
    sizes = pd.DataFrame([image_size(p) for p in chosen], columns=["width", "height"])
    return sizes.describe().loc[["count", "mean", "min", "50%", "max"]].round(1)


def explore(frame: pd.DataFrame, out: str | Path, title: str = "dataset") -> Path:
    """Write plots (PNG), ``summary.md`` and ``summary.html`` to ``out``; return the HTML path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    tables = summary_tables(frame)
    sizes = size_stats(frame["path"].tolist())
    plots = {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (table, col, colour, title) in zip(axes, [("dx", "images", "#777", "images per dx"),
                                                      ("class", "images", ["#4c9be8", "#e8604c"], "images per class"),
                                                      ("images per lesion", "lesions", "#777", "images per lesion")]):
        tables[table][col].plot.bar(ax=ax, color=colour)
        ax.set_title(title)
    fig.tight_layout()
    plots["distribution.png"] = fig
    by_class = [k for k in ("sex by class", "age band by class", "localization by class") if k in tables]
    if by_class:
        fig, axes = plt.subplots(1, len(by_class), figsize=(6 * len(by_class), 4.5), squeeze=False)
        for ax, key in zip(axes[0], by_class):
            _bar_by_class(ax, tables[key], key)
        fig.tight_layout()
        plots["demographics.png"] = fig
    for name, fig in plots.items():
        atomic.save_figure(out / name, fig, dpi=100)
        plt.close(fig)

    md = [f"# Exploration: {title}", "", f"{len(frame)} images, {frame['lesion_id'].nunique()} lesions, "
          f"{int(frame['label'].sum())} malignant images ({100 * frame['label'].mean():.1f}%).", ""]
    for name, table in {**tables, "image size (sampled)": sizes}.items():
        md += [f"## {name}", "", table.to_markdown() if _has_tabulate() else "```\n" + table.to_string() + "\n```", ""]
    md += [f"![{n}]({n})" for n in plots]
    atomic.write_text(out / "summary.md", "\n".join(md) + "\n")

    body = [f"<h1>Exploration: {html.escape(title)}</h1>", f"<p>{html.escape(md[2])}</p>"]
    for name, table in {**tables, "image size (sampled)": sizes}.items():
        body += [f"<h2>{html.escape(name)}</h2>", table.to_html(border=0)]
    for name in plots:
        data = base64.b64encode((out / name).read_bytes()).decode()
        body.append(f'<h2>{name}</h2><img alt="{name}" src="data:image/png;base64,{data}">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skinlesion explore</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}</style>"
            "</head><body>" + "\n".join(body) + "</body></html>")
    return atomic.write_text(out / "summary.html", page)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
