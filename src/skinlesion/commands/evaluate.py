"""`skinlesion evaluate`: a run's test split, or a bundle on external sets (with --adapt-fraction)."""
from __future__ import annotations

from ..config import ConfigError
from ..data.formats import FORMATS

NAME = "evaluate"
HELP = "metrics with lesion-bootstrap CIs, plots, report.html and model_card.md"
LOCK = "run_dir"


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a trained (and tuned) run directory")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of RUN_DIR (default: test)")
    p.add_argument("--model", metavar="BUNDLE", help="evaluate this bundle (a folder or hf-hub:ORG/NAME[@REVISION]) on an external --data folder instead")
    p.add_argument("--data", metavar="DIR", action="append", help="external dataset in any --format (with --model; "
                   "every image); repeat --data for several sets in one report with the threshold drift of each")
    p.add_argument("--metadata", metavar="CSV", help="metadata / ground-truth CSV if not found in DIR")
    p.add_argument("--format", default="auto", choices=list(FORMATS),
                   help="dataset layout of --data (default: auto, by the files present, per dataset)")
    p.add_argument("--columns", metavar="KEY=NAME,...", help="csv format: image=NAME,dx=NAME|label=NAME,group=NAME,...")
    p.add_argument("--values", metavar="RAW=CODE,...", help="map diagnosis/label values to dx codes, e.g. 0=nv,1=nv,2=mel")
    p.add_argument("--allow-missing", type=float, default=0.0, metavar="FRACTION", help="with --data (default: 0)")
    p.add_argument("--out", metavar="DIR", help="output folder for --model evaluations")
    p.add_argument("--tta", action="store_true", help="average predictions over flips and a rotation")
    p.add_argument("--adapt-fraction", type=float, default=None, metavar="F", help="with --model: adapt the "
                   "operating point on a lesion-grouped fraction F of each --data set and score the rest, unadapted "
                   "and adapted side by side")
    p.add_argument("--calibrate", action="store_true", help="refit the calibration (prior offset + slope/intercept) on validation, store it in the bundle")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="lesion-level bootstrap resamples (default: 1000)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers")


def main(args, cfg) -> int:
    from ..evaluation.evaluate import evaluate_external, evaluate_run, format_headline
    from ..evaluation.site_data import EvalOptions, SiteData
    opts = EvalOptions(tta=args.tta, n_boot=args.bootstrap, num_workers=args.num_workers, progress=not args.quiet)
    if args.model:
        if not args.data or not args.out:
            raise ConfigError("evaluate --model BUNDLE needs --data DIR (external dataset) and --out DIR. Remedy: "
                              "evaluate --model RUN/bundle --data EXTERNAL_DIR --out EVAL_DIR")
        from ..data.formats import TableSpec
        spec = TableSpec(args.format, args.metadata, args.columns, args.values)
        if len(args.data) > 1:
            from ..evaluation.external import evaluate_externals
            if args.metadata or args.columns:
                raise ConfigError("--metadata/--columns name one CSV; with several --data each folder must be "
                                  "recognised by itself (--format auto). Remedy: drop them, or evaluate that set alone.")
            sites = [SiteData(d, spec, args.allow_missing) for d in args.data]
            results, page = evaluate_externals(args.model, sites, args.out, opts, args.adapt_fraction)
            for name, _, r in results:
                print(f"{name}: " + format_headline(r.metrics))
                if r.metrics.get("threshold_drift", {}).get("flag"):
                    print(f"  drift: {r.metrics['threshold_drift']['flag']}")
            print(f"report: {page}")
            return 0
        result = evaluate_external(args.model, SiteData(args.data[0], spec, args.allow_missing), args.out, opts,
                                   args.adapt_fraction)
    elif args.run_dir:
        result = evaluate_run(args.run_dir, args.split, args.calibrate, opts)
    else:
        raise ConfigError("evaluate needs a RUN_DIR, or --model BUNDLE --data DIR --out DIR. Remedy: "
                          "`skinlesion evaluate RUN_DIR` for the run's test split")
    print(format_headline(result.metrics))
    print(f"report: {result.report}\nmodel card: {result.model_card}")
    return 0
