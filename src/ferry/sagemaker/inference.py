"""Answers of the built-in algorithms' models, in SageMaker's response shapes.

A model directory is what ``ferry.sagemaker.algorithms`` writes: ``model.npz`` (plain arrays,
loaded without pickle, so a model archive cannot run code) and ``metadata.json`` naming the
algorithm. Each model says how many features a record must have (``feature_dim``) and answers
a batch of records in its algorithm's SageMaker shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class KMeansModel:
    """``{"closest_cluster": …, "distance_to_cluster": …}`` per record, as SageMaker's k-means answers.

    Clusters are not classes: turning a cluster into a label is the caller's business (the
    digits pipeline learns a map from labelled data and keeps it beside the model).
    """

    algorithm = "kmeans"
    verbose_fields: tuple[str, ...] = ()  # AWS documents no verbose answer for k-means

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.centers = arrays["centers"].astype(np.float32)
        self.feature_dim = self.centers.shape[1]
        self._norms = (self.centers ** 2).sum(axis=1)

    def predict(self, features: np.ndarray) -> list[dict[str, float]]:
        x = np.asarray(features, dtype=np.float32).reshape(-1, self.feature_dim)
        squared = (x ** 2).sum(axis=1)[:, None] + self._norms[None, :] - 2 * x @ self.centers.T
        clusters = squared.argmin(axis=1)
        distances = np.sqrt(np.maximum(squared[np.arange(len(x)), clusters], 0))
        return [{"closest_cluster": float(c), "distance_to_cluster": float(d)}
                for c, d in zip(clusters, distances, strict=True)]


class KnnModel:
    """``{"predicted_label": …}`` per record: the vote (classifier) or mean (regressor) of the k nearest.

    Each answer also holds what AWS's verbose mode (``Accept: …; verbose=true``) adds: the k
    nearest neighbours' ``labels`` and ``distances``, nearest first — Euclidean distances for
    ``L2``, one minus the cosine similarity for ``COSINE``. For ``INNER_PRODUCT`` AWS's
    documentation says nothing of the values; ferry gives the inner products (largest first).
    The encoder drops them unless verbose was asked for (:attr:`verbose_fields`).
    """

    algorithm = "knn"
    #: What an answer holds beyond the default shape, for verbose requests only.
    verbose_fields = ("distances", "labels")

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.k = int(metadata["k"])
        self.classifier = metadata["predictor_type"] == "classifier"
        self.metric = metadata.get("index_metric", "L2")
        self.projection = arrays.get("projection")
        self.index, self.labels = arrays["index"].astype(np.float32), arrays["labels"]
        self.feature_dim = self.projection.shape[0] if self.projection is not None else self.index.shape[1]
        self._norms = (self.index ** 2).sum(axis=1)
        # The product with the index is the whole cost of a prediction (a 4,000 × 784 index: 2.8 ms
        # for 16 records on one core). A column that is zero for every indexed point (the blank
        # border of every digit) adds nothing to any dot product: leaving it out is exact.
        self._columns = np.flatnonzero(np.any(self.index != 0, axis=0))
        if len(self._columns) == self.index.shape[1]:
            self._columns = None
        self._index_t = np.ascontiguousarray((self.index if self._columns is None else self.index[:, self._columns]).T)
        if self.classifier:
            self.classes, self.label_ids = np.unique(self.labels, return_inverse=True)

    def predict(self, features: np.ndarray) -> list[dict[str, float]]:
        x = np.asarray(features, dtype=np.float32).reshape(-1, self.feature_dim)
        if self.projection is not None:
            x = x @ self.projection
        dots = (x if self._columns is None else x[:, self._columns]) @ self._index_t
        if self.metric == "L2":
            # ‖x‖² − 2x·y + ‖y‖² without ‖x‖², the same for every y of a row: the order is unchanged.
            score = self._norms[None, :] - 2 * dots  # smaller: nearer
        elif self.metric == "INNER_PRODUCT":
            score = -dots
        else:  # COSINE
            norms = np.linalg.norm(x, axis=1)[:, None] * np.sqrt(self._norms)[None, :]
            score = -dots / np.where(norms > 0, norms, 1)
        k = min(self.k, len(self.index))
        nearest = np.argpartition(score, k - 1, axis=1)[:, :k]
        nearest_scores = np.take_along_axis(score, nearest, axis=1)
        order = np.argsort(nearest_scores, axis=1, kind="stable")
        nearest, nearest_scores = (np.take_along_axis(a, order, axis=1) for a in (nearest, nearest_scores))
        if self.metric == "L2":
            distances = np.sqrt(np.maximum(nearest_scores + (x ** 2).sum(axis=1)[:, None], 0))
        elif self.metric == "INNER_PRODUCT":
            distances = -nearest_scores
        else:
            distances = 1 + nearest_scores
        neighbours = self.labels[nearest]
        if self.classifier:
            classes = len(self.classes)
            cells = (np.arange(len(x))[:, None] * classes + self.label_ids[nearest]).ravel()
            votes = np.bincount(cells, minlength=len(x) * classes).reshape(len(x), classes)
            predicted = self.classes[votes.argmax(axis=1)]
        else:
            predicted = neighbours.mean(axis=1)
        return [{"predicted_label": float(p), "distances": d, "labels": n}
                for p, d, n in zip(predicted.tolist(), distances.tolist(), neighbours.tolist(), strict=True)]


BUILTIN_MODELS: dict[str, type[KMeansModel] | type[KnnModel]] = {"kmeans": KMeansModel, "knn": KnnModel}


def load_builtin_model(directory: Path) -> KMeansModel | KnnModel:
    """The built-in algorithm's model in ``directory``; ValueError if it is not one."""
    try:
        metadata = json.loads((directory / "metadata.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a built-in algorithm's model: no readable metadata.json ({exc})") from None
    model_class = BUILTIN_MODELS.get(metadata.get("algorithm") if isinstance(metadata, dict) else None)
    if model_class is None:
        raise ValueError(f"not a built-in algorithm's model: metadata.json names {metadata!r:.80}")
    try:
        with np.load(directory / "model.npz", allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        return model_class(arrays, metadata)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"the {metadata['algorithm']} model cannot be loaded: {type(exc).__name__}: {exc}") from None
