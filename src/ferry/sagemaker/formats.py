"""The built-in algorithms' answers in the format the client's ``Accept`` asks for, as AWS's
"Common data formats for inference" document them for k-means and k-NN:

- ``application/json`` (the default, and for ``*/*`` or no ``Accept``):
  ``{"predictions": [{"closest_cluster": 1.0, "distance_to_cluster": 3.2}, …]}``;
- ``application/jsonlines``: one such object per line;
- ``application/x-recordio-protobuf``: one RecordIO record per prediction, its ``label`` map
  holding each field as a float32 tensor (what the SageMaker SDK's KMeans and KNN
  predictors read with their ``RecordDeserializer``);
- with ``verbose=true`` on the chosen type, k-NN's answers also hold the k nearest
  neighbours' ``distances`` and ``labels``, nearest first.

Anything else is refused (a 4xx) rather than answered in a format the client cannot read.
Tests check the RecordIO against AWS's own protobuf definition (``sagemaker_training.record_pb2``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from ferry.sagemaker.recordio import encode_label_map, write_recordio

JSON, JSONLINES, RECORDIO = "application/json", "application/jsonlines", "application/x-recordio-protobuf"


class UnsupportedAccept(ValueError):
    """The client asked for a format the algorithm does not answer in."""


def accepted_media(accept: str) -> list[str]:
    """The media types an ``Accept`` header lists, in its order, without parameters (none: ``*/*``)."""
    return [media for media, _ in _accept_ranges(accept)]


def csv_label_size(content_type: str, *, default: int) -> int:
    """``text/csv;label_size=N``'s N: how many leading columns are labels (AWS's csv rule: in
    training data the label is the first column unless ``label_size=0`` says there is none; in
    inference requests there is none unless said). ValueError unless a small whole number."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "label_size":
            if not value.strip().isdigit() or int(value) > 1024:
                raise ValueError(f"label_size must be a whole number, not {value[:20]!r}")
            return int(value)
    return default


def _accept_ranges(accept: str) -> list[tuple[str, bool]]:
    """(media type, ``verbose=true`` among its parameters) for each range an ``Accept`` lists."""
    ranges = []
    for part in (accept or "*/*").split(","):
        media, *parameters = part.split(";")
        verbose = any(name.strip().lower() == "verbose" and value.strip().lower() == "true"
                      for name, _, value in (p.partition("=") for p in parameters))
        ranges.append((media.strip().lower(), verbose))
    return ranges


def encode_predictions(predictions: list[dict[str, Any]], accept: str,
                       verbose_fields: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """(body, content type) of ``predictions`` for ``accept`` (its first listed type we answer).

    ``verbose_fields`` are left out unless that type carries ``verbose=true`` (k-NN's neighbours).
    """
    for offered, verbose in _accept_ranges(accept):
        if offered not in ("*/*", "application/*", JSON, JSONLINES, RECORDIO):
            continue
        if verbose_fields and not verbose:
            predictions = [{k: v for k, v in p.items() if k not in verbose_fields} for p in predictions]
        if offered == JSONLINES:
            return "".join(json.dumps(p) + "\n" for p in predictions).encode(), JSONLINES
        if offered == RECORDIO:
            buffer = io.BytesIO()
            for prediction in predictions:
                write_recordio(buffer, encode_label_map({k: np.float32(v) for k, v in prediction.items()}))
            return buffer.getvalue(), RECORDIO
        return json.dumps({"predictions": predictions}).encode(), JSON
    raise UnsupportedAccept(f"Accept {accept[:100]!r} is not answered here; ask for {JSON}, {JSONLINES} or {RECORDIO}")
