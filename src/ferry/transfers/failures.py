"""A failed transfer, told in one line: which system failed, and what was and was not written.

A server that dies mid-transfer surfaces as whatever its client library raises
(``EndpointConnectionError``, ``OperationalError``, ``SSHException``…), which says nothing about
the data. The operators turn those into one line that does; other exceptions (a bug, a bad
argument) pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from ferry.transfers.s3_sink import one_line


def _failing_system(exc: BaseException) -> str | None:
    """'lost the PostgreSQL connection', 'S3 failed'…, or None for an exception we do not know."""
    import socket

    import paramiko
    import psycopg
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, psycopg.OperationalError):
        return "lost the PostgreSQL connection"
    if isinstance(exc, psycopg.Error):
        return "the PostgreSQL query failed"
    if isinstance(exc, BotoCoreError | ClientError | Boto3Error):
        return "S3 failed"
    if isinstance(exc, paramiko.SSHException | EOFError | socket.error):
        return "SFTP failed"
    try:
        from pymongo.errors import ConnectionFailure, PyMongoError
    except ImportError:
        return None
    if isinstance(exc, ConnectionFailure):
        return "lost the MongoDB connection"
    if isinstance(exc, PyMongoError):
        return "the MongoDB query failed"
    return None


def transfer_failure(exc: BaseException, *, done: str, not_written: str) -> str | None:
    """``"<system failed> after <done> (<error>); <not_written>"``, or None to re-raise as is."""
    system = _failing_system(exc)
    if system is None:
        return None
    return f"{system} after {done} ({one_line(exc)}); {not_written}"


def export_failure(exc: BaseException, output: Any, *, done: str, target: str, earlier: str = "") -> str | None:
    """Abort ``output``'s uploads and describe the failure, or None to re-raise ``exc`` as is."""
    aborted = output.abort()
    return transfer_failure(exc, done=done, not_written=nothing_written(target, aborted) + earlier)


def nothing_written(target: str, aborted: bool) -> str:
    """The second half of an S3 export's failure line."""
    if aborted:
        return f"nothing was written to {target}"
    return f"nothing was written to {target}; the next run of this task aborts the unfinished upload"
