"""The two algorithms: accuracy on the held-out test split, numpy predictions equal to
scikit-learn's, artifacts that round-trip, and hyperparameters checked as SageMaker checks them."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.digits.model import DigitModel, deskew, fit


def digits_of(model, images):
    return np.array([p["digit"] for p in model.predict(images)])


def test_kmeans_maps_each_cluster_to_its_majority_label(kmeans_model, splits):
    (images, labels), _, (test_x, test_y) = splits
    centers = kmeans_model.arrays["centers"]
    clusters = np.argmin(((images[:, None, :] - centers[None]) ** 2).sum(axis=2), axis=1)
    for cluster, digit in enumerate(kmeans_model.arrays["cluster_digits"]):
        assert digit == np.bincount(labels[clusters == cluster]).argmax()
    accuracy = (digits_of(kmeans_model, test_x) == test_y).mean()
    print(f"\n  kmeans k=10 test accuracy {accuracy:.3f}")
    assert 0.45 < accuracy < 0.75  # clusters follow style, not meaning (≈0.55 on MNIST)


def test_kmeans_answers_in_sagemaker_shape(kmeans_model, splits):
    _, _, (test_x, _) = splits
    answer = kmeans_model.predict(test_x[:1])[0]
    assert set(answer) == {"closest_cluster", "distance_to_cluster", "digit"}
    centers = kmeans_model.arrays["centers"]
    distance = np.linalg.norm(centers[int(answer["closest_cluster"])] - test_x[0])
    assert answer["distance_to_cluster"] == pytest.approx(distance, rel=1e-5)


def test_supervised_model_reaches_the_accuracy_target(svm_model, splits):
    _, _, (test_x, test_y) = splits
    accuracy = (digits_of(svm_model, test_x) == test_y).mean()
    print(f"\n  svm test accuracy {accuracy:.3f}")
    assert accuracy >= 0.97


def test_numpy_predictions_equal_scikit_learn(svm_model, splits):
    _, (valid_x, _), (test_x, _) = splits
    images = np.vstack([valid_x, test_x])
    expected = svm_model.estimator.predict(deskew(images))
    assert (digits_of(svm_model, images) == expected).all()


def test_artifact_round_trip_is_plain_arrays(svm_model, splits, tmp_path):
    _, _, (test_x, _) = splits
    svm_model.save(tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:  # no pickle inside
        assert "support_vectors" in saved.files
    loaded = DigitModel.load(tmp_path)
    assert loaded.predict(test_x[:50]) == svm_model.predict(test_x[:50])


def test_deskew_equals_scipys_affine_transform(splits):
    from scipy import ndimage

    _, _, (test_x, _) = splits
    grid_y, grid_x = np.mgrid[:28, :28]
    for image, straight in zip(test_x[:100].reshape(-1, 28, 28), deskew(test_x[:100]), strict=True):
        total = image.sum()
        cy, cx = (grid_y * image).sum() / total, (grid_x * image).sum() / total
        alpha = ((grid_y - cy) * (grid_x - cx) * image).sum() / ((grid_y - cy) ** 2 * image).sum()
        matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
        expected = ndimage.affine_transform(image, matrix, offset=np.array([cy, cx]) - matrix @ [13.5, 13.5],
                                            order=1, mode="grid-constant", cval=0.0)
        assert np.abs(straight - expected.ravel()).max() < 1e-4


def test_deskew_straightens_a_slanted_stroke():
    image = np.zeros((28, 28), dtype=np.float32)
    for row in range(4, 24):
        image[row, 8 + row // 2] = 1.0  # a stroke leaning right
    straight = deskew(image).reshape(28, 28)
    columns = [np.average(np.arange(28), weights=r) for r in straight if r.sum() > 0.5]
    assert np.ptp(columns) < 2  # now (nearly) vertical
    assert deskew(np.zeros(784)).sum() == 0  # a blank image stays blank


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"k": 10}, "must be strings"),
        ({"algorithm": "forest"}, "expected one of"),
        ({"feature_dim": "100"}, "feature_dim=100"),
    ],
)
def test_bad_hyperparameters_are_refused(hyperparameters, message, splits):
    from ferry.digits.training import check_hyperparameters

    (images, labels), _, _ = splits
    with pytest.raises(ValueError, match=message):
        fit(images[:20], labels[:20], check_hyperparameters(hyperparameters))


def test_supervised_needs_labels(splits):
    (images, _), _, _ = splits
    with pytest.raises(ValueError, match="need labels"):
        fit(images[:20], None, {"algorithm": "svm"})
