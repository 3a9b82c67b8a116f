"""The control plane's state: SQLite in WAL mode, shared by the server and its job workers.

Why SQLite: several processes (the server, one worker per training job) update the same
records, and the state must survive a restart or a ``kill -9`` of any of them; SQLite gives
transactions across processes with nothing to run. Each resource is one row holding its
Describe* answer as JSON, so what was stored is what is described.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS log_streams (
    grp TEXT NOT NULL, stream TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY (grp, stream)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, grp TEXT NOT NULL, stream TEXT NOT NULL,
    ts INTEGER NOT NULL, ingested INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (grp, stream, ts, id);
"""


def private_directory(directory: Path) -> None:
    """``directory``, created if missing, readable by its owner only (also when it already was there)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)

_SELECT = "SELECT body FROM resources WHERE kind = ? AND name = ?"


class Store:
    def __init__(self, path: Path) -> None:
        # Private to the stack's user: jobs hold their hyperparameters and environments, and
        # SQLite gives its -wal and -shm files the database file's mode.
        private_directory(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.path = path
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            # Stores written before names were keyed case-insensitively.
            conn.execute("UPDATE OR IGNORE resources SET name = lower(name) WHERE name != lower(name)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue instead of failing)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # -- resources -------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        conn = self._connect()
        try:
            row = conn.execute(_SELECT, (kind, name.lower())).fetchone()
        finally:
            conn.close()
        return json.loads(row[0]) if row else None

    def insert(self, kind: str, name: str, body: dict[str, Any]) -> bool:
        """Store a new resource; False if one of that kind and name exists. Names are unique
        whatever their case, as SageMaker's are ("The name is case-insensitive in CreateEndpoint");
        the resource keeps the case it was given."""
        with self.transaction() as conn:
            try:
                conn.execute("INSERT INTO resources VALUES (?, ?, ?, ?)",
                             (kind, name.lower(), json.dumps(body), time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict | None:
        """Read, change and write one resource in one transaction; None if it does not exist."""
        with self.transaction() as conn:
            row = conn.execute(_SELECT, (kind, name.lower())).fetchone()
            if row is None:
                return None
            body = json.loads(row[0])
            changed = change(body)  # changes ``body`` in place, or returns a new dict
            body = changed if isinstance(changed, dict) else body
            conn.execute("UPDATE resources SET body = ? WHERE kind = ? AND name = ?",
                         (json.dumps(body), kind, name.lower()))
        return body

    def delete(self, kind: str, name: str) -> bool:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name.lower())).rowcount > 0

    def list(self, kind: str) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT body FROM resources WHERE kind = ? ORDER BY created DESC", (kind,)).fetchall()
        finally:
            conn.close()
        return [json.loads(r[0]) for r in rows]

    # -- logs ------------------------------------------------------------------------------------

    def put_log_events(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        now = int(time.time() * 1000)
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO log_streams VALUES (?, ?, ?)", (group, stream, now))
            conn.executemany("INSERT INTO log_events (grp, stream, ts, ingested, message) VALUES (?, ?, ?, ?, ?)",
                             [(group, stream, ts, now, message) for ts, message in events])

    def log_streams(self, group: str, prefix: str = "") -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT s.stream, s.created, min(e.ts), max(e.ts), max(e.ingested) FROM log_streams s "
                "LEFT JOIN log_events e ON e.grp = s.grp AND e.stream = s.stream "
                "WHERE s.grp = ? AND substr(s.stream, 1, ?) = ? GROUP BY s.stream ORDER BY s.stream",
                (group, len(prefix), prefix)).fetchall()
        finally:
            conn.close()
        return [{"logStreamName": r[0], "creationTime": r[1], "firstEventTimestamp": r[2], "lastEventTimestamp": r[3],
                 "lastIngestionTime": r[4]} for r in rows]

    def group_exists(self, group: str) -> bool:
        conn = self._connect()
        try:
            return conn.execute("SELECT 1 FROM log_streams WHERE grp = ? LIMIT 1", (group,)).fetchone() is not None
        finally:
            conn.close()

    def log_events(self, group: str, stream: str, *, start: int = 0, end: int | None = None, after_id: int = 0,
                   limit: int = 10_000) -> list[tuple[int, int, int, str]]:
        """(id, timestamp, ingestion time, message) in order, from ``start`` ms, after event ``after_id``."""
        conn = self._connect()
        try:
            return conn.execute(
                "SELECT id, ts, ingested, message FROM log_events WHERE grp = ? AND stream = ? AND ts >= ? "
                "AND ts < ? AND id > ? ORDER BY ts, id LIMIT ?",
                (group, stream, start, end if end is not None else 2**62, after_id, limit)).fetchall()
        finally:
            conn.close()
