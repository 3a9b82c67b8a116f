"""Progress lines for long transfers: rows, bytes and rate every few seconds."""

from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, log: logging.Logger, what: str, every: float = 5.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.started = self._last = time.monotonic()
        self.rows = 0
        self.bytes = 0

    def add(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.log.info("%s: %s", self.what, self.summary())

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.rows:,} rows, {self.bytes / 1e6:,.1f} MB in {elapsed:.1f} s "
            f"({self.rows / elapsed:,.0f} rows/s, {self.bytes / 1e6 / elapsed:,.1f} MB/s)"
        )
