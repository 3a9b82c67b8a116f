"""The seed's ``extract_mnist_data`` step: mnist.pkl.gz in S3 → the train set as RecordIO-protobuf.

The seed downloads the whole file into memory and builds the whole RecordIO output in another
buffer before uploading it. Here the gzip is read straight from the S3 response (the pickle
still has to be unpickled whole: its arrays are single objects) and each record goes to a
multipart upload as it is encoded, which is completed only once every record is written: a
failure leaves no object, or the previous run's object, at the key.
"""

from __future__ import annotations

import gzip
import pickle
from typing import Any

import numpy as np

from ferry.sagemaker.recordio import write_numpy_to_dense_tensor
from ferry.transfers.s3_sink import S3Output

RECORDIO_CONTENT_TYPE = "application/x-recordio-protobuf"
#: Which of the pickle's (train, valid, test) sets each name means.
SPLITS = {"train": 0, "valid": 1, "test": 2}


def load_mnist_split(client: Any, bucket: str, key: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One split of a mnist.pkl.gz in S3, read from the response stream."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with gzip.GzipFile(fileobj=body, mode="rb") as f:
        # encoding="latin1": the original deeplearning.net file was pickled by Python 2.
        sets = pickle.load(f, encoding="latin1")
    images, labels = sets[SPLITS[split]]
    return np.asarray(images), np.asarray(labels)


def mnist_to_recordio(client: Any, bucket: str, source_key: str, target_key: str, split: str = "train") -> dict:
    """Write ``split`` of ``source_key`` to ``target_key`` as RecordIO-protobuf; return a summary."""
    images, labels = load_mnist_split(client, bucket, source_key, split)
    if images.ndim != 2 or len(images) != len(labels):
        raise ValueError(f"s3://{bucket}/{source_key}: expected (n, features) images and n labels, "
                         f"got {images.shape} and {labels.shape}")
    output = S3Output(client, bucket, target_key, content_type=RECORDIO_CONTENT_TYPE)
    output.check_target()
    try:
        sink = output.current
        write_numpy_to_dense_tensor(sink, images, labels)  # one record at a time, into the upload
        sink.rows = len(images)
        manifest = output.commit()
    except BaseException:
        output.abort()
        raise
    return {"key": target_key, "records": manifest["rows"], "bytes": manifest["bytes"],
            "features": int(images.shape[1])}
