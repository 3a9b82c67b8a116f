"""The answers' formats against AWS's own code: the built-in algorithms' RecordIO answers parse
with AWS's protobuf definition (``sagemaker_training.record_pb2``, the one the SageMaker SDK's
``RecordDeserializer`` uses), and the script-mode default ``output_fn`` encodes as the toolkits'
encoders do (``sagemaker_training.encoders``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from sagemaker_training import encoders, record_pb2
from sagemaker_training.recordio import _read_recordio

from ferry.sagemaker.formats import UnsupportedAccept, encode_predictions
from ferry.sagemaker.script_mode import default_output_fn

PREDICTIONS = [{"closest_cluster": 3.0, "distance_to_cluster": 1.25}, {"closest_cluster": 0.0,
                                                                        "distance_to_cluster": 7.5}]


def test_json_is_the_default_and_jsonlines_is_one_object_a_line():
    for accept in ("", "*/*", "application/json", "text/html, application/json;q=0.9"):
        body, content_type = encode_predictions(PREDICTIONS, accept)
        assert (json.loads(body), content_type) == ({"predictions": PREDICTIONS}, "application/json"), accept
    body, content_type = encode_predictions(PREDICTIONS, "application/jsonlines")
    assert [json.loads(line) for line in body.splitlines()] == PREDICTIONS and content_type == "application/jsonlines"


def test_recordio_answers_parse_with_awss_protobuf_definition():
    body, content_type = encode_predictions(PREDICTIONS, "application/x-recordio-protobuf")
    assert content_type == "application/x-recordio-protobuf"
    parsed = []
    for payload in _read_recordio(io.BytesIO(body)):
        record = record_pb2.Record()
        record.ParseFromString(payload)
        parsed.append({key: list(value.float32_tensor.values) for key, value in record.label.items()})
    assert parsed == [{k: [v] for k, v in p.items()} for p in PREDICTIONS]


def test_an_accept_nobody_answers_is_refused():
    with pytest.raises(UnsupportedAccept):
        encode_predictions(PREDICTIONS, "text/html")
    with pytest.raises(UnsupportedAccept):
        default_output_fn(np.ones(2), "image/png")


@pytest.mark.parametrize("prediction", [np.array([1.0, 2.5]), np.array([[1, 2], [3, 4]]), np.array([7])])
def test_the_default_output_fn_encodes_as_the_toolkit(prediction):
    body, content_type = default_output_fn(prediction, "text/csv")
    assert (body.decode(), content_type) == (encoders.array_to_csv(prediction), "text/csv")
    body, content_type = default_output_fn(prediction, "application/x-npy")
    assert content_type == "application/x-npy"
    assert (np.load(io.BytesIO(body)) == np.load(io.BytesIO(encoders.array_to_npy(prediction)))).all()
    body, content_type = default_output_fn(prediction, "application/json")
    assert json.loads(body) == json.loads(encoders.array_to_json(prediction)) and content_type == "application/json"


KNN_ANSWERS = [{"predicted_label": 2.0, "distances": [1.5, 2.0, 4.25], "labels": [2.0, 2.0, 0.0]}]


def test_knn_neighbours_only_when_the_chosen_type_asks_for_verbose():
    """AWS's k-NN formats: ``verbose=true`` adds ``distances`` and ``labels``; without it, the plain shape."""
    fields = ("distances", "labels")
    for accept in ("application/json", "*/*", "application/json; verbose=false",
                   "text/html; verbose=true, application/json"):  # verbose on a type not chosen
        body, _ = encode_predictions(KNN_ANSWERS, accept, fields)
        assert json.loads(body) == {"predictions": [{"predicted_label": 2.0}]}, accept
    for accept in ("application/json; verbose=true", "application/json;Verbose=TRUE", "text/html, */*; verbose=true"):
        body, _ = encode_predictions(KNN_ANSWERS, accept, fields)
        assert json.loads(body) == {"predictions": KNN_ANSWERS}, accept
    body, _ = encode_predictions(KNN_ANSWERS, "application/jsonlines; verbose=true", fields)
    assert [json.loads(line) for line in body.splitlines()] == KNN_ANSWERS
    body, _ = encode_predictions(KNN_ANSWERS, "application/x-recordio-protobuf; verbose=true", fields)
    record = record_pb2.Record()
    record.ParseFromString(next(iter(_read_recordio(io.BytesIO(body)))))
    assert {key: list(value.float32_tensor.values) for key, value in record.label.items()} == {
        "predicted_label": [2.0], "distances": [1.5, 2.0, 4.25], "labels": [2.0, 2.0, 0.0]}
