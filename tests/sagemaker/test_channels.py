"""Where File input mode puts each object of a channel: by its key relative to the channel's
prefix, as SageMaker (and the SageMaker SDK's local mode) does — and never outside the channel's
directory, whatever the key. Keys are hostile: anyone who can write to the bucket names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.sagemaker.algorithms import AlgorithmError
from ferry.sagemaker.worker import channel_file


@pytest.mark.parametrize(("prefix", "key", "relative"), [
    ("data/train", "data/train/part-0", "part-0"),
    ("data/train/", "data/train/2019/12/listing.csv", "2019/12/listing.csv"),
    ("data/train", "data/train.csv", ".csv"),  # the SDK's rule, key minus prefix, taken literally
    ("data/train.csv", "data/train.csv", "train.csv"),  # the prefix names one object
    ("", "a/b", "a/b"),
    ("data/train", "data/train//odd//name", "odd/name"),
])
def test_objects_keep_their_names_relative_to_the_prefix(tmp_path, prefix, key, relative):
    assert channel_file(tmp_path, prefix, key) == tmp_path / relative


@pytest.mark.parametrize("key", [
    "data/train/../../../etc/passwd", "data/train/a/../../b", "data/train/..", "data/train/.",
    "data/train/a/./b", "data/train/\0evil", "data/train/",
])
def test_keys_that_would_leave_or_bend_the_channel_directory_fail_the_job(tmp_path, key):
    with pytest.raises(AlgorithmError, match="ClientError: object key"):
        channel_file(tmp_path, "data/train", key)


def test_a_symlink_planted_in_the_channel_does_not_lead_out(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "link").symlink_to(tmp_path.parent)
    with pytest.raises(AlgorithmError, match="would leave"):
        channel_file(channel, "p/", "p/link/escape")
    assert channel_file(channel, "p/", "p/linked") == Path(channel / "linked")
