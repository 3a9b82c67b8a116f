"""The tar.gz archives SageMaker passes around (model artifacts, source bundles), fetched and
unpacked safely: one place for the size caps and tarfile's ``data`` filter (no member outside
the target directory, no links out, no devices or setuid bits)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any


def fetch_tar_gz(s3: Any, uri: str, directory: Path, *, what: str, max_bytes: int,
                 max_expanded: int | None = None) -> None:
    """Download the ``s3://`` tar.gz ``uri`` and unpack it into ``directory``.

    ValueError naming ``what`` if it is over ``max_bytes`` (checked before downloading; then
    ``directory`` is not created), would expand past ``max_expanded`` (summed from its headers
    before anything is written) or is not a tar.gz that unpacks safely. S3's own errors pass.
    """
    from ferry.sagemaker.worker import split_s3_uri

    bucket, key = split_s3_uri(uri)
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if size > max_bytes:
        raise ValueError(f"{what} is {size:,} bytes; at most {max_bytes:,} are accepted")
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory.parent / f"{directory.name}.tar.gz"
    try:
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            expanded = sum(member.size for member in members)
            if max_expanded is not None and expanded > max_expanded:
                raise ValueError(f"{what} expands to {expanded:,} bytes; at most {max_expanded:,} are accepted")
            tar.extractall(directory, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{what} is not a readable tar.gz: {type(exc).__name__}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
