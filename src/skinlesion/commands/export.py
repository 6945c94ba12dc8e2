"""`skinlesion export`: a bundle as ONNX, checked against PyTorch."""
from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "export a bundle to ONNX (dynamic batch), verified against PyTorch with onnxruntime"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder, or hf-hub:ORG/NAME[@REVISION]")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="output model; preprocessing JSON is written beside it")
    p.add_argument("--images", nargs="*", metavar="IMAGE", help="images for the parity check (default: 3 random inputs)")


def main(args, cfg) -> int:
    from ..inference.export import export_onnx
    meta = export_onnx(args.model, args.out, args.images)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')} (onnxruntime parity: max |diff| "
          f"{meta['parity_max_abs_diff']:.2e} on {meta['parity_images']} inputs)")
    return 0
