"""`skinlesion audit`: near-duplicate images across lesion ids and label-leaking columns."""
from __future__ import annotations

from pathlib import Path

from ..cli_options import _add_data_opts
from ..config import ConfigError

NAME = "audit"
HELP = ("near-duplicate images across lesion ids (perceptual hashes) and label-leaking columns; with --run, the "
        "pairs that cross that run's splits")


def add_arguments(p) -> None:
    from ..data.audit import DEFAULT_THRESHOLD
    _add_data_opts(p)
    p.add_argument("--run", metavar="RUN_DIR", help="also report the pairs that cross this run's train/val/test")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                   help=f"largest pHash distance (bits of 64) called a near-duplicate (default: {DEFAULT_THRESHOLD})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.html, near_duplicates.csv, audit.json")


def main(args, cfg) -> int:
    from ..data.audit import audit, write_audit
    from ..data.formats import TableSpec
    from ..data.dataset import load_dataset
    from ..data.run import Run
    from ..paths import check_outputs
    if cfg.data.root is None:
        raise ConfigError("no data folder given: pass --data DIR")
    check_outputs([Path(args.out)], inputs=[Path(cfg.data.root)])
    split = Run(args.run).context().split if args.run else None
    ds = load_dataset(cfg.data.root, cfg.data.metadata, cfg.data.allow_missing, cfg.data.verify, not args.quiet,
                      spec=TableSpec.from_config(cfg.data))
    print(f"read as {ds.table.detected}")
    if split is not None:  # the run must have been made from this dataset, or "0 pairs cross" means nothing
        absent = sorted(set(split["image_id"]) - set(ds.frame["image_id"]))
        if absent:
            raise ConfigError(f"--run {args.run}: {len(absent)} of its {len(split)} images are not in {cfg.data.root} "
                              f"(e.g. {', '.join(absent[:3])}): the run was prepared from another dataset, so its "
                              "split cannot be checked against this one. Remedy: pass the --data the run was prepared "
                              f"from (recorded in {Run(args.run).split_json}), or drop --run.")
    result = audit(ds.frame, args.threshold, split, progress=not args.quiet)
    page = write_audit(result, args.out, str(cfg.data.root))
    s = result.summary
    print(f"{s['images']} images: {s['cross_group_pairs']} near-duplicate pair(s) across group ids in "
          f"{s['near_duplicate_groups']} group(s) (pHash distance <= {s['threshold']})")
    if "cross_split_pairs" in s:
        print(f"{s['cross_split_pairs']} pair(s) cross the splits of {args.run}"
              + (" -- re-split with `skinlesion prepare --merge-near-duplicates`" if s["cross_split_pairs"] else ""))
    for leak in result.leaks:
        print(f"warning: column {leak['column']!r} leaks the label (ROC-AUC alone {leak['roc_auc_alone']:.3f}): "
              f"{leak['why']}")
    print(f"report: {page}")
    return 0
