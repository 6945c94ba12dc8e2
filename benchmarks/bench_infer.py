"""Inference speed of `predict`: batch throughput and single-image latency, PyTorch eager vs ONNX Runtime.

    python benchmarks/bench_infer.py [--model BUNDLE | --arch efficientnet_lite0 --image-size 224] [--json out.json]

Reads ../shared/data/ham10000-fullres-sample (600x450 JPEGs). Prints a table and the ONNX/eager ratio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import SHARED, imagenet_bundle, machine, table, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundle to measure (default: ImageNet --arch with an untrained head)")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--data", default=str(SHARED / "ham10000-fullres-sample"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=50, help="single-image latency samples")
    ap.add_argument("--json")
    args = ap.parse_args()

    import onnxruntime as ort
    from skinlesion.inference.export import export_onnx
    from skinlesion.inference.predictor import Predictor

    bundle = Path(args.model) if args.model else imagenet_bundle(args.arch, args.image_size)
    paths = sorted(str(p) for p in Path(args.data).rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no JPEGs below {args.data}")
    predictor = Predictor.from_bundle(bundle, batch_size=args.batch_size)
    cfg = predictor.bundle.config
    print(f"{cfg['architecture']} at {cfg['preprocessing']['image_size']}px, {len(paths)} images from {args.data}; {machine()}")
    predictor.predict(paths[:4])  # warm-up

    rows, result = [], {"machine": machine(), "architecture": cfg["architecture"],
                        "image_size": cfg["preprocessing"]["image_size"], "images": len(paths)}
    for workers in (0, 1):
        t = time.perf_counter()
        frame = predictor.predict_paths(paths, num_workers=workers, progress=False)
        dt = time.perf_counter() - t
        assert (frame["error"] == "").all()
        rows.append([f"predict end to end (decode+preprocess+model), {workers} workers", len(paths) / dt, ""])
        result[f"predict_images_per_s_workers{workers}"] = len(paths) / dt

    latencies = []
    for i in range(args.repeats + 5):
        t = time.perf_counter()
        predictor.predict([paths[i % len(paths)]])
        if i >= 5:
            latencies.append(1000 * (time.perf_counter() - t))
    result["single_image_latency_ms_median"] = statistics.median(latencies)
    rows.append(["single image, end to end (median of %d)" % args.repeats, "", statistics.median(latencies)])

    # model only: eager vs ONNX Runtime on the same preprocessed batch
    onnx_path = Path(tempfile.mkdtemp()) / "m.onnx"
    export_onnx(bundle, onnx_path, paths[:3])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    pre = predictor.bundle.preprocessing
    x = torch.stack([pre.eval_transform()(pre.load(p)) for p in paths[: args.batch_size]])
    model = predictor.model.eval()  # channels_last, as the Predictor runs it

    def eager(batch):
        with torch.inference_mode():
            return model(batch.contiguous(memory_format=torch.channels_last))

    def onnx(batch):
        return session.run(["logits"], {"image": batch.numpy()})

    for name, fn in (("PyTorch eager", eager), ("ONNX Runtime", onnx)):
        fn(x)
        t = time.perf_counter()
        for _ in range(3):
            fn(x)
        ips = 3 * len(x) / (time.perf_counter() - t)
        one = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn(x[:1])
            one.append(1000 * (time.perf_counter() - t))
        rows.append([f"model only, {name}, batch {len(x)}", ips, statistics.median(one)])
        result[f"model_{name.split()[0].lower()}_images_per_s"] = ips
        result[f"model_{name.split()[0].lower()}_latency_ms_median"] = statistics.median(one)
    result["onnx_over_eager_throughput"] = result["model_onnx_images_per_s"] / result["model_pytorch_images_per_s"]
    print(table(rows, ["measure", "images/s", "latency ms"]))
    print(f"ONNX Runtime / eager throughput ratio: {result['onnx_over_eager_throughput']:.2f}x")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
