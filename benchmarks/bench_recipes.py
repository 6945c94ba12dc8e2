"""Recipe ablation on the low-res HAM10000 dev split: one fixed split, each variant trained with its own
recipe, then validation and test ROC-AUC / PR-AUC with lesion-bootstrap CIs, specificity at 90%
sensitivity, CPU minutes, and robustness under acquisition shift (a fixed, seeded set of image shifts
applied to the test split: colour cast, low contrast, half resolution, blur, JPEG q=30) with the drift of
the validation-tuned threshold's sensitivity under each.

    python benchmarks/bench_recipes.py --variants modern,finetune,classic      # ~25 CPU-min per variant
    python benchmarks/bench_recipes.py --report                                 # table + JSON of all done
    python benchmarks/bench_recipes.py --variants modern --name modern-192 --set train.image_size=192 --epochs 9

Each variant writes benchmarks/results/recipes/<variant>.json as soon as it finishes (a killed ablation
keeps the finished variants). Choose on validation; test and shifted test are reported.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from _common import REPO, SHARED, machine, table
from skinlesion.data.run import Run

RESULTS = REPO / "benchmarks" / "results" / "recipes"
SHIFTS = ("colour_cast", "low_contrast", "half_resolution", "blur", "jpeg_q30")


def shift(img: Image.Image, name: str) -> Image.Image:
    """Deterministic acquisition shifts (another dermatoscope's colour and contrast, a lower-resolution
    camera, defocus, heavy compression)."""
    if name == "colour_cast":  # warmer, slightly darker device: per-channel gains and a gamma
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = np.clip((a ** 1.15) * np.array([1.08, 0.96, 0.86]), 0, 1)
        return Image.fromarray((a * 255 + 0.5).astype(np.uint8))
    if name == "low_contrast":
        return ImageEnhance.Brightness(ImageEnhance.Contrast(img).enhance(0.65)).enhance(1.1)
    if name == "half_resolution":
        w, h = img.size
        return img.resize((w // 2, h // 2), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if name == "blur":
        return img.filter(ImageFilter.GaussianBlur(1.5))
    if name == "jpeg_q30":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    raise ValueError(name)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def auc_ci(frame, n_boot: int) -> dict:
    from skinlesion.evaluation.summary import auc_estimates
    return auc_estimates(frame, n_boot, 0)


def spec_at_sens(y, p, target: float = 0.90) -> float:
    from skinlesion.evaluation.thresholds import sensitivity_curve
    _, sens, spec = sensitivity_curve(y, p)
    return float(spec[np.flatnonzero(sens >= target)[0]])


def parse_sets(pairs: list[str]) -> dict:
    """``--set key=value`` pairs as config overrides (values parsed as YAML: 192 -> int, 0.1 -> float)."""
    import yaml
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected key=value, e.g. train.image_size=192")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_split(run: Path):
    """The run's bundle and its split joined with the metadata columns (for metadata models)."""
    from skinlesion.evaluation.evaluate import run_context
    from skinlesion.evaluation.site_data import META_COLUMNS
    from skinlesion.inference.bundle import load_bundle
    bundle = load_bundle(run / "bundle")
    return bundle, run_context(run, bundle, META_COLUMNS)[1]


def tta_aucs(run: Path, bundle, split, n_boot: int) -> dict:
    """Validation and test ROC-AUC / PR-AUC with test-time augmentation (the bundle's TTA views)."""
    from skinlesion.config import load_config
    from skinlesion.evaluation.evaluate import predict_split
    from skinlesion.evaluation.site_data import EvalOptions
    opts = EvalOptions(tta=True, num_workers=0, cache_dir=load_config(run / "config.yaml").train.cache_dir,
                       progress=False)
    return {which: auc_ci(predict_split(bundle, split, which, opts), n_boot) for which in ("val", "test")}


def run_variant(recipe: str, args) -> dict:
    import pandas as pd

    from skinlesion.config import load_config
    from skinlesion.data.images import load_rgb
    from skinlesion.data.prepare import prepare
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    from skinlesion.evaluation.tune import tune_threshold
    from skinlesion.inference.predictor import Predictor
    from skinlesion.training.fit import train

    out = Path(args.out)
    base = out / "_split"
    name, extra = args.name or recipe, parse_sets(args.set)
    overrides = {"data.root": str(args.data), "train.recipe": recipe, "train.arch": args.arch, **extra}
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.limit_train_batches:
        overrides["train.limit_train_batches"] = args.limit_train_batches
    cfg = load_config(overrides=overrides).validate()
    if not (base / "split.csv").is_file():
        prepare(cfg, Run.quiet(base))
    run = out / name
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    for f in ("split.csv", "split.json"):
        shutil.copy(base / f, run / f)
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = train(cfg, Run.quiet(run))
    train_wall, train_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    tune = tune_threshold(run, 0.90)
    test = evaluate_run(run, opts=EvalOptions(n_boot=args.bootstrap, progress=False)).metrics
    val = pd.read_csv(run / "val_predictions.csv", dtype={"image_id": str, "lesion_id": str})
    test_pred = pd.read_csv(run / "test_predictions.csv", dtype={"image_id": str, "lesion_id": str})
    from skinlesion.data.metadata import find_images
    images = find_images(args.data)
    bundle, split = run_split(run)
    predictor = Predictor(bundle, batch_size=64, calibrated=False)
    threshold = bundle.threshold
    y = test_pred["label"].to_numpy()
    row = {"variant": name, "recipe": recipe, "overrides": extra, "arch": args.arch,
           "image_size": bundle.config["preprocessing"]["image_size"], "epochs": result.epochs,
           "train_wall_min": train_wall / 60, "train_cpu_min": train_cpu / 60,
           "train_images_per_s": result.train_images_per_s, "config": bundle.config["recipe"],
           "val": auc_ci(val, args.bootstrap), "test": auc_ci(test_pred, args.bootstrap),
           "val_spec_at_90_sens": spec_at_sens(val["label"].to_numpy(), val["probability"].to_numpy()),
           "test_spec_at_90_sens": spec_at_sens(y, test_pred["probability"].to_numpy()),
           "threshold": threshold, "val_sensitivity_at_threshold": tune["chosen"]["sensitivity"],
           "test_sensitivity_at_threshold": test["at_threshold"]["sensitivity"]["value"], "shifts": {}}
    ids = test_pred["image_id"].tolist()
    meta = None  # a metadata model sees each test image's own age/sex/site under every shift
    if bundle.encoder is not None:
        meta = split.set_index("image_id").loc[ids].reset_index()
    for s in SHIFTS:
        probs = []
        for i in range(0, len(ids), 64):
            batch = [shift(load_rgb(images[k]), s) for k in ids[i:i + 64]]
            rows = None if meta is None else meta.iloc[i:i + 64]
            probs.append(predictor.predict(batch, rows)["probability"].to_numpy())
        shifted = test_pred.assign(probability=np.concatenate(probs))
        sens = float(((shifted["probability"] >= threshold) & (shifted["label"] == 1)).sum() / max(y.sum(), 1))
        row["shifts"][s] = {**auc_ci(shifted, args.bootstrap), "sensitivity_at_threshold": sens,
                            "sensitivity_drift": sens - row["test_sensitivity_at_threshold"]}
    if "metadata_ablation" in test:  # the same model with every metadata field missing, on the test split
        row["metadata_ablation"] = test["metadata_ablation"]
    row["tta"] = tta_aucs(run, bundle, split, args.bootstrap)
    row["shifted_mean_roc_auc"] = float(np.mean([v["roc_auc"]["value"] for v in row["shifts"].values()]))
    row["max_sensitivity_drift"] = float(max(abs(v["sensitivity_drift"]) for v in row["shifts"].values()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({**row, "machine": machine()}, indent=2) + "\n")
    print(f"{name}: done in {train_wall / 60:.1f} min", flush=True)
    return row


def report() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    ci = lambda d: f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    tta = lambda r, k: ci(r["tta"][k]["roc_auc"]) if "tta" in r else "not measured"
    head = ["variant", "px", "epochs", "train min", "val ROC-AUC", "val PR-AUC", "test ROC-AUC", "test PR-AUC",
            "test spec@90%sens", "shifted ROC-AUC (mean)", "worst shift ROC-AUC", "max abs sens drift",
            "val ROC-AUC (TTA)", "test ROC-AUC (TTA)"]
    body = [[r["variant"], r.get("image_size", 160), r["epochs"], f"{r['train_wall_min']:.1f}", ci(r["val"]["roc_auc"]), ci(r["val"]["pr_auc"]),
             ci(r["test"]["roc_auc"]), ci(r["test"]["pr_auc"]), f"{r['test_spec_at_90_sens']:.3f}",
             f"{r['shifted_mean_roc_auc']:.3f}", f"{min(v['roc_auc']['value'] for v in r['shifts'].values()):.3f}",
             f"{r['max_sensitivity_drift']:.3f}", tta(r, "val"), tta(r, "test")] for r in rows]
    md = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join("| " + " | ".join(map(str, b)) + " |" for b in body)
    (RESULTS.parent / "recipes_lowres.md").write_text(md + "\n")
    (RESULTS.parent / "recipes_lowres.json").write_text(json.dumps(rows, indent=2) + "\n")
    return table(body, head)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ham10000-lowres"))
    ap.add_argument("--out", default=str(REPO / "runs" / "recipes"))
    ap.add_argument("--variants", default="modern,finetune,classic")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--name", default=None, help="the variant's name in the table (one variant; default: the recipe)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for the variant, e.g. train.image_size=192 (repeatable)")
    ap.add_argument("--epochs", type=int, default=None, help="override every variant's epochs (same budget)")
    ap.add_argument("--limit-train-batches", type=float, default=None, help="smoke runs only")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--add-tta", action="store_true", help="add the TTA columns to finished variants that lack them")
    ap.add_argument("--report", action="store_true", help="only print/write the table of finished variants")
    args = ap.parse_args()
    if args.add_tta:  # variants measured before the TTA columns existed: their runs are still in --out
        for path in sorted(RESULTS.glob("*.json")):
            row = json.loads(path.read_text())
            if "tta" not in row and (Path(args.out) / row["variant"] / "bundle").is_dir():
                run = Path(args.out) / row["variant"]
                row["tta"] = tta_aucs(run, *run_split(run), args.bootstrap)
                path.write_text(json.dumps(row, indent=2) + "\n")
        print(report())
        return 0
    if args.name and "," in args.variants:
        ap.error("--name names one variant: give one recipe in --variants")
    if not args.report:
        if not (Path(args.data) / "HAM10000_metadata.csv").is_file():
            print(f"no data at {args.data} (set --data)", file=sys.stderr)
            return 2
        for name in args.variants.split(","):
            run_variant(name.strip(), args)
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
