"""The endpoint server: SageMaker's runtime API, serving the models the control plane deploys.

boto3's ``sagemaker-runtime`` client reaches it by its URL (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``
or ``endpoint_url``), exactly as it reaches SageMaker:

- ``POST /endpoints/{name}/invocations``: a built-in algorithm's model (k-means, k-NN) takes
  ``application/x-recordio-protobuf``, ``text/csv`` (one record per line) or
  ``application/json`` (``{"instances": [{"features": [...]}]}``) with exactly the model's
  ``feature_dim`` values per record, and answers ``{"predictions": [...]}`` in its algorithm's
  shape (ferry.sagemaker.inference). A script-mode model's own ``input_fn``/``output_fn`` decide
  (ferry.sagemaker.script_mode), in the model's own process (ferry.sagemaker.model_process).
  Errors come as SageMaker's do (``x-amzn-ErrorType`` + JSON ``message``), so botocore raises
  the same ``ClientError`` codes: ``ValidationError`` (4xx) for a body that cannot be read,
  ``ModelError`` (424) when the model itself fails. No body gets a 500.
- ``GET /ping`` and ``POST /invocations``: the model container's contract, for one endpoint.
- ``PUT /endpoints/{name}`` with ``{"ModelDataUrl": "s3://…/model.tar.gz", "Image": …,
  "Environment": {…}}``: the deploy step, which the control plane makes for
  CreateEndpoint/UpdateEndpoint. It and ``DELETE`` must be signed (SigV4) with the stack's key
  pair: nobody else on the machine can put a model here. An archive larger than
  :data:`MAX_ARTIFACT_BYTES` (or expanding past :data:`MAX_EXPANDED_BYTES`), or one that does not
  load, fails the deploy with the reason and leaves the server and the old model serving. The
  new model is loaded beside the old one and swapped in by one assignment, so a redeploy fails
  no request. Endpoints are recorded in a registry file and come back when the server restarts.

Why uvicorn and a bare ASGI callable rather than a web framework: the latency target is a few
milliseconds at 16 concurrent clients on two cores, and a framework's routing and validation
cost more per request than the prediction itself. Models predict on the event loop, batched
where they allow it (see :class:`Batcher`): they take well under a millisecond, less than
handing them to a thread would. A script-mode model runs in a process of its own, with its own
environment (ferry.sagemaker.model_process), as SageMaker gives it a container.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ferry.sagemaker.archives import MAX_EXPANDED_BYTES, fetch_tar_gz
from ferry.sagemaker.formats import UnsupportedAccept, csv_label_size, encode_predictions
from ferry.sagemaker.model_process import ModelProcess
from ferry.sagemaker.recordio import iter_records
from ferry.sagemaker.serving import Batcher, RequestError
from ferry.sagemaker.store import private_directory

log = logging.getLogger("ferry.endpoint")

#: SageMaker's real-time payload limit.
MAX_PAYLOAD = 6 * 1024 * 1024
#: A model archive larger than this is not downloaded (SageMaker's own limit for a real-time
#: endpoint's model is far larger, but no model this server can hold in memory is).
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
INVOCATION_PATH = re.compile(r"^/endpoints/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})/invocations$")
ENDPOINT_PATH = re.compile(r"^/endpoints/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})$")


def parse_features(content_type: str, body: bytes, feature_dim: int) -> np.ndarray:
    """The request body as a float32 (n, feature_dim) array, or a ValidationError.

    Every failure to read the body is the caller's (a 4xx), whatever the parser raised: a
    truncated protobuf, JSON nested a million deep, numbers too large for a float.
    """
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == "application/x-recordio-protobuf":
            rows = [record.features["values"] for record in iter_records(io.BytesIO(body))]
        elif media == "text/csv":  # label_size=N: the first N columns are labels, not features (AWS's csv rule)
            try:
                skip = csv_label_size(content_type, default=0)
            except ValueError as exc:
                raise RequestError(400, "ValidationError", str(exc)) from None
            rows = [np.array(line.split(",")[skip:], dtype=np.float32)
                    for line in body.decode().splitlines() if line.strip()]
        elif media == "application/json":
            payload = json.loads(body)
            instances = payload.get("instances", []) if isinstance(payload, dict) else payload
            rows = [np.asarray(i["features"] if isinstance(i, dict) else i, dtype=np.float32) for i in instances]
        else:
            raise RequestError(415, "ValidationError", f"unsupported content type {content_type!r:.100}; use "
                               "application/x-recordio-protobuf, text/csv or application/json")
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError(400, "ValidationError", f"cannot read the {media} body: {type(exc).__name__}: "
                           f"{str(exc)[:200]}") from None
    if not rows:
        raise RequestError(400, "ValidationError", "the request holds no records")
    if any(row.shape != (feature_dim,) for row in rows):
        raise RequestError(400, "ValidationError", f"each record must have exactly {feature_dim} features")
    features = np.vstack(rows).astype(np.float32)
    if not np.isfinite(features).all():
        raise RequestError(400, "ValidationError", "features must be finite numbers")
    return features


class Registry:
    """Which model each endpoint serves, kept in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def write(self, endpoints: dict[str, dict[str, Any]]) -> None:
        """Atomically, and readable by the stack's user only (models' environments are in it)."""
        private_directory(self.path.parent)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with open(descriptor, "w") as file:
            file.write(json.dumps(endpoints, indent=2, sort_keys=True))
        os.replace(temporary, self.path)


class BuiltinServable:
    """A built-in algorithm's model: records parsed here, predicted in batches on the event loop."""

    def __init__(self, model: Any) -> None:
        self.model, self.batcher = model, Batcher(model)
        self.algorithm = model.algorithm

    async def invoke(self, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
        features = parse_features(content_type, body, self.model.feature_dim)
        try:
            predictions = await self.batcher.predict(features)
        except Exception as exc:  # a model that fails is the model's error, as on SageMaker
            log.exception("the %s model failed", self.algorithm)
            raise RequestError(424, "ModelError", f"the model failed: {type(exc).__name__}") from None
        try:
            return encode_predictions(predictions, accept, self.model.verbose_fields)
        except UnsupportedAccept as exc:
            raise RequestError(406, "ValidationError", str(exc)) from None

    async def start(self) -> None:
        """Nothing to start: the model is in this process's memory."""

    async def close(self, drain_timeout: float = 0) -> None:
        """Nothing to stop: requests already batched keep their reference to the model."""


def fetch_artifact(s3: Any, model_data_url: str, directory: Path, *, max_bytes: int = MAX_ARTIFACT_BYTES,
                   max_expanded: int = MAX_EXPANDED_BYTES) -> None:
    """Download ``model.tar.gz`` and unpack it into ``directory``, within the size caps (ferry.sagemaker.archives)."""
    fetch_tar_gz(s3, model_data_url, directory, what="the model archive", max_bytes=max_bytes,
                 max_expanded=max_expanded)


def load_servable(s3: Any, name: str, model_data_url: str, image: str | None, environment: dict[str, str],
                  directory: Path) -> BuiltinServable | ModelProcess:
    """The model behind a deploy request, fetched and ready to ``start()``; ValueError (or
    AlgorithmError) with the reason. A script-mode model's code is fetched here too: its own
    process (ferry.sagemaker.model_process) gets no S3 key pair."""
    from ferry.sagemaker.algorithms import is_script_mode_image
    from ferry.sagemaker.inference import load_builtin_model
    from ferry.sagemaker.script_mode import script_code_dir

    fetch_artifact(s3, model_data_url, directory / "model")
    if image is not None and is_script_mode_image(image):
        code_dir = script_code_dir(directory / "model", environment, s3)
        return ModelProcess(name, directory / "model", code_dir, environment)
    return BuiltinServable(load_builtin_model(directory / "model"))


class EndpointServer:
    """The ASGI application (see the module docstring)."""

    def __init__(self, registry: Registry, s3_client_factory=None, *, deployer: tuple[str, str] | None = None,
                 models_dir: Path | None = None, region: str = "eu-west-1") -> None:
        self.registry = registry
        #: (access key id, secret) that every request but /ping must be signed with; None: not checked.
        self.deployer, self.region = deployer, region
        #: Unpacked model archives, one directory per deploy; emptied at start (restores re-fetch).
        self.models_dir = models_dir or registry.path.parent / "models"
        self.models: dict[str, BuiltinServable | ModelProcess] = {}
        self.model_dirs: dict[str, Path] = {}
        self.descriptions: dict[str, dict[str, Any]] = {}
        self._s3_client_factory = s3_client_factory or _default_s3_client
        self._deploy_lock = asyncio.Lock()

    # -- deploying ------------------------------------------------------------------------

    def _load(self, name: str, request: dict[str, Any]) -> tuple[BuiltinServable | ModelProcess, Path]:
        directory = self.models_dir / uuid.uuid4().hex
        try:
            servable = load_servable(self._s3_client_factory(), name, request["ModelDataUrl"], request.get("Image"),
                                     request.get("Environment") or {}, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return servable, directory

    async def deploy(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        async with self._deploy_lock:
            servable, directory = await asyncio.to_thread(self._load, name, request)
            try:
                await servable.start()
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, directory, True)
                raise
            description = {"EndpointName": name, "ModelDataUrl": request["ModelDataUrl"],
                           "EndpointStatus": "InService", "Algorithm": servable.algorithm,
                           **{k: request[k] for k in ("Image", "Environment") if request.get(k)}}
            old_servable = self.models.get(name)
            self.models[name] = servable  # the swap: requests already sent keep the old model
            self.descriptions[name] = description
            await self._retire(name, old_servable)
            self.model_dirs[name] = directory
            await asyncio.to_thread(self.registry.write, self.descriptions)
            log.warning("endpoint %s serves %s (%s)", name, request["ModelDataUrl"], servable.algorithm)
            return description

    async def delete(self, name: str) -> None:
        async with self._deploy_lock:
            if name not in self.descriptions:  # 404: the control plane deletes what is not here without fuss
                raise RequestError(404, "ValidationError", f"Endpoint {name} not found.")
            del self.descriptions[name]
            await self._retire(name, self.models.pop(name, None))
            await asyncio.to_thread(self.registry.write, self.descriptions)

    async def _retire(self, name: str, servable: BuiltinServable | ModelProcess | None) -> None:
        """An endpoint's former model: its requests finish, then its process and files go."""
        if servable is not None:
            await servable.close()
        old = self.model_dirs.pop(name, None)
        if old is not None:
            await asyncio.to_thread(shutil.rmtree, old, True)

    async def restore(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.models_dir, True)
        for name, description in self.registry.read().items():
            try:
                await self.deploy(name, description)
            except Exception as exc:
                # Kept in the registry (marked Failed), so the next restart tries again.
                log.exception("could not restore endpoint %s from %s", name, description.get("ModelDataUrl"))
                self.descriptions[name] = {**description, "EndpointStatus": "Failed",
                                           "FailureReason": f"{type(exc).__name__}: {exc}"}
        await asyncio.to_thread(self.registry.write, self.descriptions)

    # -- serving --------------------------------------------------------------------------

    async def invoke(self, name: str | None, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
        if name is None:  # the container contract's /invocations: the only endpoint there is
            if len(self.models) != 1:
                raise RequestError(400, "ValidationError", "POST /invocations needs exactly one endpoint; "
                                   "use /endpoints/{name}/invocations")
            name = next(iter(self.models))
        servable = self.models.get(name)
        if servable is None:
            if name in self.descriptions:
                reason = self.descriptions[name].get("FailureReason", "")
                raise RequestError(400, "ValidationError", f"Endpoint {name} is not in service: {reason}")
            raise RequestError(400, "ValidationError", f"Endpoint {name} not found.")
        return await servable.invoke(content_type, accept, body)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, content_type, extra = await self._route(scope, receive)
        except RequestError as exc:
            error_type = [(b"x-amzn-errortype", exc.error_type.encode())]
            status, body, content_type, extra = (exc.status, json.dumps({"message": exc.message}).encode(),
                                                 "application/json", error_type)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            status, body, content_type, extra = (500, b'{"message": "internal error"}', "application/json",
                                                 [(b"x-amzn-errortype", b"InternalFailure")])
        headers = [(b"content-type", content_type.encode("latin1", "replace")),
                   (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope, receive) -> tuple[int, bytes, str, list]:
        method, path = scope["method"], scope["path"]
        if path == "/ping" and method == "GET":
            return (200 if self.models else 503), b"", "application/json", []
        if method == "POST" and (path == "/invocations" or INVOCATION_PATH.match(path)):
            match = INVOCATION_PATH.match(path)
            headers = dict(scope["headers"])
            body = await read_body(receive, headers)
            self._check_signature(scope, body)
            content_type = headers.get(b"content-type", b"application/octet-stream").decode("latin1")
            accept = headers.get(b"accept", b"application/json").decode("latin1")
            answer, answer_type = await self.invoke(match.group(1) if match else None, content_type, accept, body)
            return 200, answer, answer_type, [(b"x-amzn-invoked-production-variant", b"AllTraffic")]
        if path == "/endpoints" and method == "GET":
            self._check_signature(scope, await read_body(receive, dict(scope["headers"])))
            return _json(200, {"Endpoints": list(self.descriptions.values())})
        if match := ENDPOINT_PATH.match(path):
            name = match.group(1)
            if method in ("PUT", "DELETE", "GET"):
                body = await read_body(receive, dict(scope["headers"]))
                self._check_signature(scope, body)
            if method == "PUT":
                request = deploy_request(body)
                try:
                    return _json(200, await self.deploy(name, request))
                except Exception as exc:
                    raise RequestError(400, "ValidationError",
                                       f"cannot load {request['ModelDataUrl']}: {str(exc)[:500]}") from None
            if method == "GET":
                if name not in self.descriptions:
                    raise RequestError(400, "ValidationError", f"Endpoint {name} not found.")
                return _json(200, self.descriptions[name])
            if method == "DELETE":
                await self.delete(name)
                return _json(200, {"EndpointName": name, "EndpointStatus": "Deleted"})
        raise RequestError(404, "UnknownOperationException", f"no route for {method} {path[:100]}")

    def _check_signature(self, scope, body: bytes) -> None:
        """SigV4 with the stack's key pair, scoped to ``sagemaker`` (the runtime's signing name) and
        the stack's region, on every route but ``/ping``: InvokeEndpoint needs a signature on AWS,
        so code with wrong credentials fails here as it would there."""
        if self.deployer is None:
            return
        from ferry.sagemaker.sigv4 import SignatureError, verify

        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        try:
            verify(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin1"), headers, body,
                   access_key_id=self.deployer[0], secret_access_key=self.deployer[1], service="sagemaker",
                   region=self.region)
        except SignatureError as exc:
            raise RequestError(403, exc.code, f"this needs the stack's credentials: {exc.message}") from None

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.restore()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.gather(*(servable.close(drain_timeout=5) for servable in self.models.values()))
                await send({"type": "lifespan.shutdown.complete"})
                return


def _json(status: int, payload: Any) -> tuple[int, bytes, str, list]:
    return status, json.dumps(payload).encode(), "application/json", []


def deploy_request(body: bytes) -> dict[str, Any]:
    """The PUT body, checked: ModelDataUrl an s3:// URL, Image a string, Environment strings to strings."""
    try:
        request = json.loads(body or b"null")
    except Exception:
        raise RequestError(400, "ValidationError", "the body is not JSON") from None
    usage = 'send {"ModelDataUrl": "s3://bucket/key/model.tar.gz", "Image": "…", "Environment": {…}}'
    if not isinstance(request, dict):
        raise RequestError(400, "ValidationError", usage)
    url, image, environment = request.get("ModelDataUrl"), request.get("Image"), request.get("Environment") or {}
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise RequestError(400, "ValidationError", usage)
    if image is not None and not isinstance(image, str):
        raise RequestError(400, "ValidationError", usage)
    if not isinstance(environment, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in environment.items()):
        raise RequestError(400, "ValidationError", "Environment must map strings to strings")
    return {"ModelDataUrl": url, "Image": image, "Environment": environment}


async def read_body(receive, headers: dict[bytes, bytes]) -> bytes:
    declared = headers.get(b"content-length", b"0")
    if not declared.isdigit():
        raise RequestError(400, "ValidationError", "Content-Length is not a number")
    if int(declared) > MAX_PAYLOAD:
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


def deploy_model(runtime_url: str, name: str, model_data_url: str, *, image: str | None = None,
                 environment: dict[str, str] | None = None, credentials: Any = None, region: str = "eu-west-1",
                 timeout: float = 120) -> dict[str, Any]:
    """Ask the endpoint server at ``runtime_url`` to serve ``model_data_url`` as ``name``, signed
    with ``credentials`` (botocore Credentials; default: boto3's usual chain). The control plane
    makes this call for CreateEndpoint/UpdateEndpoint; tests and benchmarks make it directly.

    Returns the endpoint's description once the model is live; raises ``urllib.error.HTTPError``
    with the server's JSON message if it refuses, ``OSError`` if it does not answer.
    """
    import urllib.request

    from ferry.sagemaker.sigv4 import signed_request

    if credentials is None:
        import boto3

        credentials = boto3.Session().get_credentials()
    payload = {"ModelDataUrl": model_data_url, "Image": image, "Environment": environment or {}}
    request = signed_request("PUT", f"{runtime_url.rstrip('/')}/endpoints/{name}", json.dumps(payload).encode(),
                             credentials=credentials, region=region)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _default_s3_client():
    import boto3

    return boto3.client("s3")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve deployed models over SageMaker's runtime API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--registry", type=Path, required=True, help="JSON file recording the deployed endpoints")
    parser.add_argument("--credentials", type=Path, required=True,
                        help="JSON with aws_access_key_id and aws_secret_access_key: who may deploy and invoke")
    parser.add_argument("--region", default="eu-west-1", help="the region requests must be signed for")
    args = parser.parse_args(argv)
    creds = json.loads(args.credentials.read_text())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = EndpointServer(Registry(args.registry),
                         deployer=(creds["aws_access_key_id"], creds["aws_secret_access_key"]), region=args.region)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
