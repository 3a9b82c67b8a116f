"""``S3ToSFTPOperator``: S3 objects streamed to an SFTP server, no object-sized temp file."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.failures import transfer_failure
from ferry.transfers.lineage import Dataset, Lineage, LineageMixin, s3_objects
from ferry.transfers.openssh import SSHTransport, check_transport, connection_extra, sftp_session
from ferry.transfers.progress import Progress
from ferry.transfers.s3_source import ranged_chunks
from ferry.transfers.sftp_sink import put_atomically, temporary_path

UnsafeKeys = Literal["fail", "skip"]


def unsafe_relative_path(relative: str) -> bool:
    """True if joining ``relative`` onto a directory could leave it, or name the directory itself.

    Object keys are names chosen by whoever can write to the bucket: ``..``, ``.``, empty
    segments (``a//b``, which a join would turn into an absolute path) and absolute paths are
    refused rather than normalised, so that no key is ever written somewhere it does not say.
    """
    return relative.startswith("/") or any(part in ("", ".", "..") for part in relative.split("/"))


class S3ToSFTPOperator(LineageMixin, BaseOperator):
    """Copy an S3 object, or every object under a prefix, to an SFTP server.

    The object is read from S3 as ranged GETs, a few at a time in background threads, while
    earlier ranges are written over SFTP (pipelined), so the two overlap and memory stays at a
    few chunks. Each file is
    written under a temporary name, its size checked, then renamed into place: readers never
    see a half-written file. Missing directories are created. Host keys are verified as the
    SSH connection says (``host_key`` extra).

    :param s3_bucket: source bucket (templated).
    :param s3_key: an object key, or a prefix ending in ``/`` to copy every object under it
        (templated).
    :param sftp_path: destination file; a directory (ending in ``/``) for a prefix or to keep
        the object's name (templated).
    :param s3_conn_id: AWS connection.
    :param sftp_conn_id: SSH/SFTP connection.
    :param ssh_transport: ``auto`` (the default) carries SFTP over OpenSSH's ``ssh`` when the
        connection is a key and a pinned host key, else over paramiko; ``openssh`` or
        ``paramiko`` to insist (see :mod:`ferry.transfers.openssh`).
    :param unsafe_keys: what to do with an object whose key would be written outside the
        target directory (``..``, ``.``, empty or absolute segments): ``fail`` the task before
        anything is written (the default), or ``skip`` it with a warning.
    :return: a manifest: for each object its key, SFTP path and bytes.
    """

    template_fields: Sequence[str] = ("s3_bucket", "s3_key", "sftp_path")
    ui_color = "#f0eee4"

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        sftp_path: str,
        s3_conn_id: str = "aws_default",
        sftp_conn_id: str = "sftp_default",
        unsafe_keys: UnsafeKeys = "fail",
        ssh_transport: SSHTransport = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_transport(ssh_transport)
        self.ssh_transport = ssh_transport
        if unsafe_keys not in ("fail", "skip"):
            raise ValueError(f"unsafe_keys must be 'fail' or 'skip', not {unsafe_keys!r}")
        self.unsafe_keys = unsafe_keys
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.sftp_path = sftp_path
        self.s3_conn_id = s3_conn_id
        self.sftp_conn_id = sftp_conn_id

    def _plan(self, s3: Any) -> list[tuple[str, str, int, str | None]]:
        """(key, destination path, size, ETag) for each object to copy."""
        from ferry.transfers.s3_source import objects

        try:
            found = objects(s3, self.s3_bucket, self.s3_key)
        except FileNotFoundError as exc:
            raise AirflowException(str(exc)) from exc
        if not self.s3_key.endswith("/"):
            (key, size, etag), path = found[0], self.sftp_path
            if path.endswith("/"):
                name = posixpath.basename(key)
                if not self._safe(key, name):
                    raise AirflowException(f"nothing to copy: the only object, {key!r}, was skipped")
                path = posixpath.join(path, name)
            return [(key, path, size, etag)]
        plan = [(key, posixpath.join(self.sftp_path, relative), size, etag)
                for key, size, etag in found
                if (relative := key[len(self.s3_key):]) and self._safe(key, relative)]
        if not plan:
            raise AirflowException(f"nothing to copy under s3://{self.s3_bucket}/{self.s3_key}: every key was skipped")
        return plan

    def _safe(self, key: str, relative: str) -> bool:
        """False (skip) or an exception (fail) for a key that would leave the target directory."""
        if not unsafe_relative_path(relative):
            return True
        problem = (f"object key {key!r} would be written outside {self.sftp_path!r} "
                   "('..', '.', or an empty segment)")
        if self.unsafe_keys == "skip":
            self.log.warning("skipped: %s", problem)
            return False
        raise AirflowException(f"{problem}; nothing was written. Rename the object, or pass unsafe_keys='skip'")

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.ssh.hooks.ssh import SSHHook

        ssh_hook = SSHHook(ssh_conn_id=self.sftp_conn_id)
        # Looked up here, not on the opening thread: connections come from Airflow's supervisor.
        extra = connection_extra(ssh_hook, self.ssh_transport)
        namespace = f"sftp://{ssh_hook.remote_host}:{ssh_hook.port or 22}"
        files: list[dict[str, Any]] = []
        # The SSH session opens (key exchange and login: ~0.2 s, mostly ssh's and sshd's CPU)
        # while this process builds its S3 client and lists the objects (~0.3 s). The opener is
        # joined before the session is closed, whatever fails first.
        with contextlib.ExitStack() as session, ThreadPoolExecutor(1, thread_name_prefix="ferry-sftp-open") as opener:
            opening = opener.submit(session.enter_context,
                                    sftp_session(ssh_hook, self.ssh_transport, self.log, extra=extra))
            s3 = S3Hook(aws_conn_id=self.s3_conn_id).get_conn()
            plan = self._plan(s3)
            try:
                self._copy(s3, opening.result(), plan, files)
            except BaseException as exc:
                failed = plan[len(files)][1]
                partial = posixpath.basename(temporary_path(failed))
                message = transfer_failure(
                    exc,
                    done=f"{len(files)} of {len(plan)} files",
                    not_written=f"nothing was written at sftp:{failed} (a partial {partial} beside it, if any, "
                    "is replaced by the next run)" + (f"; {len(files)} earlier files are complete" if files else ""),
                )
                if message is None:
                    raise
                raise AirflowException(message) from exc
        paths = [f["sftp_path"] for f in files]
        self.emit_asset_events(context, Lineage(
            inputs=s3_objects(self.s3_bucket, [f["s3_key"] for f in files]),
            outputs=[Dataset(namespace, path) for path in paths],
            uris=[f"{namespace}{path}" for path in paths],
            extra={"paths": paths, "bytes": sum(f["bytes"] for f in files)}))
        return {"bucket": self.s3_bucket, "files": files, "bytes": sum(f["bytes"] for f in files)}

    def _copy(self, s3: Any, sftp: Any, plan: list[tuple[str, str, int, str | None]],
              files: list[dict[str, Any]]) -> None:
        """Copy each planned object in turn, appending to ``files`` as each one is in place."""
        for key, path, size, etag in plan:
            progress = Progress(self.log, f"s3://{self.s3_bucket}/{key} → sftp:{path}")

            def chunks(reading, progress=progress):
                for chunk in reading:
                    progress.add(0, len(chunk))
                    yield chunk

            # Every range pinned to the listed version: an object replaced meanwhile fails,
            # it is not copied half old, half new. Closed at once if the write fails: no
            # range is fetched for nothing.
            with contextlib.closing(ranged_chunks(s3, self.s3_bucket, key, size, etag=etag)) as reading:
                written = put_atomically(sftp, chunks(reading), path, expected_size=size)
            self.log.info("done: %s", progress.summary())
            files.append({"s3_key": key, "sftp_path": path, "bytes": written})
