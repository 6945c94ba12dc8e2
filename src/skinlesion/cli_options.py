"""Command-line options shared by the verbs: config-key flags (file < flags), the option groups of each
stage, and the checks of plain flags that run before any stage."""
from __future__ import annotations

import argparse
import math

from .config import ConfigError, field_default


def _opt(parser: argparse.ArgumentParser, flag: str, key: str, help: str, **kw) -> None:
    """A flag that overrides config key ``section.field`` only when given (file < CLI)."""
    default = field_default(key)
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    parser.add_argument(flag, dest=key, default=argparse.SUPPRESS, help=f"{help} (default: {shown})", **kw)


class _MetadataFlag(argparse.Action):
    """``--metadata`` on training verbs: a list of fields (``age,sex,localization``) selects metadata
    features; anything else is the metadata CSV's path, as on every other verb."""

    def __call__(self, parser, namespace, value, option_string=None):
        from .data.tabular import ALIASES, FIELDS, REFUSED
        parts = [v.strip().lower() for v in value.split(",")]
        known = set(FIELDS) | set(ALIASES) | set(REFUSED)
        looks_like_path = value.lower().endswith(".csv") or "/" in value or "\\" in value
        is_fields = not looks_like_path and ("," in value or all(p in known for p in parts))
        setattr(namespace, "train.metadata" if is_fields else "data.metadata", value)


def _add_data_opts(p: argparse.ArgumentParser, required: bool = True, features: bool = False) -> None:
    _opt(p, "--data", "data.root", "dataset root: HAM10000_metadata.csv plus images anywhere below", metavar="DIR")
    if features:
        _add_merge_opt(p)
        p.add_argument("--metadata", action=_MetadataFlag, default=argparse.SUPPRESS, metavar="CSV|FIELDS",
                       help="metadata CSV if not DIR/HAM10000_metadata.csv; or, as a comma list of age,sex,"
                            "localization, the patient fields fused with the image (dx_type is refused: it "
                            "encodes the label)")
    else:
        _opt(p, "--metadata", "data.metadata", "metadata CSV if not DIR/HAM10000_metadata.csv", metavar="CSV")
    _opt(p, "--allow-missing", "data.allow_missing", "fraction of images that may be missing or corrupt; "
         "they are dropped and reported", type=float, metavar="FRACTION")
    _opt(p, "--verify", "data.verify", "decode every image once to find corrupt files", action="store_true")
    _opt(p, "--format", "data.format", "dataset layout: auto (by the files present), ham10000, isic, folders or csv",
         choices=["auto", "ham10000", "isic", "folders", "csv"])
    _opt(p, "--columns", "data.columns", "csv format: which columns hold what, e.g. "
         "\"image=Image Name,dx=Clinical Diagnosis,group=patient\" (keys image, dx|label, group, age, sex, site)",
         metavar="KEY=NAME,...")
    _opt(p, "--values", "data.values", "map diagnosis/label values to dx codes, e.g. \"0=nv,1=nv,2=mel\" or "
         "\"lentigo NOS=bkl\" (targets: akiec bcc bkl df mel nv vasc scc benign malignant)", metavar="RAW=CODE,...")


def _add_merge_opt(p: argparse.ArgumentParser) -> None:
    _opt(p, "--merge-near-duplicates", "data.merge_near_duplicates", "when the split is made: treat each group of "
         "near-duplicate images (as `audit` finds them) as one lesion, so none crosses splits", action="store_true")


def _add_split_opts(p: argparse.ArgumentParser) -> None:
    _add_merge_opt(p)
    _opt(p, "--seed", "split.seed", "random seed of the split", type=int)
    _opt(p, "--ratios", "split.ratios", "train val test fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    _opt(p, "--folds", "split.folds", "grouped K-fold over train+val (test held out); fold 0 is val", type=int, metavar="K")


def _add_demo_opts(p: argparse.ArgumentParser) -> None:
    _opt(p, "--n", "demo.n", "number of synthetic images", type=int)
    _opt(p, "--seed", "demo.seed", "random seed of the synthetic data", type=int)


def _add_train_opts(p: argparse.ArgumentParser) -> None:
    from .models.registry import list_backbones
    _opt(p, "--arch", "train.arch", f"backbone: {', '.join(list_backbones())} or any timm model name")
    _opt(p, "--task", "train.task", "binary (benign/malignant) or 7class (dx)", choices=["binary", "7class"])
    _opt(p, "--epochs", "train.epochs", "total epochs over both phases", type=int)
    _opt(p, "--batch-size", "train.batch_size", "batch size (None: 32 on a CPU; 128 with CUDA, with the lr scaled by "
         "sqrt(128/32))", type=int)
    _opt(p, "--image-size", "train.image_size", "input size in pixels (None: the backbone's default)", type=int)
    _opt(p, "--weights", "train.weights", "local .safetensors/state-dict file with ImageNet weights", metavar="FILE")
    p.add_argument("--no-pretrained", dest="train.pretrained", action="store_false", default=argparse.SUPPRESS,
                   help="random initialisation (default: pretrained weights)")
    _opt(p, "--phases", "train.phases", "2: frozen backbone, then partial unfreeze; 1: full fine-tuning", type=int, choices=[1, 2])
    _opt(p, "--phase1-epochs", "train.phase1_epochs", "epochs with the backbone frozen", type=int)
    _opt(p, "--lr", "train.lr", "phase-1 learning rate (phase 2: lr * --phase2-lr-factor)", type=float)
    _opt(p, "--phase2-lr-factor", "train.phase2_lr_factor", "phase-2 lr multiplier", type=float)
    _opt(p, "--unfreeze-groups", "train.unfreeze_groups", "backbone groups (stages) trained in phase 2 "
         "(None: per-architecture default)", type=int)
    _opt(p, "--dropout", "train.dropout", "dropout before the linear head", type=float)
    _opt(p, "--balanced-sampler", "train.balanced_sampler", "class-balanced sampling instead of loss weights", action="store_true")
    _opt(p, "--patience", "train.patience", "early-stopping patience (epochs) on val PR-AUC", type=int)
    _opt(p, "--num-workers", "train.num_workers", "DataLoader workers (None: min(4, cores/2))", type=int)
    _opt(p, "--cache-dir", "train.cache_dir", "decoded-image cache folder (None: ~/.cache/skinlesion)", metavar="DIR")
    _opt(p, "--accelerator", "train.accelerator", "Lightning accelerator: auto, cpu, gpu, mps")
    _opt(p, "--devices", "train.devices", "Lightning devices: auto, N")
    _opt(p, "--strategy", "train.strategy", "Lightning strategy: auto, ddp, ...")
    _opt(p, "--num-nodes", "train.num_nodes", "machines for multi-node DDP (with torchrun / SLURM)", type=int)
    _opt(p, "--compile", "train.compile", "torch.compile the model", action="store_true")
    p.add_argument("--gpu-augment", dest="train.gpu_augment", action=argparse.BooleanOptionalAction,
                   default=argparse.SUPPRESS, help="augment uint8 batches on the device (default: on with CUDA)")
    p.add_argument("--device-cache", dest="train.device_cache", action=argparse.BooleanOptionalAction,
                   default=argparse.SUPPRESS, help="hold the training and validation images in device memory and "
                   "draw batches there (default: on with device augmentation when they fit in 40%% of free memory)")
    _opt(p, "--cache-features", "train.cache_features", "phase 1: precompute K augmented views of the frozen "
         "backbone's features and train the head on them (0: off)", type=int, metavar="K")
    _opt(p, "--precision", "train.precision", "Lightning precision (None: bf16/fp16 mixed on CUDA, else 32-true)")
    _opt(p, "--seed", "train.seed", "seed for weights init, sampling and augmentation", type=int)
    _opt(p, "--fold", "train.fold", "with a --folds split: the fold used for validation", type=int)
    _opt(p, "--checkpoint-minutes", "train.checkpoint_minutes", "inside long epochs, save a resumable checkpoint "
         "this often; SIGTERM/Ctrl-C also save one (0: only at epoch ends)", type=float, metavar="MIN")
    _opt(p, "--limit-train-batches", "train.limit_train_batches", "batches (int) or fraction per epoch, for quick checks", type=_num)
    from .config import DEFAULT_RECIPE, RECIPES
    g = p.add_argument_group("recipe", "a named recipe sets the options below; flags given here override it")
    g.add_argument("--recipe", dest="train.recipe", default=argparse.SUPPRESS, choices=list(RECIPES),
                   help=f"named recipe: {', '.join(RECIPES)} (default: {DEFAULT_RECIPE})")
    _opt(g, "--schedule", "train.schedule", "LR schedule: plateau (ReduceLROnPlateau) or cosine (warmup + cosine)",
         choices=["plateau", "cosine"])
    _opt(g, "--warmup-epochs", "train.warmup_epochs", "cosine: linear warmup epochs", type=float)
    _opt(g, "--min-lr-factor", "train.min_lr_factor", "cosine: final lr = lr * factor", type=float)
    g.add_argument("--ema", dest="train.ema", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="EMA of weights, validated and saved as the model (default: off)")
    _opt(g, "--ema-decay", "train.ema_decay", "EMA decay", type=float)
    _opt(g, "--mixup", "train.mixup", "mixup alpha (0: off)", type=float)
    _opt(g, "--cutmix", "train.cutmix", "cutmix alpha (0: off)", type=float)
    _opt(g, "--mix-prob", "train.mix_prob", "probability of mixing a batch", type=float)
    _opt(g, "--label-smoothing", "train.label_smoothing", "label smoothing", type=float)
    _opt(g, "--layer-decay", "train.layer_decay", "layer-wise LR decay, e.g. 0.75 (None: off)", type=float)
    _opt(g, "--drop-path", "train.drop_path", "stochastic depth rate", type=float)
    _opt(g, "--augment", "train.augment", "augmentation policy", choices=["classic", "derm"])
    _opt(g, "--logger", "train.logger", "experiment trackers, any of csv,tensorboard,mlflow,wandb (mlflow and wandb "
         "are extras: pip install 'skinlesion[mlflow,wandb]')", metavar="NAMES")
    _opt(g, "--experiment", "train.experiment", "MLflow experiment / W&B project name")
    _opt(g, "--mlflow-uri", "train.mlflow_uri", "MLflow tracking URI (default: a file store in RUN_DIR/mlruns)",
         metavar="URI")
    _opt(g, "--colour-constancy", "train.colour_constancy", "shades-of-gray colour constancy (Minkowski p=6) in "
         "training and in everything the bundle does afterwards", action=argparse.BooleanOptionalAction)
    _opt(g, "--metadata-dropout", "train.metadata_dropout", "probability of hiding a metadata field in training",
         type=float)


def _num(text: str):
    return float(text) if "." in text else int(text)


#: Checks of flags that are not config keys: (attribute, check, what it must be, a value that works).
ARG_RULES = (
    ("bootstrap", lambda v: 10 <= v <= 1_000_000, "a whole number from 10 to 1000000", "1000"),
    ("batch_size", lambda v: v >= 1, "a whole number >= 1", "16"),
    ("num_workers", lambda v: v is None or v >= 0, "a whole number >= 0", "0"),
    ("allow_missing", lambda v: math.isfinite(v) and 0 <= v < 1, "a fraction in [0, 1)", "0.01"),
    ("max_upload_mb", lambda v: math.isfinite(v) and 0 < v <= 1024, "a size in MB in (0, 1024]", "10"),
    ("port", lambda v: 0 <= v <= 65535, "a TCP port 0-65535", "8000"),
)


def check_fraction(flag: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(f"{flag} must be a fraction in (0, 1], got {value!r}. Remedy: {flag} 0.9")


def check_args(args) -> None:
    """Validate the plain (non-config) flags before any stage runs."""
    for name, check, what, remedy in ARG_RULES:
        if name in vars(args) and "." not in name and not check(getattr(args, name)):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be {what}, got {getattr(args, name)!r}. Remedy: {flag} {remedy}")
    if vars(args).get("target_sensitivity") is not None:
        check_fraction("--target-sensitivity", args.target_sensitivity)
    if vars(args).get("adapt_fraction") is not None:
        check_fraction("--adapt-fraction", args.adapt_fraction)
        if args.adapt_fraction >= 1:
            raise ConfigError("--adapt-fraction must leave images to score, got 1. Remedy: --adapt-fraction 0.3")
