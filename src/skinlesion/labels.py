"""HAM10000 diagnosis codes and the label mappings derived from them — the single source of truth."""
from __future__ import annotations

from typing import Literal

Task = Literal["binary", "7class"]
TASKS: tuple[str, ...] = ("binary", "7class")

#: The seven HAM10000 ``dx`` codes, in the fixed order used for 7-class indices.
DX_CODES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

#: Human-readable names for each dx code.
DX_NAMES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}

#: Codes beyond HAM10000's seven that other datasets need (docs/datasets.md): ``scc`` (squamous cell
#: carcinoma, ISIC 2019) and, where a dataset gives only benign/malignant or a diagnosis outside these codes,
#: ``benign`` / ``malignant``. They work in the binary task; the 7-class task needs the HAM10000 codes.
EXTRA_DX: tuple[str, ...] = ("scc", "benign", "malignant")
ALL_DX: tuple[str, ...] = DX_CODES + EXTRA_DX
DX_NAMES.update({"scc": "Squamous cell carcinoma", "benign": "Benign, diagnosis not among the codes",
                 "malignant": "Malignant, diagnosis not among the codes"})

MALIGNANT_DX: frozenset[str] = frozenset({"akiec", "bcc", "mel", "scc", "malignant"})
BENIGN_DX: frozenset[str] = frozenset({"nv", "bkl", "vasc", "df", "benign"})

#: dx -> 0 (benign) / 1 (malignant), for every known code.
BINARY_LABEL: dict[str, int] = {dx: int(dx in MALIGNANT_DX) for dx in ALL_DX}
BINARY_CLASS_NAMES: tuple[str, ...] = ("benign", "malignant")

#: dx -> class index for the 7-class task.
SEVEN_CLASS_LABEL: dict[str, int] = {dx: i for i, dx in enumerate(DX_CODES)}

#: Indices of the malignant classes in the 7-class output (p(malignant) = sum of these).
MALIGNANT_CLASS_INDICES: tuple[int, ...] = tuple(SEVEN_CLASS_LABEL[dx] for dx in DX_CODES if dx in MALIGNANT_DX)

#: Share of each dx among the 10,015 HAM10000 images (Tschandl et al. 2018).
HAM10000_DX_COUNTS: dict[str, int] = {
    "nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115,
}


def binary_label(dx: str) -> int:
    """0 for benign, 1 for malignant; raises KeyError naming the code if unknown."""
    try:
        return BINARY_LABEL[dx]
    except KeyError:
        raise KeyError(f"unknown dx code {dx!r}; expected one of {', '.join(ALL_DX)}") from None


#: task -> (dx -> training target) and task -> output class names (models.task builds on these).
LABEL_MAPS: dict[str, dict[str, int]] = {"binary": BINARY_LABEL, "7class": SEVEN_CLASS_LABEL}
CLASS_NAMES: dict[str, tuple[str, ...]] = {"binary": BINARY_CLASS_NAMES, "7class": DX_CODES}


def _known(task: str) -> str:
    if task not in LABEL_MAPS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def label_for(dx: str, task: str = "binary") -> int:
    """The training target for ``dx`` under ``task`` ('binary' or '7class')."""
    labels = LABEL_MAPS[_known(task)]
    if dx not in labels:
        raise KeyError(f"unknown dx code {dx!r}; expected one of {', '.join(labels)}")
    return labels[dx]


def class_names(task: str = "binary") -> tuple[str, ...]:
    """Output class names for ``task``."""
    return CLASS_NAMES[_known(task)]
