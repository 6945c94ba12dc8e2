"""Experiment tracking through Lightning's loggers: ``--logger csv,tensorboard,mlflow,wandb`` (any
combination). CSV and TensorBoard (tensorboardX, a dependency) write under ``RUN/logs/phaseN``; MLflow
(extra ``mlflow``: a local file store ``RUN/mlruns`` unless ``--mlflow-uri``) and Weights & Biases (extra
``wandb``: offline into ``RUN/wandb`` unless ``WANDB_MODE=online``) keep one run for all phases. Each gets
the resolved config as hyper-parameters and the per-epoch metrics; at the end of training the validation
metrics and the bundle (as artifacts); ``evaluate`` adds the test metrics to the same run (its ids are
kept in ``RUN/tracking.json``)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import lightning as L

from . import atomic
from .config import LOGGERS, ConfigError

EXTRAS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}  # logger -> (module, pip extra)


def parse_loggers(text: str) -> list[str]:
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    bad = [n for n in names if n not in LOGGERS]
    if bad or not names:
        raise ConfigError(f"--logger {text!r}: unknown logger(s) {', '.join(bad) or '(none given)'}. Remedy: a comma "
                          f"list of {', '.join(LOGGERS)}, e.g. --logger csv,tensorboard,mlflow")
    for n in names:
        _require(n, "--logger {n} needs the {module} package. Remedy: pip install 'skinlesion[{extra}]' (or drop {n} "
                    "from --logger)")
    return names


def _require(name: str, message: str) -> None:
    """The tracker ``name``'s optional package is importable, else a ConfigError from ``message`` (a format
    string with {n}, {module} and {extra})."""
    if name in EXTRAS:
        module, extra = EXTRAS[name]
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(message.format(n=name, module=module, extra=extra)) from None


def _flat(cfg) -> dict:
    out = {}
    for section, values in dataclasses.asdict(cfg).items():
        for k, v in (values.items() if isinstance(values, dict) else [(section, values)]):
            out[f"{section}.{k}"] = "null" if v is None else (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
    return out


def phase_loggers(t, run_dir: Path, phase: int) -> list:
    """The per-phase file loggers (CSV, TensorBoard) that ``t.logger`` asks for."""
    names = parse_loggers(t.logger)
    out = []
    if "csv" in names:
        out.append(L.pytorch.loggers.CSVLogger(run_dir / "logs", name="", version=f"phase{phase}"))
    if "tensorboard" in names:
        out.append(L.pytorch.loggers.TensorBoardLogger(run_dir / "logs", name="", version=f"phase{phase}"))
    return out


def final_validation_events(loggers) -> None:
    """tensorboardX names an event file by the second and the host only, and the writer a TensorBoard logger
    reopens for the final validation after fit would overwrite the phase's file (and its per-epoch curves)
    when both fall in the same second; give that reopened file its own suffix."""
    for lg in loggers:
        writer = lg.experiment if isinstance(lg, L.pytorch.loggers.TensorBoardLogger) else None
        if writer is not None and hasattr(writer, "_filename_suffix"):  # tensorboardX's SummaryWriter
            writer._filename_suffix = ".final"


def open_trackers(cfg, run_dir: Path, write: bool = True) -> list:
    """MLflow / W&B loggers, one run for the whole training (resumed with ``--resume``)."""
    names = parse_loggers(cfg.train.logger)
    state = read_state(run_dir)
    out = []
    if "mlflow" in names:
        uri = cfg.train.mlflow_uri or (run_dir.resolve() / "mlruns").as_uri()
        if not cfg.train.mlflow_uri:  # MLflow 3 asks file-store users to opt in; a local store is what we want here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(L.pytorch.loggers.MLFlowLogger(experiment_name=cfg.train.experiment, tracking_uri=uri,
                                                  run_name=run_dir.resolve().name,
                                                  run_id=state.get("mlflow", {}).get("run_id")))
    if "wandb" in names:
        os.environ.setdefault("WANDB_SILENT", "true")  # its banners and sync hints would drown our log
        offline = os.environ.get("WANDB_MODE", "offline") != "online"
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        out.append(L.pytorch.loggers.WandbLogger(project=cfg.train.experiment, name=run_dir.resolve().name,
                                                 save_dir=str(run_dir), offline=offline,
                                                 id=state.get("wandb", {}).get("id"), resume="allow"))
    for lg in out:
        lg.log_hyperparams(_flat(cfg))
    if write:
        _write(run_dir, out)
    return out


_STATE_KEYS = {"mlflow": ("tracking_uri", "run_id"), "wandb": ("id", "project", "dir", "mode")}


def read_state(run_dir: Path) -> dict:
    """The run's tracking.json (which MLflow / W&B runs this run logs to), checked; {} when absent. A file
    that cannot be read is an error rather than silently starting new tracker runs."""
    path = Path(run_dir) / "tracking.json"
    if not path.is_file():
        return {}
    remedy = (f"Remedy: delete {path} (training then starts new MLflow / W&B runs and evaluate logs to none; "
              "the old tracker runs stay where they are).")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not readable JSON ({e}). {remedy}") from None
    if not isinstance(state, dict):
        bad = ["the top level (an object)"]
    else:
        bad = [f"{k}.{f}" for k, fields in _STATE_KEYS.items() if k in state for f in fields
               if not isinstance(state[k], dict) or not isinstance(state[k].get(f), str)]
    if bad:
        raise ConfigError(f"{path} lacks or has a non-text value for {', '.join(bad)}. {remedy}")
    return state


def check_tracking(run_dir: Path) -> dict:
    """Before ``evaluate`` writes anything: tracking.json is sound and the packages of the trackers it names
    are installed (the test metrics go to those runs)."""
    state = read_state(run_dir)
    path = str(Path(run_dir) / "tracking.json").replace("{", "{{").replace("}", "}}")
    for name in state:
        _require(name, f"{path} records a --logger {{n}} run, so evaluate logs its test metrics there, but the "
                       "{module} package is not installed. Remedy: pip install 'skinlesion[{extra}]', or delete "
                       f"{path} to evaluate without tracker logging.")
    return state


def _write(run_dir: Path, trackers: list) -> None:
    state = {}
    for lg in trackers:
        if isinstance(lg, L.pytorch.loggers.MLFlowLogger):
            state["mlflow"] = {"tracking_uri": lg._tracking_uri, "run_id": lg.run_id, "experiment_id": lg.experiment_id}
        elif isinstance(lg, L.pytorch.loggers.WandbLogger):
            state["wandb"] = {"id": lg.experiment.id, "project": lg._project, "dir": str(run_dir),
                              "mode": "offline" if lg._offline else "online"}
    if state:
        atomic.write_json(run_dir / "tracking.json", state)


def finish_training(trackers: list, bundle: Path, val_metrics: dict) -> None:
    """Validation metrics and the bundle (config.json, weights) as artifacts of each tracker's run."""
    for lg in trackers:
        lg.log_metrics({f"final_val_{k}": float(v) for k, v in val_metrics.items()})
        if isinstance(lg, L.pytorch.loggers.MLFlowLogger):
            lg.experiment.log_artifacts(lg.run_id, str(bundle), artifact_path="bundle")
        elif isinstance(lg, L.pytorch.loggers.WandbLogger):
            import wandb
            art = wandb.Artifact(f"bundle-{lg.experiment.id}", type="model")
            art.add_dir(str(bundle))
            lg.experiment.log_artifact(art)
        lg.finalize("success")
    if any(isinstance(lg, L.pytorch.loggers.WandbLogger) for lg in trackers):
        import wandb
        wandb.finish()


def log_test_metrics(run_dir: Path, metrics: dict, prefix: str = "test") -> list[str]:
    """Add ``metrics`` (name -> number) to the run's MLflow / W&B runs recorded in tracking.json; returns
    the trackers written to."""
    state, done = read_state(run_dir), []
    if "mlflow" in state:
        from mlflow.tracking import MlflowClient
        if state["mlflow"]["tracking_uri"].startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=state["mlflow"]["tracking_uri"])
        for k, v in metrics.items():
            client.log_metric(state["mlflow"]["run_id"], f"{prefix}_{k}", float(v))
        done.append("mlflow")
    if "wandb" in state:
        import wandb
        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(project=state["wandb"]["project"], id=state["wandb"]["id"], resume="allow",
                         dir=state["wandb"]["dir"], mode=state["wandb"]["mode"])
        run.summary.update({f"{prefix}_{k}": float(v) for k, v in metrics.items()})
        run.finish()
        done.append("wandb")
    return done
