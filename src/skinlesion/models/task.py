"""The prediction task behind one small interface: what the head outputs, how targets are made from ``dx``,
how logits become class probabilities and p(malignant), the loss and its class weights. Code asks the task
(``get_task(name).p_malignant(classes)``) instead of branching on its name.

- ``binary``: one logit, sigmoid; targets 0 (benign) / 1 (malignant); ``pos_weight`` = benign/malignant.
- ``7class``: seven logits, softmax over HAM10000's dx codes; p(malignant) = p(akiec) + p(bcc) + p(mel).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..labels import CLASS_NAMES, DX_CODES, LABEL_MAPS, MALIGNANT_CLASS_INDICES, TASKS, label_for


class Task:
    """A task's constants and the few operations that differ between tasks."""

    name: str
    outputs: int  # logits of the head
    class_names: tuple[str, ...]
    label_map: dict[str, int]  # dx -> training target
    malignant_columns: tuple[int, ...]  # columns of class_probabilities summed into p(malignant)
    description: str
    probability_formula: str

    @property
    def binary(self) -> bool:
        return self.outputs == 1

    def label(self, dx: str) -> int:
        return label_for(dx, self.name)

    def p_malignant(self, classes):
        """p(malignant) from class probabilities (numpy or torch, shape (N, C))."""
        return classes[:, list(self.malignant_columns)].sum(1)

    def malignant(self, targets: np.ndarray) -> np.ndarray:
        """Training targets -> 0/1 malignant."""
        return np.isin(np.asarray(targets), self.malignant_columns).astype(int)

    def probability_columns(self, classes: np.ndarray) -> dict[str, np.ndarray]:
        """The per-class columns a prediction table carries (p_<dx>; none for binary)."""
        return {}

    def class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits_from_probabilities(self, p: torch.Tensor, eps: float) -> torch.Tensor:
        """Logits whose class_probabilities are ``p`` (an ensemble's mean probabilities)."""
        raise NotImplementedError

    def malignant_score(self, output: torch.Tensor) -> torch.Tensor:
        """The logit of p(malignant) for one image's output (Grad-CAM's target)."""
        raise NotImplementedError

    def class_weights(self, labels: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, weight: torch.Tensor | None) -> nn.Module:
        raise NotImplementedError

    def loss_on(self, loss_fn, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss for hard (class index) or soft (probability, e.g. from Mixup) targets."""
        raise NotImplementedError

    def smooth(self, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        raise NotImplementedError

    def weight_summary(self, weights: torch.Tensor) -> str:
        raise NotImplementedError


class BinaryTask(Task):
    name, outputs, class_names, label_map = "binary", 1, CLASS_NAMES["binary"], LABEL_MAPS["binary"]
    malignant_columns = (1,)
    description = "benign vs malignant"
    probability_formula = "sigmoid(logits[:, 0])"

    def class_probabilities(self, logits):
        p = torch.sigmoid(logits.float().reshape(-1))
        return torch.stack([1 - p, p], dim=1)

    def logits_from_probabilities(self, p, eps):
        q = p[:, 1].clamp(eps, 1 - eps)
        return torch.log(q / (1 - q)).unsqueeze(1)

    def malignant_score(self, output):
        return output[0]

    def class_weights(self, labels):
        labels = np.asarray(labels)
        pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
        if pos == 0 or neg == 0:
            raise ValueError(f"the training split needs both classes (benign {neg}, malignant {pos})")
        return torch.tensor([neg / pos], dtype=torch.float32)

    def loss(self, weight):
        return nn.BCEWithLogitsLoss(pos_weight=weight)

    def loss_on(self, loss_fn, logits, target):
        if target.dim() == 2:  # Mixup's soft 2-class targets: p(malignant) for the single logit
            target = target[:, 1]
        return loss_fn(logits.reshape(-1).float(), target.float())

    def smooth(self, y, label_smoothing):
        return y.float() * (1 - label_smoothing) + label_smoothing / 2

    def weight_summary(self, weights):
        return f"pos_weight = benign/malignant = {weights.item():.3f}"


class SevenClassTask(Task):
    name, outputs, class_names, label_map = "7class", 7, CLASS_NAMES["7class"], LABEL_MAPS["7class"]
    malignant_columns = MALIGNANT_CLASS_INDICES
    description = "the 7 HAM10000 diagnoses"
    probability_formula = "softmax(logits); p(malignant) = p(akiec) + p(bcc) + p(mel)"

    def probability_columns(self, classes):
        return {f"p_{dx}": np.asarray(classes[:, j], dtype=np.float64) for j, dx in enumerate(DX_CODES)}

    def class_probabilities(self, logits):
        return torch.softmax(logits.float(), dim=1)

    def logits_from_probabilities(self, p, eps):
        return torch.log(p.clamp_min(eps))

    def malignant_score(self, output):
        mal = list(self.malignant_columns)
        ben = [i for i in range(output.shape[-1]) if i not in mal]
        return torch.logsumexp(output[mal], 0) - torch.logsumexp(output[ben], 0)

    def class_weights(self, labels):
        """Inverse frequency, normalised to mean 1 over the classes present."""
        counts = np.bincount(np.asarray(labels), minlength=self.outputs).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
        return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)

    def loss(self, weight):
        return nn.CrossEntropyLoss(weight=weight)

    def loss_on(self, loss_fn, logits, target):
        return loss_fn(logits.float(), target if target.dim() == 2 else target.long())

    def smooth(self, y, label_smoothing):
        return nn.functional.one_hot(y.long(), self.outputs).float() * (1 - label_smoothing) \
            + label_smoothing / self.outputs

    def weight_summary(self, weights):
        return "class weights " + ", ".join(f"{d}={w:.2f}" for d, w in zip(DX_CODES, weights.tolist()))


_TASKS = {t.name: t for t in (BinaryTask(), SevenClassTask())}
assert tuple(_TASKS) == TASKS


def get_task(task: "str | Task") -> Task:
    """The Task called ``task`` (a Task passes through); ValueError naming the known ones."""
    if isinstance(task, Task):
        return task
    try:
        return _TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None
