"""Training speed per architecture and input size: phase 1 (frozen) the naive way vs the project's,
phase 2 (last stages trained), channels_last on and off.

    python benchmarks/bench_train.py [--archs efficientnet_lite0 resnet50 efficientnet_b0 convnext_tiny]
                                     [--sizes 160 224] [--batch-size 32] [--json out.json]

Phase-1 variants, images/s of one optimisation step on a random batch:
  naive-frozen   backbone parameters still require grad, optimizer holds only the head: the full
                 autograd graph is built and back-propagated through the backbone (a common mistake)
  requires-grad-off  backbone parameters frozen; BatchNorm in train mode
  project        skinlesion phase 1: backbone in eval mode under torch.no_grad()
  cached-features  head step on precomputed features (what --cache-features K runs after one
                 backbone pass per view)
"""
from __future__ import annotations

import argparse
import time

import torch

from _common import machine, table, write_json


def step_rate(step, batch: int, min_time: float = 2.0, max_steps: int = 10) -> float:
    step()  # warm-up
    n, t = 0, time.perf_counter()
    while n < max_steps and (time.perf_counter() - t < min_time or n < 1):
        step()
        n += 1
    return n * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["efficientnet_lite0", "resnet50", "efficientnet_b0", "convnext_tiny"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[160, 224])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    from skinlesion.models import build_model, get_spec, set_trainable

    device, b = torch.device(args.device), args.batch_size
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    rows, result = [], {"machine": machine(), "device": str(device), "batch_size": b, "runs": []}
    for arch in args.archs:
        for size in args.sizes:
            spec = get_spec(arch, size)
            model = build_model(spec, pretrained=False).to(device)
            y = torch.randint(0, 2, (b,), device=device).float()
            loss_fn = torch.nn.BCEWithLogitsLoss()
            r = {"arch": arch, "size": size}
            for cl in (True, False):
                fmt = torch.channels_last if cl else torch.contiguous_format
                model = model.to(memory_format=fmt)
                x = torch.randn(b, 3, size, size, device=device).contiguous(memory_format=fmt)

                def run(frozen_mode: str):
                    if frozen_mode == "phase2":
                        set_trainable(model, spec.unfreeze_groups)
                    else:
                        set_trainable(model, 0)
                    if frozen_mode == "naive-frozen":
                        for p in model.backbone.parameters():
                            p.requires_grad = True
                    params = model.head.parameters() if frozen_mode != "phase2" else [p for p in model.parameters() if p.requires_grad]
                    opt = torch.optim.AdamW(params, 1e-4)
                    model.train()
                    if frozen_mode == "project":
                        model.backbone.eval()

                    def step():
                        with amp:
                            if frozen_mode == "project":
                                with torch.no_grad():
                                    f = model.backbone(x)
                                out = model.forward_head(f)
                            else:
                                out = model(x)
                            loss = loss_fn(out.float().reshape(-1), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                    return step_rate(step, b)

                tag = "cl" if cl else "nchw"
                for mode in ("naive-frozen", "requires-grad-off", "project", "phase2"):
                    if not cl and mode in ("naive-frozen", "requires-grad-off"):
                        continue
                    r[f"{mode}_{tag}"] = run(mode)
            with torch.no_grad():
                feats = model.backbone.eval()(x)
            opt = torch.optim.AdamW(model.head.parameters(), 1e-4)

            def head_step():
                loss = loss_fn(model.forward_head(feats).reshape(-1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            r["cached-features"] = step_rate(head_step, b, min_time=0.5, max_steps=200)
            result["runs"].append(r)
            rows.append([arch, size, r["naive-frozen_cl"], r["requires-grad-off_cl"], r["project_cl"], r["project_nchw"],
                         f"{r['project_cl'] / r['naive-frozen_cl']:.1f}x", r["cached-features"], r["phase2_cl"], r["phase2_nchw"]])
            print(table(rows[-1:], ["arch", "px", "P1 naive", "P1 rg-off", "P1 ours", "P1 ours nchw", "ours/naive",
                                    "P1 cached feats", "P2 cl", "P2 nchw"]).splitlines()[-1], flush=True)
    print(table(rows, ["arch", "px", "P1 naive", "P1 rg-off", "P1 ours", "P1 ours nchw", "ours/naive",
                       "P1 cached feats", "P2 cl", "P2 nchw"]))
    print("images/s of one training step (batch %d, %s); cl = channels_last" % (b, device))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
