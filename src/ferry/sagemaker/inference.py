"""Answers of the built-in algorithms' models, in SageMaker's response shapes.

A model directory is what ``ferry.sagemaker.algorithms`` writes: ``model.npz`` (plain arrays,
loaded without pickle, so a model archive cannot run code) and ``metadata.json`` naming the
algorithm. Only k-NN is served from here so far; the endpoint server serves k-means and the
digits models through ``ferry.digits.model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class KnnModel:
    """``{"predicted_label": …}`` per record: the vote (classifier) or mean (regressor) of the k nearest."""

    algorithm = "knn"

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.k = int(metadata["k"])
        self.classifier = metadata["predictor_type"] == "classifier"
        self.metric = metadata.get("index_metric", "L2")
        self.projection = arrays.get("projection")
        self.index, self.labels = arrays["index"].astype(np.float32), arrays["labels"]
        self.feature_dim = self.projection.shape[0] if self.projection is not None else self.index.shape[1]
        self._norms = (self.index ** 2).sum(axis=1)
        if self.classifier:
            self.classes, self.label_ids = np.unique(self.labels, return_inverse=True)

    def predict(self, features: np.ndarray) -> list[dict[str, float]]:
        x = np.asarray(features, dtype=np.float32).reshape(-1, self.feature_dim)
        if self.projection is not None:
            x = x @ self.projection
        if self.metric == "L2":
            score = (x ** 2).sum(axis=1)[:, None] + self._norms[None, :] - 2 * x @ self.index.T  # smaller: nearer
        elif self.metric == "INNER_PRODUCT":
            score = -(x @ self.index.T)
        else:  # COSINE
            norms = np.linalg.norm(x, axis=1)[:, None] * np.sqrt(self._norms)[None, :]
            score = -(x @ self.index.T) / np.where(norms > 0, norms, 1)
        k = min(self.k, len(self.index))
        nearest = np.argpartition(score, k - 1, axis=1)[:, :k]
        if not self.classifier:
            return [{"predicted_label": float(v)} for v in self.labels[nearest].mean(axis=1)]
        votes = np.zeros((len(x), len(self.classes)))
        np.add.at(votes, (np.arange(len(x))[:, None], self.label_ids[nearest]), 1)
        return [{"predicted_label": float(self.classes[i])} for i in votes.argmax(axis=1)]


def load_builtin_model(directory: Path) -> KnnModel | None:
    """The model in ``directory`` if it is one served from here; None for other algorithms."""
    metadata = json.loads((directory / "metadata.json").read_text())
    if metadata.get("algorithm") != "knn":
        return None
    with np.load(directory / "model.npz", allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    return KnnModel(arrays, metadata)
