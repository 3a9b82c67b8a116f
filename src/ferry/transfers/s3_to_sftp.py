"""``S3ToSFTPOperator``: S3 objects streamed to an SFTP server, no object-sized temp file."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from ferry.transfers.progress import Progress
from ferry.transfers.sftp_sink import CHUNK, prefetched, put_atomically


class S3ToSFTPOperator(BaseOperator):
    """Copy an S3 object, or every object under a prefix, to an SFTP server.

    The object is read from S3 in a background thread while earlier chunks are written over
    SFTP (pipelined), so the two overlap and memory stays at a few chunks. Each file is
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.sftp_path = sftp_path
        self.s3_conn_id = s3_conn_id
        self.sftp_conn_id = sftp_conn_id

    def _plan(self, s3: Any) -> list[tuple[str, str, int]]:
        """(key, destination path, size) for each object to copy."""
        if self.s3_key.endswith("/"):
            plan = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.s3_bucket, Prefix=self.s3_key):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(self.s3_key) :]
                    if relative and not relative.endswith("/"):
                        plan.append((item["Key"], posixpath.join(self.sftp_path, relative), item["Size"]))
            if not plan:
                raise AirflowException(f"no objects under s3://{self.s3_bucket}/{self.s3_key}")
            return plan
        from botocore.exceptions import ClientError

        try:
            size = s3.head_object(Bucket=self.s3_bucket, Key=self.s3_key)["ContentLength"]
        except ClientError as exc:
            raise AirflowException(f"s3://{self.s3_bucket}/{self.s3_key} cannot be read: {exc}") from exc
        path = self.sftp_path
        if path.endswith("/"):
            path = posixpath.join(path, posixpath.basename(self.s3_key))
        return [(self.s3_key, path, size)]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.ssh.hooks.ssh import SSHHook

        s3 = S3Hook(aws_conn_id=self.s3_conn_id).get_conn()
        plan = self._plan(s3)
        files = []
        with SSHHook(ssh_conn_id=self.sftp_conn_id).get_conn() as ssh, ssh.open_sftp() as sftp:
            for key, path, size in plan:
                progress = Progress(self.log, f"s3://{self.s3_bucket}/{key} → sftp:{path}")
                body = s3.get_object(Bucket=self.s3_bucket, Key=key)["Body"]

                def chunks(body=body, progress=progress):
                    for chunk in body.iter_chunks(CHUNK):
                        progress.add(0, len(chunk))
                        yield chunk

                written = put_atomically(sftp, prefetched(chunks()), path, expected_size=size)
                self.log.info("done: %s", progress.summary())
                files.append({"s3_key": key, "sftp_path": path, "bytes": written})
        return {"bucket": self.s3_bucket, "files": files, "bytes": sum(f["bytes"] for f in files)}
