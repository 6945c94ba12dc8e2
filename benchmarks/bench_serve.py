"""Load on `skinlesion serve` over loopback: N uploads with K in flight; errors and latency percentiles.

    python benchmarks/bench_serve.py [--model BUNDLE] [--requests 200 --concurrency 8] [--explain] [--json out.json]

Starts the server itself on 127.0.0.1 (a free port), sends real JPEGs from
../shared/data/ham10000-fullres-sample, and stops the server at the end. Bounded in count and time.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _common import SHARED, imagenet_bundle, machine, table, write_json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--explain", action="store_true", help="ask for Grad-CAM too")
    ap.add_argument("--data", default=str(SHARED / "ham10000-fullres-sample"))
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import httpx

    bundle = Path(args.model) if args.model else imagenet_bundle(args.arch, args.image_size)
    files = [p.read_bytes() for p in sorted(Path(args.data).rglob("*.jpg"))[:50]]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "skinlesion", "serve", "--model", str(bundle), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        with httpx.Client(timeout=args.timeout) as client:
            for _ in range(240):
                try:
                    client.get(url + "/api/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.25)
            target = url + "/api/predict" + ("?explain=1" if args.explain else "")

            def one(i: int) -> tuple[float, int]:
                t = time.perf_counter()
                try:
                    r = client.post(target, files={"file": (f"{i}.jpg", files[i % len(files)], "image/jpeg")})
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1
                return 1000 * (time.perf_counter() - t), status

            one(0)  # warm-up
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)
    lat = np.array([r[0] for r in results])
    errors = sum(1 for r in results if r[1] != 200)
    result = {"machine": machine(), "requests": args.requests, "concurrency": args.concurrency, "explain": args.explain,
              "errors": errors, "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
              "max_ms": float(lat.max()), "requests_per_s": args.requests / wall, "wall_s": wall}
    print(table([[args.requests, args.concurrency, errors, result["p50_ms"], result["p95_ms"], result["requests_per_s"]]],
                ["requests", "in flight", "errors", "p50 ms", "p95 ms", "req/s"]))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
