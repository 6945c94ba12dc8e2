"""`skinlesion predict`: probability of malignancy for image files, folders or CSV lists."""
from __future__ import annotations

import sys
from pathlib import Path

NAME = "predict"
HELP = "probability of malignancy for image files, folders or a CSV of paths"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder, or hf-hub:ORG/NAME[@REVISION]")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders (recursive) or .csv lists of paths")
    p.add_argument("--out", metavar="CSV", help="write predictions here (default: print them)")
    p.add_argument("--tta", action="store_true", help="average over flips and a rotation")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default: 16)")
    p.add_argument("--num-workers", type=int, default=0, help="decoding workers (default: 0)")


def main(args, cfg) -> int:
    from ..inference.predict import PredictOptions, predict_files
    if not args.quiet:
        from ..inference.bundle import operating_point_line, read_config
        print(operating_point_line(read_config(Path(args.model))), file=sys.stderr)
    opts = PredictOptions(args.tta, args.batch_size, args.num_workers, progress=not args.quiet)
    frame, failed = predict_files(args.model, args.inputs, args.out, opts)
    if args.out:
        print(f"wrote {len(frame)} rows to {args.out}")
    else:
        print(frame.to_csv(index=False), end="")
    if failed:
        print(f"{failed} of {len(frame)} file(s) failed (see the error column)", file=sys.stderr)
    return min(failed, 125)  # exit status: number of failed files (capped)
