"""`skinlesion explain`: Grad-CAM overlays for the malignant logit."""
from __future__ import annotations

import sys

NAME = "explain"
HELP = "Grad-CAM overlays (PNG per image) for the malignant logit"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder, or hf-hub:ORG/NAME[@REVISION]")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or .csv lists of paths")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <name>_gradcam.png files")


def main(args, cfg) -> int:
    from ..inference.gradcam import explain_files
    from ..inference.predict import collect_inputs
    written, errors = explain_files(args.model, collect_inputs(args.inputs), args.out)
    for path in written:
        print(f"wrote {path}")
    for path, err in errors.items():
        print(f"failed: {err}", file=sys.stderr)
    return min(len(errors), 125)
