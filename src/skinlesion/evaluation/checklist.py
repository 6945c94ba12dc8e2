"""A reporting checklist for the model card: the TRIPOD+AI (Collins et al., BMJ 2024) and CLAIM 2024
(Tejani et al., Radiol AI 2024) items that a run can fill from its own files, and the ones the author must
still write. Pure functions of the metrics, the bundle config and the split summary (no I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from ..models.task import get_task

AUTHOR = "author"
FILLED = "filled"


@dataclass(frozen=True)
class Item:
    topic: str
    refs: str  # guideline item numbers
    status: str  # filled | author | partly
    text: str


def _counts(split: dict | None) -> str:
    if not split or "counts" not in split:
        return ""
    c = split["counts"]
    return "; ".join(f"{s}: {c[s]['images']} images, {c[s]['lesions']} lesions, {c[s]['malignant_images']} malignant"
                     for s in ("train", "val", "test") if s in c)


def checklist(metrics: dict, config: dict, split: dict | None = None) -> list[Item]:
    """Every item, filled where the run knows the answer."""
    td = config.get("training_data") or {}
    recipe = config.get("recipe") or {}
    meta = config.get("metadata")
    ds = (split or {}).get("dataset") or {}
    dropped = len(ds.get("missing_ids", [])) + len(ds.get("corrupt_ids", []))
    items = [
        Item("Data source", "TRIPOD+AI 6a; CLAIM 7", "partly",
             f"images and labels from `{td.get('dataset_root') or ds.get('root')}` (metadata `{ds.get('metadata')}`). "
             "Still to write: the data's origin (centres, devices) and the dates of collection."),
        Item("Eligibility, inclusion and exclusion", "TRIPOD+AI 7a; CLAIM 8", "partly",
             f"every image of every lesion listed in the metadata CSV was used; {dropped} image(s) were dropped as "
             "missing or undecodable (ids in split.json). Still to write: the clinical inclusion criteria."),
        Item("Outcome and reference standard", "TRIPOD+AI 8a; CLAIM 9-10", "partly",
             "malignant = akiec, bcc or mel; benign = nv, bkl, df or vasc (HAM10000 dx codes"
             + ("" if get_task(config.get("task") or "binary").binary else ", 7-class output") + "). Still to write: how each diagnosis "
             "was confirmed (histopathology, follow-up, expert consensus, confocal) and by whom."),
        Item("Predictors / inputs", "TRIPOD+AI 9a; CLAIM 13", FILLED,
             "the dermoscopic image" + (f" and patient metadata ({', '.join(meta['fields'])}; `dx_type` refused because "
                                        "it encodes the label)" if meta else " only")),
        Item("Sample size and class balance", "TRIPOD+AI 10; CLAIM 19", FILLED if split else AUTHOR,
             _counts(split) or "the split summary (split.json) is not available to this report."),
        Item("Missing data", "TRIPOD+AI 11; CLAIM 21", FILLED,
             f"{dropped} image(s) missing or corrupt, dropped and listed"
             + ("; missing metadata fields are encoded as missing (a flag / an 'unknown' slot), and fields were hidden at "
                "random in training" if meta else "")),
        Item("Data partitions", "TRIPOD+AI 12a; CLAIM 20", FILLED,
             f"lesion-level split (every image of a lesion in one partition), dx-stratified, seed {td.get('seed')}"
             + (f"; ratios {split.get('ratios')}" if split else "")
             + (f"; {split.get('folds')}-fold cross-validation with the test share held out" if (split or {}).get("folds") else "")
             + f"; split fingerprint `{str(td.get('split_fingerprint'))[:16]}`"),
        Item("Model", "TRIPOD+AI 12c; CLAIM 22-24", FILLED,
             f"`{config.get('architecture')}` (timm `{config.get('timm_id')}`), ImageNet-pretrained, input "
             f"{(config.get('preprocessing') or {}).get('image_size')} px"
             + (f"; an ensemble of {config['ensemble']['size']} fold models ({config['ensemble']['combine']})"
                if config.get("ensemble") else "")),
        Item("Training details", "TRIPOD+AI 12c; CLAIM 25-26", FILLED if recipe else "partly",
             ", ".join(f"{k} {v}" for k, v in recipe.items()) if recipe else "see the run's config.yaml"),
        Item("Decision threshold", "CLAIM 27", FILLED, f"{metrics['threshold']['value']:.4f}: {metrics['threshold']['source']}"),
        Item("Calibration", "TRIPOD+AI 12e, 23a", FILLED,
             (f"{(metrics['calibration']['calibration'] or {}).get('method')} "
              f"({(metrics['calibration']['calibration'] or {}).get('formula')}), fit on validation; "
              if (metrics.get("calibration") or {}).get("calibration") else "not recalibrated; ")
             + "Brier score, ECE and a reliability diagram are reported"),
        Item("Performance with confidence intervals", "TRIPOD+AI 23a; CLAIM 29-30", FILLED,
             f"{metrics['data']}: {metrics['n_images']} images; every metric with a 95% lesion-bootstrap CI "
             f"({metrics['bootstrap']['resamples']} resamples)"),
        Item("Subgroups and fairness", "TRIPOD+AI 23b; CLAIM 31", FILLED if metrics.get("subgroups") else AUTHOR,
             ("ROC-AUC, sensitivity and specificity with CIs by " + ", ".join(metrics["subgroups"]))
             if metrics.get("subgroups") else "no age/sex/site columns: subgroup results cannot be computed here; "
             "skin type is not recorded in HAM10000"),
        Item("External validation", "TRIPOD+AI 24; CLAIM 32", FILLED if metrics.get("split") == "external" else AUTHOR,
             "this report is an external evaluation" if metrics.get("split") == "external" else
             "this report is an internal (held-out split) evaluation; run `evaluate --model BUNDLE --data EXTERNAL`"),
        Item("Intended use", "TRIPOD+AI 5c; CLAIM 3", FILLED, config.get("intended_use", "research and education only")),
        Item("Limitations", "TRIPOD+AI 27; CLAIM 39", "partly", "standard limitations listed above; add study-specific ones"),
        Item("Ethics approval and consent", "TRIPOD+AI 22; CLAIM 41", AUTHOR, "not known to the run"),
        Item("Funding and conflicts of interest", "TRIPOD+AI 3, 29", AUTHOR, "not known to the run"),
        Item("Code and data availability", "TRIPOD+AI 18f; CLAIM 42", "partly",
             f"skinlesion {(config.get('library_versions') or {}).get('skinlesion')}; the run's config.yaml reproduces it. "
             "Still to write: where code, weights and data can be obtained."),
    ]
    return items


def checklist_markdown(items: list[Item]) -> list[str]:
    rows = ["| topic | guideline items | status | from this run |", "|---|---|---|---|"]
    rows += [f"| {i.topic} | {i.refs} | {i.status} | {i.text.replace('|', '/')} |" for i in items]
    todo = [i for i in items if i.status != FILLED]
    return rows + ["", "**Still to write by the author:** " + "; ".join(i.topic for i in todo) + "."]
