"""Options declared once: :func:`opt` carries each option's default, help, validator, CLI flag and resume
lock, and every config section (:class:`DataConfig`, :class:`SplitConfig`, :class:`DemoConfig`,
:class:`TrainConfig`) declares its options with it. ``config`` derives RULES, the CLI derives the flags,
``--resume`` derives LOCKED_KEYS, the bundle derives its recipe keys."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from .data.formats import FORMATS
from .labels import TASKS


def _positive_int(v) -> bool:
    return isinstance(v, int) and v >= 1


def _count(v) -> bool:
    return isinstance(v, int) and v >= 0


def _finite(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    def ok(v) -> bool:
        return (isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo)
                and (v < hi if hi_open else v <= hi))
    return ok


def _num(text: str):
    return float(text) if "." in text else int(text)


def _optional(check):
    return lambda v: v is None or check(v)


def opt(default, help: str, check=None, what: str = "", example: str = "", *, flag: str | bool | None = None,
        locked: bool = False, group: str | None = None, show_default: bool = True, **cli):
    """Declare an option once: its default, help, validator (``check`` with ``what`` it must be and an
    ``example`` that works), its CLI flag (None: ``--field-name``; False: config/YAML only), whether
    ``--resume`` refuses a change of it (``locked``), its help group, and argparse keywords (``cli``).
    ``choices`` (in ``cli``) is also the validator. The dataclass field, RULES, the flag and LOCKED_KEYS
    are all derived from this."""
    choices = cli.get("choices")
    if choices is not None and check is None:
        check = (lambda v, c=tuple(choices): v in c)
        names = [str(c) for c in choices]
        what = what or (" or ".join(names) if len(names) == 2 else "one of " + ", ".join(names))
        example = example or names[0]
    meta = {"help": help, "check": check, "what": what, "example": example, "flag": flag, "locked": locked,
            "group": group, "show_default": show_default, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


LOGGERS: tuple[str, ...] = ("csv", "tensorboard", "mlflow", "wandb")
AUGMENT_POLICIES = ("classic", "derm")  # skinlesion.data.batch_augment.POLICIES (a test keeps them equal)


@dataclass
class DataConfig:
    """Where the dataset is, in which layout, and how strictly to check it."""

    root: str | None = opt(None, "dataset root: HAM10000_metadata.csv plus images anywhere below", flag="--data",
                           metavar="DIR")
    metadata: str | None = opt(None, "metadata CSV if not DIR/HAM10000_metadata.csv", metavar="CSV")
    allow_missing: float = opt(0.0, "fraction of images that may be missing or corrupt; they are dropped and reported",
                               _finite(0, 1, hi_open=True), "a fraction in [0, 1)", "0.01", type=float,
                               metavar="FRACTION")
    verify: bool = opt(False, "decode every image once to find corrupt files", action="store_true")
    format: str = opt("auto", "dataset layout: auto (by the files present), ham10000, isic, folders or csv",
                      choices=list(FORMATS))
    columns: str | None = opt(None, "csv format: which columns hold what, e.g. \"image=Image Name,dx=Clinical "
                              "Diagnosis,group=patient\" (keys image, dx|label, group, age, sex, site)",
                              metavar="KEY=NAME,...")
    values: str | None = opt(None, "map diagnosis/label values to dx codes, e.g. \"0=nv,1=nv,2=mel\" or \"lentigo "
                             "NOS=bkl\" (targets: akiec bcc bkl df mel nv vasc scc benign malignant)",
                             metavar="RAW=CODE,...")
    merge_near_duplicates: bool = opt(False, "when the split is made: treat each group of near-duplicate images (as "
                                      "`audit` finds them) as one lesion, so none crosses splits", action="store_true")


@dataclass
class SplitConfig:
    """Lesion-level stratified split (the ratios and folds are checked by data.split)."""

    seed: int = opt(42, "random seed of the split", type=int)
    ratios: tuple[float, float, float] = opt((0.70, 0.15, 0.15), "train val test fractions", type=float, nargs=3,
                                             metavar=("TRAIN", "VAL", "TEST"))
    folds: int | None = opt(None, "grouped K-fold over train+val (test held out); fold 0 is val", type=int,
                            metavar="K")


@dataclass
class DemoConfig:
    """The synthetic demo dataset and the demo's short training."""

    n: int = opt(600, "number of synthetic images", lambda v: isinstance(v, int) and 10 <= v <= 100_000,
                 "a whole number from 10 to 100000", "600", type=int)
    seed: int = opt(0, "random seed of the synthetic data", type=int)
    image_size: tuple[int, int] = opt((300, 225), "width, height of the generated JPEGs", flag=False)
    arch: str = opt("efficientnet_lite0", "trained by the demo (its ImageNet weights ship with pip)", flag=False)
    epochs: int = opt(6, "training epochs of the demo", _positive_int, "a whole number >= 1", "6", type=int)
    phase1_epochs: int = opt(3, "frozen-backbone epochs of the demo", flag=False)
    lr: float = opt(1e-3, "learning rate of the demo (few epochs on a small synthetic set)", flag=False)
    train_size: int = opt(160, "model input size of the demo", lambda v: isinstance(v, int) and 32 <= v <= 1024,
                          "32-1024 pixels", "160", flag="--image-size", type=int)
    bootstrap: int = opt(1000, "lesion-level bootstrap resamples in the demo's evaluation", flag=False)


def _loggers(v) -> bool:
    return isinstance(v, str) and bool(v.strip()) and all(
        n.strip().lower() in LOGGERS for n in v.split(",") if n.strip())


@dataclass
class TrainConfig:
    """Model, fine-tuning, Trainer and recipe options. Each is declared once with :func:`opt`."""

    arch: str = opt("efficientnet_lite0", "backbone: {backbones} or any timm model name", locked=True)
    task: str = opt("binary", "binary (benign/malignant) or 7class (dx)", locked=True, choices=list(TASKS))
    epochs: int = opt(12, "total epochs over both phases", _positive_int, "a whole number >= 1", "15", locked=True,
                      type=int)
    batch_size: int | None = opt(None, "batch size (None: 32 on a CPU; 128 with CUDA, with the lr scaled by "
                                 "sqrt(128/32))", _optional(_positive_int), "a whole number >= 1", "32", locked=True,
                                 type=int)
    image_size: int | None = opt(None, "input size in pixels (None: the backbone's default)",
                                 _optional(lambda v: isinstance(v, int) and 32 <= v <= 2048), "None or 32-2048 pixels",
                                 "224", locked=True, type=int)
    weights: str | None = opt(None, "local .safetensors/state-dict file with ImageNet weights", locked=True,
                              metavar="FILE")
    pretrained: bool = opt(True, "random initialisation (default: pretrained weights)", flag="--no-pretrained",
                           locked=True, show_default=False, action="store_false")
    phases: int = opt(1, "2: frozen backbone, then partial unfreeze; 1: full fine-tuning", locked=True, type=int,
                      choices=[1, 2])
    phase1_epochs: int = opt(5, "epochs with the backbone frozen", _count, "a whole number >= 0", "5", locked=True,
                             type=int)
    lr: float = opt(6e-4, "phase-1 learning rate (phase 2: lr * --phase2-lr-factor)", _finite(0, 10),
                    "a number in [0, 10]", "1e-4", locked=True, type=float)
    phase2_lr_factor: float = opt(0.1, "phase-2 lr multiplier", _finite(0, 100, lo_open=True), "a number in (0, 100]",
                                  "0.1", locked=True, type=float)
    unfreeze_groups: int | None = opt(None, "backbone groups (stages) trained in phase 2 (None: per-architecture "
                                      "default)", _optional(_count), "a whole number >= 0", "2", locked=True, type=int)
    dropout: float = opt(0.3, "dropout before the linear head", _finite(0, 1, hi_open=True), "a probability in [0, 1)",
                         "0.3", locked=True, type=float)
    balanced_sampler: bool = opt(False, "class-balanced sampling instead of loss weights", locked=True,
                                 action="store_true")
    patience: int = opt(20, "early-stopping patience (epochs) on val PR-AUC", _count, "a whole number >= 0", "5",
                        locked=True, type=int)
    num_workers: int | None = opt(None, "DataLoader workers (None: min(4, cores/2))", _optional(_count),
                                  "a whole number >= 0", "2", type=int)
    cache_dir: str | None = opt(None, "decoded-image cache folder (None: ~/.cache/skinlesion)", metavar="DIR")
    accelerator: str = opt("auto", "Lightning accelerator: auto, cpu, gpu, mps")
    devices: str = opt("auto", "Lightning devices: auto, N")
    strategy: str = opt("auto", "Lightning strategy: auto, ddp, ...")
    num_nodes: int = opt(1, "machines for multi-node DDP (with torchrun / SLURM)", _positive_int, "a whole number >= 1",
                         "1", type=int)
    compile: bool = opt(False, "torch.compile the model", action="store_true")
    gpu_augment: bool | None = opt(None, "augment uint8 batches on the device (default: on with CUDA)",
                                   show_default=False, action=argparse.BooleanOptionalAction)
    device_cache: bool | None = opt(None, "hold the training and validation images in device memory and draw batches "
                                    "there (default: on with device augmentation when they fit in 40%% of free "
                                    "memory)", show_default=False, action=argparse.BooleanOptionalAction)
    cache_features: int = opt(0, "phase 1: precompute K augmented views of the frozen backbone's features and train "
                              "the head on them (0: off)", _count, "a whole number >= 0", "0", type=int, metavar="K")
    precision: str | None = opt(None, "Lightning precision (None: bf16/fp16 mixed on CUDA, else 32-true)")
    seed: int = opt(42, "seed for weights init, sampling and augmentation", locked=True, type=int)
    fold: int | None = opt(None, "with a --folds split: the fold used for validation", _optional(_count),
                           "a fold number >= 0", "0", locked=True, type=int)
    checkpoint_minutes: float = opt(5.0, "inside long epochs, save a resumable checkpoint this often; SIGTERM/Ctrl-C "
                                    "also save one (0: only at epoch ends)", _finite(0, 10_000),
                                    "a number of minutes >= 0 (0: only at epoch ends)", "5", type=float, metavar="MIN")
    limit_train_batches: float | None = opt(None, "batches (int) or fraction per epoch, for quick checks", _optional(
        lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0), "a positive count or fraction", "1.0",
        locked=True, type=_num)
    # config/YAML only
    weight_decay: float = opt(1e-4, "AdamW weight decay", _finite(0, 10), "a number in [0, 10]", "1e-4", flag=False,
                              locked=True)
    lr_patience: int = opt(2, "ReduceLROnPlateau patience on val PR-AUC", _count, "a whole number >= 0", "2", flag=False,
                           locked=True)
    channels_last: bool = opt(True, "channels_last memory format", flag=False, locked=True)
    lr_scaling: str | None = opt(None, "written when the device's default batch scaled the lr (the rule, as text)",
                                 flag=False)
    # the recipe (timm / torch building blocks): a named recipe sets these; flags override it
    recipe: str = opt("modern", "a named set of the recipe keys (see RECIPES)", flag=False, locked=True)
    schedule: str = opt("cosine", "LR schedule: plateau (ReduceLROnPlateau) or cosine (warmup + cosine)",
                        example="cosine", locked=True, group="recipe", choices=["plateau", "cosine"])
    warmup_epochs: float = opt(1.0, "cosine: linear warmup epochs", _finite(0, 1000), "a number of epochs >= 0", "1",
                               locked=True, group="recipe", type=float)
    min_lr_factor: float = opt(0.01, "cosine: final lr = lr * factor", _finite(0, 1), "a fraction in [0, 1]", "0.01",
                               locked=True, group="recipe", type=float)
    ema: bool = opt(True, "EMA of weights, validated and saved as the model (default: on)", locked=True,
                    group="recipe", show_default=False, action=argparse.BooleanOptionalAction)
    ema_decay: float = opt(0.998, "EMA decay", _finite(0, 1, lo_open=True, hi_open=True), "a number in (0, 1)", "0.998",
                           locked=True, group="recipe", type=float)
    mixup: float = opt(0.2, "mixup alpha (0: off)", _finite(0, 100), "an alpha >= 0 (0: off)", "0.2", locked=True,
                       group="recipe", type=float)
    cutmix: float = opt(0.0, "cutmix alpha (0: off)", _finite(0, 100), "an alpha >= 0 (0: off)", "1.0", locked=True,
                        group="recipe", type=float)
    mix_prob: float = opt(0.5, "probability of mixing a batch", _finite(0, 1), "a probability in [0, 1]", "0.5",
                          locked=True, group="recipe", type=float)
    label_smoothing: float = opt(0.05, "label smoothing", _finite(0, 0.5, hi_open=True), "a number in [0, 0.5)", "0.1",
                                 locked=True, group="recipe", type=float)
    layer_decay: float | None = opt(0.8, "layer-wise LR decay, e.g. 0.75 (None: off)", _optional(
        lambda v: isinstance(v, (int, float)) and 0 < v <= 1), "None or in (0, 1]", "0.75", locked=True, group="recipe",
        type=float)
    drop_path: float = opt(0.1, "stochastic depth rate", _finite(0, 1, hi_open=True), "a rate in [0, 1)", "0.1",
                           locked=True, group="recipe", type=float)
    augment: str = opt("derm", "augmentation policy", example="derm", locked=True, group="recipe",
                       choices=list(AUGMENT_POLICIES))
    logger: str = opt("csv,tensorboard", "experiment trackers, any of csv,tensorboard,mlflow,wandb (mlflow and wandb "
                      "are extras: pip install 'skinlesion[mlflow,wandb]')", _loggers,
                      "a comma list of " + ", ".join(LOGGERS), "csv,tensorboard", group="recipe", metavar="NAMES")
    experiment: str = opt("skinlesion", "MLflow experiment / W&B project name", group="recipe")
    mlflow_uri: str | None = opt(None, "MLflow tracking URI (default: a file store in RUN_DIR/mlruns)", group="recipe",
                                 metavar="URI")
    colour_constancy: bool = opt(False, "shades-of-gray colour constancy (Minkowski p=6) in training and in everything "
                                 "the bundle does afterwards", locked=True, group="recipe",
                                 action=argparse.BooleanOptionalAction)
    metadata_dropout: float = opt(0.2, "probability of hiding a metadata field in training", _finite(0, 1, hi_open=True),
                                  "a probability in [0, 1)", "0.2", locked=True, group="recipe", type=float)
    metadata: tuple[str, ...] = opt((), "patient fields fused with the image (age, sex, localization; set by "
                                    "--metadata FIELDS)", flag=False, locked=True, group="recipe")


def declared(section_type) -> list[dataclasses.Field]:
    """The fields of a config section declared with :func:`opt`."""
    return [f for f in dataclasses.fields(section_type) if "help" in f.metadata]


#: Keys that ``--resume`` refuses to change (they would change the model being continued).
LOCKED_KEYS: tuple[str, ...] = tuple(f.name for f in declared(TrainConfig) if f.metadata["locked"])
#: The recipe keys a bundle records.
RECIPE_KEYS: tuple[str, ...] = tuple(f.name for f in declared(TrainConfig)
                                     if f.metadata["group"] == "recipe" and f.metadata["locked"])
