"""Streaming writes to S3: multipart uploads whose completion waits until the whole export is done.

Why deferred completion: an export that fails half-way (bad query, lost connection) must leave
no object at a final key, and a re-run that fails must not have replaced the previous run's
objects with half of the new ones. Each file is uploaded part by part as data arrives (memory
stays at a few parts), but S3 only makes an object visible on ``CompleteMultipartUpload``;
we send those for every file at the end, or ``AbortMultipartUpload`` for all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: boto3's own defaults (``TransferConfig``: 8 MiB parts, 10 threads): on AWS one connection
#: carries ~50–100 MB/s, so throughput needs several parts in flight. Memory is bounded by
#: (concurrency + 1) parts: 88 MiB with these.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_CONCURRENCY = 10
#: S3 allows 10,000 parts per upload; part sizes double every this many parts, so an object
#: can grow far beyond ``part_size * 10_000`` without anyone choosing a part size for it.
PARTS_PER_SIZE_STEP = 1_000


def check_upload_settings(part_size: int, concurrency: int) -> None:
    """Raise ValueError for settings S3 or the memory bound cannot work with."""
    if part_size < 5 * 1024 * 1024:
        raise ValueError(f"part_size must be at least 5 MiB (S3's smallest part), not {part_size!r}")
    if concurrency < 1:
        raise ValueError(f"upload_concurrency must be at least 1, not {concurrency!r}")


class MultipartObject:
    """A file-like writer for one S3 object (``write``, ``tell``); see the module docstring."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        part_size: int,
        executor: ThreadPoolExecutor,
        slots: threading.Semaphore,
        content_type: str,
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = part_size
        self._executor, self._slots = executor, slots
        self._buffer = bytearray()
        self._parts: list[Future[dict[str, Any]]] = []
        self._checked = 0  # parts before this index are known to have uploaded
        self.bytes = 0
        self.rows = 0
        self.closed = False
        self.upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)[
            "UploadId"
        ]

    # file-like protocol (pyarrow's ParquetWriter writes to this directly)
    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        self.bytes += len(data)
        if len(self._buffer) >= self._current_part_size():
            self._send_part()
        return len(data)

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        """Data is flushed by part; nothing to do before ``finish``."""

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def _current_part_size(self) -> int:
        return self.part_size * 2 ** (len(self._parts) // PARTS_PER_SIZE_STEP)

    def _send_part(self) -> None:
        # A part that failed (S3 gone, say) fails the export now, not after reading everything.
        while self._checked < len(self._parts) and self._parts[self._checked].done():
            if (error := self._parts[self._checked].exception()) is not None:
                raise error
            self._checked += 1
        # Hand the buffer itself to the upload and start a new one: no 16 MB copy per part.
        body, self._buffer = self._buffer, bytearray()
        number = len(self._parts) + 1
        self._slots.acquire()  # at most `concurrency` parts held while uploading
        future = self._executor.submit(self._upload, number, body)
        future.add_done_callback(lambda _: self._slots.release())
        self._parts.append(future)

    def _upload(self, number: int, body: bytearray) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def finish(self) -> None:
        """Send what is buffered (the last part may be small) and wait for every part."""
        if self._buffer or not self._parts:
            self._send_part()
        for part in self._parts:
            part.result()

    def complete(self) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": [part.result() for part in self._parts]},
        )

    def abort(self) -> None:
        for part in self._parts:
            part.cancel()
        for part in self._parts:
            with contextlib.suppress(Exception):
                part.result()
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


def part_key(s3_key: str, index: int) -> str:
    """``exports/listing.csv.gz`` → ``exports/listing-part-00003.csv.gz``; or fill ``{part}``."""
    if "{part}" in s3_key:
        return s3_key.replace("{part}", f"{index:05d}")
    head, _, name = s3_key.rpartition("/")
    stem, dot, extensions = name.partition(".")
    return f"{head}{'/' if head else ''}{stem}-part-{index:05d}{dot}{extensions}"


def part_key_pattern(s3_key: str) -> re.Pattern[str]:
    marker = "\0"
    return re.compile(re.escape(part_key(s3_key, 0).replace("00000", marker)).replace(marker, r"(\d{5})") + "$")


@dataclass(frozen=True)
class CommitOutcome:
    """What an export has done to its keys so far (see :meth:`S3Output.outcome`)."""

    written: list[str]
    unanswered: str | None
    not_written: list[str]
    stale_not_deleted: list[str] | None  # None: not listed yet


@dataclass
class S3Output:
    """The files of one export: a single key, or numbered parts when ``split`` is on."""

    client: Any
    bucket: str
    key: str
    content_type: str
    split: bool = False
    replace: bool = True
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    files: list[MultipartObject] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_upload_settings(self.part_size, self.concurrency)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part")
        self._slots = threading.Semaphore(self.concurrency)
        self._completed: list[str] = []  # keys whose CompleteMultipartUpload succeeded, in order
        self._unanswered: str | None = None  # the key whose completion got no answer
        self._stale: list[str] | None = None  # parts of an earlier, larger run; None until listed
        self._deleted: list[str] = []

    # -- checks before any data moves ---------------------------------------------------------

    def check_target(self) -> None:
        """Fail early, with a message that says which, for a missing bucket or an existing key."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise FileNotFoundError(f"S3 bucket {self.bucket!r} does not exist") from exc
            raise
        if not self.replace:
            existing = self.existing_keys()
            if existing:
                raise FileExistsError(f"s3://{self.bucket}/{existing[0]} already exists and replace=False")
        self.abort_unfinished_uploads()

    def _is_ours(self, key: str) -> bool:
        return part_key_pattern(self.key).match(key) is not None if self.split else key == self.key

    def abort_unfinished_uploads(self) -> list[str]:
        """Abort multipart uploads to this output's keys that an earlier, crashed run left open.

        A run that loses S3 mid-export cannot abort its own uploads; the next run does, so none
        stays open (and billed, on AWS) for long. Returns the keys whose uploads were aborted.
        """
        prefix = self.key
        if self.split:
            prefix = os.path.commonprefix([part_key(self.key, 0), part_key(self.key, 1)])  # noqa: RUF071
        aborted = []
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if self._is_ours(upload["Key"]):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted.append(upload["Key"])
        if aborted:
            log.info("aborted %d multipart upload(s) an earlier run left open: %s", len(aborted), ", ".join(aborted))
        return aborted

    def existing_keys(self) -> list[str]:
        if not self.split:
            from botocore.exceptions import ClientError

            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key)
            except ClientError:
                return []
            return [self.key]
        return sorted(self._existing_part_keys())

    def _existing_part_keys(self) -> dict[str, int]:
        pattern = part_key_pattern(self.key)
        # Where parts 0 and 1 first differ: an S3 prefix is a string, compared character by character.
        prefix = os.path.commonprefix([part_key(self.key, 0), part_key(self.key, 1)])  # noqa: RUF071
        found: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if match := pattern.match(item["Key"]):
                    found[item["Key"]] = int(match.group(1))
        return found

    # -- writing --------------------------------------------------------------------------------

    def next_file(self) -> MultipartObject:
        if self.files and not self.split:
            raise RuntimeError("a single-file output cannot roll over to a second file")
        if self.files:
            self.files[-1].finish()
        key = part_key(self.key, len(self.files)) if self.split else self.key
        self.files.append(
            MultipartObject(
                self.client,
                self.bucket,
                key,
                part_size=self.part_size,
                executor=self._executor,
                slots=self._slots,
                content_type=self.content_type,
            )
        )
        return self.files[-1]

    @property
    def current(self) -> MultipartObject:
        return self.files[-1] if self.files else self.next_file()

    def commit(self) -> dict[str, Any]:
        """Make every file visible, delete parts a larger earlier run left, return the manifest.

        S3 cannot make several objects visible at once: files are completed one after another,
        and each one completed (and each stale part deleted) is recorded, so that a failure half
        way can say which keys hold this run's data (:meth:`outcome`).
        """
        try:
            self.current.finish()
            stale = self._stale_part_keys()
            for file in self.files:
                self._complete(file)
        finally:
            self._executor.shutdown()
        for start in range(0, len(stale), 1000):
            batch = stale[start : start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            self._deleted += batch
        return {
            "bucket": self.bucket,
            "files": [{"key": f.key, "rows": f.rows, "bytes": f.bytes} for f in self.files],
            "rows": sum(f.rows for f in self.files),
            "bytes": sum(f.bytes for f in self.files),
            "deleted_stale_parts": sorted(stale),
        }

    def _stale_part_keys(self) -> list[str]:
        """Parts beyond this run's last, left by an earlier, larger run (listed before any completes)."""
        if not self.split:
            self._stale = []
            return []
        written = {f.key for f in self.files}
        stale = [k for k, i in self._existing_part_keys().items() if i >= len(self.files) and k not in written]
        self._stale = sorted(stale)
        return self._stale

    def _complete(self, file: MultipartObject) -> None:
        """Complete one file's upload; a failure S3 may have acted on leaves the file unanswered."""
        from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

        try:
            file.complete()
        except (ClientError, EndpointConnectionError, ConnectTimeoutError):
            raise  # S3 refused it, or was never reached: not completed
        except BaseException:
            self._unanswered = file.key
            raise
        self._completed.append(file.key)

    def outcome(self) -> CommitOutcome:
        """Which keys this run has written so far, which not, and which stale parts remain."""
        done = set(self._completed) | {self._unanswered}
        stale = None if self._stale is None else [k for k in self._stale if k not in set(self._deleted)]
        return CommitOutcome(
            written=list(self._completed),
            unanswered=self._unanswered,
            not_written=[f.key for f in self.files if f.key not in done],
            stale_not_deleted=stale,
        )

    def abort(self) -> bool:
        """Abort every upload of this run not completed: no more of its objects become visible.

        Returns False if S3 refused or did not answer; the next run aborts what is left.
        """
        aborted = True
        try:
            for file in self.files:
                if file.key in self._completed:
                    continue
                try:
                    file.abort()
                    if file.key == self._unanswered:
                        self._unanswered = None  # an upload that can be aborted was not completed
                except Exception as exc:
                    aborted = False
                    log.warning("could not abort the multipart upload of s3://%s/%s (%s); the next run of this "
                                "task will", self.bucket, file.key, one_line(exc))
        finally:
            self._executor.shutdown(cancel_futures=True)
        return aborted


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and message, whitespace collapsed."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
