"""The verbs that use a model bundle: `predict`, `explain`, `export` and `serve`."""
from __future__ import annotations

import sys
from pathlib import Path


def add_model_verbs(verb) -> None:
    p = verb("predict", "probability of malignancy for image files, folders or a CSV of paths")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders (recursive) or .csv lists of paths")
    p.add_argument("--out", metavar="CSV", help="write predictions here (default: print them)")
    p.add_argument("--tta", action="store_true", help="average over flips and a rotation")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default: 16)")
    p.add_argument("--num-workers", type=int, default=0, help="decoding workers (default: 0)")
    p.set_defaults(func=cmd_predict)

    p = verb("explain", "Grad-CAM overlays (PNG per image) for the malignant logit")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or .csv lists of paths")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <name>_gradcam.png files")
    p.set_defaults(func=cmd_explain)

    p = verb("export", "export a bundle to ONNX (dynamic batch), verified against PyTorch with onnxruntime")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="output model; preprocessing JSON is written beside it")
    p.add_argument("--images", nargs="*", metavar="IMAGE", help="images for the parity check (default: 3 random inputs)")
    p.set_defaults(func=cmd_export)

    p = verb("serve", "web page + REST API for one bundle (FastAPI, localhost by default)")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10, help="upload size limit in MB (default: 10)")
    p.set_defaults(func=cmd_serve)


def cmd_predict(args, cfg) -> int:
    from .inference.predict import predict_files
    if not args.quiet:
        from .inference.bundle import operating_point_line, read_config
        print(operating_point_line(read_config(Path(args.model))), file=sys.stderr)
    frame, failed = predict_files(args.model, args.inputs, args.out, args.tta, args.batch_size, args.num_workers,
                                  progress=not args.quiet)
    if args.out:
        print(f"wrote {len(frame)} rows to {args.out}")
    else:
        print(frame.to_csv(index=False), end="")
    if failed:
        print(f"{failed} of {len(frame)} file(s) failed (see the error column)", file=sys.stderr)
    return min(failed, 125)  # exit status: number of failed files (capped)


def cmd_explain(args, cfg) -> int:
    from .inference.gradcam import explain_files
    from .inference.predict import collect_inputs
    written, errors = explain_files(args.model, collect_inputs(args.inputs), args.out)
    for path in written:
        print(f"wrote {path}")
    for path, err in errors.items():
        print(f"failed: {err}", file=sys.stderr)
    return min(len(errors), 125)


def cmd_export(args, cfg) -> int:
    from .inference.export import export_onnx
    meta = export_onnx(args.model, args.out, args.images)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')} (onnxruntime parity: max |diff| "
          f"{meta['parity_max_abs_diff']:.2e} on {meta['parity_images']} inputs)")
    return 0


def cmd_serve(args, cfg) -> int:
    from .serving.app import serve
    print(f"serving {args.model} on http://{args.host}:{args.port}/ (API docs at /docs); research use only")
    serve(args.model, args.host, args.port, args.max_upload_mb)
    return 0
