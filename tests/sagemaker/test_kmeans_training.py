"""The built-in k-means' training checked against an independent implementation (scikit-learn's
full Lloyd k-means, ten restarts) on the same data, and each hyperparameter either honoured or
refused (no servers)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier

from ferry.sagemaker.algorithms import AlgorithmError, train_kmeans, train_knn


@pytest.fixture(scope="module")
def blobs():
    """Eight clusters of different sizes and spreads in 16 dimensions, and a test set."""
    rng = np.random.default_rng(11)
    centers = rng.normal(0, 6, (8, 16))
    sizes = rng.integers(100, 800, 8)
    labels = np.repeat(np.arange(8), sizes)
    points = centers[labels] + rng.normal(0, 1, (len(labels), 16)) * rng.uniform(0.5, 2, 8)[labels, None]
    order = rng.permutation(len(points))
    points, labels = points[order].astype(np.float32), labels[order]
    return points[:-500], labels[:-500], points[-500:], labels[-500:]


def train(tmp_path, points, test=None, **hyperparameters):
    lines = []
    given = {"k": "8", "feature_dim": "16", "mini_batch_size": "500", **hyperparameters}
    metrics = train_kmeans(given, points, None, tmp_path, lines.append, test=test)
    with np.load(tmp_path / "model.npz") as saved:
        return saved["centers"], metrics, "\n".join(lines)


def msd(points, centers) -> float:
    return float((((points[:, None, :] - centers[None]) ** 2).sum(2)).min(1).mean())


@pytest.mark.parametrize("hyperparameters", [{}, {"epochs": "5", "init_method": "kmeans++"},
                                             {"extra_center_factor": "1", "init_method": "kmeans++", "epochs": "10"},
                                             {"extra_center_factor": "4",
                                                                            "local_lloyd_num_trials": "3"}])
def test_clusters_are_as_good_as_full_lloyd_kmeans(tmp_path, blobs, hyperparameters):
    points, _labels, _test, _ = blobs
    centers, metrics, _ = train(tmp_path, points, **hyperparameters)
    reference = KMeans(8, n_init=10, random_state=1).fit(points)
    assert centers.shape == (8, 16)
    assert metrics["train:msd"] == pytest.approx(msd(points, centers), rel=1e-4)
    assert msd(points, centers) <= 1.03 * reference.inertia_ / len(points)


def test_extra_center_factor_sets_the_centers_kept_while_streaming(tmp_path, blobs):
    points = blobs[0]
    assert "80 centers while streaming" in train(tmp_path, points)[2]  # auto: 10 × k
    assert "24 centers while streaming" in train(tmp_path, points, extra_center_factor="3")[2]
    assert "8 centers while streaming" in train(tmp_path, points, extra_center_factor="1")[2]


def test_epochs_are_passes_over_the_data(tmp_path, blobs):
    """One pass of mini-batches of 500 sees each record once; more passes move the centers."""
    points = blobs[0]
    one, _, _ = train(tmp_path / "one", points, extra_center_factor="1", epochs="1")
    five, _, _ = train(tmp_path / "five", points, extra_center_factor="1", epochs="5")
    assert not np.allclose(one, five)
    assert msd(points, five) <= msd(points, one) * 1.001


def test_the_test_channel_is_scored_with_the_eval_metrics(tmp_path, blobs):
    points, _labels, test, _ = blobs
    centers, metrics, log = train(tmp_path, points, test=(test, None), eval_metrics='["msd", "ssd"]')
    distances = (((test[:, None, :] - centers[None]) ** 2).sum(2)).min(1)
    assert metrics["test:msd"] == pytest.approx(distances.mean(), rel=1e-4)
    assert metrics["test:ssd"] == pytest.approx(distances.sum(), rel=1e-4)
    assert re.search(r"#test_score \(algo-1\) : \('ssd', [0-9.]+\)", log)
    assert "test:ssd" not in train(tmp_path, points, test=(test, None))[1]  # default: msd only


@pytest.mark.parametrize(("hyperparameters", "reason"), [
    ({"half_life_time_size": "100"}, "half_life_time_size other than 0 is not implemented"),
    ({"eval_metrics": '["accuracy"]'}, "eval_metrics"),
    ({"local_lloyd_tol": "2"}, "local_lloyd_tol"),
])
def test_what_is_not_honoured_is_refused(tmp_path, blobs, hyperparameters, reason):
    with pytest.raises(AlgorithmError, match=reason):
        train(tmp_path, blobs[0], **hyperparameters)


def test_a_test_channel_of_the_wrong_width_is_refused(tmp_path, blobs):
    with pytest.raises(AlgorithmError, match="test records have 3 features"):
        train(tmp_path, blobs[0], test=(np.zeros((4, 3), np.float32), None))


def test_knn_scores_its_test_channel_as_scikit_learn_would(tmp_path, blobs):
    points, labels, test, test_labels = blobs
    hyperparameters = {"k": "5", "feature_dim": "16", "sample_size": str(len(points)), "predictor_type": "classifier"}
    metrics = train_knn(hyperparameters, points, labels.astype(np.float32), tmp_path, lambda line: None,
                        test=(test, test_labels.astype(np.float32)))
    reference = (KNeighborsClassifier(5).fit(points, labels).predict(test) == test_labels).mean()
    assert metrics["test:accuracy"] == pytest.approx(reference, abs=0.01)
    with pytest.raises(AlgorithmError, match="label in every test record"):
        train_knn(hyperparameters, points, labels.astype(np.float32), tmp_path, lambda line: None, test=(test, None))
