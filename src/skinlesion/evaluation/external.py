"""External validation on several datasets in one go: one evaluation per dataset (its own folder, report
and model card), then one page with a side-by-side headline table and, for each set, how far the bundle's
threshold drifted: the sensitivity it reached there and the threshold that set would need for the target."""
from __future__ import annotations

import html
import math
from pathlib import Path


from .. import atomic
from ..data.run import check_not_a_run
from ..errors import DataError
from .site_data import EvalOptions, SiteData

def _name(path: Path, taken: set[str]) -> str:
    base = path.resolve().name or "data"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def evaluate_externals(bundle_dir, sites: list[SiteData], out_dir, opts: EvalOptions = EvalOptions(),
                       adapt_fraction: float | None = None) -> tuple[list, Path]:
    """``evaluate --model BUNDLE --data D1 --data D2 ...``: OUT/<name>/ per dataset plus OUT/report.html and
    OUT/external_summary.json with the side-by-side table and the threshold drift of each set."""
    from .evaluate import evaluate_external
    from .summary import check_resamples
    check_resamples(opts.n_boot)
    datas = [site.data for site in sites]
    if len({str(Path(d).resolve()) for d in datas}) < len(datas):
        raise DataError("the same --data folder is listed twice. Remedy: list each external dataset once.")
    for d in datas:
        if not Path(d).is_dir():
            raise DataError(f"--data {d} does not exist. Remedy: pass the folder of each external dataset.")
    check_not_a_run(out_dir, "evaluate --model")
    out_dir, taken, results = Path(out_dir), set(), []
    for site in sites:
        name = _name(Path(site.data), taken)
        results.append((name, site.data, evaluate_external(bundle_dir, site, out_dir / name, opts, adapt_fraction)))
    rows = [summary_row(name, d, r.metrics) for name, d, r in results]
    atomic.write_json(out_dir / "external_summary.json", {"bundle": str(Path(bundle_dir).resolve()), "datasets": rows})
    return results, write_summary_page(out_dir, rows, results[0][2].metrics)


def summary_row(name: str, data: str, m: dict) -> dict:
    h = m["at_threshold"]
    return {"dataset": name, "data": str(Path(data).resolve()), "n_images": m["n_images"], "n_malignant": m["n_malignant"],
            **{k: h[k] for k in ("roc_auc", "pr_auc", "sensitivity", "specificity")},
            "per_dx": {r["dx"]: r["called_malignant"]["value"] for r in m["per_dx"]},
            "drift": m.get("threshold_drift"), "adaptation": _adaptation_row(m.get("adaptation")),
            "ece": (m.get("calibration") or {}).get("raw", {}).get("ece"),
            "ece_calibrated": ((m.get("calibration") or {}).get("calibrated") or {}).get("ece")}


def _adaptation_table(rows: list[dict], f, num) -> str:
    """Per set: calibration (ECE before/after) and, with --adapt-fraction, unadapted vs adapted operating points
    on the part of the set that was not used to adapt."""
    head = ["dataset", "ECE raw", "ECE calibrated", "adapted on", "scored on", "sensitivity unadapted",
            "specificity unadapted", "sensitivity adapted", "specificity adapted", "ECE, intercept re-fit at site"]
    body = ""
    for r in rows:
        a = r.get("adaptation") or {}
        cells = [r["dataset"], num(r.get("ece")), num(r.get("ece_calibrated"))]
        cells += [f"{a['adapt_images']} images", f"{a['scored_images']} ({a['scored_malignant']} malignant)",
                  f(a["unadapted_sensitivity"]), f(a["unadapted_specificity"]), f(a["adapted_sensitivity"]),
                  f(a["adapted_specificity"]), num(a["ece"]["intercept_refit_at_site"])] if a else ["-"] * 7
        body += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
    return ("<h2>Calibration and adaptation at each site</h2><p>With <code>--adapt-fraction</code>, each set's "
            "threshold is re-tuned on a lesion-grouped part and every figure here is scored on the rest only.</p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{body}</table>")


def _adaptation_row(a: dict | None) -> dict | None:
    if not a:
        return None
    return {k: a[k] for k in ("fraction", "adapt_images", "scored_images", "scored_malignant", "ece")} | {
        f"{w}_{m}": a[w][m] for w in ("unadapted", "adapted") for m in ("sensitivity", "specificity")} | {
        "adapted_threshold": a["adapted"]["threshold"]}


def write_summary_page(out_dir: Path, rows: list[dict], first: dict) -> Path:
    f = lambda d: "n/a" if not d or d.get("value") is None else f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    num = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
    head = ["dataset", "images", "malignant", "ROC-AUC", "PR-AUC", "sensitivity", "specificity", "threshold needed", "drift"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in [
        r["dataset"], r["n_images"], r["n_malignant"], f(r["roc_auc"]), f(r["pr_auc"]), f(r["sensitivity"]),
        f(r["specificity"]), num((r["drift"] or {}).get("threshold_needed")),
        (r["drift"] or {}).get("flag") or "within ±0.05 of the target"]) + "</tr>" for r in rows)
    dx = sorted({d for r in rows for d in r["per_dx"]})
    dx_body = "".join("<tr><td>" + html.escape(r["dataset"]) + "</td>" + "".join(
        f"<td>{num(r['per_dx'].get(d))}</td>" for d in dx) + "</tr>" for r in rows)
    links = "".join(f"<li><a href='{html.escape(r['dataset'])}/report.html'>{html.escape(r['dataset'])}</a> — "
                    f"{html.escape(r['data'])}</li>" for r in rows)
    thr = first["threshold"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skinlesion external validation</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse}"
            "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}.flag{background:#fde2e1;padding:.5em}"
            "</style></head><body><h1>External validation</h1>"
            f"<p>Model {html.escape(first['architecture'])} at its threshold {thr['value']:.4f} "
            f"({html.escape(thr['source'])}). 95% lesion-bootstrap CIs. <strong>Thresholds do not transfer</strong> "
            "between clinics and devices: the table gives the sensitivity the bundle's threshold reached on each set "
            "and the threshold that set would need for the target.</p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{body}</table>"
            + "".join(f"<p class='flag'>{html.escape(r['dataset'])}: {html.escape(r['drift']['flag'])}</p>"
                      for r in rows if (r["drift"] or {}).get("flag"))
            + _adaptation_table(rows, f, num)
            + f"<h2>Share called malignant, by dx</h2><table><tr><th>dataset</th>{''.join(f'<th>{d}</th>' for d in dx)}"
            f"</tr>{dx_body}</table><h2>Per-dataset reports</h2><ul>{links}</ul></body></html>")
    return atomic.write_text(out_dir / "report.html", page)
