"""`skinlesion search`: an Optuna study over the training recipe, every trial an ordinary run folder.

The study lives in ``STUDY_DIR/study.db`` (SQLite) unless ``--storage`` names another database; any number of
processes or machines running the same command against one storage share the study (Optuna's distributed
mode: trial numbers come from the storage). The split is made once in ``STUDY_DIR`` and copied into every
trial, whose objective is a validation score (its own fold, or the mean over ``--folds K``): the test share
is never trained on, selected on or scored."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import atomic
from ..config import ConfigError, load_config, plain
from ..console import Console
from ..data.run import Run, share_split
from ..errors import DataError
from .space import Space, as_overrides

METRICS = ("roc_auc", "pr_auc")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class SearchOptions:
    """What a study is: its folder, size, space, storage, objective and pruner; and where it reports."""

    study_dir: Path
    trials: int
    space: str | None = None  # YAML file; None: the default space (or the one saved in the study)
    storage: str | None = None  # database URL; None: sqlite:///STUDY_DIR/study.db
    folds: int | None = None  # objective: the mean over K lesion-grouped folds
    metric: str = "roc_auc"
    pruner: str = "median"
    console: Console = Console()  # progress bars of the one-time prepare; every step line (trial lines too)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.study_dir / 'study.db').resolve()}"


@dataclass
class SearchResult:
    study_dir: Path
    best_value: float | None
    best_params: dict
    finished: int
    best_yaml: Path | None


class _Offset:
    """A LightningModule seen with the run's epoch (phase offset + epoch) as its current epoch."""

    def __init__(self, module, offset: int):
        self._module, self._offset = module, offset

    @property
    def current_epoch(self) -> int:
        return self._module.current_epoch + self._offset


def pruning_callback(trial, monitor: str):
    """A phase -> [optuna-integration's Lightning pruning callback], stepping by the run's epoch so that the
    two phases of a recipe report distinct steps."""
    from optuna_integration import PyTorchLightningPruningCallback

    class EpochPruning(PyTorchLightningPruningCallback):
        def __init__(self, offset: int):
            super().__init__(trial, monitor)
            self.offset = offset

        def on_validation_end(self, trainer, pl_module) -> None:
            super().on_validation_end(trainer, _Offset(pl_module, self.offset))

    return lambda phase: [EpochPruning(phase.offset)]


def open_storage(url: str):
    """Optuna's RDB storage with heartbeats (a trial whose process died is failed, then retried once), or a
    clear error when the URL cannot be opened."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.exceptions import ExperimentalWarning
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 4.9-5.0
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=30, grace_period=120,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as exc:  # noqa: BLE001 - sqlalchemy's, a driver's ImportError, Optuna's: all the URL's fault
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--storage {url}: cannot open the study's database ({first}). Remedy: a URL Optuna can "
                          "open, e.g. sqlite:////shared/study.db or postgresql://user@host/db (with its driver "
                          "installed), or drop --storage for STUDY_DIR/study.db.") from None


def _settings(opts: SearchOptions, overrides: dict) -> dict:
    return {"folds": opts.folds, "metric": opts.metric, "overrides": plain(overrides)}


def _init(opts: SearchOptions, config: str | None, overrides: dict, storage=None):
    """Under the study folder's lock: the split (made once), the space and the settings (saved on the first
    start; a later start or a second worker must agree with them), and the default storage (opened, its tables
    created, by one process at a time). Returns (space, storage)."""
    d = opts.study_dir
    created = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    try:
        return _init_locked(opts, config, overrides, storage)
    except BaseException:
        if created and [p.name for p in d.iterdir()] == [".search.lock"]:  # nothing of a study was made: no trace
            shutil.rmtree(d, ignore_errors=True)
        raise


def _init_locked(opts: SearchOptions, config: str | None, overrides: dict, storage):
    from filelock import FileLock
    d = opts.study_dir
    with FileLock(str(d / ".search.lock")):
        saved_space, saved_settings = d / "space.yaml", d / "search.json"
        if saved_space.is_file() and opts.space is None:
            space = Space.load(saved_space)
        else:
            space = Space.load(opts.space)
            if saved_space.is_file() and space != Space.load(saved_space):
                raise ConfigError(f"--space {opts.space} differs from the space this study was started with "
                                  f"({saved_space}). Remedy: drop --space to continue the study, or use a new --out.")
        clash = sorted(k for k in overrides if k.startswith("train.") and k[6:] in {p.key for p in space.params})
        if clash:
            flags = ", ".join("--" + k[6:].replace("_", "-") for k in clash)
            raise ConfigError(f"{flags}: searched by the space, so a flag cannot also set it. Remedy: drop the flag, "
                              "or pin the key in a --space file (e.g. `lr: 0.001`).")
        settings = _settings(opts, overrides)
        if saved_settings.is_file():
            before = json.loads(saved_settings.read_text(encoding="utf-8"))
            if before != settings:
                raise ConfigError(f"{d}: this study was started with other settings ({saved_settings}: {before}); "
                                  "its trials would not be comparable. Remedy: the same --folds, --metric and "
                                  "training flags as before, or a new --out.")
        if not Run(d).split_csv.is_file():
            from ..data.prepare import prepare
            cfg = load_config(config, overrides)
            cfg = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, folds=opts.folds))
            opts.console.echo(prepare(cfg, Run(d, opts.console)).report())
        atomic.write_text(saved_space, space.to_yaml())
        atomic.write_json(saved_settings, settings)
        return space, storage or open_storage(opts.storage_url)


def _record(trial, tdir: Path, state: str, params: dict, **extra) -> None:
    """The trial's trial.json: its number, state, sampled parameters and (when there are) its scores."""
    atomic.write_json(tdir / "trial.json", {"number": trial.number, "state": state, "params": params, **extra})


def _objective(opts: SearchOptions, space: Space, config: str | None, overrides: dict):
    import optuna
    from ..runlock import run_lock
    from ..training.fit import train

    def objective(trial) -> float:
        params = space.suggest(trial)
        trial_overrides = {**overrides, **as_overrides(params)}
        cfg = load_config(config, trial_overrides).validate()
        tdir = opts.study_dir / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(tdir.relative_to(opts.study_dir)))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("overrides", plain(trial_overrides))
        say = lambda text: opts.console.echo(f"[trial {trial.number}] {text}")
        say("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        scores = []
        for fold in (range(opts.folds) if opts.folds else [None]):
            rdir = tdir if fold is None else tdir / f"fold{fold}"
            share_split(opts.study_dir, rdir)
            fcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, fold=fold))
            prune = pruning_callback(trial, f"val/{opts.metric}") if fold is None and opts.pruner != "none" else None
            try:
                with run_lock(rdir, "search"):
                    result = train(fcfg, Run(rdir, Console(False, say)), callbacks=prune)
            except optuna.TrialPruned:
                _record(trial, tdir, "PRUNED", params)
                say("pruned")
                raise
            scores.append(float(result.val_metrics[opts.metric]))
            if fold is not None:
                trial.report(float(sum(scores) / len(scores)), fold)
                if opts.pruner != "none" and fold + 1 < opts.folds and trial.should_prune():
                    _record(trial, tdir, "PRUNED", params, fold_scores=scores)
                    say(f"pruned after fold {fold}")
                    raise optuna.TrialPruned(f"pruned after fold {fold}")
        value = float(sum(scores) / len(scores))
        if not math.isfinite(value):
            raise DataError(f"trial {trial.number}: validation {opts.metric} is not finite (one class only in a "
                            "validation fold?). Remedy: a larger validation share, or fewer --folds.")
        _record(trial, tdir, "COMPLETE", params, value=value, fold_scores=scores, metric=opts.metric)
        say(f"validation {opts.metric} {value:.4f}")
        return value
    return objective


def make_study(opts: SearchOptions, n_trials_hint: int, storage):
    import optuna
    sampler = optuna.samplers.TPESampler(n_startup_trials=max(3, min(10, n_trials_hint // 3)), constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if opts.pruner == "median" \
        else optuna.pruners.NopPruner()
    return optuna.create_study(storage=storage, study_name=opts.study_dir.resolve().name, direction="maximize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def finished(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def require_optuna() -> None:
    try:
        import optuna  # noqa: F401
        import optuna_integration  # noqa: F401
    except ImportError:
        raise ConfigError("`skinlesion search` needs Optuna. Remedy: pip install 'skinlesion[search]'") from None


def run_search(opts: SearchOptions, config: str | None, overrides: dict, pruner=None) -> SearchResult:
    """Run trials (in this process) until the study holds ``opts.trials`` finished ones (complete or pruned,
    counted over every process sharing it); write the study's outputs after each."""
    require_optuna()
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState
    if opts.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {opts.trials}. Remedy: --trials 12")
    if opts.folds is not None and not 2 <= opts.folds <= 20:
        raise ConfigError(f"--folds must be 2-20, got {opts.folds}. Remedy: --folds 5")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a --storage URL that cannot be opened is refused before anything is written; the default SQLite file is
    # created in the study folder under its lock (two workers starting at once must not both create its tables)
    storage = open_storage(opts.storage) if opts.storage else None
    space, storage = _init(opts, config, overrides, storage)
    study = make_study(opts, opts.trials, storage)
    if pruner is not None:
        study.pruner = pruner
    if not study.trials:
        default = space.defaults_inside(load_config(config, overrides))
        if default:  # the first trial is the default recipe: the search is measured against it at equal budget
            study.enqueue_trial(default, user_attrs={"default": True}, skip_if_exists=True)
    left = opts.trials - finished(study)
    opts.console.echo(f"study {opts.study_dir} ({opts.storage_url}): {finished(study)} of {opts.trials} trials finished")
    if left > 0:
        study.optimize(_objective(opts, space, config, overrides), n_trials=left, gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(opts.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                                  lambda s, t: write_outputs(s, opts.study_dir)])
    return write_outputs(study, opts.study_dir)


def write_outputs(study, study_dir: Path) -> SearchResult:
    """trials.csv, best.yaml (the best trial's training keys: `train --config best.yaml`), importance.json and
    the history and importance plots."""
    from .report import plots_and_importance, trials_table
    study_dir = Path(study_dir)
    atomic.write_csv(study_dir / "trials.csv", trials_table(study))  # unique temp names: workers may race
    best, best_yaml = _best(study), None
    if best is not None:
        best_yaml = atomic.write_text(study_dir / "best.yaml", best_config_text(best))
    plots_and_importance(study, study_dir)
    return SearchResult(study_dir, best.value if best else None, dict(best.params) if best else {},
                        finished(study), best_yaml)


def _best(study):
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def best_config_text(trial) -> str:
    """A config YAML of the best trial: its sections (data, train, ...) from every override it ran with."""
    nested: dict = {}
    for dotted, value in trial.user_attrs.get("overrides", {}).items():
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    header = (f"# skinlesion search: trial {trial.number}, validation score {trial.value:.4f}\n"
              f"# run folder: {trial.user_attrs.get('run_dir')}\n"
              "# use: skinlesion train --config best.yaml --data DIR --out RUN_DIR  (flags override these keys)\n")
    return header + yaml.safe_dump(nested, sort_keys=False)


def quiet_optuna_warnings() -> None:
    from optuna.exceptions import ExperimentalWarning
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    logging.getLogger("optuna").setLevel(logging.WARNING)

