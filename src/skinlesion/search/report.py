"""A study's outputs: the table of trials, Optuna's parameter importances and its history/importance plots."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from .. import atomic


def trials_table(study) -> pd.DataFrame:
    """One row per trial: number, state, value, duration (minutes), its run folder, the worker (host:pid) that
    ran it and its parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        minutes = (t.datetime_complete - t.datetime_start).total_seconds() / 60 \
            if t.datetime_complete and t.datetime_start else None
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "minutes": minutes,
                     "last_step": last, "default": bool(t.user_attrs.get("default", False)),
                     "run_dir": t.user_attrs.get("run_dir"), "worker": t.user_attrs.get("worker"),
                     **{f"param_{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def plots_and_importance(study, study_dir: Path) -> None:
    """importance.json and plots/{history,importance}.png (Optuna's matplotlib plots). Importance needs two
    or more completed trials; until then the file says why it is empty."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState
    plots = Path(study_dir) / "plots"
    plots.mkdir(exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    importance, why = {}, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        if len(complete) >= 2:
            try:
                importance = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
            except (RuntimeError, ValueError) as exc:  # e.g. every completed trial had the same parameters
                why = str(exc).splitlines()[0]
        else:
            why = f"{len(complete)} completed trial(s): importance needs at least 2"
        _save(optuna.visualization.matplotlib.plot_optimization_history(study), plots / "history.png", plt)
        if importance:
            _save(optuna.visualization.matplotlib.plot_param_importances(study), plots / "importance.png", plt)
    atomic.write_text(Path(study_dir) / "importance.json",
                      json.dumps({"importance": importance, "method": "fANOVA (optuna.importance)",
                                  "completed_trials": len(complete), **({"why_empty": why} if why else {})}, indent=2))


def _save(ax, path: Path, plt) -> None:
    fig = ax.figure
    fig.tight_layout()
    atomic.save_figure(path, fig, dpi=110)
    plt.close(fig)
