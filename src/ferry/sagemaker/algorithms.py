"""What a training image means here: SageMaker's built-in algorithms, by name, with AWS's rules.

A training image URI names an algorithm the way SageMaker's registry does
(``<account>.dkr.ecr.<region>.amazonaws.com/kmeans:1``). For each one we know, this module
holds its hyperparameters as AWS documents them (required, optional, valid values; anything
else is refused, as the built-in algorithms refuse it) and a trainer that reads the ``train``
channel (RecordIO-protobuf, or csv with the label first) and writes the model directory.

Implemented: built-in k-means and k-NN; the scikit-learn framework image runs the user's script
(ferry.sagemaker.script_mode). An image nobody here knows fails the job with that reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.sagemaker.formats import csv_label_size

#: ``<account>.dkr.ecr.<region>.amazonaws.com/<name>:<tag>`` (any account: each region's differs).
_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<name>[a-z0-9._/-]+)"
                    r":(?P<tag>[A-Za-z0-9._-]+)$")


class AlgorithmError(ValueError):
    """The job's request is wrong for its algorithm: the FailureReason a person can act on."""


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError
        return value
    check.__doc__ = " or ".join(allowed)
    return check


def _auto_or_positive_int(value: str) -> str | int:
    return "auto" if value == "auto" else _positive_int(value)


def _unit_float(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError
    return number


def _metrics_list(value: str) -> list[str]:
    metrics = json.loads(value)
    if not isinstance(metrics, list) or not metrics or any(m not in ("msd", "ssd") for m in metrics):
        raise ValueError
    return metrics


@dataclass(frozen=True)
class Hyperparameter:
    parse: Callable[[str], Any]
    valid: str
    default: str | None = None  # None: required


KMEANS_HYPERPARAMETERS = {
    "feature_dim": Hyperparameter(_positive_int, "a positive integer"),
    "k": Hyperparameter(_positive_int, "a positive integer"),
    "epochs": Hyperparameter(_positive_int, "a positive integer", "1"),
    "eval_metrics": Hyperparameter(_metrics_list, 'a JSON list of "msd" and/or "ssd"', '["msd"]'),
    "extra_center_factor": Hyperparameter(_auto_or_positive_int, "a positive integer or auto", "auto"),
    # Not in AWS's table, yet the SageMaker SDK's KMeans always sends it ("KMeans requires this hp
    # to fit on Record objects"). Records are read as dense vectors either way.
    "force_dense": Hyperparameter(_choice("True", "False", "true", "false"), "True or False", "True"),
    "half_life_time_size": Hyperparameter(_non_negative_int, "a non-negative integer", "0"),
    "init_method": Hyperparameter(_choice("random", "kmeans++"), "random or kmeans++", "random"),
    "local_lloyd_init_method": Hyperparameter(_choice("random", "kmeans++"), "random or kmeans++", "kmeans++"),
    "local_lloyd_max_iter": Hyperparameter(_positive_int, "a positive integer", "300"),
    "local_lloyd_num_trials": Hyperparameter(_auto_or_positive_int, "a positive integer or auto", "auto"),
    "local_lloyd_tol": Hyperparameter(_unit_float, "a float in [0, 1]", "0.0001"),
    "mini_batch_size": Hyperparameter(_positive_int, "a positive integer", "5000"),
}


def parse_hyperparameters(spec: dict[str, Hyperparameter], given: dict[str, str], algorithm: str) -> dict[str, Any]:
    """AWS's validation: strings only, nothing unknown, required present, each value valid."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise AlgorithmError(f"ClientError: Additional hyperparameters are not allowed for {algorithm} "
                             f"({', '.join(repr(u) for u in unknown)} unexpected)")
    missing = sorted(name for name, h in spec.items() if h.default is None and name not in given)
    if missing:
        raise AlgorithmError(f"ClientError: Missing required hyperparameters for {algorithm}: {', '.join(missing)}")
    parsed = {}
    for name, h in spec.items():
        raw = given.get(name, h.default)
        try:
            parsed[name] = h.parse(raw)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise AlgorithmError(f"ClientError: hyperparameter {name}={raw!r} is not valid: "
                                 f"expected {h.valid}") from None
    return parsed


# -- training data ---------------------------------------------------------------------------------

def read_channel(files: list[Path], content_type: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and labels (if any) from a channel's files: RecordIO-protobuf, or csv with the
    label first (``text/csv;label_size=0``: no label column, AWS's way for unsupervised data)."""
    if content_type.split(";")[0].strip().lower() == "text/csv":
        try:
            label_size = csv_label_size(content_type, default=1)
        except ValueError as exc:
            raise AlgorithmError(f"ClientError: {exc}") from None
        if label_size > 1:
            raise AlgorithmError(f"ClientError: label_size={label_size}: only one label column (or none) is read")
        rows = [np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64) for path in files]
        data = np.vstack([r for r in rows if r.size])
        return data[:, label_size:].astype(np.float32), (data[:, 0] if label_size else None)
    from ferry.sagemaker.recordio import iter_records

    features, labels = [], []
    for path in files:
        with path.open("rb") as f:
            for record in iter_records(f):
                features.append(record.features["values"])
                if "values" in record.label:
                    labels.append(record.label["values"][0])
    if not features:
        raise AlgorithmError("ClientError: the train channel holds no records")
    if labels and len(labels) != len(features):
        raise AlgorithmError(f"ClientError: {len(features)} records but only {len(labels)} labels")
    return np.vstack(features).astype(np.float32), (np.asarray(labels) if labels else None)


# -- k-means ---------------------------------------------------------------------------------------

#: A channel's records: (features, labels or None).
Channel = tuple[np.ndarray, "np.ndarray | None"]


def _check_dimensions(hp: dict[str, Any], features: np.ndarray, test: Channel | None) -> None:
    for name, data in (("train", features), ("test", None if test is None else test[0])):
        if data is not None and data.shape[1] != hp["feature_dim"]:
            raise AlgorithmError(f"ClientError: feature_dim={hp['feature_dim']} but the {name} records have "
                                 f"{data.shape[1]} features")


def _extra_centers(hp: dict[str, Any], records: int) -> int:
    """K, the centers kept while streaming: k × extra_center_factor (``auto``: 10 here, fewer
    when there are not enough records for them)."""
    factor = hp["extra_center_factor"]
    if factor == "auto":
        factor = max(1, min(10, records // (2 * hp["k"])))
    return min(hp["k"] * factor, records)


def _squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each point's squared distance to its closest center."""
    return np.maximum((points ** 2).sum(1)[:, None] - 2 * points @ centers.T + (centers ** 2).sum(1)[None, :],
                      0).min(1)


def train_kmeans(hyperparameters: dict[str, str], features: np.ndarray, labels: np.ndarray | None,
                 model_dir: Path, log: Callable[[str], None], test: Channel | None = None) -> dict[str, float]:
    """Web-scale k-means as AWS describes SageMaker's ("How K-Means Clustering Works"): mini-batch
    k-means streams ``epochs`` passes over the data keeping K = k × ``extra_center_factor``
    centers (started by ``init_method``), then Lloyd's iterations on those K centers, weighted by
    the records each holds, reduce them to k (``local_lloyd_init_method``, ``_max_iter``,
    ``_tol``, ``_num_trials``). Both stages are scikit-learn's (MiniBatchKMeans, KMeans), seeded,
    so a job trains the same centers each time; they are not AWS's own centers.

    ``half_life_time_size`` other than 0 (centers that forget old records) is refused: it is not
    implemented here. With a ``test`` channel, ``eval_metrics`` (msd, ssd) are measured on it
    and reported as ``test:msd``/``test:ssd``, as AWS's are. The model directory holds
    ``model.npz`` (``centers``) and ``metadata.json``. Like AWS's model it answers clusters, not
    classes, even when the records carry labels.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    hp = parse_hyperparameters(KMEANS_HYPERPARAMETERS, hyperparameters, "kmeans")
    _check_dimensions(hp, features, test)

    if hp["k"] > len(features):
        raise AlgorithmError(f"ClientError: k={hp['k']} is more than the {len(features)} records")
    if hp["half_life_time_size"] != 0:
        raise AlgorithmError("ClientError: half_life_time_size other than 0 is not implemented by this local "
                             "k-means (centers here weigh every record alike)")
    k, extra = hp["k"], _extra_centers(hp, len(features))
    log(f"k-means: {len(features)} records of {features.shape[1]} features, k={k}, "
        f"mini_batch_size={hp['mini_batch_size']}, epochs={hp['epochs']}, init_method={hp['init_method']}, "
        f"{extra} centers while streaming")
    streamed = MiniBatchKMeans(n_clusters=extra, batch_size=min(hp["mini_batch_size"], len(features)),
                               init="k-means++" if hp["init_method"] == "kmeans++" else "random",
                               max_iter=hp["epochs"], n_init=1, max_no_improvement=None, tol=0.0,
                               random_state=0).fit(features)
    centers = streamed.cluster_centers_
    if extra > k:
        weights = np.bincount(streamed.predict(features), minlength=extra).astype(np.float64)
        held = weights > 0
        if held.sum() >= k:  # empty centers carry no records: leave them out of the reduction
            centers, weights = centers[held], weights[held]
        trials = 10 if hp["local_lloyd_num_trials"] == "auto" else hp["local_lloyd_num_trials"]
        centers = KMeans(n_clusters=k, init="k-means++" if hp["local_lloyd_init_method"] == "kmeans++" else "random",
                         n_init=trials, max_iter=hp["local_lloyd_max_iter"], tol=hp["local_lloyd_tol"],
                         random_state=0).fit(centers, sample_weight=weights + 1e-12).cluster_centers_
    centers = centers.astype(np.float32)
    msd = float(_squared_distances(features, centers).mean())
    log(f"#train_score (algo-1) : ('msd', {msd:.4f})")
    metrics = {"train:msd": msd}
    if test is not None:
        distances = _squared_distances(test[0], centers)
        for metric in hp["eval_metrics"]:
            metrics[f"test:{metric}"] = float(distances.mean() if metric == "msd" else distances.sum())
            log(f"#test_score (algo-1) : ('{metric}', {metrics[f'test:{metric}']:.4f})")
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez(model_dir / "model.npz", centers=centers)
    (model_dir / "metadata.json").write_text(json.dumps({"algorithm": "kmeans", "k": k}, indent=2))
    return metrics


# -- k-NN ------------------------------------------------------------------------------------------

KNN_HYPERPARAMETERS = {
    "feature_dim": Hyperparameter(_positive_int, "a positive integer"),
    "k": Hyperparameter(_positive_int, "a positive integer"),
    "predictor_type": Hyperparameter(_choice("classifier", "regressor"), "classifier or regressor"),
    "sample_size": Hyperparameter(_positive_int, "a positive integer"),
    "dimension_reduction_target": Hyperparameter(_non_negative_int, "a positive integer below feature_dim", "0"),
    "dimension_reduction_type": Hyperparameter(_choice("", "sign", "fjlt"), "sign or fjlt", ""),
    "faiss_index_ivf_nlists": Hyperparameter(_auto_or_positive_int, "a positive integer or auto", "auto"),
    "faiss_index_pq_m": Hyperparameter(_positive_int, "a positive integer", "1"),
    "index_metric": Hyperparameter(_choice("L2", "INNER_PRODUCT", "COSINE"), "L2, INNER_PRODUCT or COSINE", "L2"),
    "index_type": Hyperparameter(_choice("faiss.Flat", "faiss.IVFFlat", "faiss.IVFPQ"),
                                 "faiss.Flat, faiss.IVFFlat or faiss.IVFPQ", "faiss.Flat"),
    "mini_batch_size": Hyperparameter(_positive_int, "a positive integer", "5000"),
}


def train_knn(hyperparameters: dict[str, str], features: np.ndarray, labels: np.ndarray | None,
              model_dir: Path, log: Callable[[str], None], test: Channel | None = None) -> dict[str, float]:
    """SageMaker's k-NN: a sample of ``sample_size`` labelled records becomes the index; at
    inference the ``k`` nearest vote (classifier) or average (regressor). The index is exact
    search (faiss.Flat's answers; the IVF index types are accepted and searched exactly too);
    ``sign``/``fjlt`` dimension reduction is a random ±1 projection kept in the model. With a
    ``test`` channel, ``test:accuracy`` (classifier) or ``test:mse`` (regressor), as AWS's."""
    hp = parse_hyperparameters(KNN_HYPERPARAMETERS, hyperparameters, "knn")
    if labels is None:
        raise AlgorithmError("ClientError: k-NN needs a label in every training record")
    if test is not None and test[1] is None:
        raise AlgorithmError("ClientError: k-NN needs a label in every test record")
    _check_dimensions(hp, features, test)
    if hp["dimension_reduction_type"] and not 0 < hp["dimension_reduction_target"] < hp["feature_dim"]:
        raise AlgorithmError("ClientError: dimension_reduction_target must be set below feature_dim when "
                             "dimension_reduction_type is")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(features), size=min(hp["sample_size"], len(features)), replace=False)
    index, index_labels = features[np.sort(chosen)], labels[np.sort(chosen)].astype(np.float32)
    arrays = {"index": index.astype(np.float32), "labels": index_labels}
    if hp["dimension_reduction_type"]:
        target = hp["dimension_reduction_target"]
        projection = rng.choice([-1.0, 1.0], size=(hp["feature_dim"], target)) / np.sqrt(target)
        arrays["projection"] = projection.astype(np.float32)
        arrays["index"] = arrays["index"] @ arrays["projection"]
    log(f"k-NN: index of {len(index)} of {len(features)} records, k={hp['k']}, {hp['predictor_type']}, "
        f"metric {hp['index_metric']}")
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez(model_dir / "model.npz", **arrays)
    (model_dir / "metadata.json").write_text(json.dumps({
        "algorithm": "knn", "k": hp["k"], "predictor_type": hp["predictor_type"],
        "index_metric": hp["index_metric"]}, indent=2))
    if test is None:
        return {}
    from ferry.sagemaker.inference import load_builtin_model

    model = load_builtin_model(model_dir)  # the test channel answered as the endpoint would answer it
    predicted = np.concatenate([[p["predicted_label"] for p in model.predict(test[0][start:start + 1000])]
                                for start in range(0, len(test[0]), 1000)])
    metric, value = (("accuracy", float((predicted == test[1]).mean())) if hp["predictor_type"] == "classifier"
                     else ("mse", float(((predicted - test[1]) ** 2).mean())))
    log(f"#test_score (algo-1) : ('{metric}', {value:.4f})")
    return {f"test:{metric}": value}


@dataclass(frozen=True)
class Algorithm:
    name: str
    train: Callable[..., dict[str, float]]
    supervised: bool


ALGORITHMS = {"kmeans": Algorithm("kmeans", train_kmeans, supervised=False),
              "knn": Algorithm("knn", train_knn, supervised=True)}


#: Framework images whose training and serving run the user's script (ferry.sagemaker.script_mode).
SCRIPT_MODE_IMAGES = ("sagemaker-scikit-learn",)


def image_name(image: str) -> str:
    """``kmeans`` for ``<account>.dkr.ecr.<region>.amazonaws.com/kmeans:1``; AlgorithmError otherwise."""
    found = _IMAGE.match(image or "") if isinstance(image, str) else None
    if not found:
        raise AlgorithmError(f"ClientError: {image!r:.200} is not a SageMaker image URI "
                             "(<account>.dkr.ecr.<region>.amazonaws.com/<name>:<tag>)")
    return found["name"]


def is_script_mode_image(image: str) -> bool:
    return image_name(image) in SCRIPT_MODE_IMAGES


def algorithm_for_image(image: str) -> Algorithm:
    name = image_name(image)
    if name not in ALGORITHMS:
        known = ", ".join([*sorted(ALGORITHMS), *SCRIPT_MODE_IMAGES])
        raise AlgorithmError(f"ClientError: the training image {image} is not one this control plane runs "
                             f"(it runs: {known})")
    return ALGORITHMS[name]
