"""The classifier's code as SageMaker's script mode takes it: a ``sourcedir.tar.gz`` in S3.

The bundle holds ``sagemaker_code/classifier.py`` (the entry point, ``sagemaker_program``) and
``sagemaker_recordio.py`` (ferry.sagemaker.recordio, which it imports), at the archive's root as
the SageMaker SDK packs a ``source_dir``. It is built byte for byte the same from the same code
(sorted members, fixed times and owners), so a rerun uploads an identical object.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

CODE_DIR = Path(__file__).parent / "sagemaker_code"
PROGRAM = "classifier.py"
FILES = (PROGRAM, "sagemaker_recordio.py")


def source_bundle() -> bytes:
    """The tar.gz's bytes (links resolved: the archive holds the modules' contents)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in FILES:
            data = (CODE_DIR / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def upload_source_bundle(s3: Any, bucket: str, key: str = "code/sourcedir.tar.gz") -> str:
    """Put the bundle at ``s3://bucket/key`` (one PUT) and return that URI."""
    s3.put_object(Bucket=bucket, Key=key, Body=source_bundle(), ContentType="application/gzip")
    return f"s3://{bucket}/{key}"
