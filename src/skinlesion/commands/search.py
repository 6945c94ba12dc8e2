"""`skinlesion search`: hyperparameter search on Optuna; several processes or machines may share a study."""
from __future__ import annotations

from pathlib import Path

from ..cli_options import add_training_arguments, overrides_of

NAME = "search"
HELP = ("hyperparameter search (Optuna TPE with pruning) over the training recipe on a lesion-grouped validation "
        "score; every trial a run folder, best.yaml for `train --config`")
# no LOCK: several processes share one study folder (each trial's run folder is locked while it trains)


def add_arguments(p) -> None:
    from ..search.study import METRICS, PRUNERS
    add_training_arguments(p, "study directory (study.db, split, trials/, trials.csv, best.yaml, plots/)")
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="finished trials the study should hold (counted over every process sharing it)")
    p.add_argument("--space", metavar="FILE.yaml", help="search space (default: the built-in one; docs/search.md)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL shared by several machines, e.g. "
                   "postgresql://user@host/db (default: sqlite:///STUDY_DIR/study.db)")
    p.add_argument("--folds", type=int, metavar="K", help="objective: mean over K lesion-grouped folds (default: the "
                   "split's validation share)")
    p.add_argument("--metric", choices=METRICS, default="roc_auc", help="validation score maximised (default: roc_auc)")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="stop unpromising trials early (default: "
                   "median)")


def main(args, cfg) -> int:
    from ..search.study import SearchOptions, quiet_optuna_warnings, run_search
    quiet_optuna_warnings()
    from ..console import Console
    opts = SearchOptions(Path(args.out), args.trials, args.space, args.storage, args.folds, args.metric, args.pruner,
                         Console(not args.quiet))
    result = run_search(opts, args.config, overrides_of(args))
    print(f"{result.finished} trial(s) finished in {result.study_dir}; see trials.csv, plots/, importance.json")
    if result.best_yaml is not None:
        print(f"best validation score {result.best_value:.4f}: {result.best_params}")
        print(f"best config: {result.best_yaml}  (skinlesion train --config {result.best_yaml} --data DIR --out RUN)")
    return 0
