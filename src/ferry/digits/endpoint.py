"""The local backend's endpoint server: SageMaker's runtime API, serving the models trained here.

boto3's ``sagemaker-runtime`` client reaches it by its URL (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``
or ``endpoint_url``), exactly as it reaches SageMaker:

- ``POST /endpoints/{name}/invocations``: the request body is one or more images as
  ``application/x-recordio-protobuf`` (what the seed's app sends), ``text/csv`` (one image per
  line) or ``application/json`` (``{"instances": [{"features": [...]}]}``); the answer is
  ``{"predictions": [...]}`` in the shape of SageMaker's algorithm, plus ``digit``. Errors come
  as SageMaker's do (``x-amzn-ErrorType`` + JSON ``message``), so botocore raises the same
  ``ClientError`` codes (``ValidationError``, ``ModelError``).
- ``GET /ping`` and ``POST /invocations``: the model container's contract, for one endpoint.
- ``PUT /endpoints/{name}`` with ``{"ModelDataUrl": "s3://…/model.tar.gz"}``: the deploy step,
  which the control plane makes for CreateEndpoint/UpdateEndpoint. It and ``DELETE`` must be
  signed (SigV4) with the stack's key pair, like every control-plane call: nobody else on the
  machine can put a model here. The new model is loaded beside the old one and swapped in by
  one assignment, so a redeploy fails no request. Endpoints are recorded in a registry file and
  come back when the server restarts.

Why uvicorn and a bare ASGI callable rather than a web framework: the latency target is a few
milliseconds at 16 concurrent clients on two cores, and a framework's routing and validation
cost more per request than the prediction itself. Predictions run on the event loop, batched (see
:class:`Batcher`): they take well under a millisecond, less than handing them to a thread would.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ferry.digits.model import DigitModel
from ferry.sagemaker.recordio import iter_records

log = logging.getLogger("ferry.endpoint")

FEATURES = 784
#: SageMaker's real-time payload limit.
MAX_PAYLOAD = 6 * 1024 * 1024
INVOCATION_PATH = re.compile(r"^/endpoints/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})/invocations$")
ENDPOINT_PATH = re.compile(r"^/endpoints/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})$")


class RequestError(Exception):
    """Answered as SageMaker answers: a status, an error type and a message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def parse_images(content_type: str, body: bytes) -> np.ndarray:
    """The request body as a float32 (n, 784) array, or a ValidationError."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == "application/x-recordio-protobuf":
            rows = [record.features["values"] for record in iter_records(io.BytesIO(body))]
        elif media == "text/csv":
            rows = [np.array(line.split(","), dtype=np.float32) for line in body.decode().splitlines() if line.strip()]
        elif media == "application/json":
            payload = json.loads(body)
            instances = payload.get("instances", []) if isinstance(payload, dict) else payload
            rows = [np.asarray(i["features"] if isinstance(i, dict) else i, dtype=np.float32) for i in instances]
        else:
            raise RequestError(415, "ValidationError", f"unsupported content type {content_type!r}; use "
                               "application/x-recordio-protobuf, text/csv or application/json")
    except RequestError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RequestError(400, "ValidationError", f"cannot read the {media} body: {exc}") from exc
    if not rows:
        raise RequestError(400, "ValidationError", "the request holds no records")
    if any(row.shape != (FEATURES,) for row in rows):
        raise RequestError(400, "ValidationError", f"each record must have exactly {FEATURES} features")
    images = np.vstack(rows).astype(np.float32)
    if not np.isfinite(images).all():
        raise RequestError(400, "ValidationError", "features must be finite numbers")
    return images


class Batcher:
    """Predicts, in one call, every request that arrived in the same turn of the event loop.

    Under load, several requests are parsed before the loop comes back to this batch: one
    prediction for 16 images costs about twice one for a single image (deskew and the kernel
    are matrix operations), so throughput rises with load instead of latency. Alone, a request
    waits for nothing: the batch runs as soon as the loop is free.
    """

    def __init__(self, model: DigitModel) -> None:
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


class Registry:
    """Which model each endpoint serves, kept in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def write(self, endpoints: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(endpoints, indent=2, sort_keys=True))
        os.replace(temporary, self.path)


class EndpointServer:
    """The ASGI application (see the module docstring)."""

    def __init__(self, registry: Registry, s3_client_factory=None, *, deployer: tuple[str, str] | None = None) -> None:
        self.registry = registry
        #: (access key id, secret) that deploy requests must be signed with; None: not checked.
        self.deployer = deployer
        self.models: dict[str, Batcher] = {}
        self.descriptions: dict[str, dict[str, Any]] = {}
        self._s3_client_factory = s3_client_factory or _default_s3_client
        self._deploy_lock = asyncio.Lock()

    # -- deploying ------------------------------------------------------------------------

    def _load(self, model_data_url: str) -> DigitModel:
        from ferry.digits.training import load_model_artifact

        return load_model_artifact(self._s3_client_factory(), model_data_url)

    async def deploy(self, name: str, model_data_url: str) -> dict[str, Any]:
        async with self._deploy_lock:
            model = await asyncio.to_thread(self._load, model_data_url)
            description = {"EndpointName": name, "ModelDataUrl": model_data_url, "EndpointStatus": "InService",
                           "Algorithm": model.algorithm}
            self.models[name] = Batcher(model)  # the swap: requests already queued keep the old model
            self.descriptions[name] = description
            await asyncio.to_thread(self.registry.write, self.descriptions)
            log.warning("endpoint %s serves %s (%s)", name, model_data_url, model.algorithm)
            return description

    async def delete(self, name: str) -> None:
        async with self._deploy_lock:
            if name not in self.descriptions:
                raise RequestError(400, "ValidationError", f"Endpoint {name} not found.")
            self.models.pop(name, None)
            del self.descriptions[name]
            await asyncio.to_thread(self.registry.write, self.descriptions)

    async def restore(self) -> None:
        for name, description in self.registry.read().items():
            try:
                await self.deploy(name, description["ModelDataUrl"])
            except Exception as exc:
                # Kept in the registry (marked Failed), so the next restart tries again.
                log.exception("could not restore endpoint %s from %s", name, description.get("ModelDataUrl"))
                self.descriptions[name] = {**description, "EndpointStatus": "Failed",
                                           "FailureReason": f"{type(exc).__name__}: {exc}"}
        await asyncio.to_thread(self.registry.write, self.descriptions)

    # -- serving --------------------------------------------------------------------------

    async def invoke(self, name: str | None, content_type: str, body: bytes) -> dict[str, Any]:
        if name is None:  # the container contract's /invocations: the only endpoint there is
            if len(self.models) != 1:
                raise RequestError(400, "ValidationError", "POST /invocations needs exactly one endpoint; "
                                   "use /endpoints/{name}/invocations")
            name = next(iter(self.models))
        batcher = self.models.get(name)
        if batcher is None:
            if name in self.descriptions:
                reason = self.descriptions[name].get("FailureReason", "")
                raise RequestError(400, "ValidationError", f"Endpoint {name} is not in service: {reason}")
            raise RequestError(400, "ValidationError", f"Endpoint {name} not found.")
        images = parse_images(content_type, body)
        try:
            return {"predictions": await batcher.predict(images)}
        except Exception as exc:  # a model that fails is the model's error, as on SageMaker
            log.exception("endpoint %s failed", name)
            raise RequestError(424, "ModelError", f"the model failed: {type(exc).__name__}") from exc

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload, extra = await self._route(scope, receive)
        except RequestError as exc:
            error_type = [(b"x-amzn-errortype", exc.error_type.encode())]
            status, payload, extra = exc.status, {"message": exc.message}, error_type
        body = json.dumps(payload).encode() if payload is not None else b""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope, receive) -> tuple[int, Any, list]:
        method, path = scope["method"], scope["path"]
        if path == "/ping" and method == "GET":
            return (200 if self.models else 503), None, []
        if method == "POST" and (path == "/invocations" or INVOCATION_PATH.match(path)):
            match = INVOCATION_PATH.match(path)
            headers = dict(scope["headers"])
            body = await read_body(receive, headers)
            content_type = headers.get(b"content-type", b"application/octet-stream").decode("latin1")
            variant = [(b"x-amzn-invoked-production-variant", b"AllTraffic")]
            return 200, await self.invoke(match.group(1) if match else None, content_type, body), variant
        if path == "/endpoints" and method == "GET":
            return 200, {"Endpoints": list(self.descriptions.values())}, []
        if match := ENDPOINT_PATH.match(path):
            name = match.group(1)
            if method in ("PUT", "DELETE"):
                body = await read_body(receive, dict(scope["headers"]))
                self._check_signature(scope, body)
            if method == "PUT":
                try:
                    request = json.loads(body or b"null")
                except ValueError as exc:
                    raise RequestError(400, "ValidationError", f"the body is not JSON: {exc}") from exc
                url = request.get("ModelDataUrl") if isinstance(request, dict) else None
                if not isinstance(url, str) or not url.startswith("s3://"):
                    raise RequestError(400, "ValidationError", 'send {"ModelDataUrl": "s3://bucket/key/model.tar.gz"}')
                try:
                    return 200, await self.deploy(name, url), []
                except Exception as exc:
                    raise RequestError(400, "ValidationError", f"cannot load {url}: {exc}") from exc
            if method == "GET":
                if name not in self.descriptions:
                    raise RequestError(400, "ValidationError", f"Endpoint {name} not found.")
                return 200, self.descriptions[name], []
            if method == "DELETE":
                await self.delete(name)
                return 200, {"EndpointName": name, "EndpointStatus": "Deleted"}, []
        raise RequestError(404, "UnknownOperationException", f"no route for {method} {path}")

    def _check_signature(self, scope, body: bytes) -> None:
        if self.deployer is None:
            return
        from ferry.sagemaker.sigv4 import SignatureError, verify

        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        try:
            verify(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin1"), headers, body,
                   access_key_id=self.deployer[0], secret_access_key=self.deployer[1])
        except SignatureError as exc:
            raise RequestError(403, exc.code, f"deploying needs the stack's credentials: {exc.message}") from None

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.restore()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def read_body(receive, headers: dict[bytes, bytes]) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and int(declared) > MAX_PAYLOAD:
        raise RequestError(413, "ValidationError", f"the payload exceeds {MAX_PAYLOAD} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_PAYLOAD:
            raise RequestError(413, "ValidationError", f"the payload exceeds {MAX_PAYLOAD} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def read_json(receive, headers: dict[bytes, bytes]) -> Any:
    try:
        return json.loads(await read_body(receive, headers) or b"null")
    except ValueError as exc:
        raise RequestError(400, "ValidationError", f"the body is not JSON: {exc}") from exc


def deploy_model(runtime_url: str, name: str, model_data_url: str, *, credentials: Any = None,
                 region: str = "eu-west-1", timeout: float = 120) -> dict[str, Any]:
    """Ask the endpoint server at ``runtime_url`` to serve ``model_data_url`` as ``name``, signed
    with ``credentials`` (botocore Credentials; default: boto3's usual chain).

    Returns the endpoint's description once the model is live; raises ``urllib.error.HTTPError``
    with the server's JSON message if it refuses, ``OSError`` if it does not answer.
    """
    import urllib.request

    from ferry.sagemaker.sigv4 import signed_request

    if credentials is None:
        import boto3

        credentials = boto3.Session().get_credentials()
    request = signed_request("PUT", f"{runtime_url.rstrip('/')}/endpoints/{name}",
                             json.dumps({"ModelDataUrl": model_data_url}).encode(), credentials=credentials,
                             region=region)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _default_s3_client():
    import boto3

    return boto3.client("s3")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve trained digit models over SageMaker's runtime API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--registry", type=Path, required=True, help="JSON file recording the deployed endpoints")
    parser.add_argument("--credentials", type=Path, required=True,
                        help="JSON with aws_access_key_id and aws_secret_access_key: who may deploy")
    args = parser.parse_args(argv)
    creds = json.loads(args.credentials.read_text())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = EndpointServer(Registry(args.registry),
                         deployer=(creds["aws_access_key_id"], creds["aws_secret_access_key"]))
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
