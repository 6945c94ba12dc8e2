"""Command line: parse arguments, resolve the config, call the stage's public function."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .cli_options import _add_data_opts, _add_demo_opts, _add_split_opts, _add_train_opts, _opt, check_args
from .config import ConfigError, load_config
from .errors import Interrupted, SkinlesionError, original_message, stop_on_signals

USER_ERRORS = (SkinlesionError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)  # printed as "error: ...", exit status 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinlesion", description=(
        "Train, evaluate and serve dermoscopic skin-lesion classifiers (HAM10000). "
        "Research use only; not a medical device."))
    parser.add_argument("--version", action="version", version=f"skinlesion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", metavar="FILE.yaml", help="YAML config; CLI flags override it")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        return p

    p = verb("prepare", "validate a dataset (HAM10000, ISIC, class folders or any CSV) and write a lesion-level split to RUN_DIR")
    _add_data_opts(p)
    _add_split_opts(p)
    p.set_defaults(lock="out")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write split.csv/split.json into")
    p.set_defaults(func=cmd_prepare)

    p = verb("explore", "plots and a summary of a dataset's classes, lesions, demographics and image sizes")
    _add_data_opts(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG plots and summary.md/.html")
    p.set_defaults(func=cmd_explore)

    p = verb("make-demo-data", "write a synthetic dermoscopy-like dataset in the HAM10000 layout")
    p.add_argument("out", metavar="OUT", help="new (or empty) folder to write the dataset into")
    _add_demo_opts(p)
    p.set_defaults(func=cmd_make_demo_data)

    def training_verb(name: str, help_text: str, out_help: str):
        """A verb that trains: data options, training options and the run directory."""
        q = verb(name, help_text)
        _add_data_opts(q, features=True)
        _add_train_opts(q)
        q.add_argument("--out", required=True, metavar="RUN_DIR", help=out_help)
        q.set_defaults(lock="out")
        return q

    p = training_verb("train", "train a classifier on a run's split (running prepare first if needed) and save a bundle",
                      "run directory (split, checkpoints, bundle)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = training_verb("lr-find", "Lightning's learning-rate finder on the run's training split: a plot and a suggested --lr",
                      "run directory (its split is made if absent)")
    p.add_argument("--num-training", type=int, default=100, help="steps of the sweep (default: 100)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="start of the sweep (default: 1e-7)")
    p.add_argument("--max-lr", type=float, default=1.0, help="end of the sweep (default: 1)")
    p.set_defaults(func=cmd_lr_find)

    p = training_verb("cv", "lesion-grouped K-fold cross-validation: every fold trained as a run under RUN_DIR/folds/, "
                            "out-of-fold predictions and threshold, an ensemble bundle", "cv run directory")
    p.add_argument("--folds", type=int, default=5, help="K folds over train+val; the test share stays held out (default: 5)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per fold (default: 1)")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="for the out-of-fold threshold (default: 0.90)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted cv at its fold and epoch")
    p.set_defaults(func=cmd_cv)

    p = verb("tune-threshold", "choose the decision threshold on validation probabilities (writes threshold.json, updates the bundle)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="minimum validation sensitivity (default: 0.90)")
    p.add_argument("--tta", action="store_true", help="tune on TTA predictions (for `predict/evaluate --tta`)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (with --tta)")
    p.set_defaults(func=cmd_tune, lock="run_dir")

    p = verb("evaluate", "metrics with lesion-bootstrap CIs, plots, report.html and model_card.md")
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a trained (and tuned) run directory")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of RUN_DIR (default: test)")
    p.add_argument("--model", metavar="BUNDLE", help="evaluate this bundle on an external --data folder instead")
    p.add_argument("--data", metavar="DIR", action="append", help="external dataset in any --format (with --model; "
                   "every image); repeat --data for several sets in one report with the threshold drift of each")
    p.add_argument("--metadata", metavar="CSV", help="metadata / ground-truth CSV if not found in DIR")
    p.add_argument("--format", default="auto", choices=["auto", "ham10000", "isic", "folders", "csv"],
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
    p.set_defaults(func=cmd_evaluate, lock="run_dir")

    from .cli_data import add_data_verbs
    from .cli_site import add_site_verbs
    add_data_verbs(verb)
    add_site_verbs(verb)

    p = verb("compare", "headline metrics of runs side by side with a paired bootstrap ROC-AUC test")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default: 1000)")
    p.set_defaults(func=cmd_compare)

    p = verb("runs", "one table of every run below DIR: status, architecture, recipe, metrics with CIs, threshold")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding run directories (default: runs)")
    p.add_argument("--sort", default="test_roc_auc", help="column to sort by (default: test_roc_auc, best first)")
    p.add_argument("--out", metavar="PATH", help="also write PATH.csv and a sortable PATH.html")
    p.set_defaults(func=cmd_runs)

    p = training_verb("run", "prepare -> train -> tune-threshold -> evaluate on a real dataset in one go", "run directory")
    p.add_argument("--target-sensitivity", type=float, default=0.90, help="for tune-threshold (default: 0.90)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training")
    p.set_defaults(func=cmd_run)

    from .cli_model import add_model_verbs
    add_model_verbs(verb)

    p = verb("demo", "run the pipeline end to end on freshly generated synthetic data (offline)")
    p.add_argument("--out", metavar="DIR", help="new folder for demo data and run (default: a temp folder)")
    _add_demo_opts(p)
    _opt(p, "--epochs", "demo.epochs", "training epochs of the demo", type=int)
    _opt(p, "--image-size", "demo.train_size", "model input size of the demo", type=int)
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_prepare(args, cfg) -> int:
    from .data.prepare import prepare
    print(prepare(cfg, args.out, progress=not args.quiet).report())
    return 0


def cmd_explore(args, cfg) -> int:
    from .data.explore import explore
    from .data.dataset import load_dataset
    if cfg.data.root is None:
        raise ConfigError("no data folder given: pass --data DIR")
    from .data.formats import TableSpec
    ds = load_dataset(cfg.data.root, cfg.data.metadata, cfg.data.allow_missing, cfg.data.verify, not args.quiet,
                      spec=TableSpec.from_config(cfg.data))
    print(f"read as {ds.table.detected}")
    path = explore(ds.frame, args.out, title=str(cfg.data.root))
    print(f"wrote {path} (plots and summary.md beside it)")
    return 0


def cmd_make_demo_data(args, cfg) -> int:
    from .data.synthetic import make_demo_data
    out = make_demo_data(args.out, cfg.demo.n, cfg.demo.seed, cfg.demo.image_size, progress=not args.quiet)
    print(f"wrote {cfg.demo.n} synthetic images and HAM10000_metadata.csv to {out}")
    return 0


def print_train_result(result) -> None:
    v = result.val_metrics
    print(f"val ROC-AUC {v['roc_auc']:.3f}, PR-AUC {v['pr_auc']:.3f}, sensitivity {v['sensitivity']:.3f} / "
          f"specificity {v['specificity']:.3f} at 0.5 ({result.epochs} epochs, {result.seconds / 60:.1f} min, "
          f"{result.train_images_per_s:.1f} train img/s)")
    print(f"bundle: {result.bundle}")


def cmd_train(args, cfg) -> int:
    from .training.fit import train
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a DDP rank other than 0: rank 0 reports and writes the run's artifacts
        return 0
    print_train_result(result)
    return 0


def cmd_lr_find(args, cfg) -> int:
    from .training.lr_find import lr_find
    result = lr_find(cfg, args.out, args.num_training, args.min_lr, args.max_lr, progress=not args.quiet)
    lr = result["suggested_lr"]
    print(f"suggested learning rate: {lr:.2e}  (use it as --lr {lr:.2e}; plot: {Path(args.out) / 'plots' / 'lr_find.png'})"
          if lr else "no suggestion (the loss did not fall); see the plot")
    return 0


def cmd_cv(args, cfg) -> int:
    from .training.cv import run_cv
    result = run_cv(cfg, args.out, args.folds, args.seeds, args.target_sensitivity, args.resume, not args.quiet)
    if result is None:
        return 0
    s = result.summary
    print(f"{s['folds']}-fold cv ({s['seeds']} seed(s)): val ROC-AUC {s['val_roc_auc']['mean']:.3f} ± "
          f"{s['val_roc_auc']['sd']:.3f}, PR-AUC {s['val_pr_auc']['mean']:.3f} ± {s['val_pr_auc']['sd']:.3f} (mean ± sd "
          f"over folds); out-of-fold ROC-AUC {s['oof']['roc_auc']:.3f}")
    t = s["threshold"]
    print(f"out-of-fold threshold {t['value']:.4f} (sensitivity {t['chosen']['sensitivity']:.3f}, specificity "
          f"{t['chosen']['specificity']:.3f} on {t['n_images']} images, {t['n_malignant']} malignant)")
    print(f"ensemble bundle: {result.bundle}  (evaluate it: skinlesion evaluate {result.run_dir})")
    return 0


def cmd_tune(args, cfg) -> int:
    from .evaluation.tune import format_result, tune_threshold
    print(format_result(tune_threshold(args.run_dir, args.target_sensitivity, args.tta, args.num_workers,
                                       progress=not args.quiet)))
    print(f"wrote {Path(args.run_dir) / 'threshold.json'}; bundle threshold updated")
    return 0


def cmd_evaluate(args, cfg) -> int:
    from .evaluation.evaluate import evaluate_external, evaluate_run, format_headline
    from .evaluation.site_data import EvalOptions, SiteData
    opts = EvalOptions(tta=args.tta, n_boot=args.bootstrap, num_workers=args.num_workers, progress=not args.quiet)
    if args.model:
        if not args.data or not args.out:
            raise ConfigError("evaluate --model BUNDLE needs --data DIR (external dataset) and --out DIR. Remedy: "
                              "evaluate --model RUN/bundle --data EXTERNAL_DIR --out EVAL_DIR")
        from .data.formats import TableSpec
        spec = TableSpec(args.format, args.metadata, args.columns, args.values)
        if len(args.data) > 1:
            from .evaluation.external import evaluate_externals
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


def cmd_compare(args, cfg) -> int:
    from .evaluation.compare import compare_runs, format_comparison
    print(format_comparison(compare_runs(args.runs, args.bootstrap)))
    return 0


def cmd_runs(args, cfg) -> int:
    from .evaluation.runs import format_runs, runs_table, write_runs
    frame = runs_table(args.dir, args.sort)
    print(format_runs(frame))
    if args.out:
        csv, page = write_runs(frame, args.out, args.sort)
        print(f"wrote {csv} and {page}")
    return 0


def cmd_run(args, cfg) -> int:
    from .evaluation.evaluate import evaluate_run, format_headline
    from .evaluation.tune import format_result, tune_threshold
    from .training.fit import train
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a DDP rank other than 0: only rank 0 tunes and evaluates
        return 0
    print_train_result(result)
    print(format_result(tune_threshold(args.out, args.target_sensitivity)))
    from .evaluation.site_data import EvalOptions
    result = evaluate_run(args.out, opts=EvalOptions(progress=not args.quiet))
    print(format_headline(result.metrics))
    print(f"report: {result.report}")
    return 0


def cmd_demo(args, cfg) -> int:
    from .demo import run_demo
    run_demo(cfg, args.out, progress=not args.quiet)
    return 0


def _resume_base(args) -> str | None:
    """With --resume, the run's saved config.yaml is the base layer (flags still override it)."""
    if getattr(args, "resume", False) and getattr(args, "out", None):
        saved = Path(args.out) / "config.yaml"
        return str(saved) if saved.is_file() else None
    return None


def _written_run(args) -> tuple[str | None, bool]:
    """The run directory this command writes into (None: none) and whether the command may create it:
    verbs declare ``lock="out"`` (they make the run) or ``lock="run_dir"`` (they write into an existing
    one); `evaluate --model` writes into its --out, not a run."""
    lock = getattr(args, "lock", None)
    if getattr(args, "model", None):  # evaluate --model writes its report folder: one writer there too
        return (args.out, True) if lock and getattr(args, "out", None) else (None, False)
    if lock is None:
        return None, False
    return getattr(args, lock), lock == "out"


def main(argv: list[str] | None = None) -> int:
    """The CLI; the process's signal handlers are restored when it returns (main() may be called as a
    library, e.g. by tests or a notebook)."""
    import signal
    previous = stop_on_signals()
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import console
    console.set_quiet(getattr(args, "quiet", False))
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    try:
        cfg = load_config(args.config, overrides, base=_resume_base(args)).validate()
        check_args(args)
        from .runlock import run_lock
        run_dir, create = _written_run(args)
        with run_lock(run_dir, args.command, create=create):
            return args.func(args, cfg)
    except USER_ERRORS as exc:
        print("error: " + " ".join(original_message(exc).split()), file=sys.stderr)  # one line, whatever it holds
        return 2
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted (nothing half-written is kept; `--resume` continues a training run)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # disk full, permissions, a path that is a folder, ...: the user's environment
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}. Remedy: check that path, its permissions and the free disk "
              "space, then run the command again.", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory. Remedy: lower --batch-size or --image-size, or use fewer --num-workers.",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug, not a user error: one line, and the traceback on request
        if os.environ.get("SKINLESION_DEBUG"):
            raise
        text = original_message(exc)
        print(f"error: internal error ({type(exc).__name__}: {text.splitlines()[0] if text else ''}). "
              "Remedy: run again with SKINLESION_DEBUG=1 to see the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
