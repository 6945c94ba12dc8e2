"""A user's site dataset: read it (refusing images the model trained on), the model's own predictions on
every image, and how far the bundle's operating point drifted there. Shared by `evaluate --data` and `adapt`."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..data.cache import default_num_workers
from ..data.dataset import load_dataset
from ..errors import DataError
from ..inference.bundle import Bundle, overlap_with_training
from ..inference.predictor import Predictor
from .metrics import threshold_metrics
from .thresholds import threshold_for_sensitivity

META_COLUMNS = ("age", "sex", "localization", "dx_type")


@dataclass(frozen=True)
class EvalOptions:
    """How every evaluation predicts and resamples (one object instead of the same seven parameters)."""

    tta: bool = False
    n_boot: int = 1000  # lesion-bootstrap resamples
    seed: int = 0
    batch_size: int = 64
    num_workers: int | None = None  # None: min(4, cores / 2)
    cache_dir: str | None = None  # the decoded-image cache (None: the default folder)
    progress: bool = True


@dataclass(frozen=True)
class SiteData:
    """An external dataset: its folder, how to read its table (data.formats.TableSpec; None: auto-detect)
    and the share of listed images that may be missing or undecodable."""

    data: str
    spec: object = None
    allow_missing: float = 0.0
#: A set is flagged when the sensitivity reached at the bundle's threshold misses the target by more than this.
DRIFT_TOLERANCE = 0.05


def threshold_drift(preds: pd.DataFrame, threshold: float, target: float | None) -> dict:
    """Sensitivity and specificity reached at ``threshold`` on these predictions, and the highest threshold
    that would reach ``target`` sensitivity here (None when the bundle states no target)."""
    y, p = preds["label"].to_numpy(), preds["probability"].to_numpy()
    reached = threshold_metrics(y, p, threshold)
    sens, spec = reached["sensitivity"], reached["specificity"]
    out = {"threshold": threshold, "target_sensitivity": target, "sensitivity_reached": sens,
           "specificity_reached": spec, "threshold_needed": None, "flag": None}
    if target is not None and 0 < y.sum() < len(y):
        out["threshold_needed"] = threshold_for_sensitivity(y, p, target)
        if sens < target - DRIFT_TOLERANCE:
            out["flag"] = (f"sensitivity {sens:.3f} at the bundle's threshold is below the {target:.2f} target: the "
                           f"threshold does not transfer (this set would need {out['threshold_needed']:.4f})")
        elif sens > target + DRIFT_TOLERANCE:
            out["flag"] = (f"sensitivity {sens:.3f} is above the {target:.2f} target at the cost of specificity "
                           f"({spec:.3f}); this set would need {out['threshold_needed']:.4f}")
    return out


def read_site(bundle: Bundle, data, spec, allow_missing: float, progress: bool, remedy: str):
    """An external (site) dataset in any format, refused if it holds images the model trained or was
    selected on: scoring or tuning on them would overstate the model."""
    ds = load_dataset(data, None, allow_missing, verify=False, progress=progress, spec=spec)
    if progress:
        print(f"{data}: read as {ds.table.detected}")
    seen = overlap_with_training(bundle.config, ds.frame["image_id"])
    if seen:
        raise DataError(f"{len(seen)} of the {len(ds.frame)} images in {data} were used to train or select this "
                        f"model (e.g. {', '.join(seen[:5])}); using them would overstate its accuracy. Remedy: "
                        f"{remedy}.")
    return ds


def site_predictions(bundle: Bundle, ds, tta: bool, num_workers, progress: bool, batch_size: int = 64) -> pd.DataFrame:
    """One row per image of a site dataset: ids, label, metadata columns and the model's own (uncalibrated)
    probability; any undecodable image is an error (a site's numbers must cover every image)."""
    predictor = Predictor(bundle, batch_size=batch_size, tta=tta, calibrated=False)
    out = predictor.predict_paths(ds.frame["path"].tolist(), default_num_workers(num_workers), progress,
                                  metadata=ds.frame)
    failed = out[out["error"] != ""]
    if len(failed):
        raise DataError(f"{len(failed)} image(s) could not be decoded: " + "; ".join(failed["error"].head(5))
                        + ". Remedy: fix or remove them (run `skinlesion prepare --verify` to list all).")
    preds = ds.frame.loc[:, ["image_id", "lesion_id", "dx", "label", *[c for c in META_COLUMNS if c in ds.frame]]].copy()
    preds["probability"] = out["probability"].to_numpy()
    for col in [c for c in out.columns if c.startswith("p_")]:
        preds[col] = out[col].to_numpy()
    return preds
