"""Error analysis: the most confident mistakes at the bundle's threshold, each as the image beside its
Grad-CAM overlay, with dx, probability and age/sex/site; benign keratoses called malignant and missed
melanomas called out; for 7-class models the most-confused dx pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..models.task import get_task
from .. import atomic
from ..labels import DX_CODES

#: (key, title, rows chosen from the predictions at threshold t)
GROUPS = (
    ("false_negatives", "Most confident false negatives (malignant, lowest probability)",
     lambda f, t: f[(f["label"] == 1) & (f["probability"] < t)].sort_values("probability", kind="stable")),
    ("false_positives", "Most confident false positives (benign, highest probability)",
     lambda f, t: f[(f["label"] == 0) & (f["probability"] >= t)].sort_values("probability", ascending=False, kind="stable")),
    ("bkl_called_malignant", "Benign keratoses called malignant (the commonest confusion; beyond those above)",
     lambda f, t: f[(f["dx"] == "bkl") & (f["probability"] >= t)].sort_values("probability", ascending=False, kind="stable")),
    ("mel_missed", "Melanomas called benign (beyond those above)",
     lambda f, t: f[(f["dx"] == "mel") & (f["probability"] < t)].sort_values("probability", kind="stable")),
)


def confused_pairs(preds: pd.DataFrame, top: int = 5) -> list[dict]:
    """7-class: (true dx, predicted dx, count) for the most frequent off-diagonal pairs."""
    cols = [f"p_{d}" for d in DX_CODES]
    if not set(cols) <= set(preds.columns):
        return []
    predicted = np.array(DX_CODES)[preds[cols].to_numpy().argmax(1)]
    pairs = pd.Series(list(zip(preds["dx"], predicted)))
    pairs = pairs[[a != b for a, b in pairs]].value_counts().head(top)
    return [{"true": a, "predicted": b, "count": int(n)} for (a, b), n in pairs.items()]


def error_gallery(bundle, preds: pd.DataFrame, paths: dict[str, str], out_dir: Path, k: int = 8) -> dict:
    """Write ``plots/gallery/<group>_<i>.png`` (image | Grad-CAM) and return the listing for the report."""
    from ..inference.gradcam import gradcam, overlay
    t = bundle.threshold
    out: dict = {"threshold": t, "groups": {}}
    shown: set[str] = set()
    for key, title, pick in GROUPS:
        rows = []
        chosen = pick(preds, t)
        chosen = chosen[~chosen["image_id"].isin(shown)].head(k)  # each image under one heading only
        shown.update(chosen["image_id"])
        for i, row in enumerate(chosen.itertuples(index=False)):
            path = paths.get(row.image_id)
            entry = {"image_id": row.image_id, "dx": row.dx, "probability": float(row.probability),
                     **{c: (None if pd.isna(getattr(row, c, None)) else getattr(row, c))
                        for c in ("age", "sex", "localization") if c in preds.columns}}
            if path:
                try:
                    square = bundle.preprocessing.load(path)
                    maps, rgb = gradcam(bundle, square[None])
                    pair = Image.new("RGB", (2 * rgb.shape[2], rgb.shape[1]))
                    pair.paste(Image.fromarray((rgb[0] * 255).astype(np.uint8)), (0, 0))
                    pair.paste(overlay(rgb[0], maps[0]), (rgb.shape[2], 0))
                    target = out_dir / "plots" / "gallery" / f"{key}_{i}.png"
                    with atomic.atomic_path(target) as tmp:
                        pair.save(tmp, format="PNG")
                    entry["png"] = str(target.relative_to(out_dir))
                except Exception as exc:  # noqa: BLE001 - a missing or changed image leaves a text-only entry
                    entry["error"] = str(exc)[:200]
            rows.append(entry)
        out["groups"][key] = {"title": title, "items": rows}
    out["confused_pairs"] = confused_pairs(preds) if not get_task(bundle.task).binary else []
    return out
