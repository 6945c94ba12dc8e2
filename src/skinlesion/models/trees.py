"""Gradient-boosted trees as tensors: a fitted scikit-learn ``HistGradientBoostingClassifier`` (binary,
numeric features) stored as plain arrays — no pickle — and evaluated with torch ops, so a bundle's
safetensors file holds it and predict, serve, evaluate and ONNX export run it like any other layer."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: What a node array holds, one row per tree (padded to the largest tree).
NODE_ARRAYS = ("feature", "threshold", "left", "right", "is_leaf", "missing_left", "value")
_BIG = np.finfo(np.float64).max  # stands in for an infinite threshold (safetensors files must be finite)


def arrays_from_sklearn(clf) -> dict[str, np.ndarray]:
    """The node arrays of a fitted binary HistGradientBoostingClassifier (numeric features only)."""
    if getattr(clf, "n_trees_per_iteration_", 1) != 1:
        raise ValueError("only a binary HistGradientBoostingClassifier can be stored")
    trees = [predictors[0].nodes for predictors in clf._predictors]
    if any(t["is_categorical"].any() for t in trees):
        raise ValueError("categorical splits are not supported: encode categories as numbers")
    width = max(len(t) for t in trees)
    out = {"feature": np.zeros((len(trees), width), np.int64), "threshold": np.zeros((len(trees), width), np.float64),
           "left": np.zeros((len(trees), width), np.int64), "right": np.zeros((len(trees), width), np.int64),
           "is_leaf": np.ones((len(trees), width), np.bool_), "missing_left": np.zeros((len(trees), width), np.bool_),
           "value": np.zeros((len(trees), width), np.float64)}
    for i, t in enumerate(trees):
        n = len(t)
        out["feature"][i, :n] = t["feature_idx"]
        out["threshold"][i, :n] = np.clip(t["num_threshold"], -_BIG, _BIG)
        out["left"][i, :n], out["right"][i, :n] = t["left"], t["right"]
        out["is_leaf"][i, :n] = t["is_leaf"].astype(bool)
        out["missing_left"][i, :n] = t["missing_go_to_left"].astype(bool)
        out["value"][i, :n] = t["value"]
    depth = int(max(t["depth"].max() for t in trees))
    return {**out, "baseline": np.asarray([float(np.ravel(clf._baseline_prediction)[0])]),
            "depth": np.asarray([depth], np.int64)}


class TreeEnsemble(nn.Module):
    """``forward(X)`` -> the raw score (log-odds) of the boosted trees for float features X (N, F); a NaN
    feature follows the split's missing-value branch, as in scikit-learn."""

    def __init__(self, n_trees: int, width: int, depth: int):
        super().__init__()
        self.depth = depth
        for name, dtype in (("feature", torch.long), ("threshold", torch.float64), ("left", torch.long),
                            ("right", torch.long), ("is_leaf", torch.bool), ("missing_left", torch.bool),
                            ("value", torch.float64)):
            self.register_buffer(name, torch.zeros((n_trees, width), dtype=dtype))
        self.register_buffer("baseline", torch.zeros(1, dtype=torch.float64))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "TreeEnsemble":
        n, width = arrays["feature"].shape
        m = cls(n, width, int(arrays["depth"][0]))
        for name in (*NODE_ARRAYS, "baseline"):
            getattr(m, name).copy_(torch.from_numpy(np.ascontiguousarray(arrays[name])))
        return m

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = X.to(torch.float64)
        n_rows, (n_trees, width) = X.shape[0], self.feature.shape
        start = (torch.arange(n_trees, device=X.device) * width).expand(n_rows, n_trees)  # each tree's first node
        node = torch.zeros((n_rows, n_trees), dtype=torch.long, device=X.device)
        at = lambda table, i: torch.index_select(table.reshape(-1), 0, (start + i).reshape(-1)).reshape(n_rows, n_trees)
        for _ in range(self.depth):
            x = X.gather(1, at(self.feature, node))
            # NaN <= t is False, so a missing value goes left only where the split sends missing values left
            # (logical ops, not a boolean Where: ONNX Runtime has no kernel for that)
            go_left = (x <= at(self.threshold, node)) | (torch.isnan(x) & at(self.missing_left, node))
            step = torch.where(go_left, at(self.left, node), at(self.right, node))
            node = torch.where(at(self.is_leaf, node), node, step)
        return self.baseline + at(self.value, node).sum(1)
