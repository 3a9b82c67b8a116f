"""A closed-loop HTTP load generator: N keep-alive connections, each sending its next request as
soon as its previous answer is read, until the total is reached; per-request latencies.

Why not httpx or aiohttp: on a 2-core machine the client shares the CPU with the servers it
measures, and those clients spend more CPU per request than the endpoint server does, which
would inflate the very latencies being measured. Raw asyncio streams on uvloop cost ~30 µs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies_ms, p))

    def summary(self) -> dict[str, float]:
        return {"requests": self.requests, "errors": self.errors, "rps": self.requests / self.seconds,
                "p50_ms": self.percentile(50), "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "max_ms": float(self.latencies_ms.max())}


async def _client(host: str, port: int, request: bytes, quota: list[int], latencies: list[float],
                  errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while quota[0] > 0:
            quota[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is None:
                raise RuntimeError("the server sent no Content-Length: cannot keep the connection alive")
            body = await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200 or not (b'"digit"' in body or b'"predictions"' in body):
                errors.append(f"{status} {body[:200]!r}")
    finally:
        writer.close()


def run_load(url: str, path: str, body: bytes, content_type: str, *, requests: int = 5000,
             concurrency: int = 16, credentials: Any = None, region: str = "eu-west-1") -> LoadResult:
    """``credentials`` (botocore Credentials): sign the request with SigV4 as boto3 signs
    InvokeEndpoint. It is signed once and sent as is (valid for 15 minutes); the server still
    verifies every one, which is the cost measured."""
    from urllib.parse import urlparse

    import uvloop

    target = urlparse(url)
    headers = {"Host": target.netloc, "Content-Type": content_type, "Accept": "application/json"}
    if credentials is not None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        signed = AWSRequest(method="POST", url=url.rstrip("/") + path, data=body, headers=dict(headers))
        SigV4Auth(credentials, "sagemaker", region).add_auth(signed)
        headers = dict(signed.headers.items())
    request = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() != "content-length")
    request = f"POST {path} HTTP/1.1\r\n{request}Content-Length: {len(body)}\r\n\r\n".encode() + body
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        quota = [requests]
        started = time.perf_counter()
        await asyncio.gather(*(_client(target.hostname, target.port, request, quota, latencies, errors)
                               for _ in range(concurrency)))
        return time.perf_counter() - started

    seconds = uvloop.run(main())
    return LoadResult(len(latencies), len(errors), seconds, np.asarray(latencies))
