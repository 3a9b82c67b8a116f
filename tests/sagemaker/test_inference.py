"""The built-in k-NN model's answers against scikit-learn's KNeighbors estimators (no servers)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

from ferry.sagemaker.algorithms import AlgorithmError, train_knn
from ferry.sagemaker.inference import load_builtin_model


@pytest.fixture
def data():
    rng = np.random.default_rng(5)
    features = rng.normal(0, 1, (600, 12)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32) + (features[:, 2] > 1)
    return features, labels


@pytest.mark.parametrize("predictor_type", ["classifier", "regressor"])
def test_knn_answers_as_scikit_learn_does(tmp_path, data, predictor_type):
    features, labels = data
    train_knn({"k": "7", "feature_dim": "12", "sample_size": "600", "predictor_type": predictor_type},
              features, labels, tmp_path, log=lambda line: None)
    model = load_builtin_model(tmp_path)
    queries = np.random.default_rng(6).normal(0, 1, (200, 12)).astype(np.float32)
    ours = np.array([p["predicted_label"] for p in model.predict(queries)])
    reference = (KNeighborsClassifier if predictor_type == "classifier" else KNeighborsRegressor)(7).fit(
        features, labels).predict(queries)
    # Votes tied between classes may resolve differently; there are few of them.
    agree = np.isclose(ours, reference, atol=1e-5).mean()
    assert agree >= (0.97 if predictor_type == "classifier" else 0.999), agree


@pytest.mark.parametrize("predictor_type", ["classifier", "regressor"])
def test_knn_neighbours_nearest_first_as_scikit_learn_finds_them(tmp_path, data, predictor_type):
    """What verbose answers hold: the k nearest's labels and Euclidean distances, nearest first."""
    features, labels = data
    train_knn({"k": "5", "feature_dim": "12", "sample_size": "600", "predictor_type": predictor_type},
              features, labels, tmp_path, log=lambda line: None)
    queries = np.random.default_rng(7).normal(0, 1, (50, 12)).astype(np.float32)
    answers = load_builtin_model(tmp_path).predict(queries)
    distances, rows = NearestNeighbors(n_neighbors=5).fit(features).kneighbors(queries)
    assert np.allclose([a["distances"] for a in answers], distances, rtol=1e-4, atol=1e-4)
    assert [a["labels"] for a in answers] == labels[rows].tolist()
    if predictor_type == "regressor":
        assert np.allclose([a["predicted_label"] for a in answers], labels[rows].mean(axis=1), atol=1e-5)


def test_knn_cosine_distances_are_one_minus_the_similarity(tmp_path, data):
    features, labels = data
    train_knn({"k": "3", "feature_dim": "12", "sample_size": "600", "predictor_type": "classifier",
               "index_metric": "COSINE"}, features, labels, tmp_path, log=lambda line: None)
    queries = np.random.default_rng(8).normal(0, 1, (20, 12)).astype(np.float32)
    answers = load_builtin_model(tmp_path).predict(queries)
    distances, rows = NearestNeighbors(n_neighbors=3, metric="cosine").fit(features).kneighbors(queries)
    assert np.allclose([a["distances"] for a in answers], distances, atol=1e-5)
    assert [a["labels"] for a in answers] == labels[rows].tolist()


def test_knn_refuses_what_aws_refuses(tmp_path, data):
    features, labels = data
    with pytest.raises(AlgorithmError, match="Additional hyperparameters are not allowed"):
        train_knn({"k": "3", "feature_dim": "12", "sample_size": "10", "predictor_type": "classifier", "c": "5"},
                  features, labels, tmp_path, log=print)
    with pytest.raises(AlgorithmError, match="needs a label"):
        train_knn({"k": "3", "feature_dim": "12", "sample_size": "10", "predictor_type": "classifier"},
                  features, None, tmp_path, log=print)
    with pytest.raises(AlgorithmError, match="dimension_reduction_target must be set"):
        train_knn({"k": "3", "feature_dim": "12", "sample_size": "10", "predictor_type": "classifier",
                   "dimension_reduction_type": "sign"}, features, labels, tmp_path, log=print)


def test_kmeans_answers_in_sagemakers_shape_without_labels(tmp_path, data):
    """Like AWS's k-means: the closest cluster and the distance to it, never a class, even when
    the training records carried labels."""
    from ferry.sagemaker.algorithms import train_kmeans

    features, labels = data
    train_kmeans({"k": "4", "feature_dim": "12"}, features, labels, tmp_path, lambda line: None)
    model = load_builtin_model(tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        assert saved.files == ["centers"]
        centers = saved["centers"]
    answers = model.predict(features[:20])
    distances = np.linalg.norm(features[:20, None, :] - centers[None], axis=2)
    assert [a["closest_cluster"] for a in answers] == distances.argmin(axis=1).astype(float).tolist()
    assert [a["distance_to_cluster"] for a in answers] == pytest.approx(distances.min(axis=1).tolist(), rel=1e-5)
    assert set(answers[0]) == {"closest_cluster", "distance_to_cluster"}


def test_a_directory_that_is_no_builtin_model_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text('{"algorithm": "pickle-me"}')
    with pytest.raises(ValueError, match="not a built-in algorithm's model"):
        load_builtin_model(tmp_path)
    (tmp_path / "metadata.json").write_text('{"algorithm": "knn"}')
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_builtin_model(tmp_path)
