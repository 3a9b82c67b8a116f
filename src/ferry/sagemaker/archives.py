"""The tar.gz archives SageMaker passes around (model artifacts, source bundles), fetched and
unpacked safely: one place for the caps and tarfile's ``data`` filter (no member outside the
target directory, no links out, no devices or setuid bits).

The caps are checked from the members' headers while the archive is read, before anything is
written: a small gzip bomb (a header claiming terabytes, or a million empty files) is refused
as soon as its count or claimed size passes the cap, without inflating the rest.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ferry.sagemaker.algorithms import AlgorithmError

#: No archive is unpacked if its members add up to more than this…
MAX_EXPANDED_BYTES = 4 * 1024 * 1024 * 1024
#: … or if it has more members than this.
MAX_MEMBERS = 100_000


#: tarfile reads a pax or GNU long-name header whole, in one read: a header is refused past this.
MAX_HEADER_BYTES = 1024 * 1024


class _HeaderTooLarge(ValueError):
    pass


class _SmallReads:
    """The decompressed archive, as tarfile reads it, refusing any one read over
    :data:`MAX_HEADER_BYTES`: member data is copied in 16 KiB reads, so only a header that claims
    to be huge (a few hundred kB of gzip can claim gigabytes) asks for more — and would be held
    in memory whole before any cap on members could see it."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_HEADER_BYTES:
            raise _HeaderTooLarge(f"has a tar header of more than {MAX_HEADER_BYTES:,} bytes")
        return self._file.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise AlgorithmError(f"ClientError: expected an s3://bucket/prefix URI, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def fetch_tar_gz(s3: Any, uri: str, directory: Path, *, what: str, max_bytes: int,
                 max_expanded: int = MAX_EXPANDED_BYTES, max_members: int = MAX_MEMBERS) -> None:
    """Download the ``s3://`` tar.gz ``uri`` and unpack it into ``directory``.

    ValueError naming ``what`` if it is over ``max_bytes`` (checked before downloading; then
    ``directory`` is not created), would expand past ``max_expanded`` or hold more than
    ``max_members`` members (counted from its headers before anything is written), or is not a
    tar.gz that unpacks safely. S3's own errors pass.
    """
    bucket, key = split_s3_uri(uri)
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if size > max_bytes:
        raise ValueError(f"{what} is {size:,} bytes; at most {max_bytes:,} are accepted")
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory.parent / f"{directory.name}.tar.gz"
    try:
        s3.download_file(bucket, key, str(archive))
        with gzip.open(archive) as unzipped, tarfile.open(fileobj=_SmallReads(unzipped), mode="r:") as tar:
            members, expanded = [], 0
            while (member := tar.next()) is not None:
                members.append(member)
                expanded += member.size
                if expanded > max_expanded:
                    raise ValueError(f"{what} expands to more than {max_expanded:,} bytes; "
                                     f"at most {max_expanded:,} are accepted")
                if len(members) > max_members:
                    raise ValueError(f"{what} has more than {max_members:,} members; "
                                     f"at most {max_members:,} are accepted")
            tar.extractall(directory, members=members, filter="data")
    except _HeaderTooLarge as exc:
        raise ValueError(f"{what} {exc}; refused") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{what} is not a readable tar.gz: {type(exc).__name__}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
