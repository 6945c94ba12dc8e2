"""Batch prediction from a bundle: paths, PIL images or arrays in; probabilities out."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..models.task import get_task
from .. import console
from ..data.images import ImageDecodeError, _to_rgb, check_dimensions
from ..models.classifier import class_probabilities, tta_views
from .bundle import Bundle, load_bundle



@torch.inference_mode()
def forward_probs(model, x: torch.Tensor, task: str, tta: bool = False,
                  meta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(p(malignant) of shape (N,), class probabilities (N, C)), averaged over TTA views; ``meta``: encoded
    patient metadata for models trained with it (None: every field missing)."""
    views = [v.contiguous(memory_format=torch.channels_last) for v in tta_views(x, tta)]
    call = (lambda v: model(v)) if meta is None else (lambda v: model(v, meta.to(v.device)))
    classes = torch.stack([class_probabilities(call(v), task) for v in views]).mean(0)
    return get_task(task).p_malignant(classes), classes


def probability_columns(task: str, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dx probability columns for a 7-class model (none for binary)."""
    return get_task(task).probability_columns(classes)


def prediction_frame(rows: pd.DataFrame, prob: np.ndarray, classes: np.ndarray, task: str) -> pd.DataFrame:
    """image_id, lesion_id, dx, label of ``rows`` with p(malignant) and, for 7 classes, p_<dx>."""
    out = rows.loc[:, ["image_id", "lesion_id", "dx", "label"]].reset_index(drop=True)
    # float64 holds every float32 exactly and its CSV text round-trips exactly, so a threshold tuned on these
    # numbers compares with the model's own output in one precision (no image flips at the threshold)
    out["probability"] = np.asarray(prob, dtype=np.float64)
    for k, v in probability_columns(task, classes).items():
        out[k] = v
    return out


class Predictor:
    """``Predictor.from_bundle(path).predict(images)``: the bundle's preprocessing, batched, optional TTA."""

    def __init__(self, bundle: Bundle, device: str = "cpu", batch_size: int = 16, tta: bool = False,
                 calibrated: bool = True):
        from .bundle import check_inference_mode
        check_inference_mode(bundle.config, tta)
        self.bundle, self.device, self.batch_size, self.tta = bundle, torch.device(device), batch_size, tta
        from ..evaluation.calibration import Calibration
        self.calibration = Calibration.from_config(bundle.config.get("calibration")) if calibrated else None
        # channels_last: ~1.3-1.7x faster on CPU for these CNNs (measured in benchmarks/bench_infer.py)
        self.model = bundle.model.to(self.device, memory_format=torch.channels_last).eval()
        self.pre = bundle.preprocessing
        self._eval = self.pre.eval_transform()

    @classmethod
    def from_bundle(cls, path: str | Path, **kwargs) -> "Predictor":
        return cls(load_bundle(path), **kwargs)

    @property
    def threshold(self) -> float:
        """The bundle's threshold, expressed on the (calibrated, if the bundle is) probability scale."""
        if self.calibration is None:
            return self.bundle.threshold
        return float(self.calibration.apply(self.bundle.threshold))

    def square(self, image) -> torch.Tensor:
        """Path, PIL image or HxWx3 / HxW array -> the bundle's cached square uint8 form."""
        if isinstance(image, (str, Path)):
            return self.pre.load(image)
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3):
                raise ImageDecodeError(f"array of shape {image.shape}: expected H x W or H x W x 3", "bad_shape")
            check_dimensions(image.shape[1], image.shape[0], "array")
            image = Image.fromarray(image)
        if isinstance(image, Image.Image):
            return self.pre.square(_to_rgb(image))
        raise TypeError(f"cannot predict on {type(image).__name__}; pass a path, a PIL image or a numpy array")

    def predict_squares(self, squares: torch.Tensor, metadata=None) -> tuple[np.ndarray, np.ndarray]:
        """(p(malignant), class probabilities) for a uint8 batch of squares; ``metadata``: a frame of
        age/sex/localization rows (any missing) for models trained with metadata, else ignored."""
        x = torch.stack([self._eval(s) for s in squares]).to(self.device)
        p, classes = forward_probs(self.model, x, self.bundle.task, self.tta, self.bundle.encode_metadata(metadata))
        return p.cpu().numpy(), classes.cpu().numpy()

    def predict(self, images, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per image: probability, decision at the bundle's threshold, threshold (+ p_<dx>).
        ``metadata``: one row per image (age, sex, localization; any may be missing) for metadata models."""
        probs, classes = [], []
        for start in range(0, len(images), self.batch_size):
            squares = torch.stack([self.square(im) for im in images[start:start + self.batch_size]])
            rows = None if metadata is None else metadata.iloc[start:start + self.batch_size]
            p, c = self.predict_squares(squares, rows)
            probs.append(p)
            classes.append(c)
        return self.to_frame(np.concatenate(probs) if probs else np.zeros(0),
                           np.concatenate(classes) if classes else np.zeros((0, 2)))

    def to_frame(self, prob: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
        """Rows of probability (calibrated if the bundle is; then also probability_raw), decision, threshold.

        The decision compares the model's own probability with the tuned threshold in float64, exactly as
        tune-threshold did, so calibration (monotonic) never flips an image sitting on the threshold. For a
        calibrated 7-class model the p_<dx> columns are rescaled so that p_akiec + p_bcc + p_mel equals the
        calibrated probability."""
        raw = prob = np.asarray(prob, dtype=np.float64)
        decision = np.where(raw >= self.bundle.threshold, "malignant", "benign")
        if self.calibration is not None:
            from ..evaluation.calibration import rescale_classes
            prob = self.calibration.apply(raw)
            if not get_task(self.bundle.task).binary:  # p_<dx> columns summing to the calibrated p(malignant)
                classes = rescale_classes(classes, raw, prob)
        out = pd.DataFrame({"probability": prob})
        if self.calibration is not None:
            out["probability_raw"] = raw  # the model's own score, before calibration
        out["decision"] = decision
        out["threshold"] = self.threshold
        for k, v in probability_columns(self.bundle.task, classes).items():
            out[k] = v
        return out

    def predict_paths(self, paths: list[str], num_workers: int = 0, progress: bool = True,
                      metadata: pd.DataFrame | None = None) -> pd.DataFrame:
        """Predict files in batches with DataLoader workers; undecodable files get a row with ``error``.
        ``metadata``: one row per path (age, sex, localization) for models trained with metadata."""

        loader = torch.utils.data.DataLoader(_PathSquares(paths, self.pre), batch_size=self.batch_size,
                                             num_workers=num_workers, collate_fn=_collate)
        rows = []
        with console.bar(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
            for ok_idx, squares, errors in loader:
                if len(ok_idx):
                    meta_rows = None if metadata is None else metadata.iloc[list(ok_idx)]
                    p, c = self.predict_squares(squares, meta_rows)
                    frame = self.to_frame(p, c)
                    frame.insert(0, "path", [paths[i] for i in ok_idx])
                    frame["error"] = ""
                    rows.append(frame)
                if errors:
                    rows.append(pd.DataFrame({"path": [paths[i] for i, _ in errors], "probability": math.nan,
                                              "decision": "", "threshold": self.threshold,
                                              "error": [e for _, e in errors]}))
                bar.update(len(ok_idx) + len(errors))
        if not rows:
            return pd.DataFrame(columns=["path", "probability", "decision", "threshold", "error"])
        out = pd.concat(rows, ignore_index=True)
        order = {p: i for i, p in enumerate(paths)}
        return out.sort_values("path", key=lambda s: s.map(order)).reset_index(drop=True)


class _PathSquares(torch.utils.data.Dataset):
    def __init__(self, paths, pre):
        self.paths, self.pre = paths, pre

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.pre.load(self.paths[i]), None
        except ImageDecodeError as exc:
            return i, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad file never takes the batch down with it
            return i, None, f"{self.paths[i]}: cannot be used ({type(exc).__name__}: {str(exc)[:200]})"


def _collate(items):
    ok = [(i, x) for i, x, e in items if e is None]
    errors = [(i, e) for i, x, e in items if e is not None]
    squares = torch.stack([x for _, x in ok]) if ok else torch.zeros(0)
    return [i for i, _ in ok], squares, errors
