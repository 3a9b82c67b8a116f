"""ferry.sagemaker.recordio against bytes written by the real SageMaker SDK 2.257.7
(tests/digits/data/make_vectors.py made them in a throw-away environment)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from ferry.sagemaker.recordio import read_records, write_numpy_to_dense_tensor

DATA = Path(__file__).parent / "data"
CASES = sorted(p.stem for p in DATA.glob("*.rec"))


def load(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(DATA / f"{name}.npz") as npz:
        return npz["array"], npz.get("labels")


def test_there_are_vectors():
    assert len(CASES) >= 5


@pytest.mark.parametrize("name", CASES)
def test_same_bytes_as_the_sdk(name):
    array, labels = load(name)
    out = io.BytesIO()
    write_numpy_to_dense_tensor(out, array, labels)
    assert out.getvalue() == (DATA / f"{name}.rec").read_bytes()


@pytest.mark.parametrize("name", CASES)
def test_reading_the_sdk_bytes_gives_the_arrays_back(name):
    array, labels = load(name)
    records = read_records(io.BytesIO((DATA / f"{name}.rec").read_bytes()))
    assert len(records) == len(array)
    for index, record in enumerate(records):
        expected = array[index].astype(np.int32) if array.dtype.kind == "i" else array[index]
        np.testing.assert_array_equal(record.features["values"], expected)
        if labels is None:
            assert record.label == {}
        else:
            expected_label = labels[index].astype(np.int32) if labels.dtype.kind == "i" else labels[index]
            np.testing.assert_array_equal(record.label["values"], [expected_label])


@pytest.mark.parametrize("array,labels,message", [
    (np.zeros(3, dtype=np.float32), None, "Array must be a Matrix"),
    (np.zeros((2, 2), dtype=np.complex64), None, "Unsupported dtype"),
    (np.zeros((2, 2), dtype=np.float32), np.zeros((2, 1)), "Labels must be a Vector"),
    (np.zeros((2, 2), dtype=np.float32), np.zeros(5), "not compatible"),
])
def test_bad_input_is_refused_as_the_sdk_does(array, labels, message):
    with pytest.raises(ValueError, match=message):
        write_numpy_to_dense_tensor(io.BytesIO(), array, labels)


def test_corrupt_files_are_errors_not_garbage():
    good = (DATA / "float32_int64_labels.rec").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        read_records(io.BytesIO(good[:-10]))
    with pytest.raises(ValueError, match="not RecordIO"):
        read_records(io.BytesIO(b"\x00" * 8 + good))
