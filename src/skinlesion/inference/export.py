"""ONNX export with a dynamic batch axis, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..errors import SkinlesionError
from ..data.images import ImageDecodeError
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
    check_outputs([out, out.with_suffix(".json")], protected=[Path(bundle_dir)], inputs=sample_images or [])
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
            "output": "logits: float32 [batch, %d]" % (1 if bundle.task == "binary" else 7),
            "probability": "sigmoid(logits[:, 0])" if bundle.task == "binary" else
            "softmax(logits); p(malignant) = p(akiec) + p(bcc) + p(mel)",
            "preprocessing": pre.to_dict(), "threshold": bundle.threshold, "task": bundle.task,
            "class_names": bundle.config["class_names"], "calibration": bundle.config.get("calibration"),
            "parity_max_abs_diff": diff, "parity_images": len(x), "opset": opset}
    atomic.write_json(out.with_suffix(".json"), meta)
    return meta
