"""A failed transfer, told in one line: which system failed, and what was and was not written.

A server that dies mid-transfer surfaces as whatever its client library raises
(``EndpointConnectionError``, ``OperationalError``, ``SSHException``…), which says nothing about
the data. The operators turn those into one line that does; other exceptions (a bug, a bad
argument, a local disk error) pass through unchanged.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ferry.transfers.s3_sink import one_line

#: Keys named one by one in a failure line; longer runs are told as first … last.
LISTED_KEYS = 3


class SourceChanged(Exception):
    """The source's data was not what it was when the transfer began (a file written while read).

    Its message is the first half of the failure line, system and all: no library raised it.
    """


def _failing_system(exc: BaseException) -> str | None:
    """'lost the PostgreSQL connection', 'S3 failed'…, or None for an exception we do not know."""
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
    from ferry.transfers.openssh import OpenSSHFailed

    if isinstance(exc, paramiko.SSHException | paramiko.sftp.SFTPError | OpenSSHFailed):
        return "SFTP failed"
    # paramiko reports a remote status (no such file, EOF) and a dead socket with builtin types
    # that anything else raises too: only where it was raised tells them apart.
    if isinstance(exc, OSError | EOFError) and _raised_in_paramiko(exc.__traceback__):
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


def _raised_in_paramiko(traceback: TracebackType | None) -> bool:
    """True if any frame between the handler and the raise is paramiko's (threads re-raising keep them)."""
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").partition(".")[0] == "paramiko":
            return True
        traceback = traceback.tb_next
    return False


def transfer_failure(exc: BaseException, *, done: str, not_written: str) -> str | None:
    """``"<system failed> after <done> (<error>); <not_written>"``, or None to re-raise as is."""
    if isinstance(exc, SourceChanged):
        return f"{exc}; {not_written}"
    system = _failing_system(exc)
    if system is None:
        return None
    return f"{system} after {done} ({one_line(exc)}); {not_written}"


def export_failure(exc: BaseException, output: Any, *, done: str, target: str, earlier: str = "") -> str | None:
    """Abort ``output``'s unfinished uploads and describe the failure, or None to re-raise ``exc`` as is."""
    aborted = output.abort()
    return transfer_failure(exc, done=done, not_written=what_was_written(output, target, aborted) + earlier)


def nothing_written(target: str, aborted: bool) -> str:
    """The second half of an S3 export's failure line, when no object was completed."""
    if aborted:
        return f"nothing was written to {target}"
    return f"nothing was written to {target}; the next run of this task aborts the unfinished upload"


def what_was_written(output: Any, target: str, aborted: bool) -> str:
    """The second half of an S3 export's failure line: which objects were and were not replaced.

    S3 makes one object visible at a time, so an export that fails while completing its
    objects (or deleting stale parts) has changed some keys and not others; this says which.
    """
    outcome = output.outcome()
    if not outcome.written and outcome.unanswered is None:
        return nothing_written(target, aborted)
    url = f"s3://{output.bucket}/"
    total = len(output.files)
    told = [f"{_count(outcome.written, total)} written: {_keys(url, outcome.written)}" if outcome.written else
            f"none of {total} objects were written"]
    if outcome.unanswered is not None:
        told.append(f"{url}{outcome.unanswered} may or may not have been written (S3 did not answer its completion)")
    if outcome.not_written:
        uploads = ("their uploads were aborted" if aborted else
                   "their uploads stay open until the next run of this task aborts them")
        told.append(f"{_keys(url, outcome.not_written)} {_were(outcome.not_written)} not written and "
                    f"keep{'s' if len(outcome.not_written) == 1 else ''} what "
                    f"{'it' if len(outcome.not_written) == 1 else 'they'} held before ({uploads})")
    if outcome.stale_not_deleted is None:
        told.append("parts left by an earlier, larger run, if any, were not deleted")
    elif outcome.stale_not_deleted:
        told.append(f"{_keys(url, outcome.stale_not_deleted)}, left by an earlier, larger run, "
                    f"{_were(outcome.stale_not_deleted)} not deleted")
    return "; ".join(told)


def _count(keys: list[str], total: int) -> str:
    if total == 1:
        return "the object was"
    if len(keys) == total:
        return f"all {total} objects were"
    return f"{len(keys)} of {total} objects were"


def _were(keys: list[str]) -> str:
    return "was" if len(keys) == 1 else "were"


def _keys(url: str, keys: list[str]) -> str:
    """Every key, or, past a few, the first and last (and how many: parts are numbered in order)."""
    if len(keys) <= LISTED_KEYS:
        return ", ".join(url + key for key in keys)
    return f"{len(keys)} objects {url}{keys[0]} … {url}{keys[-1]}"
