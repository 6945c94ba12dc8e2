"""report.html (self-contained, opens offline) and model_card.md from metrics.json and the run dir."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..models.task import get_task
from .. import atomic
from ..data.run import Run, read_json
from ..data.split import format_table
from .thresholds import format_operating_points

NOTICE = ("Research and education use only. Not a medical device: must not be used to diagnose, treat or triage "
          "patients.")
LIMITATIONS = [
    "Trained and evaluated on dermoscopic images only; clinical (non-dermoscopic) and smartphone photos are out of scope.",
    "HAM10000 comes from two centres (Vienna, Queensland) and is dominated by fair skin types; performance on darker skin is unknown.",
    "Binary labels group seven diagnoses; rare ones (df, vasc, akiec) have few lesions, so their per-dx figures are uncertain.",
    "Confidence intervals come from resampling lesions of one test set; they do not cover shifts to another clinic or device.",
    "The decision threshold was tuned on the validation split for a target sensitivity; prevalence elsewhere changes PPV/NPV.",
]
HEADLINE_KEYS = ["roc_auc", "pr_auc", "pauc_above_tpr80", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy",
                 "balanced_accuracy", "predicted_positive_rate", "brier", "ece"]


def _fmt(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    if e.get("ci_low") is None:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"


def headline_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(metric, at the tuned threshold, at 0.5); threshold-free metrics are shown once."""
    return [(k, _fmt(metrics["at_threshold"].get(k)),
             _fmt(metrics["at_0.5"][k]) if k in metrics["at_0.5"] else "(threshold-free)") for k in HEADLINE_KEYS]


#: train keys that only matter when another key has a given value: key -> test on the train section.
_APPLIES = {
    "warmup_epochs": lambda t: t.get("schedule") == "cosine", "min_lr_factor": lambda t: t.get("schedule") == "cosine",
    "lr_patience": lambda t: t.get("schedule") == "plateau", "ema_decay": lambda t: bool(t.get("ema")),
    "mix_prob": lambda t: bool(t.get("mixup") or t.get("cutmix")),
    "metadata_dropout": lambda t: bool(t.get("metadata")),
    "experiment": lambda t: any(n in str(t.get("logger")) for n in ("mlflow", "wandb")),
    "mlflow_uri": lambda t: "mlflow" in str(t.get("logger")),
    "phase1_epochs": lambda t: t.get("phases") == 2, "phase2_lr_factor": lambda t: t.get("phases") == 2,
    "unfreeze_groups": lambda t: t.get("phases") == 2, "fold": lambda t: t.get("fold") is not None,
    "cache_features": lambda t: bool(t.get("cache_features")),
}


def applicable_config(path: Path) -> str:
    """config.yaml without the sections and keys that did not apply to the run (the demo section, a cosine
    schedule's keys under plateau, EMA decay without EMA, ...)."""
    import yaml
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return "(config.yaml is not readable)"
    if not isinstance(cfg, dict):
        return "(config.yaml is not a mapping)"
    cfg.pop("demo", None)
    train = cfg.get("train")
    if isinstance(train, dict):
        cfg["train"] = {k: v for k, v in train.items() if k not in _APPLIES or _APPLIES[k](train)}
    return yaml.safe_dump(cfg, sort_keys=False)


def _adaptation_html(a: dict) -> str:
    num = lambda v: "n/a" if v is None else f"{v:.3f}"
    rows = [(w, f"{a[w]['threshold']:.4f}", _fmt(a[w]["sensitivity"]), _fmt(a[w]["specificity"]))
            for w in ("unadapted", "adapted")]
    return (f"<h2>Adapted at this site (--adapt-fraction {a['fraction']})</h2><p>The threshold was re-tuned for "
            f"sensitivity {a['target_sensitivity']} on {a['adapt_images']} images ({a['adapt_malignant']} malignant, "
            f"whole lesions); both rows are scored on the other {a['scored_images']} images only. ECE there: raw "
            f"{num(a['ece']['raw'])}, calibrated {num(a['ece']['calibrated'])}, intercept re-fit at the site "
            f"{num(a['ece']['intercept_refit_at_site'])}.</p>"
            + _html_table(["operating point", "threshold", "sensitivity", "specificity"], rows))


def training_limit_notes(bundle_config: dict) -> list[str]:
    """What limited training (batch limits, early stopping), said in the card and the report."""
    lim = bundle_config.get("training_limits") or {}
    notes = []
    ltb = lim.get("limit_train_batches")
    if isinstance(ltb, (int, float)) and not isinstance(ltb, bool) and not (isinstance(ltb, float) and ltb >= 1.0):
        share = f"{ltb:.0%} of" if isinstance(ltb, float) and ltb < 1 else f"{ltb} batches of"
        notes.append(f"Training was cut short: each epoch used only {share} the training batches "
                     f"(--limit-train-batches {ltb}), so not every training image was seen in every epoch.")
    if lim.get("early_stopped"):
        notes.append(f"Early stopping ended training after {lim.get('epochs_run')} of {lim.get('epochs_planned')} "
                     "planned epochs.")
    return notes


def definition_rows() -> list:
    from .metrics import METRIC_DEFINITIONS
    return [(k, r, d) for k, (r, d) in METRIC_DEFINITIONS.items()] + [
        ("predicted_positive_rate", "0-1", "share of images called malignant at the threshold")]


def _md(value) -> str:
    """A value from the data (a site name, a folder, a source text) as inert Markdown: markup escaped, as in
    report.html, since Markdown viewers render inline HTML; table pipes and line breaks neutralised."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _md_table(head: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


#: Below these counts a subgroup's ROC-AUC, sensitivity and specificity (and their CIs) are not estimable with
#: any useful precision: the row is flagged instead of showing e.g. 1.000 [1.000, 1.000].
SMALL_SUBGROUP_N, SMALL_SUBGROUP_CLASS = 30, 5


def small_subgroup(row: dict) -> bool:
    n, pos = int(row.get("n") or 0), int(row.get("n_malignant") or 0)
    return n < SMALL_SUBGROUP_N or pos < SMALL_SUBGROUP_CLASS or n - pos < SMALL_SUBGROUP_CLASS


def _html_table(head: list[str], rows: list) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _gallery_html(gallery: dict, out_dir: Path) -> list[str]:
    parts = [f"<h2>Error analysis</h2><p>The most confident mistakes at the threshold {gallery['threshold']:.4f}: "
             "each image beside its Grad-CAM overlay (regions that raised the malignant score).</p>"]
    for group in gallery["groups"].values():
        if not group["items"]:
            continue
        parts.append(f"<h3>{html.escape(group['title'])}</h3><div class='row'>")
        for it in group["items"]:
            caption = f"{it['image_id']} — {it['dx']}, p = {it['probability']:.3f}" + "".join(
                f", {k} {it[k]}" for k in ("age", "sex", "localization") if it.get(k) is not None)
            parts.append(_img(out_dir / it["png"], caption) if it.get("png") else f"<p>{html.escape(caption)}</p>")
        parts.append("</div>")
    if gallery.get("confused_pairs"):
        parts += ["<h3>Most-confused diagnoses (7-class)</h3>",
                  _html_table(["true dx", "predicted dx", "images"], [(p["true"], p["predicted"], p["count"])
                                                                     for p in gallery["confused_pairs"]])]
    return parts


def _subgroup_rows(metrics: dict) -> dict[str, list]:
    small = f"too few (n < {SMALL_SUBGROUP_N} or < {SMALL_SUBGROUP_CLASS} per class): not estimated"
    return {col: [[r["group"], r["n"], r["n_malignant"], *([small, "", ""] if small_subgroup(r) else
                  [_fmt(r["roc_auc"]), _fmt(r["sensitivity"]), _fmt(r["specificity"])])]
                  for r in rows] for col, rows in metrics["subgroups"].items()}


def _per_dx_rows(metrics: dict) -> list:
    return [[r["dx"], "malignant" if r["malignant"] else "benign", r["n"], _fmt(r["called_malignant"])] for r in metrics["per_dx"]]


def write_report(out_dir: Path, metrics: dict, bundle_config: dict, run_dir: Path | None) -> Path:
    """One self-contained HTML page: config, split, training curves, threshold, all metrics and plots."""
    split = metrics["split"]
    plots = out_dir / "plots"
    parts = [f"<h1>skinlesion evaluation: {html.escape(bundle_config['architecture'])} on {html.escape(metrics['data'])}</h1>",
             f"<p class='notice'>{NOTICE}</p>",
             f"<p>{metrics['n_images']} images, {metrics['n_lesions']} lesions, {metrics['n_malignant']} malignant. "
             f"Threshold {metrics['threshold']['value']:.4f} ({html.escape(metrics['threshold']['source'])}). "
             f"95% CIs from {metrics['bootstrap']['resamples']} lesion-level bootstrap resamples (seed {metrics['bootstrap']['seed']})."
             f"{' Test-time augmentation on.' if metrics.get('tta') else ''}</p>"]
    drift = metrics.get("threshold_drift") or {}
    if drift.get("target_sensitivity") is not None:
        parts.append(f"<p class='notice'>Threshold drift on this set: the bundle's threshold {drift['threshold']:.4f} "
                     f"reached sensitivity {drift['sensitivity_reached']:.3f} (target {drift['target_sensitivity']:.2f}) "
                     f"and specificity {drift['specificity_reached']:.3f}; this set would need "
                     f"{drift['threshold_needed'] if drift['threshold_needed'] is None else format(drift['threshold_needed'], '.4f')} "
                     f"for the target. {html.escape(drift.get('flag') or '')}</p>")
    parts += [f"<p class='notice'>{html.escape(n)}</p>" for n in training_limit_notes(bundle_config)]
    from ..inference.bundle import operating_point_line
    parts.append(f"<p>{html.escape(operating_point_line(bundle_config))}</p>")
    if metrics.get("adaptation"):
        parts.append(_adaptation_html(metrics["adaptation"]))
    parts += ["<h2>Headline metrics</h2>", _html_table(["metric", "at tuned threshold", "at 0.5"], headline_rows(metrics)),
              "<details><summary>What each metric means</summary>"
              + _html_table(["metric", "range", "definition and source"], definition_rows()) + "</details>",
              "<div class='row'>" + _img(plots / f"{split}_roc.png", "ROC") + _img(plots / f"{split}_pr.png", "Precision-recall")
              + _img(plots / f"{split}_confusion.png", "Confusion matrix") + "</div>"]
    if "calibrated" in metrics:
        c = metrics["calibrated"]["at_threshold"]
        formula = (metrics["calibration"].get("calibration") or {}).get("formula", "")
        parts += [f"<h3>Calibrated probabilities ({html.escape(formula)}, fit on validation; decisions unchanged)</h3>",
                  _html_table(["metric", "before", "after"], [(k, _fmt(metrics["at_threshold"][k]), _fmt(c[k]))
                                                              for k in ("brier", "ece", "ece_top_label", "roc_auc")
                                                              if k in c])]
    parts += ["<h2>Calibration</h2>", "<div class='row'>" + _img(plots / f"{split}_reliability.png", "Reliability diagram")
              + _img(plots / f"{split}_thresholds.png", "Sensitivity/specificity vs threshold") + "</div>"]
    parts += ["<h2>Per diagnosis</h2><p>Share of each dx called malignant: recall for akiec/bcc/mel, false-positive rate for the others.</p>",
              _html_table(["dx", "class", "n", "called malignant"], _per_dx_rows(metrics)), _img(plots / f"{split}_per_dx.png", "Per dx")]
    if "cv" in metrics:
        from .cv_eval import cv_rows
        d = metrics["cv"]["ensemble_vs_best"]
        parts += ["<h2>Cross-validation: ensemble vs single fold models (same test images)</h2>",
                  _html_table(["model", "ROC-AUC", "PR-AUC"], cv_rows(metrics["cv"])),
                  f"<p>Ensemble minus the best single model ({html.escape(metrics['cv']['best_single'])}): ROC-AUC "
                  f"{d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], paired bootstrap p = {d['p_value']:.4f}. "
                  "The threshold comes from the out-of-fold predictions (cv.json).</p>"]
    if "metadata_ablation" in metrics:
        m = metrics["metadata_ablation"]
        d = m["roc_auc_difference"]
        parts += [f"<h2>Metadata ({html.escape(', '.join(m['fields']))})</h2><p>The same model with its patient "
                  "metadata and with every field missing (image only), on the same images.</p>",
                  _html_table(["input", "ROC-AUC", "PR-AUC"], [(k.replace("_", " "), _fmt(m[k]["roc_auc"]), _fmt(m[k]["pr_auc"]))
                                                             for k in ("with_metadata", "image_only")]),
                  f"<p>ROC-AUC difference {d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], paired "
                  f"bootstrap p = {d['p_value']:.4f}.</p>"]
    if metrics.get("gallery"):
        parts += _gallery_html(metrics["gallery"], out_dir)
    parts.append("<h2>Subgroups</h2>")
    for col, rows in _subgroup_rows(metrics).items():
        parts += [f"<h3>{col}</h3>", _html_table([col, "n", "malignant", "ROC-AUC", "sensitivity", "specificity"], rows)]
    if run_dir is not None:
        run = Run(run_dir)
        thr = run.threshold_json
        if thr.is_file():
            parts += ["<h2>Threshold (validation operating points)</h2>",
                      f"<pre>{html.escape(format_operating_points(read_json(thr, 'written by tune-threshold').get('operating_points', [])))}</pre>",
                      "<div class='row'>" + _img(run.plots / "val_roc.png", "Validation ROC") + "</div>"]
        parts += ["<h2>Training curves</h2>", _img(run.plots / "training_history.png", "Training history")]
        if run.split_json.is_file():
            parts += ["<h2>Split</h2>", f"<pre>{html.escape(format_table(run.split_summary()))}</pre>"]
        if run.config_yaml.is_file():
            parts += ["<h2>Run config</h2><p class='muted'>the settings that applied to this run (config.yaml holds "
                      "every key)</p>", f"<pre>{html.escape(applicable_config(run.config_yaml))}</pre>"]
    parts += ["<h2>Model bundle</h2>", f"<pre>{html.escape(json.dumps({k: bundle_config[k] for k in ('architecture', 'timm_id', 'task', 'preprocessing', 'threshold', 'library_versions') if k in bundle_config}, indent=2))}</pre>"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skinlesion report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;margin:.5em 0}"
            "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}.notice{background:#fff3cd;padding:.6em;border:1px solid #e0c36b}"
            ".row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:100%}pre{background:#f6f6f6;padding:.5em;overflow:auto}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    return atomic.write_text(out_dir / "report.html", page)


def write_model_card(out_dir: Path, metrics: dict, bundle_config: dict, run_dir: Path | None) -> Path:
    """model_card.md: intended use, data, metrics with CIs, per-dx and subgroups, limitations, reproduction."""
    cfg = bundle_config
    lines = [f"# Model card: {_md(cfg['architecture'])} ({_md(cfg['task'])}) — skinlesion", "",
             "## Intended use", "", f"- {NOTICE}",
             "- Intended for research and teaching on dermoscopic skin-lesion classification (benign vs malignant"
             + ("" if get_task(cfg["task"]).binary else f" and {get_task(cfg['task']).description}") + ").",
             "- Out of scope: any clinical decision, screening of patients, non-dermoscopic images, body sites or "
             "populations not represented in the training data.", "",
             "## Model", "", f"- Backbone `{_md(cfg['architecture'])}` (timm `{_md(cfg['timm_id'])}`), input "
             f"{cfg['preprocessing']['image_size']} px, mean {cfg['preprocessing']['mean']}, std {cfg['preprocessing']['std']}.",
             f"- Decision threshold {metrics['threshold']['value']:.4f}: {_md(metrics['threshold']['source'])}.",
             f"- Library versions: {', '.join(f'{k} {v}' for k, v in cfg.get('library_versions', {}).items())}.", "",
             "## Training data and split", ""]
    fp = cfg.get("training_data", {})
    lines.append(f"- Dataset root: `{_md(fp.get('dataset_root'))}`; {fp.get('train_images')} training and "
                 f"{fp.get('val_images')} validation images; lesion-level split, seed {fp.get('seed')}, lesion hash "
                 f"`{str(fp.get('split_lesion_hash'))[:16]}`.")
    lines += [f"- {x}" for x in training_limit_notes(cfg)]
    from ..inference.bundle import operating_point_line
    lines.append(f"- {_md(operating_point_line(cfg))}")
    split = Run(run_dir).split_summary() or None if run_dir is not None else None
    if split:
        lines += ["", "```", format_table(split), "```"]
    lines += ["", f"## Evaluation: {_md(metrics['data'])}", "",
              f"{metrics['n_images']} images, {metrics['n_lesions']} lesions, {metrics['n_malignant']} malignant; 95% CIs "
              f"from {metrics['bootstrap']['resamples']} lesion-level bootstrap resamples.", "",
              _md_table(["metric", "at tuned threshold", "at 0.5"], headline_rows(metrics)), "",
              "### Per diagnosis (share called malignant)", "", _md_table(["dx", "class", "n", "called malignant"], _per_dx_rows(metrics))]
    for col, rows in _subgroup_rows(metrics).items():
        lines += ["", f"### Subgroup: {_md(col)}", "", _md_table([col, "n", "malignant", "ROC-AUC", "sensitivity", "specificity"], rows)]
    if "cv" in metrics:
        from .cv_eval import cv_rows
        e = bundle_config.get("ensemble", {})
        lines += ["", f"## Cross-validation ensemble ({e.get('folds')} folds x {e.get('seeds')} seed(s), "
                  f"{e.get('combine')})", "", _md_table(["model", "test ROC-AUC", "test PR-AUC"], cv_rows(metrics["cv"]))]
    lines += ["", "### Metric definitions", "", _md_table(["metric", "range", "definition and source"], definition_rows())]
    lines += ["", "## Known limitations", ""] + [f"- {x}" for x in LIMITATIONS]
    from .checklist import checklist, checklist_markdown
    lines += ["", "## Reporting checklist (TRIPOD+AI / CLAIM)", ""] + checklist_markdown(checklist(metrics, cfg, split))
    lines += ["", "## How to reproduce", "", "```bash"]
    if run_dir is not None:
        lines += [f"skinlesion train --config {Run(run_dir).config_yaml} --out NEW_RUN_DIR",
                  "skinlesion tune-threshold NEW_RUN_DIR" + (f" --target-sensitivity {cfg['threshold'].get('target_sensitivity')}"
                                                            if cfg["threshold"].get("target_sensitivity") else ""),
                  "skinlesion evaluate NEW_RUN_DIR"]
    else:
        lines.append(f"skinlesion evaluate --model BUNDLE --data {metrics['data'].split(' ')[2] if metrics['data'].startswith('external') else 'DATA'} --out OUT")
    lines += ["```", "", "Data: HAM10000 (Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161, 2018), CC BY-NC 4.0."]
    return atomic.write_text(out_dir / "model_card.md", "\n".join(lines) + "\n")
