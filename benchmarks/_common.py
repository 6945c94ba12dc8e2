"""Shared helpers for the benchmark scripts (not part of the package or the tests)."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKINLESION_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> dict:
    import torch
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def imagenet_bundle(arch: str, image_size: int) -> Path:
    """A bundle of ImageNet weights + an untrained head (speed does not depend on the head's values)."""
    from skinlesion.data.transforms import Preprocessing
    from skinlesion.inference.bundle import bundle_config, save_bundle
    from skinlesion.models import build_model, get_spec
    spec = get_spec(arch, image_size)
    model = build_model(spec, "binary", pretrained=spec.weights != "timm-hub")
    out = Path(tempfile.mkdtemp(prefix="bench-bundle-")) / "bundle"
    return save_bundle(model, bundle_config(spec, Preprocessing.for_spec(spec), "binary", 0.3, {}, {}), out)


def write_results(out: str | None, result: dict, text: str) -> None:
    """OUT.json (the figures) and OUT.md (the printed table) when ``out`` is given."""
    if out:
        Path(out + ".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        Path(out + ".md").write_text("```\n" + text + "\n```\n")
        print(f"wrote {out}.json and {out}.md")


def write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


def table(rows: list[list], head: list[str]) -> str:
    rows = [[f"{x:.1f}" if isinstance(x, float) else str(x) for x in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])
