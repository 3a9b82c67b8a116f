"""``SFTPToS3Operator``: files on an SFTP server streamed into S3 objects, no temporary file."""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.failures import SourceChanged, export_failure
from ferry.transfers.lineage import Dataset, LineageMixin, wrote_to_s3
from ferry.transfers.openssh import SSHTransport, check_transport, server_limits, sftp_session
from ferry.transfers.progress import Progress
from ferry.transfers.s3_sink import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, check_upload_settings

#: Bytes per window of read requests in flight: windows are read one after another in a thread,
#: two ahead of the upload. Each request asks for the file handle's MAX_REQUEST_SIZE (paramiko's
#: 32 KiB, or what an OpenSSH session's server takes).
WINDOW = 8 * 1024 * 1024


class SFTPToS3Operator(LineageMixin, BaseOperator):
    """Copy a file, or every file under a directory, from an SFTP server to S3.

    Each file is read in windows of pipelined SFTP requests, in a thread that stays two
    windows ahead of a multipart upload, so reading and uploading overlap and memory stays at a
    few windows and parts. An object becomes visible only when its whole file has been read
    (CompleteMultipartUpload): a dead connection leaves no object at the key, and a run that
    loses S3 has its open upload aborted by the next run.

    A file must not change while it is copied: its size and mtime are taken on the open handle
    before reading and again after, and one byte past the end is asked for. A file written,
    truncated or rewritten meanwhile fails the task (it is not retried here: Airflow's retries
    re-run it once the writer is done) and leaves no object. SFTP mtimes are whole seconds, so a
    same-size rewrite within the second the read began cannot be told; deliver files under a
    temporary name and rename them when complete to be sure.

    :param sftp_path: a file, or a directory ending in ``/`` to copy every regular file under
        it, recursively (templated).
    :param s3_bucket: destination bucket (templated).
    :param s3_key: destination key; with a directory, a prefix: file paths relative to the
        directory are appended (templated).
    :param sftp_conn_id: SSH/SFTP connection.
    :param ssh_transport: ``auto`` (the default) carries SFTP over OpenSSH's ``ssh`` when the
        connection is a key and a pinned host key, else over paramiko; ``openssh`` or
        ``paramiko`` to insist (see :mod:`ferry.transfers.openssh`).
    :param s3_conn_id: AWS connection.
    :param part_size: bytes per multipart part (at least 5 MiB; boto3's 8 MiB by default).
    :param upload_concurrency: parts uploading at once (boto3's 10 by default).
    :return: a manifest: for each file its SFTP path, key and bytes.
    """

    template_fields: Sequence[str] = ("sftp_path", "s3_bucket", "s3_key")
    ui_color = "#f0eee4"

    def __init__(
        self,
        *,
        sftp_path: str,
        s3_bucket: str,
        s3_key: str,
        sftp_conn_id: str = "sftp_default",
        s3_conn_id: str = "aws_default",
        part_size: int = DEFAULT_PART_SIZE,
        upload_concurrency: int = DEFAULT_CONCURRENCY,
        ssh_transport: SSHTransport = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_upload_settings(part_size, upload_concurrency)
        check_transport(ssh_transport)
        self.ssh_transport = ssh_transport
        self.sftp_path = sftp_path
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.sftp_conn_id = sftp_conn_id
        self.s3_conn_id = s3_conn_id
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        files: list[dict[str, Any]] = []
        hook = SSHHook(ssh_conn_id=self.sftp_conn_id)
        namespace = f"sftp://{hook.remote_host}:{hook.port or 22}"
        with sftp_session(hook, self.ssh_transport, self.log) as sftp:
            plan = self._plan(sftp)
            for path, key, _size in plan:
                size = self._copy(sftp, path, key, done=len(files), of=len(plan))
                files.append({"sftp_path": path, "s3_key": key, "bytes": size})
        self.emit_asset_events(context, wrote_to_s3(
            self.s3_bucket, [f["s3_key"] for f in files], [Dataset(namespace, f["sftp_path"]) for f in files],
            bytes=sum(f["bytes"] for f in files)))
        return {"bucket": self.s3_bucket, "files": files, "bytes": sum(f["bytes"] for f in files)}

    def _plan(self, sftp: Any) -> list[tuple[str, str, int]]:
        """(SFTP path, S3 key, size) for each file to copy."""
        if not self.sftp_path.endswith("/"):
            try:
                size = sftp.stat(self.sftp_path).st_size
            except OSError as exc:
                raise AirflowException(f"sftp:{self.sftp_path} cannot be read: {exc}") from exc
            key = self.s3_key + posixpath.basename(self.sftp_path) if self.s3_key.endswith("/") else self.s3_key
            return [(self.sftp_path, key, size)]
        prefix = self.s3_key if not self.s3_key or self.s3_key.endswith("/") else self.s3_key + "/"
        plan = [(path, prefix + posixpath.relpath(path, self.sftp_path), size)
                for path, size in _walk(sftp, self.sftp_path.rstrip("/") or "/")]
        if not plan:
            raise AirflowException(f"no files under sftp:{self.sftp_path}")
        return sorted(plan)

    def _copy(self, sftp: Any, path: str, key: str, *, done: int, of: int) -> int:
        """One file into one object, after ``done`` of ``of`` files; a failure says what was written.

        Returns the bytes copied: the file's size when it was opened.
        """
        import mimetypes

        from ferry.transfers.s3_target import open_s3_output
        from ferry.transfers.sftp_sink import prefetched

        output = open_s3_output(self.s3_conn_id, self.s3_bucket, key,
                                content_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                                part_size=self.part_size, concurrency=self.upload_concurrency)
        progress = Progress(self.log, f"sftp:{path} → s3://{self.s3_bucket}/{key}")
        try:
            with sftp.open(path, "rb") as remote:
                if limits := server_limits(sftp):
                    remote.MAX_REQUEST_SIZE = limits[0]  # readv splits each request to this
                opened = remote.stat()
                file = output.current
                for window in prefetched(_snapshot(remote, path, opened), depth=2):
                    file.write(window)
                    progress.add(0, len(window))
                check_unchanged(remote, path, opened, read=file.bytes)
            output.commit()
        except BaseException as exc:
            earlier = f"; {done} earlier files are complete in S3" if done else ""
            message = export_failure(exc, output, done=f"{done} of {of} files", target=f"s3://{self.s3_bucket}/{key}",
                                     earlier=earlier)
            if message is None:
                raise
            raise AirflowException(message) from exc
        self.log.info("done: %s", progress.summary())
        return file.bytes


def _snapshot(remote: Any, path: str, opened: Any) -> Iterator[bytes]:
    """The file's bytes as of ``opened``; a read that fails because the file changed says so.

    A file truncated under us answers a read past its new end with SFTP's EOF status, which
    paramiko raises as EOFError: that is the file changing, not SFTP failing.
    """
    try:
        yield from _windows(remote, opened.st_size)
    except (EOFError, OSError) as exc:
        try:
            _raise_if_changed(remote, path, opened, probe=False)
        except SourceChanged as changed:
            raise changed from exc
        except Exception:
            pass  # the connection is gone too: the read's own error says so
        raise


def check_unchanged(remote: Any, path: str, opened: Any, *, read: int) -> None:
    """Raise :class:`SourceChanged` unless the file is as it was when opened and all of it was read."""
    _raise_if_changed(remote, path, opened, probe=True)
    if read != opened.st_size:
        raise SourceChanged(f"sftp:{path} gave {read:,} of the {opened.st_size:,} bytes it had when opened, and did "
                            "not change (size check failed)")


def _raise_if_changed(remote: Any, path: str, opened: Any, *, probe: bool) -> None:
    """Two requests: the handle's attributes now, and (``probe``) a read past the size at open.

    The probe only after a read that went through: a failed ``readv`` leaves paramiko waiting for
    prefetch answers that never come, and the attributes tell a truncation anyway.
    """
    now = remote.stat()
    grown = False
    if probe:
        remote.seek(opened.st_size)
        grown = bool(remote.read(1))
    if now.st_size == opened.st_size and now.st_mtime == opened.st_mtime and not grown:
        return
    size = (f"size {opened.st_size:,} bytes" if now.st_size == opened.st_size
            else f"size {opened.st_size:,} → {now.st_size:,} bytes")
    mtime = (f"mtime {_when(opened.st_mtime)}" if now.st_mtime == opened.st_mtime
             else f"mtime {_when(opened.st_mtime)} → {_when(now.st_mtime)}")
    more = f", more data past byte {opened.st_size:,}" if grown and now.st_size <= opened.st_size else ""
    raise SourceChanged(f"sftp:{path} changed while it was read ({size}, {mtime}{more})")


def _when(mtime: int | None) -> str:
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(mtime, timezone.utc) if mtime is not None else None
    return "unknown" if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _windows(remote: Any, size: int) -> Iterator[bytes]:
    """The file's bytes, one window of pipelined read requests (``readv``) at a time.

    A short answer means the file got shorter: reading stops there (asking paramiko for more
    would wait for prefetched data that never comes) and raises EOFError.
    """
    for start in range(0, size, WINDOW):
        end = min(start + WINDOW, size)
        step = remote.MAX_REQUEST_SIZE
        requests = [(offset, min(step, end - offset)) for offset in range(start, end, step)]
        window = []
        for (offset, length), data in zip(requests, remote.readv(requests), strict=False):
            window.append(data)
            if len(data) < length:
                raise EOFError(f"sftp read ended at byte {offset + len(data):,} of {size:,}")
        yield b"".join(window)


def _walk(sftp: Any, directory: str) -> Iterator[tuple[str, int]]:
    """Every regular file under ``directory``, with its size; symbolic links are not followed."""
    for entry in sftp.listdir_attr(directory):
        path = posixpath.join(directory, entry.filename)
        if stat.S_ISDIR(entry.st_mode):
            yield from _walk(sftp, path)
        elif stat.S_ISREG(entry.st_mode):
            yield path, entry.st_size
