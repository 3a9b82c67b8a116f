"""The models the local trainer fits and the local endpoint serves.

Two algorithms, chosen by the string hyperparameter ``algorithm``:

- ``kmeans`` (the default, as in the seed): SageMaker's KMeans with ``k`` clusters. Cluster ids
  are not digits, so each cluster is mapped to the label most of its training images carry.
  It answers in SageMaker KMeans' shape (``closest_cluster``, ``distance_to_cluster``) plus
  ``digit``. About 0.55 accurate on MNIST: clusters follow writing style, not meaning.
- ``svm`` (supervised): deskewed images, shifted copies of each training image (one pixel in
  four directions), PCA to 40 components, an RBF support-vector classifier. It answers in the
  shape of SageMaker's supervised algorithms (``predicted_label``) plus ``digit``. Its settings
  were chosen on the validation split (0.982), not on the test split.

A model is saved as a directory holding ``model.npz`` (its arrays) and ``metadata.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ALGORITHMS = ("kmeans", "svm")
MODEL_FILE = "model.npz"
METADATA_FILE = "metadata.json"


_YS, _XS = np.mgrid[:28, :28].astype(np.float32)


def deskew(images: np.ndarray) -> np.ndarray:
    """Straighten slanted digits: shear each 28x28 image so its principal axis is vertical.

    The MNIST-specific step of LeCun et al.'s deskewed baselines: image moments give the slant,
    and one bilinear shear around the centre of mass, which also moves that centre to the middle
    of the field, removes it: what ``scipy.ndimage.affine_transform(order=1,
    mode="grid-constant")`` gives (tested), in numpy over the whole batch at once, because the
    endpoint predicts batches and a scipy call per image costs 0.1 ms.
    """
    images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    total = images.sum(axis=(1, 2))
    blank = total <= 0
    total = np.where(blank, 1.0, total)
    cy = np.einsum("nyx,y->n", images, _YS[:, 0]) / total
    cx = np.einsum("nyx,x->n", images, _XS[0]) / total
    dy = _YS[:, 0][None, :] - cy[:, None]  # (n, 28)
    dx = _XS[0][None, :] - cx[:, None]  # (n, 28)
    var_y = np.einsum("nyx,ny,ny->n", images, dy, dy) / total
    cov = np.einsum("nyx,ny,nx->n", images, dy, dx) / total
    alpha = np.where(var_y > 0, cov / np.where(var_y > 0, var_y, 1.0), 0.0)
    # output (y, x) samples input (y + cy - 13.5, x + alpha * (y - 13.5) + cx - 13.5)
    src_y = _YS[None] + (cy - 13.5)[:, None, None]
    src_x = _XS[None] + alpha[:, None, None] * (_YS[None] - 13.5) + (cx - 13.5)[:, None, None]
    out = _bilinear(images, src_y.astype(np.float32), src_x.astype(np.float32))
    out[blank] = images[blank]
    return out.reshape(len(images), 784)


def _bilinear(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample each image at (ys, xs), bilinearly; points outside the field read 0."""
    n = len(images)
    # Each image inside a 2-pixel zero border: a corner clipped onto the border reads 0.
    flat = np.zeros((n, 32 * 32), dtype=np.float32)
    flat.reshape(n, 32, 32)[:, 2:30, 2:30] = images
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = (ys - y0).reshape(n, -1), (xs - x0).reshape(n, -1)
    y0 = np.clip(y0.astype(np.int32) + 2, 0, 30)
    x0 = np.clip(x0.astype(np.int32) + 2, 0, 30)
    base = (y0 * 32 + x0).reshape(n, -1) + np.arange(n, dtype=np.int32)[:, None] * 1024
    top_left, top_right = np.take(flat, base), np.take(flat, base + 1)
    bottom_left, bottom_right = np.take(flat, base + 32), np.take(flat, base + 33)
    top = (1 - fx) * top_left + fx * top_right
    bottom = (1 - fx) * bottom_left + fx * bottom_right
    return ((1 - fy) * top + fy * bottom).reshape(n, 28, 28).astype(np.float32)


def shifted_copies(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images plus copies moved one pixel up, down, left and right (5x the data)."""
    grid = images.reshape(-1, 28, 28)
    copies = [images] + [np.roll(grid, shift, axis=axis).reshape(len(images), 784)
                         for shift, axis in ((1, 1), (-1, 1), (1, 2), (-1, 2))]
    return np.concatenate(copies), np.tile(labels, 5)


class DigitModel:
    """A fitted model, reduced to the numpy arrays its predictions need.

    Predicting one image through scikit-learn costs ~1 ms, almost all of it input validation
    and dispatch; the same arithmetic in numpy costs ~0.1 ms, which is what lets the endpoint
    meet its latency target. Arrays also make the artifact plain data (``.npz``, no pickle), so
    loading a model from a bucket cannot run code. Tests check the answers equal scikit-learn's.
    """

    def __init__(self, algorithm: str, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        self.algorithm, self.arrays, self.metadata = algorithm, arrays, metadata
        if algorithm == "svm":
            self._prepare_svm()

    def predict(self, images: np.ndarray) -> list[dict[str, float | int]]:
        images = np.asarray(images, dtype=np.float32).reshape(-1, 784)
        if self.algorithm == "kmeans":
            centers = self.arrays["centers"]
            distances = np.sqrt(((images[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
            clusters = distances.argmin(axis=1)
            digits = self.arrays["cluster_digits"]
            return [
                {"closest_cluster": float(c), "distance_to_cluster": float(distances[i, c]), "digit": int(digits[c])}
                for i, c in enumerate(clusters)
            ]
        return [{"predicted_label": float(label), "digit": int(label)} for label in self._svm_labels(images)]

    def _prepare_svm(self) -> None:
        """Fold libsvm's 45 one-vs-one classifiers into one weight matrix over the support vectors."""
        a = self.arrays
        n_classes = len(a["classes"])
        bounds = np.concatenate([[0], np.cumsum(a["n_support"])])
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        weights = np.zeros((len(pairs), len(a["support_vectors"])))
        self._winner_if_positive = np.zeros((len(pairs), n_classes))
        self._winner_if_not = np.zeros((len(pairs), n_classes))
        for p, (i, j) in enumerate(pairs):
            si, sj = slice(bounds[i], bounds[i + 1]), slice(bounds[j], bounds[j + 1])
            weights[p, si] = a["dual_coef"][j - 1, si]
            weights[p, sj] = a["dual_coef"][i, sj]
            self._winner_if_positive[p, i] = 1
            self._winner_if_not[p, j] = 1
        # float32 halves the arithmetic; the decisions match float64 libsvm on the test split.
        self._weights_t = np.ascontiguousarray(weights.T, dtype=np.float32)
        self._vectors_t = np.ascontiguousarray(a["support_vectors"].T, dtype=np.float32)
        self._sv_norms = (self._vectors_t ** 2).sum(axis=0)
        self._pca_mean = a["pca_mean"].astype(np.float32)
        self._pca_t = np.ascontiguousarray(a["pca_components"].T, dtype=np.float32)
        self._intercept = a["intercept"].astype(np.float32)

    def _svm_labels(self, images: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one vote, in numpy (the same decision values as ``SVC.predict``)."""
        a = self.arrays
        z = (deskew(images) - self._pca_mean) @ self._pca_t
        squared = (z ** 2).sum(axis=1)[:, None] + self._sv_norms[None, :] - 2 * z @ self._vectors_t
        kernel = np.exp(np.float32(-a["gamma"]) * np.maximum(squared, 0))
        positive = (kernel @ self._weights_t + self._intercept) > 0
        votes = positive @ self._winner_if_positive + ~positive @ self._winner_if_not
        # argmax takes the first of tied classes, as libsvm does.
        return a["classes"][votes.argmax(axis=1)]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / MODEL_FILE, **self.arrays)
        (directory / METADATA_FILE).write_text(json.dumps(self.metadata, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> DigitModel:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        with np.load(directory / MODEL_FILE, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        return cls(metadata["algorithm"], arrays, metadata)


def fit(images: np.ndarray, labels: np.ndarray | None, hyperparameters: dict[str, str]) -> DigitModel:
    """Fit the algorithm ``hyperparameters`` name; they are strings, as SageMaker passes them."""
    algorithm = hyperparameters.get("algorithm", "kmeans")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"hyperparameter algorithm={algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    feature_dim = int(hyperparameters.get("feature_dim", images.shape[1]))
    if images.shape[1] != feature_dim:
        raise ValueError(f"hyperparameter feature_dim={feature_dim} but the records have {images.shape[1]} values")
    seed = int(hyperparameters.get("seed", "0"))
    if algorithm == "kmeans":
        return _fit_kmeans(images, labels, int(hyperparameters.get("k", "10")), seed)
    if labels is None:
        raise ValueError("algorithm=svm is supervised: the training records need labels")
    return _fit_svm(images, labels, float(hyperparameters.get("c", "5")), int(hyperparameters.get("pca", "40")), seed)


def _fit_kmeans(images: np.ndarray, labels: np.ndarray | None, k: int, seed: int) -> DigitModel:
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(images)
    if labels is None:  # unlabelled data: the cluster id is all we can answer
        cluster_digits = np.arange(k)
    else:
        cluster_digits = np.array([
            np.bincount(labels[kmeans.labels_ == c].astype(int), minlength=10).argmax() for c in range(k)
        ])
    arrays = {"centers": kmeans.cluster_centers_.astype(np.float32), "cluster_digits": cluster_digits}
    return DigitModel("kmeans", arrays, {"algorithm": "kmeans", "k": k})


def _fit_svm(images: np.ndarray, labels: np.ndarray, c: float, components: int, seed: int) -> DigitModel:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    straight = deskew(images)
    train_x, train_y = shifted_copies(straight, labels.astype(int))
    pipeline = make_pipeline(PCA(components, random_state=seed), SVC(C=c, gamma="scale"))
    pipeline.fit(train_x, train_y)
    pca, svc = pipeline[0], pipeline[1]
    arrays = {
        "pca_mean": pca.mean_, "pca_components": pca.components_, "support_vectors": svc.support_vectors_,
        "dual_coef": svc.dual_coef_, "intercept": svc.intercept_, "n_support": svc.n_support_,
        "gamma": np.array(svc._gamma), "classes": svc.classes_,
    }
    model = DigitModel("svm", arrays, {"algorithm": "svm", "c": c, "pca": components})
    model.estimator = pipeline  # kept in memory only, for tests that compare with scikit-learn
    return model
