"""ferry's digit classifier as a SageMaker scikit-learn script: train it, serve it, here or on AWS.

SageMaker's scikit-learn container runs this file in script mode. The digits DAG packs it, with
``sagemaker_recordio.py`` beside it, into the ``sagemaker_submit_directory`` tar.gz; ferry's
local SageMaker runs it the same way (ferry.sagemaker.script_mode). It depends on numpy,
scikit-learn (training only) and that module, never on ferry.

Training, ``python classifier.py [--c 5] [--pca 40] [--augment 2] [--seed 0]``: reads every
RecordIO-protobuf file of the ``train`` channel (``SM_CHANNEL_TRAIN``; labels in the records) and
of the optional ``synthetic`` channel (printed digits the DAG generates), adds ``augment``
randomly rotated and scaled copies of each handwritten digit (the second with thicker or thinner
strokes), straightens every digit (:func:`deskew`), adds copies shifted by one pixel, reduces to
``pca`` components and fits an RBF support-vector classifier. The model directory (``SM_MODEL_DIR``) gets ``model.npz``
(plain arrays: loading it runs no pickle), ``metadata.json`` and ``code/`` (this file and its
helper, so the model archive serves with ``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``).
The settings were chosen on the validation split, not on the test split.

Serving: ``model_fn`` loads the arrays; ``input_fn`` takes 784-value records as
``application/x-recordio-protobuf``, ``text/csv``, ``application/json``
(``{"instances": [{"features": [...]}]}`` or a list of lists) or ``application/x-npy``;
``output_fn`` answers ``{"predictions": [{"predicted_label": 7.0}, ...]}``, the shape of
SageMaker's supervised built-in algorithms. Predictions are libsvm's, computed in numpy:
scikit-learn's ``predict`` costs ~1 ms a call in validation and dispatch, numpy ~0.1 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import sagemaker_recordio

FEATURES = 784
#: predict_fn answers each row on its own: ferry's endpoint server may predict the rows of
#: several requests in one call (SageMaker ignores this).
ROW_BATCHING = True
MODEL_FILE, METADATA_FILE = "model.npz", "metadata.json"
_YS, _XS = np.mgrid[:28, :28].astype(np.float32)


# -- the model -------------------------------------------------------------------------------------

def deskew(images: np.ndarray) -> np.ndarray:
    """Straighten slanted digits: shear each 28x28 image so its principal axis is vertical.

    The MNIST-specific step of LeCun et al.'s deskewed baselines: image moments give the slant,
    and one bilinear shear around the centre of mass, which also moves that centre to the middle
    of the field, removes it: what ``scipy.ndimage.affine_transform(order=1,
    mode="grid-constant")`` gives, in numpy over the whole batch at once.
    """
    images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    total = images.sum(axis=(1, 2))
    blank = total <= 0
    total = np.where(blank, 1.0, total)
    cy = np.einsum("nyx,y->n", images, _YS[:, 0]) / total
    cx = np.einsum("nyx,x->n", images, _XS[0]) / total
    dy = _YS[:, 0][None, :] - cy[:, None]
    dx = _XS[0][None, :] - cx[:, None]
    var_y = np.einsum("nyx,ny,ny->n", images, dy, dy) / total
    cov = np.einsum("nyx,ny,nx->n", images, dy, dx) / total
    alpha = np.where(var_y > 0, cov / np.where(var_y > 0, var_y, 1.0), 0.0)
    # output (y, x) samples input (y + cy - 13.5, x + alpha * (y - 13.5) + cx - 13.5)
    src_y = _YS[None] + (cy - 13.5)[:, None, None]
    src_x = _XS[None] + alpha[:, None, None] * (_YS[None] - 13.5) + (cx - 13.5)[:, None, None]
    out = _bilinear(images, src_y.astype(np.float32), src_x.astype(np.float32))
    out[blank] = images[blank]
    return out.reshape(len(images), FEATURES)


def _bilinear(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample each image at (ys, xs), bilinearly; points outside the field read 0."""
    n = len(images)
    flat = np.zeros((n, 32 * 32), dtype=np.float32)  # each image inside a 2-pixel zero border
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


def affine_copies(images: np.ndarray, rng: np.random.Generator, max_angle: float = 12.0,
                  scales: tuple[float, float] = (0.85, 1.1)) -> np.ndarray:
    """Each image rotated by up to ``max_angle`` degrees and scaled, about the field's centre."""
    n = len(images)
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle, n))
    scale = rng.uniform(*scales, n)
    cos, sin = (np.cos(angle) / scale)[:, None, None], (np.sin(angle) / scale)[:, None, None]
    y, x = _YS[None] - 13.5, _XS[None] - 13.5
    src_y = (cos * y - sin * x + 13.5).astype(np.float32)
    src_x = (sin * y + cos * x + 13.5).astype(np.float32)
    return _bilinear(images.reshape(-1, 28, 28), src_y, src_x).reshape(n, FEATURES)


def stroke_variants(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third of the images as they are, a third with strokes a pixel thicker, a third thinner."""
    grid = images.reshape(-1, 28, 28)
    padded = np.pad(grid, ((0, 0), (1, 1), (1, 1)))
    around = np.stack([padded[:, 1 + dy:29 + dy, 1 + dx:29 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    choice = rng.integers(0, 3, len(grid))[:, None, None]
    thicker, thinner = around.max(axis=0), 0.5 * (around.min(axis=0) + grid)
    return np.where(choice == 1, thicker, np.where(choice == 2, thinner, grid)).reshape(-1, FEATURES)


def augmented(images: np.ndarray, labels: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The images and ``copies`` distorted copies of each (every second one also re-stroked)."""
    rng = np.random.default_rng(seed)
    out = [images]
    for copy in range(copies):
        distorted = affine_copies(images, rng)
        out.append(stroke_variants(distorted, rng) if copy % 2 else distorted)
    return np.concatenate(out), np.tile(labels, copies + 1)


def shifted_copies(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images plus copies moved one pixel up, down, left and right (5x the data)."""
    grid = images.reshape(-1, 28, 28)
    copies = [images] + [np.roll(grid, shift, axis=axis).reshape(len(images), FEATURES)
                         for shift, axis in ((1, 1), (-1, 1), (1, 2), (-1, 2))]
    return np.concatenate(copies), np.tile(labels, 5)


class DigitModel:
    """The fitted classifier as the arrays its predictions need (libsvm's one-vs-one vote in numpy)."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict) -> None:
        self.arrays, self.metadata = arrays, metadata
        a = arrays
        n_classes = len(a["classes"])
        bounds = np.concatenate([[0], np.cumsum(a["n_support"])])
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        weights = np.zeros((len(pairs), len(a["support_vectors"])))
        self._winner_if_positive = np.zeros((len(pairs), n_classes))
        self._winner_if_not = np.zeros((len(pairs), n_classes))
        for p, (i, j) in enumerate(pairs):  # fold the 45 pairwise classifiers into one matrix
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
        self._gamma = np.float32(a["gamma"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Labels of ``images`` (n, 784): the same decisions as scikit-learn's ``SVC.predict``."""
        z = (deskew(images) - self._pca_mean) @ self._pca_t
        squared = (z ** 2).sum(axis=1)[:, None] + self._sv_norms[None, :] - 2 * z @ self._vectors_t
        kernel = np.exp(-self._gamma * np.maximum(squared, 0))
        positive = (kernel @ self._weights_t + self._intercept) > 0
        votes = positive @ self._winner_if_positive + ~positive @ self._winner_if_not
        return self.arrays["classes"][votes.argmax(axis=1)]  # argmax takes the first of tied classes, as libsvm

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / MODEL_FILE, **self.arrays)
        (directory / METADATA_FILE).write_text(json.dumps(self.metadata, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> DigitModel:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        with np.load(directory / MODEL_FILE, allow_pickle=False) as saved:
            return cls({name: saved[name] for name in saved.files}, metadata)


def fit(images: np.ndarray, labels: np.ndarray, *, extra: tuple[np.ndarray, np.ndarray] | None = None,
        augment: int = 2, c: float = 5.0, components: int = 40, seed: int = 0):
    """The fitted DigitModel and the scikit-learn pipeline it came from. ``extra`` (images,
    labels) is added as it is, after the handwritten digits are augmented."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    images, labels = augmented(images, labels.astype(int), augment, seed)
    if extra is not None and len(extra[0]):
        images, labels = np.concatenate([images, extra[0]]), np.concatenate([labels, extra[1].astype(int)])
    train_x, train_y = shifted_copies(deskew(images), labels)
    pipeline = make_pipeline(PCA(components, random_state=seed), SVC(C=c, gamma="scale")).fit(train_x, train_y)
    pca, svc = pipeline[0], pipeline[1]
    arrays = {
        "pca_mean": pca.mean_, "pca_components": pca.components_, "support_vectors": svc.support_vectors_,
        "dual_coef": svc.dual_coef_, "intercept": svc.intercept_, "n_support": svc.n_support_,
        "gamma": np.array(svc._gamma), "classes": svc.classes_,
    }
    return DigitModel(arrays, {"c": c, "pca": components, "augment": augment, "records": len(train_x)}), pipeline


# -- training (SageMaker's training toolkit runs this file) ---------------------------------------

def read_records(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of every RecordIO-protobuf file in a channel directory."""
    images, labels = [], []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            for record in sagemaker_recordio.iter_records(f):
                images.append(record.features["values"])
                labels.append(record.label["values"][0])
    if not images:
        raise SystemExit(f"no RecordIO records in {directory}")
    return np.vstack(images).astype(np.float32), np.asarray(labels).astype(int)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The hyperparameters as SageMaker's training toolkit passes them: ``--name value``, except a
    one-letter name, which it passes as ``-c value`` (``sagemaker_training.mapping.to_cmd_args``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--c", dest="c", type=float, default=5.0, help="the SVM's C")
    parser.add_argument("--pca", type=int, default=40, help="PCA components")
    parser.add_argument("--augment", type=int, default=2, help="distorted copies of each handwritten digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "model")))
    parser.add_argument("--train", type=Path, default=Path(os.environ.get("SM_CHANNEL_TRAIN", "train")))
    parser.add_argument("--synthetic", type=Path, default=os.environ.get("SM_CHANNEL_SYNTHETIC"),
                        help="an optional channel of more labelled digits (printed ones)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    images, labels = read_records(args.train)
    extra = read_records(args.synthetic) if args.synthetic else None
    print(f"training on {len(images)} digits ({args.augment} distorted copies each) and "
          f"{len(extra[0]) if extra else 0} synthetic ones: deskewed, 4 shifted copies each, PCA {args.pca}, "
          f"SVC C={args.c}", flush=True)
    model, _ = fit(images, labels, extra=extra, augment=args.augment, c=args.c, components=args.pca,
                   seed=args.seed)
    train_accuracy = float((model.predict(images) == labels).mean())
    print(f"train:accuracy={train_accuracy:.4f}", flush=True)
    model.metadata["train_accuracy"] = round(train_accuracy, 4)
    model.save(args.model_dir)
    code = args.model_dir / "code"
    code.mkdir(exist_ok=True)
    for source in (Path(__file__), Path(sagemaker_recordio.__file__)):
        shutil.copyfile(source, code / source.name)
    print(f"model saved to {args.model_dir} with its code", flush=True)


# -- serving (SageMaker's inference toolkit calls these) -------------------------------------------

def model_fn(model_dir: str) -> DigitModel:
    return DigitModel.load(Path(model_dir))


def input_fn(body: bytes, content_type: str) -> np.ndarray:
    """The request's records as a float32 (n, 784) array; ValueError for anything else."""
    media = (content_type or "").split(";")[0].strip().lower()
    if isinstance(body, str):
        body = body.encode()
    if media == "application/x-recordio-protobuf":
        rows = [record.features["values"] for record in sagemaker_recordio.iter_records(io.BytesIO(body))]
    elif media == "text/csv":
        rows = [np.array(line.split(","), dtype=np.float32) for line in body.decode().splitlines() if line.strip()]
    elif media == "application/json":
        payload = json.loads(body)
        instances = payload.get("instances") if isinstance(payload, dict) else payload
        if not isinstance(instances, list):
            raise ValueError('send {"instances": [{"features": [...]}]} or a list of records')
        rows = [np.asarray(i["features"] if isinstance(i, dict) else i, dtype=np.float32) for i in instances]
    elif media == "application/x-npy":
        rows = list(np.atleast_2d(np.load(io.BytesIO(body), allow_pickle=False)))
    else:
        raise ValueError(f"unsupported content type {content_type!r:.100}: use application/x-recordio-protobuf, "
                         "text/csv, application/json or application/x-npy")
    if not rows:
        raise ValueError("the request holds no records")
    if any(np.shape(row) != (FEATURES,) for row in rows):
        raise ValueError(f"each record must have exactly {FEATURES} values")
    images = np.vstack(rows).astype(np.float32)
    if not np.isfinite(images).all():
        raise ValueError("values must be finite numbers")
    return images


def predict_fn(data: np.ndarray, model: DigitModel) -> np.ndarray:
    return model.predict(data)


def output_fn(prediction: np.ndarray, accept: str) -> tuple[str, str]:
    return json.dumps({"predictions": [{"predicted_label": float(label)} for label in prediction]}), \
        "application/json"


if __name__ == "__main__":
    main(sys.argv[1:])
