"""`skinlesion demo`: the whole chain on synthetic HAM10000-layout data, offline."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from .config import RunConfig
from .data.prepare import prepare
from .data.synthetic import make_demo_data


def run_demo(cfg: RunConfig, out: str | Path | None = None, progress: bool = True, echo=print) -> dict:
    """Generate demo data into ``out/data`` and run the pipeline into ``out/run``; return the paths."""
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="skinlesion-demo-"))
    data_dir, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    echo(f"[1/2] generating {cfg.demo.n} synthetic images (seed {cfg.demo.seed}) -> {data_dir}")
    make_demo_data(data_dir, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=progress)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(data_dir), metadata=None))
    echo(f"[2/2] prepare: lesion-level split -> {run_dir}")
    result = prepare(cfg, run_dir, progress=progress)
    echo(result.report())
    echo(f"demo finished in {time.perf_counter() - t0:.1f}s; data in {data_dir}, run dir {run_dir}")
    return {"out": out, "data": data_dir, "run": run_dir}
