"""What the endpoint server and a script-mode model's own process both need to answer a request.

SageMaker's runtime answers errors as a status, an ``x-amzn-ErrorType`` and a JSON ``message``
(:class:`RequestError`); models predict the requests that arrive together in one call
(:class:`Batcher`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np


class RequestError(Exception):
    """Answered as SageMaker answers: a status, an error type and a message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class Batcher:
    """Predicts, in one call, every request that arrived in the same turn of the event loop.

    Under load, several requests are parsed before the loop comes back to this batch: one
    prediction for 16 records costs little more than one for a single record (it is matrix
    arithmetic), so throughput rises with load instead of latency. Alone, a request
    waits for nothing: the batch runs as soon as the loop is free.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []

    async def predict(self, images: np.ndarray) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((images, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._run)
        return await future

    def _run(self) -> None:
        batch, self._pending = self._pending, []
        try:
            predictions = self.model.predict(np.vstack([images for images, _ in batch]))
        except Exception as exc:  # every request of the batch gets the model's error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for images, future in batch:
            if not future.done():  # a client that went away cancels its future
                future.set_result(predictions[start:start + len(images)])
            start += len(images)
