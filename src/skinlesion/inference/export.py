"""ONNX export with a dynamic batch axis, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..models.task import get_task
from .. import atomic
from ..errors import SkinlesionError
from ..data.images import ImageDecodeError
from ..labels import MALIGNANT_DX
from ..paths import check_outputs
from .bundle import load_bundle

PARITY_TOLERANCE = 1e-4


class ColourConstantGraph(torch.nn.Module):
    """For a bundle with colour constancy, the exported graph starts one step earlier: its input is the
    resized square (RGB values 0-255 as float32) and the graph runs shades-of-gray, the center crop and
    the normalisation itself, with the same torch operations as :class:`Preprocessing`."""

    def __init__(self, model: torch.nn.Module, pre):
        super().__init__()
        self.model, self.size = model, pre.image_size
        self.top = int(round((pre.resize_size - pre.image_size) / 2.0))  # torchvision's center_crop offsets
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor, *metadata: torch.Tensor) -> torch.Tensor:
        from ..data.transforms import shades_of_gray
        x = shades_of_gray(image)[..., self.top:self.top + self.size, self.top:self.top + self.size] / 255.0
        return self.model((x - self.mean) / self.std, *metadata)


class ParityError(SkinlesionError, RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def export_onnx(bundle_dir: str | Path, out: str | Path, sample_images: list[str] | None = None,
                opset: int = 17) -> dict:
    """Export the bundle's model (input ``image``: normalised NCHW float32; output ``logits``), verify
    parity on a few images, and write the preprocessing as ``<out>.json`` beside it."""
    import onnxruntime as ort

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ParityError(f"--out {out}: the ONNX model needs a .onnx name (its preprocessing JSON is written "
                          f"beside it as {out.with_suffix('.json').name}). Remedy: --out {out.with_suffix('.onnx')}")
    reference = out.with_suffix(".reference.png")
    check_outputs([out, out.with_suffix(".json"), reference], protected=[Path(bundle_dir)], inputs=sample_images or [])
    bundle = load_bundle(bundle_dir)
    pre, model = bundle.preprocessing, bundle.model.eval()
    s = pre.image_size
    encoder = bundle.encoder
    cc = bool(pre.colour_constancy)
    graph = ColourConstantGraph(model, pre).eval() if cc else model
    side = pre.resize_size if cc else s
    dummy = (torch.randn(2, 3, side, side).abs() * 100,) + ((torch.zeros(2, encoder.dim),) if encoder else ())
    names = ["image"] + (["metadata"] if encoder else [])
    raw = dataclasses.replace(pre, colour_constancy=None)  # the square before colour constancy: the graph's input
    with atomic.atomic_path(out) as tmp:
        torch.onnx.export(graph, dummy, str(tmp), input_names=names, output_names=["logits"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        if sample_images:
            try:
                squares = torch.stack([raw.load(p) for p in sample_images])
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"--images: {exc}. Remedy: pass decodable images, or omit --images to "
                                       "check parity on random inputs", exc.kind) from None
        else:
            squares = torch.stack([torch.randint(0, 256, (3, pre.resize_size, pre.resize_size), dtype=torch.uint8,
                                                 generator=torch.Generator().manual_seed(i)) for i in range(3)])
        x = torch.stack([pre.eval_transform()(pre.constancy(q)) for q in squares])  # what predict feeds the model
        feeds = {"image": squares.float().numpy() if cc else x.numpy()}
        if encoder:  # parity on real encodings: every field missing, and a filled-in row
            import pandas as pd
            rows = pd.DataFrame([{"age": 55 + 10 * i, "sex": ["male", "female", None][i % 3],
                                  "localization": ["back", None, "face"][i % 3]} for i in range(len(x))])
            rows.iloc[0] = None
            feeds["metadata"] = encoder.encode(rows)
        with torch.no_grad():
            expected = model(x, *([torch.from_numpy(feeds["metadata"])] if encoder else [])).numpy()
        got = session.run(["logits"], feeds)[0]
        diff = float(np.abs(expected - got).max())
        if diff > PARITY_TOLERANCE:
            raise ParityError(f"onnxruntime differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE}); model not written")
    meta = {"model": out.name, "input": ("image: float32 [batch, 3, %d, %d], RGB 0-255, the square after resize and "
                                         "center crop (the graph applies colour constancy, the center crop to %d "
                                         "and normalisation)" % (side, side, s)) if cc else
            "image: float32 [batch, 3, %d, %d], RGB, normalised" % (s, s)
            + (f"; metadata: float32 [batch, {encoder.dim}] encoded as described under 'metadata'" if encoder else ""),
            "metadata": encoder.to_dict() if encoder else None,
            "output": "logits: float32 [batch, %d]" % get_task(bundle.task).outputs,
            "probability": get_task(bundle.task).probability_formula
            + ("; the calibrated probability skinlesion reports is calibration.formula applied to it, with "
               "logit(p) = log(p / (1 - p)); decisions compare the uncalibrated p with threshold (equivalently the "
               "calibrated one with threshold_calibrated)" if bundle.config.get("calibration") else ""),
            "threshold_calibrated": (bundle.config.get("threshold") or {}).get("calibrated_value"),
            "preprocessing": pre.to_dict(), "threshold": bundle.threshold, "task": bundle.task,
            "class_names": bundle.config["class_names"], "calibration": bundle.config.get("calibration"),
            "parity_max_abs_diff": diff, "parity_images": len(x), "opset": opset,
            "preprocessing_steps": pre.steps(in_graph_from=4 if cc else None)}
    meta["reference"] = _reference(bundle, session, reference, encoder)
    atomic.write_json(out.with_suffix(".json"), meta)
    return meta


def reference_image(seed: int = 0, size: tuple[int, int] = (213, 161)) -> np.ndarray:
    """A deterministic lesion-like RGB test card (odd, non-square size, so every resize and crop rounding in
    preprocessing_steps is exercised)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot((xx - w * 0.47) / (w * 0.28), (yy - h * 0.55) / (h * 0.33))
    rng = np.random.default_rng(seed)
    skin = np.array([224.0, 172.0, 150.0]) + rng.normal(0, 6, (h, w, 3))
    lesion = np.array([120.0, 70.0, 55.0]) + 25 * np.sin(xx / 5.0)[..., None] + rng.normal(0, 8, (h, w, 3))
    mix = np.clip(1.5 - r, 0, 1)[..., None]
    return np.clip(skin * (1 - mix) + lesion * mix, 0, 255).astype(np.uint8)


def _reference(bundle, session, path: Path, encoder) -> dict:
    """Write the reference PNG (lossless, so every decoder reads the same pixels) and what the model gives
    for it: ONNX logits and skinlesion's probability and decision (metadata: every field missing)."""
    from PIL import Image
    from .predictor import Predictor
    import pandas as pd
    pixels = reference_image()
    with atomic.atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    pre = bundle.preprocessing
    square = pre.square(pixels)
    cc = bool(pre.colour_constancy)
    raw = dataclasses.replace(pre, colour_constancy=None).square(pixels)
    x = pre.eval_transform()(square).unsqueeze(0)
    feeds = {"image": raw.float().unsqueeze(0).numpy() if cc else x.numpy()}
    if encoder:
        feeds["metadata"] = encoder.encode(pd.DataFrame([{"age": None, "sex": None, "localization": None}]))
    logits = session.run(["logits"], feeds)[0][0]
    missing = pd.DataFrame([{"age": None, "sex": None, "localization": None}])
    row = Predictor(bundle, batch_size=1).predict([pixels], missing if encoder else None).iloc[0]
    # p(malignant) from onnxruntime's logits in float64 numpy, from the bundle's own class names: a reference
    # independent of the PyTorch path (and of models.task) that the predictor used above
    z = np.asarray(logits, dtype=np.float64)
    if get_task(bundle.task).binary:
        from_logits = float(1 / (1 + np.exp(-z[0])))
    else:
        e = np.exp(z - z.max())
        names = list(bundle.config["class_names"])
        from_logits = float(sum(e[i] for i, c in enumerate(names) if c in MALIGNANT_DX) / e.sum())
    return {"image": path.name, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
            "input_tensor_mean": float(x.mean()), "input_tensor_std": float(x.std()),
            "logits": [float(v) for v in logits], "probability_from_logits": from_logits,
            "probability": float(row["probability"]),
            "decision": str(row["decision"]), "probability_tolerance": 0.01,
            "check": "decode the PNG, follow preprocessing_steps, run the ONNX model: the formula under "
                     "'probability' gives probability_from_logits within probability_tolerance (and, compared with "
                     "'threshold', the same decision; 'probability' is skinlesion's output, calibrated if the bundle "
                     "is)"}
