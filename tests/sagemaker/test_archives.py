"""The caps on every archive the local SageMaker unpacks (model artifacts, source bundles), with
hostile archives built here: what they claim is refused before it is held or written. S3 is a
stand-in object holding one archive (the fetch is S3's own, tested with the real server
elsewhere); what is under test is the reading."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ferry.sagemaker.archives import fetch_tar_gz


class OneObject:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def head_object(self, Bucket, Key):
        return {"ContentLength": len(self.data)}

    def download_file(self, bucket, key, path):
        Path(path).write_bytes(self.data)


def archive(members: dict[str, bytes], pax: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_an_ordinary_archive_unpacks(tmp_path):
    fetch_tar_gz(OneObject(archive({"model.npz": b"x" * 100_000, "code/a.py": b"print(1)"})), "s3://b/k",
                 tmp_path / "out", what="the model archive", max_bytes=10**6)
    assert (tmp_path / "out" / "model.npz").stat().st_size == 100_000


def test_a_huge_pax_header_is_refused_before_it_is_read_whole(tmp_path):
    # 64 MB of header in a few hundred kB of gzip; tarfile would read it into memory at once.
    bomb = archive({"a": b""}, pax={"comment": "x" * 64_000_000})
    assert len(bomb) < 1_000_000
    with pytest.raises(ValueError, match="the source bundle has a tar header of more than"):
        fetch_tar_gz(OneObject(bomb), "s3://b/k", tmp_path / "out", what="the source bundle", max_bytes=10**6)
    assert not any((tmp_path / "out").iterdir())


def test_too_many_members_or_too_many_bytes_are_refused_before_writing(tmp_path):
    many = archive({f"f{i}": b"" for i in range(101)})
    with pytest.raises(ValueError, match="more than 100 members"):
        fetch_tar_gz(OneObject(many), "s3://b/k", tmp_path / "a", what="x", max_bytes=10**6, max_members=100)
    big = archive({"a": b"\0" * 5000})
    with pytest.raises(ValueError, match="expands to more than 1,000 bytes"):
        fetch_tar_gz(OneObject(big), "s3://b/k", tmp_path / "b", what="x", max_bytes=10**6, max_expanded=1000)
    assert not any((tmp_path / "a").iterdir()) and not any((tmp_path / "b").iterdir())


def test_a_truncated_archive_is_not_taken_for_a_whole_one(tmp_path):
    whole = archive({"a": b"y" * 200_000})
    with pytest.raises(ValueError, match=r"not a readable tar\.gz"):
        fetch_tar_gz(OneObject(whole[: len(whole) // 2]), "s3://b/k", tmp_path / "c", what="x", max_bytes=10**6)
