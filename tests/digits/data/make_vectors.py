"""Make the RecordIO test vectors with the real SageMaker SDK (run by hand, not by the tests).

    uv venv /tmp/sm && uv pip install --python /tmp/sm/bin/python sagemaker==2.257.7
    /tmp/sm/bin/python tests/digits/data/make_vectors.py

Writes ``<name>.npz`` (the input arrays) and ``<name>.rec`` (what the SDK wrote) for each case.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import sagemaker
from sagemaker.amazon.common import write_numpy_to_dense_tensor

HERE = Path(__file__).parent
rng = np.random.default_rng(2257)

CASES = {
    "float32_int64_labels": (rng.random((4, 7), dtype=np.float32) * 2 - 1, np.array([3, 0, 9, 7], dtype=np.int64)),
    "float64_no_labels": (rng.normal(size=(3, 5)), None),
    "int64_float32_labels": (np.array([[0, -1, 2**31 - 1, -(2**31)], [5, 6, 7, 8]], dtype=np.int64),
                             np.array([0.5, -2.25], dtype=np.float32)),
    "float32_mnist_like": (np.round(rng.random((2, 784), dtype=np.float32) * 255) / 255,
                           np.array([5, 1], dtype=np.int64)),
    "one_column_odd_padding": (np.array([[1.0], [2.0], [3.0]], dtype=np.float32), np.array([1, 2, 3], dtype=np.int64)),
}

for name, (array, labels) in CASES.items():
    out = io.BytesIO()
    write_numpy_to_dense_tensor(out, array, labels)
    (HERE / f"{name}.rec").write_bytes(out.getvalue())
    np.savez(HERE / f"{name}.npz", array=array, **({"labels": labels} if labels is not None else {}))
    print(name, len(out.getvalue()), "bytes, sagemaker", sagemaker.__version__)
