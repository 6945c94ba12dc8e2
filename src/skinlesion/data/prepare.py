"""The `prepare` stage: validate a dataset and write the run's lesion-level split."""
from __future__ import annotations

from dataclasses import dataclass
import sys
from pathlib import Path

import pandas as pd

from ..config import ConfigError, RunConfig, save_config
from .dataset import LoadedDataset, load_dataset
from .run import Run, check_no_model
from .split import check_both_classes, check_ratios, format_table, make_split, summarize


@dataclass
class PrepareResult:
    """What `prepare` produced: the split frame, its summary (split.json) and the dataset report."""

    run_dir: Path
    split: pd.DataFrame
    summary: dict
    dataset: LoadedDataset

    def report(self) -> str:
        """Human-readable summary: dropped images (if any) and the per-split table."""
        lines = [f"dataset: {self.dataset.metadata_path} ({len(self.dataset.frame)} usable images)",
                 f"read as {self.dataset.table.detected}"]
        if self.dataset.missing_ids:
            lines.append(f"dropped {len(self.dataset.missing_ids)} missing image(s): {', '.join(self.dataset.missing_ids[:20])}")
        if self.dataset.corrupt:
            lines.append(f"dropped {len(self.dataset.corrupt)} corrupt image(s): {', '.join(list(self.dataset.corrupt)[:20])}")
        merged = self.summary["dataset"].get("near_duplicates_merged")
        if merged is not None:
            lines.append(f"near-duplicates: {merged['pairs']} pair(s) across lesion ids (pHash distance <= "
                         f"{merged['threshold']}); {merged['groups_joined']} lesion id(s) joined into others' groups")
        folds = self.summary.get("folds")
        lines.append(f"split (seed {self.summary['seed']}, ratios {self.summary['ratios']}"
                     + (f", {folds} folds, fold 0 as val" if folds else "") + "):")
        lines.append(format_table(self.summary))
        lines.append(f"wrote {Run(self.run_dir).split_csv} and {Run(self.run_dir).split_json}")
        return "\n".join(lines)


def prepare(cfg: RunConfig, run: Run | str | Path) -> PrepareResult:
    """Validate ``cfg.data``, split by lesion, and write split.csv, split.json and config.yaml."""
    run = Run.of(run)
    run_dir, progress = run.path, run.console.progress
    if cfg.data.root is None:
        raise ConfigError("no data folder given: pass --data DIR (the folder with HAM10000_metadata.csv)")
    check_ratios(cfg.split.ratios)
    check_no_model(run_dir)
    from .formats import TableSpec, check_task
    dataset = load_dataset(cfg.data.root, cfg.data.metadata, cfg.data.allow_missing, cfg.data.verify, progress,
                           spec=TableSpec.from_config(cfg.data))
    check_task(dataset.frame, cfg.train.task, str(dataset.metadata_path))
    merged = None
    if cfg.data.merge_near_duplicates:
        from .audit import DEFAULT_THRESHOLD, cross_group_pairs, image_hashes, merge_near_duplicates
        pairs = cross_group_pairs(dataset.frame, image_hashes(dataset.frame["path"].tolist(), progress), DEFAULT_THRESHOLD)
        dataset.frame = merge_near_duplicates(dataset.frame, pairs)
        mixed = dataset.frame.groupby("lesion_id")["dx"].nunique()
        mixed = dataset.frame[dataset.frame["lesion_id"].isin(mixed.index[mixed > 1])]
        if len(mixed):  # the same photograph labelled benign and malignant: label noise the user must see
            print(f"warning: --merge-near-duplicates joined near-identical images with different diagnoses "
                  f"into one group ({len(mixed)} images, e.g. "
                  + ", ".join(f"{r.image_id} ({r.dx})" for r in mixed.head(4).itertuples())
                  + "); they are kept and stay on one side of the split, but their labels conflict. Check them "
                  "with `skinlesion audit` (listed in split.json under near_duplicates_merged.conflicting_labels).",
                  file=sys.stderr)
        merged = {"pairs": int(len(pairs)), "threshold": DEFAULT_THRESHOLD,
                  "conflicting_labels": mixed[["image_id", "original_lesion_id", "dx"]].to_dict("records"),
                  "groups_joined": int(dataset.frame["original_lesion_id"].nunique() - dataset.frame["lesion_id"].nunique())
                  if len(pairs) else 0}
    split = make_split(dataset.frame, cfg.split.seed, cfg.split.ratios, cfg.split.folds)
    check_both_classes(split, cfg.split.ratios, source=str(dataset.metadata_path))
    summary = summarize(split, cfg.split.seed, cfg.split.ratios, cfg.split.folds)
    summary["dataset"] = {"root": str(Path(cfg.data.root).resolve()), "metadata": str(dataset.metadata_path.resolve()),
                          "usable_images": int(len(dataset.frame)), "missing_ids": dataset.missing_ids,
                          "corrupt_ids": sorted(dataset.corrupt), "format": dataset.record()}
    if merged is not None:
        summary["dataset"]["near_duplicates_merged"] = merged
        summary["dataset"]["format"]["group_source"] += " + near-duplicate merge"
    run_dir.mkdir(parents=True, exist_ok=True)
    run.write_split(split, summary)
    save_config(cfg, run_dir)
    return PrepareResult(run_dir, split, summary, dataset)
