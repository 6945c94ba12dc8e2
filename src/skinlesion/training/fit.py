"""The `train` stage: two-phase fine-tuning with Lightning, then val predictions and the bundle."""
from __future__ import annotations

import dataclasses
import logging
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch

from ..models.task import get_task
from .. import atomic
from ..config import RECIPE_KEYS, RunConfig, save_config
from ..data.cache import build_cache, default_num_workers
from ..errors import DataError
from ..data.run import Run, RunContext, binding, read_json
from ..data.transforms import Preprocessing
from ..evaluation.metrics import epoch_metrics
from ..inference.bundle import bundle_config, keep_tuning, save_bundle, seen_ids
from ..inference.predictor import prediction_frame
from ..models.classifier import ModelOptions, build_model, parameter_groups, set_trainable
from ..models.registry import get_spec
from ..runlock import process_rank
from ..errors import Interrupted
from .checkpoints import (_load_weights, check_checkpoint_binding, check_resume_config,
                          checkpoint_path, has_checkpoints, verify_checkpoints)
from .interrupt import SaveOnInterrupt
from .history import plot_history, read_history
from .trainer import _accelerator_is_cuda, _batches, _make_trainer, _quietly
from .loaders import build_data, cache_features
from ..tracking import final_validation_events, finish_training, open_trackers
from . import recipe
from .module import LesionModule, Phase, PhasePlan


@dataclass
class TrainResult:
    run_dir: Path
    bundle: Path
    val_metrics: dict
    best_checkpoint: Path
    epochs: int
    seconds: float
    train_images_per_s: float


def _split_with_paths(cfg: RunConfig, run: Run) -> tuple[RunContext, pd.DataFrame, str]:
    """The run's split (made with prepare's defaults when absent, fold applied) joined with image paths,
    and the data root it is read from."""
    if not run.split_csv.is_file():
        from ..data.prepare import prepare
        if cfg.train.fold is not None and cfg.split.folds is None:
            raise DataError(f"--fold {cfg.train.fold}: {run.path} has no split yet, and the default split has no "
                            f"folds. Remedy: `skinlesion prepare --data DIR --out {run.path} --folds 5` first.")
        run.console.echo(f"no split in {run.path}: running prepare with seed {cfg.split.seed}, ratios {cfg.split.ratios}")
        run.console.echo(prepare(cfg, run).report())
    ctx = run.context(cfg.train.fold)
    root = cfg.data.root or ctx.summary.get("dataset", {}).get("root")
    if not root:
        raise DataError("no data folder: pass --data DIR")
    return ctx, ctx.with_paths(root), str(Path(root).resolve())


def auto_image_size(default: int, paths: list[str], sample: int = 64) -> int:
    """The backbone's default size, lowered for small images to the median shorter side rounded to a
    multiple of 32 (never below 64): upsampling beyond the data's resolution adds compute, not detail."""
    from ..data.images import image_size
    step = max(1, len(paths) // sample)
    short = float(np.median([min(image_size(p)) for p in paths[::step]]))
    return int(min(default, max(64, 32 * round(short / 32))))


def _phase_plan(t, spec, n_groups: int) -> list[PhasePlan]:
    """Phase 1 frozen, phase 2 the last groups; with ``phases=1`` a single full fine-tuning phase."""
    if t.phases == 1:
        return [PhasePlan(1, t.epochs, t.lr, n_groups)]
    if t.phases != 2:
        raise DataError(f"--phases must be 1 or 2, got {t.phases}")
    p1 = min(t.phase1_epochs, t.epochs)
    plan = [PhasePlan(1, p1, t.lr, 0)]
    if t.epochs > p1:
        groups = spec.unfreeze_groups if t.unfreeze_groups is None else t.unfreeze_groups
        plan.append(PhasePlan(2, t.epochs - p1, t.lr * t.phase2_lr_factor, min(groups, n_groups)))
    return plan


def _phase_state(ckpt_dir: Path) -> dict:
    path = ckpt_dir / "phase.json"
    if not path.is_file():
        return {}
    state = read_json(path, "written by train when a phase completes")
    ok = (isinstance(state.get("complete"), bool) and isinstance(state.get("epochs"), int)
          and isinstance(state.get("best_path"), str) and isinstance(state.get("best_score"), (int, float)))
    if not ok:
        raise DataError(f"{path}: damaged (needs complete, epochs, best_path and best_score). Remedy: delete it; "
                        "`train --resume` then continues that phase from its last.ckpt.")
    return state


@dataclass
class TrainSetup:
    """What every phase (and lr-find) shares: the resolved config, the split, the model and its data."""

    cfg: RunConfig
    run: Run  # the folder, its console and workers
    ctx: RunContext
    split: pd.DataFrame
    data_root: str
    spec: object
    pre: Preprocessing
    data: object
    model: torch.nn.Module
    n_groups: int
    encoder: object = None  # data.tabular.MetadataEncoder with --metadata fields
    meta: torch.Tensor | None = None  # encoded metadata, one row per split row
    callbacks: object = None  # phase -> extra Lightning callbacks of that phase (e.g. a search's pruning)

    def module(self, ph: Phase) -> LesionModule:
        """The LightningModule of phase ``ph`` (with the encoded metadata of a metadata model)."""
        module = LesionModule(self.model, self.cfg.train, ph, self.data.loss_weight, self.data.batch_augment)
        if self.encoder is not None:
            module.set_metadata(self.meta[self.data.train_idx], self.meta[self.data.val_idx], self.encoder.slices(),
                                torch.from_numpy(self.encoder.missing_vector()))
        return module


def _metadata(cfg: RunConfig, ctx: RunContext, split: pd.DataFrame, data_root: str):
    """The fitted encoder (on training rows) and the encoded rows of the split, or (None, None)."""
    from ..data.formats import recorded_table
    from ..data.tabular import MetadataEncoder, parse_fields
    fields = parse_fields(cfg.train.metadata)
    if not fields:
        return None, None
    record = dict(ctx.summary.get("dataset") or {})
    if cfg.data.metadata:  # a copy: the run's recorded summary stays as it was read
        record["metadata"] = cfg.data.metadata
        record["format"] = {**(record.get("format") or {}), "metadata": cfg.data.metadata}
    meta = recorded_table(record, data_root)
    if meta is None:
        raise DataError(f"--metadata {','.join(fields)}: the dataset's table is not readable below {data_root}. "
                        "Remedy: pass --data DIR (and --metadata FILE.csv) of the dataset the split was made from.")
    rows = split[["image_id", "split"]].merge(meta.drop(columns=["split"], errors="ignore"), on="image_id", how="left")
    # a fold of a cv: fitted on all of train+val (covariates only, no label), so that every fold model encodes
    # the fields the same way and the fold ensemble can feed them one encoding
    fit_on = rows["split"] != "test" if ctx.fold is not None else rows["split"] == "train"
    encoder = MetadataEncoder.fit(rows[fit_on], fields)
    return encoder, torch.from_numpy(encoder.encode(rows))


def setup_training(cfg: RunConfig, run: Run, resume: bool, write: bool = True) -> TrainSetup:
    """Checks (resume, binding, checkpoints), the split with paths, the image cache, datasets and the model;
    with ``write`` (rank 0 of train) the resolved config.yaml and checkpoints/binding.json are written."""
    run_dir, echo = run.path, run.console.echo
    if not run.console.progress:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # the batch (and with CUDA's default batch, the lr) resolved first: --resume compares the resolved values
    cfg = dataclasses.replace(cfg, train=recipe.device_batch(cfg.train, _accelerator_is_cuda(cfg.train)))
    t = cfg.train
    cfg.validate()
    from ..tracking import parse_loggers
    parse_loggers(t.logger)  # an uninstalled tracker's extra is refused before the run folder is touched
    if t.weights:
        from ..models.weights import read_state_dict
        read_state_dict(t.weights)  # a refused or unreadable --weights file too
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        check_resume_config(cfg, run_dir)
    L.seed_everything(t.seed, workers=True, verbose=False)
    ctx, split, data_root = _split_with_paths(cfg, run)
    from ..data.formats import check_task
    check_task(split, t.task, str(run.split_csv))
    if resume:
        check_checkpoint_binding(ctx, run.checkpoints)
        verify_checkpoints(run_dir)
    spec = get_spec(t.arch, t.image_size or auto_image_size(get_spec(t.arch).image_size, split["path"].tolist()))
    pre = Preprocessing.for_spec(spec, "shades_of_gray" if t.colour_constancy else None)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, image_size=spec.image_size))
    t = cfg.train
    if write and process_rank() == 0:
        save_config(cfg, run_dir)
        atomic.write_json(run.binding_json, binding(ctx))

    workers = default_num_workers(t.num_workers)
    cache = build_cache(split["path"].tolist(), pre, t.cache_dir, num_workers=workers, progress=run.console.progress)
    gpu_augment = t.gpu_augment if t.gpu_augment is not None else _accelerator_is_cuda(t)
    data = build_data(split, cache, pre, t, gpu_augment, t.device_cache)
    if len(data.val_idx) == 0:
        raise DataError(f"{run.split_csv} has no validation images. Remedy: re-run prepare with a val ratio > 0")
    echo(data.summary)

    encoder, meta = _metadata(cfg, ctx, split, data_root)
    L.seed_everything(t.seed, workers=True, verbose=False)  # init independent of whether the cache existed
    model = build_model(spec, t.task, t.pretrained, t.weights, ModelOptions(t.dropout, t.drop_path,
                                                                         encoder.dim if encoder else 0))
    if encoder is not None:
        model.missing_meta.copy_(torch.from_numpy(encoder.missing_vector()))
        echo(f"metadata: {', '.join(encoder.fields)} ({encoder.dim} inputs, fields hidden at random with p = "
             f"{t.metadata_dropout} in training)")
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_groups = len(parameter_groups(model.backbone))
    echo(f"model: {spec.name} (timm {spec.timm_id}) at {spec.image_size}px, "
         f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {n_groups} parameter groups; "
         f"train {len(data.train_idx)} / val {len(data.val_idx)} images"
         + f"; augmentation {data.augmentation['policy']} on the {data.augmentation['where']}")
    return TrainSetup(cfg, run, ctx, split, data_root, spec, pre, data, model, n_groups, encoder, meta)


def train(cfg: RunConfig, run: Run | str | Path, resume: bool = False, callbacks=None) -> TrainResult | None:
    """Train ``cfg.train.arch`` on the run's split; write checkpoints, metrics.csv, val_predictions.csv,
    plots/training_history.png and bundle/ into the run folder. Under DDP every rank runs this; only
    rank 0 writes the run's artifacts and gets a result (other ranks get None). ``callbacks``: a function
    of the :class:`Phase` giving extra Lightning callbacks for it."""
    t_start = time.perf_counter()
    run = Run.of(run)
    run_dir, echo = run.path, run.console.echo
    if not resume and process_rank() == 0 and has_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already has checkpoints. Remedy: pass --resume to continue it, or choose "
                              "a new --out")
    if resume and process_rank() == 0 and not has_checkpoints(run_dir):
        raise DataError(f"--resume: {run_dir} has no checkpoint to continue from (no epoch finished and nothing was "
                        f"saved). Remedy: train without --resume: `skinlesion train --out {run_dir}` "
                        "(with the same --data and options).")
    st = setup_training(cfg, run, resume)
    st.callbacks = callbacks
    cfg, t, ctx, split, data_root, spec, pre, data, model, n_groups = (
        st.cfg, st.cfg.train, st.ctx, st.split, st.data_root, st.spec, st.pre, st.data, st.model, st.n_groups)

    offset, best, module, trainer, trained = 0, None, None, None, False
    trackers = open_trackers(cfg, run_dir, write=process_rank() == 0)
    for plan in _phase_plan(t, spec, n_groups):
        phase = plan.phase
        ckpt_dir = run.phase_dir(phase)
        ph = Phase(plan, offset, set_trainable(model, plan.unfreeze))
        module = st.module(ph)
        state = _phase_state(ckpt_dir)
        if state.get("complete"):
            echo(f"phase {phase}: already complete ({state['epochs']} epochs), skipping")
        else:
            trainer, state = _run_phase(st, module, ph, resume, trackers)
            trained = True
        _load_weights(module, checkpoint_path(run_dir, state["best_path"]))  # the next phase starts from this phase's best weights
        module.final_model()  # (its EMA weights, with EMA on)
        offset += state["epochs"]
        best = state if best is None or state["best_score"] > best["best_score"] else best

    _load_weights(module, checkpoint_path(run_dir, best["best_path"]))
    module.final_model()
    if trainer is None:  # every phase was already complete: a trainer just for the final validation pass
        trainer, _ = _make_trainer(t, run, Phase(PhasePlan(0, 1, t.lr, 0), offset, []))
    final_validation_events(trainer.loggers)
    _quietly(trainer.validate, module, data.val_loader(), verbose=False)  # gathered across ranks
    if not trainer.is_global_zero:
        return None
    atomic.write_json(run.best_json, best)
    val_pred = _val_frame(module.val_predictions, split.iloc[data.val_idx], t.task)
    atomic.write_csv(run.val_predictions, val_pred)
    val_metrics = epoch_metrics(val_pred["label"], val_pred["probability"])
    history = read_history(run.history_csv)
    plot_history(history, run.plots / "training_history.png")
    fingerprint = {"split_lesion_hash": ctx.summary.get("lesion_hash", {}).get("all"), "seed": ctx.summary.get("seed"),
                   **binding(ctx), "train_images": int(len(data.train_idx)), "val_images": int(len(data.val_idx)),
                   "dataset_root": data_root, "seen_image_ids": seen_ids(split.iloc[np.r_[data.train_idx, data.val_idx]])}
    metrics = {"val": {k: float(v) for k, v in val_metrics.items()}, "best_checkpoint": best["best_path"]}
    config = bundle_config(spec, pre, t.task, t.dropout, metrics, fingerprint)
    if st.encoder is not None:
        config["metadata"] = st.encoder.to_dict()
    config["recipe"] = {k: getattr(t, k) for k in ("recipe", *RECIPE_KEYS, "phases", "epochs", "lr", "batch_size",
                                                     "lr_scaling")}
    train_labels = split["label"].iloc[data.train_idx]
    config["augmentation"] = data.augmentation
    config["training_prior"] = {  # what class weighting did to the logits: undone by the calibration's offset
        "pos_weight": float(data.loss_weight.item()) if get_task(t.task).binary and data.loss_weight is not None else None,
        "balanced_sampler": bool(t.balanced_sampler), "train_prevalence": float(train_labels.mean()),
        "label_smoothing": float(t.label_smoothing), "mixup": float(t.mixup), "cutmix": float(t.cutmix)}
    config["training_limits"] = {  # every setting that limits training, for the card and report to state
        "limit_train_batches": t.limit_train_batches, "epochs_planned": int(t.epochs), "epochs_run": int(offset),
        "early_stopped": int(offset) < int(t.epochs), "train_images": int(len(data.train_idx)),
        "batches_per_epoch": _batches(trainer)}
    if not trained:  # a finished run resumed: same weights, so its tuned threshold and calibration still hold
        config = keep_tuning(run.bundle, config)
    bundle = save_bundle(module.final_model(), config, run.bundle)
    run.interrupted_json.unlink(missing_ok=True)  # finished: no longer an interrupted run
    finish_training(trackers, bundle, val_metrics)
    ips = float(history["train_images_per_s"].mul(history["train_seconds"]).sum() / history["train_seconds"].sum()) \
        if len(history) else float("nan")  # all training images over all training time
    return TrainResult(run_dir, bundle, val_metrics, checkpoint_path(run_dir, best["best_path"]), int(offset),
                       time.perf_counter() - t_start, ips)


def _run_phase(st: TrainSetup, module, ph: Phase, resume: bool, trackers=()):
    """Fit one phase (from its last.ckpt with ``resume``); write phase.json; return (trainer, state)."""
    t, data, model, run, n_groups = st.cfg.train, st.data, st.model, st.run, st.n_groups
    run_dir, echo = run.path, run.console.echo
    (phase, epochs, lr, unfreeze), trainable = ph.plan, ph.trainable
    ckpt_dir = run.phase_dir(phase)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    use_features = not trainable and t.cache_features > 0
    echo(f"phase {phase}: {epochs} epoch(s) at lr {lr:g}, "
         + ("backbone frozen (no_grad" + (f", {t.cache_features} cached feature view(s))" if use_features else ")")
            if not trainable else f"training the last {unfreeze} of {n_groups} backbone groups ({len(trainable)} tensors)")
         + (f", resuming from {last}" if ckpt_path else ""))
    interrupt = SaveOnInterrupt(run_dir, phase, t.checkpoint_minutes)
    extra = [interrupt, *(st.callbacks(ph) if st.callbacks else [])]
    trainer, checkpoint = _make_trainer(t, run, ph, trackers, extra)
    seed = t.seed + 1000 * phase
    if use_features:
        device = torch.device("cuda" if _accelerator_is_cuda(t) else "cpu")
        train_ds, val_ds = cache_features(model, data, t.cache_features, device, echo)
        train_loader, val_loader = data.train_loader(seed, train_ds), data.loader(val_ds)
    else:
        train_loader, val_loader = data.train_loader(seed), data.val_loader()
    try:
        _quietly(trainer.fit, module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(f"{last}: refused to resume from it: it holds objects other than plain tensors and numbers "
                        f"({str(exc).splitlines()[0][:200]}). Remedy: delete it and train again.") from None
    except Interrupted:
        raise
    except Exception:
        if interrupt.requested is not None:  # e.g. a DataLoader worker killed by the same SIGTERM
            raise Interrupted(interrupt.requested, interrupt.message(interrupt.requested)) from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    # top-1 with a fixed name: the best checkpoint is always this phase's best.ckpt. (Lightning's own
    # best_model_path comes from last.ckpt's state and names the original folder in a copied run.)
    best_path = (ckpt_dir / "best.ckpt").resolve().relative_to(run_dir.resolve())
    state = {"complete": True, "epochs": trainer.current_epoch, "best_path": best_path.as_posix(),
             "best_score": _best_score(checkpoint, run, phase), "phase": phase}
    if trainer.is_global_zero:
        atomic.write_json(ckpt_dir / "phase.json", state)
    if interrupt.requested is not None:  # the signal came in the phase's last validation: the phase is complete
        raise Interrupted(interrupt.requested, interrupt.message(interrupt.requested))
    return trainer, state


def _best_score(checkpoint, run: Run, phase: int) -> float:
    """The phase's best val PR-AUC: Lightning's, or (when it did not restore it, e.g. in a copied run) the
    best of the phase's rows in metrics.csv."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    history = read_history(run.history_csv)
    return float(history.loc[history["phase"] == phase, "val_pr_auc"].max())


def _val_frame(gathered: dict, rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """val_predictions.csv from the gathered validation outputs (one row per val image, split order)."""
    if len(gathered.get("index", [])) != len(rows):
        raise RuntimeError(f"gathered {len(gathered.get('index', []))} validation predictions for {len(rows)} images")
    order = np.argsort(gathered["index"])
    return prediction_frame(rows, gathered["probability"][order], gathered["classes"][order], task)
