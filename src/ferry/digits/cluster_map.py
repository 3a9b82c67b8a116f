"""From an endpoint's answer to a digit, for every model the digits DAG can deploy.

Supervised models answer ``predicted_label``: that is the digit. k-means answers
``closest_cluster``, and clusters are not digits: the DAG learns which digit each cluster
stands for from labelled data (the majority label of the training digits in it) and stores
that map as ``cluster-digits.json`` beside the model (``…/<job>/output/``). The API finds it
from the endpoint: DescribeEndpoint → DescribeEndpointConfig → DescribeModel → ModelDataUrl,
so the seed's model answers digits on AWS as here.

No ferry imports: the Chalice app ships this module as it is (api/chalicelib links to it).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

MAP_NAME = "cluster-digits.json"


def learn(clusters: Iterable[float], labels: Iterable[int]) -> dict[str, int]:
    """Cluster id (as a string, JSON's keys) → the label most of its members carry."""
    votes: dict[int, Counter] = {}
    for cluster, label in zip(clusters, labels, strict=True):
        votes.setdefault(int(cluster), Counter())[int(label)] += 1
    return {str(cluster): counter.most_common(1)[0][0] for cluster, counter in sorted(votes.items())}


def map_location(model_data_url: str) -> tuple[str, str]:
    """(bucket, key) of the map beside ``s3://bucket/…/model.tar.gz``."""
    bucket, _, key = model_data_url.removeprefix("s3://").partition("/")
    return bucket, f"{key.rpartition('/')[0]}/{MAP_NAME}".lstrip("/")


def save(s3: Any, model_data_url: str, cluster_digits: dict[str, int]) -> str:
    bucket, key = map_location(model_data_url)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(cluster_digits, sort_keys=True).encode(),
                  ContentType="application/json")
    return f"s3://{bucket}/{key}"


def load(s3: Any, model_data_url: str) -> dict[str, int]:
    bucket, key = map_location(model_data_url)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def digit_of(prediction: dict[str, Any], cluster_digits: dict[str, int] | None) -> int:
    """The digit an answer stands for; KeyError if it is a cluster no map covers."""
    if "predicted_label" in prediction:
        return int(prediction["predicted_label"])
    if cluster_digits is None:
        raise KeyError("the model answers clusters and no cluster → digit map was found")
    return int(cluster_digits[str(int(prediction["closest_cluster"]))])


class EndpointClusterMaps:
    """The map of whatever model an endpoint serves now, re-checked every ``ttl`` seconds."""

    def __init__(self, sagemaker: Any, s3: Any, ttl: float = 10.0) -> None:
        self.sagemaker, self.s3, self.ttl = sagemaker, s3, ttl
        self._cached: dict[str, tuple[float, dict[str, int]]] = {}

    def get(self, endpoint: str) -> dict[str, int]:
        checked, cluster_digits = self._cached.get(endpoint, (0.0, {}))
        if time.monotonic() - checked > self.ttl:
            config = self.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
            variant = self.sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
            model = self.sagemaker.describe_model(ModelName=variant["ModelName"])
            container = model.get("PrimaryContainer") or model["Containers"][0]
            cluster_digits = load(self.s3, container["ModelDataUrl"])
            self._cached[endpoint] = (time.monotonic(), cluster_digits)
        return cluster_digits
