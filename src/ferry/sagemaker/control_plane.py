"""SageMaker's control plane and CloudWatch Logs, as far as training and serving need them.

Why our own server and not moto's SageMaker backend: moto keeps state in memory, marks a job
Completed the moment it is created, trains and serves nothing, and overwrites a resource
created twice; making it run jobs would mean replacing most of what it does. This server
speaks the same AWS JSON 1.1 protocol (``X-Amz-Target: SageMaker.<Operation>`` or
``Logs_20140328.<Operation>``), so boto3 and the amazon provider's operators use it through
``endpoint_url`` alone, and:

- checks every request's SigV4 signature against the stack's key pair (``sigv4``);
- keeps state in SQLite (``store``): it survives a restart, and workers update it;
- runs each training job in a worker process (``worker``), with CloudWatch-style logs;
- refuses names already taken, with SageMaker's own messages (the provider's endpoint
  operator switches to ``UpdateEndpoint`` on "Cannot create already existing endpoint");
- makes endpoints live on the endpoint server (``--runtime-url``): ``Creating`` until the model
  is loaded there, then ``InService``, or ``Failed`` with the server's reason.

Operations: Create/Describe/List/StopTrainingJob; Create/Describe/Delete/ListModel(s);
Create/Describe/Delete/ListEndpointConfig(s); Create/Describe/Update/Delete/ListEndpoint(s);
AddTags, ListTags, DeleteTags. Logs: CreateLogGroup, CreateLogStream, DescribeLogGroups,
DescribeLogStreams, GetLogEvents, PutLogEvents. STS GetCallerIdentity and IAM GetRole for the
stack's own identity (``identity``, the query protocol). KMS GenerateDataKey, Encrypt, Decrypt
and DescribeKey for the stack's key (``kms``: the S3 server's SSE-KMS provider). Anything else answers
``UnknownOperationException`` (``InvalidAction`` for STS and IAM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ferry.sagemaker import identity
from ferry.sagemaker.kms import OPERATIONS as KMS_OPERATIONS
from ferry.sagemaker.kms import Kms, KmsError
from ferry.sagemaker.listing import list_page
from ferry.sagemaker.sigv4 import SignatureError, credential_scope, verify
from ferry.sagemaker.store import Store
from ferry.sagemaker.worker import KIND as TRAINING_JOB
from ferry.sagemaker.worker import LOG_GROUP, is_channel_name, now

log = logging.getLogger("ferry.sagemaker")

ACCOUNT = identity.ACCOUNT
MAX_BODY = 1024 * 1024
#: X-Amz-Target prefix → the service name clients sign for (botocore's signingName).
SIGNING_NAMES = {"SageMaker": "sagemaker", "Logs_20140328": "logs", "TrentService": "kms"}
#: How long a job may be recorded without a worker pid before it counts as orphaned.
START_GRACE_SECONDS = 30.0
#: How often the control plane looks for training workers that died mid-job.
WATCH_SECONDS = 2.0
ENVIRONMENT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def _input_config(request: dict[str, Any]) -> None:
    """What this SageMaker can deliver, refused up front rather than run differently: File input
    mode only (Pipe and FastFile stream, which a local process cannot be given as SageMaker gives
    them), ``S3Prefix`` or ``ManifestFile`` channels, and no ``CompressionType`` (which AWS too
    allows only in Pipe mode)."""
    specification = request.get("AlgorithmSpecification")
    if not isinstance(specification, dict):
        raise validation("AlgorithmSpecification must be an object")
    mode = specification.get("TrainingInputMode", "File")
    if mode != "File":
        raise validation(f"TrainingInputMode {str(mode)[:20]} is not supported by this local SageMaker (File is)")
    channels = request.get("InputDataConfig") or []
    if not isinstance(channels, list):
        raise validation("InputDataConfig must be a list of channels")
    names: set[str] = set()
    for channel in channels:
        if not isinstance(channel, dict):
            raise validation("each channel of InputDataConfig must be an object")
        name = channel.get("ChannelName")
        if not is_channel_name(name):
            raise validation(f"ChannelName {str(name)[:80]!r} must match [A-Za-z0-9.\\-_]{{1,64}}")
        if name in names:
            raise validation(f"channel {name} is given twice in InputDataConfig")
        names.add(name)
        data_source = channel.get("DataSource")
        if not isinstance(data_source, dict):
            raise validation(f"channel {name}: DataSource must be an object")
        if channel.get("InputMode", "File") != "File":
            raise validation(f"channel {name}: InputMode {str(channel['InputMode'])[:20]} is not supported by this "
                             "local SageMaker (File is)")
        if channel.get("CompressionType", "None") != "None":
            raise validation(f"channel {name}: CompressionType {str(channel['CompressionType'])[:20]} is only "
                             "supported in Pipe input mode")
        source = data_source.get("S3DataSource")
        if not isinstance(source, dict) or not isinstance(source.get("S3Uri"), str):
            raise validation(f"channel {name}: DataSource.S3DataSource with an S3Uri is required here")
        if source.get("S3DataType", "S3Prefix") not in ("S3Prefix", "ManifestFile"):
            raise validation(f"channel {name}: S3DataType {str(source['S3DataType'])[:30]} is not supported by this "
                             "local SageMaker (S3Prefix and ManifestFile are)")


def _environment_map(environment: Any) -> None:
    """CreateTrainingJob's ``Environment``, as botocore's model bounds it (TrainingEnvironmentMap):
    at most 100 variables, names ``[a-zA-Z_][a-zA-Z0-9_]*``, names and values at most 512 characters."""
    if environment is None:
        return
    if not isinstance(environment, dict) or len(environment) > 100:
        raise validation("Environment must be a map of at most 100 variables")
    for name, value in environment.items():
        if not isinstance(name, str) or not ENVIRONMENT_NAME.fullmatch(name) or len(name) > 512:
            raise validation(f"Environment variable name {str(name)[:80]!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
        if not isinstance(value, str) or len(value) > 512 or "\0" in value:
            raise validation(f"Environment variable {name} must be a string of at most 512 characters")


def _tags(tags: Any) -> list[dict[str, str]]:
    """A request's ``Tags`` as botocore's model bounds them: at most 50, keys 1–128 and values 0–256 characters."""
    if not isinstance(tags, list) or len(tags) > 50:
        raise validation("Tags must be a list of at most 50 tags")
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str) or not 1 <= len(tag["Key"]) <= 128 \
                or not isinstance(tag.get("Value", ""), str) or len(tag.get("Value", "")) > 256:
            raise validation("Each tag needs a Key of 1 to 128 characters and a Value of at most 256")
    return [{"Key": tag["Key"], "Value": tag.get("Value", "")} for tag in tags]


def _record(request: dict[str, Any]) -> dict[str, Any]:
    """A create request as stored: its Tags kept apart (``_tags``, answered by ListTags, not Describe*)."""
    return {**{k: v for k, v in request.items() if k != "Tags"}, "_tags": _tags(request.get("Tags", []))}


def _required(request: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in request or request[name] in (None, ""):
            raise validation(f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' failed to "
                             "satisfy constraint: Member must not be null")


def _name(request: dict[str, Any], field: str) -> str:
    _required(request, field)
    name = request[field]
    if not isinstance(name, str) or not NAME.match(name):
        raise validation(f"1 validation error detected: Value '{name}' at '{field[0].lower() + field[1:]}' failed to "
                         "satisfy constraint: Member must satisfy regular expression pattern: "
                         "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
    return name


def public(body: dict[str, Any]) -> dict[str, Any]:
    """A stored record without the fields only this server uses (``_…``)."""
    return {k: v for k, v in body.items() if not k.startswith("_")}


class XmlAnswer(NamedTuple):
    """A query-protocol answer (STS, IAM), sent as it is."""

    status: int
    body: bytes


class ControlPlane:
    def __init__(self, store: Store, *, access_key_id: str, secret_access_key: str, runtime_url: str,
                 region: str, worker_env: dict[str, str], kms_key: str | None = None) -> None:
        self.store, self.region = store, region
        #: KMS for the stack's S3 (ferry.sagemaker.kms); without a key, KMS calls are not served.
        self.kms = Kms(kms_key, region) if kms_key else None
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key
        self.runtime_url = runtime_url.rstrip("/")
        self.worker_env = worker_env
        self.pending: set[asyncio.Task] = set()

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    # -- HTTP ------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.recover()
                    watcher = asyncio.get_running_loop().create_task(self._watch_workers())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    watcher.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            result = await self.handle(scope, receive)
            if isinstance(result, XmlAnswer):
                headers = [(b"content-type", b"text/xml"), (b"content-length", str(len(result.body)).encode())]
                await send({"type": "http.response.start", "status": result.status, "headers": headers})
                await send({"type": "http.response.body", "body": result.body})
                return
            status, payload = 200, result
        except ApiError as exc:
            status, payload = exc.status, {"__type": exc.code, "message": exc.message}
        except Exception:  # a bug here: a 500 with no details, the trace in our log
            log.exception("request failed")
            status, payload = 500, {"__type": "InternalFailure", "message": "internal error"}
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/x-amz-json-1.1"), (b"content-length", str(len(body)).encode())]
        if status != 200:
            headers.append((b"x-amzn-errortype", payload["__type"].encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope, receive) -> dict[str, Any]:
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                raise ApiError("SerializationException", "the request body is too large", 413)
            if not message.get("more_body"):
                break
        if scope["method"] != "POST":
            raise ApiError("UnknownOperationException", "only POST with X-Amz-Target is served", 404)
        if "x-amz-target" not in headers and headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return self.query(scope, headers, body)
        service, _, operation = headers.get("x-amz-target", "").partition(".")
        try:  # signed for this service (the target's signing name) and region, the target among the signed headers
            verify(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin1"), headers, body,
                   access_key_id=self.access_key_id, secret_access_key=self.secret_access_key,
                   service=SIGNING_NAMES.get(service), region=self.region, must_sign=("x-amz-target",))
        except SignatureError as exc:
            raise ApiError(exc.code, exc.message, 403) from None
        if service == "TrentService" and self.kms is not None:
            handler = getattr(self.kms, operation) if operation in KMS_OPERATIONS else None
        else:
            handler = getattr(self, f"{'logs' if service == 'Logs_20140328' else 'sm'}_{operation}", None) \
                if service in ("SageMaker", "Logs_20140328") else None
        if handler is None:
            raise ApiError("UnknownOperationException", f"{service}.{operation} is not served here")
        try:
            request = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            raise ApiError("SerializationException", "the body is not JSON") from None
        if not isinstance(request, dict):
            raise ApiError("SerializationException", "the body is not a JSON object")
        try:
            result = handler(request)
        except KmsError as exc:
            raise ApiError(exc.code, exc.message) from None
        return await result if asyncio.iscoroutine(result) else result

    def query(self, scope, headers: dict[str, str], body: bytes) -> XmlAnswer:
        """STS and IAM (ferry.sagemaker.identity): the query protocol, XML in errors too."""
        signed_for = credential_scope(headers)
        service = signed_for[0] if signed_for and signed_for[0] in identity.NAMESPACES else "sts"
        try:
            try:  # IAM is global: botocore signs it for us-east-1, whatever the client's region
                region = verify(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin1"),
                                headers, body, access_key_id=self.access_key_id,
                                secret_access_key=self.secret_access_key, service=service)
            except SignatureError as exc:
                raise identity.QueryError(403, {"UnrecognizedClientException": "InvalidClientTokenId"}.get(
                    exc.code, "SignatureDoesNotMatch" if exc.code == "InvalidSignatureException" else exc.code),
                    exc.message) from None
            if region not in (self.region, "us-east-1"):
                raise identity.QueryError(403, "SignatureDoesNotMatch", f"Credential should be scoped to a valid "
                                          f"region, not '{region[:40]}'.")
            return XmlAnswer(200, identity.answer(service, identity.form(body), self.access_key_id))
        except identity.QueryError as exc:
            return XmlAnswer(exc.status, identity.error(service, exc))

    # -- training jobs ---------------------------------------------------------------------------

    def sm_CreateTrainingJob(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request, "TrainingJobName")
        _required(request, "AlgorithmSpecification", "RoleArn", "OutputDataConfig", "ResourceConfig",
                  "StoppingCondition")
        hyperparameters = request.get("HyperParameters") or {}
        if not isinstance(hyperparameters, dict) or not all(isinstance(v, str) for v in hyperparameters.values()):
            raise validation("HyperParameters values must be strings")
        _environment_map(request.get("Environment"))
        _input_config(request)
        spec = request["AlgorithmSpecification"]
        for field in ("ContainerEntrypoint", "ContainerArguments"):
            value = spec.get(field) if isinstance(spec, dict) else None
            if value is not None and (not isinstance(value, list) or not 1 <= len(value) <= 100 or not all(
                    isinstance(item, str) and len(item) <= 256 for item in value)):
                raise validation(f"AlgorithmSpecification.{field} must be a list of 1 to 100 strings of at most 256 "
                                 "characters")
        output = request["OutputDataConfig"]
        if not isinstance(output, dict) or not isinstance(output.get("S3OutputPath"), str) \
                or not isinstance(output.get("KmsKeyId", ""), str):
            raise validation("OutputDataConfig needs an S3OutputPath string (and KmsKeyId, if given, a string)")
        arn = self.arn("training-job", name)
        at = now()
        job = {**_record(request), "TrainingJobArn": arn, "TrainingJobStatus": "InProgress",
               "SecondaryStatus": "Starting", "CreationTime": at, "LastModifiedTime": at,
               "SecondaryStatusTransitions": [], "HyperParameters": hyperparameters}
        if not self.store.insert(TRAINING_JOB, name, job):
            raise ApiError("ResourceInUse", "Training job names must be unique within an AWS account and region, "
                           f"and a training job with this name already exists ({arn})")
        process = subprocess.Popen([sys.executable, "-m", "ferry.sagemaker.worker", str(self.store.path), name],
                                   env=self.worker_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.store.update(TRAINING_JOB, name, lambda j: j.update(_pid=process.pid))
        return {"TrainingJobArn": arn}

    def _training_job(self, name: str) -> dict[str, Any]:
        job = self.store.get(TRAINING_JOB, name) if isinstance(name, str) else None
        if job is None:
            raise validation("Requested resource not found.")
        return job

    def sm_DescribeTrainingJob(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "TrainingJobName")
        return public(self._training_job(request["TrainingJobName"]))

    def sm_ListTrainingJobs(self, request: dict[str, Any]) -> dict[str, Any]:
        summaries = [{k: j[k] for k in ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingJobStatus",
                                        "LastModifiedTime", "TrainingEndTime") if k in j}
                     for j in self.store.list(TRAINING_JOB)]
        return list_page(summaries, request, "TrainingJobSummaries", name="TrainingJobName",
                         status="TrainingJobStatus", ascending=True, validation=validation)

    def sm_StopTrainingJob(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "TrainingJobName")
        job = self._training_job(request["TrainingJobName"])
        if job["TrainingJobStatus"] != "InProgress":
            raise validation(f"The request was rejected because the training job is in status "
                             f"{job['TrainingJobStatus']}.")
        self.store.update(TRAINING_JOB, job["TrainingJobName"], lambda j: j.update(TrainingJobStatus="Stopping"))
        _signal(job.get("_pid"))
        return {}

    def fail_orphaned_jobs(self, reason: str) -> None:
        """A job whose worker is gone can never finish: Failed with ``reason``, instead of waiting.

        The check is made again inside the write's transaction, so a worker that recorded its
        result and exited in between keeps its result. A job being started has no worker pid yet:
        it counts as orphaned only if it stayed so for :data:`START_GRACE_SECONDS` (the control
        plane died between recording it and starting its worker).
        """
        def orphaned(job: dict[str, Any]) -> bool:
            if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
                return False
            pid = job.get("_pid")
            if isinstance(pid, int):
                return not _alive(pid)
            return now() - job.get("CreationTime", now()) > START_GRACE_SECONDS

        failed: list[bool] = []

        def fail(job: dict[str, Any]) -> None:
            if orphaned(job):
                job.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason,
                           TrainingEndTime=now(), LastModifiedTime=now())
                failed.append(True)

        for job in self.store.list(TRAINING_JOB):
            if orphaned(job):
                failed.clear()
                self.store.update(TRAINING_JOB, job["TrainingJobName"], fail)
                if failed and isinstance(job.get("_pid"), int):  # what it started (a user's script) goes with it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(job["_pid"], signal.SIGKILL)

    async def _watch_workers(self) -> None:
        """While the control plane runs: a worker killed mid-job (``kill -9``, the OOM killer)
        fails its job within :data:`WATCH_SECONDS`."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await asyncio.to_thread(self.fail_orphaned_jobs, "InternalServerError: the training process "
                                        "died without a result (killed, or out of memory)")
            except Exception:  # a busy database: try again next round
                logging.getLogger("ferry.sagemaker").exception("watching the training workers failed")

    def recover(self) -> None:
        """After a restart: jobs whose workers are gone fail; deploys in flight start again."""
        self.fail_orphaned_jobs("InternalServerError: the training process ended without a result (the control "
                                "plane or the machine was restarted during the job)")
        for endpoint in self.store.list("Endpoint"):
            if endpoint["EndpointStatus"] in ("Creating", "Updating"):
                self._schedule_deploy(endpoint["EndpointName"], endpoint.get("_target", endpoint["EndpointConfigName"]))

    # -- models and endpoint configs ------------------------------------------------------------

    def sm_CreateModel(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request, "ModelName")
        container = request.get("PrimaryContainer") or (request.get("Containers") or [None])[0]
        if not isinstance(container, dict) or not container.get("Image"):
            raise validation("a model needs PrimaryContainer (or Containers) with an Image")
        arn = self.arn("model", name)
        if not self.store.insert("Model", name, {**_record(request), "ModelArn": arn, "CreationTime": now()}):
            raise validation(f'Cannot create already existing model "{arn}".')
        return {"ModelArn": arn}

    def _get(self, kind: str, name: Any, what: str, arn_kind: str) -> dict[str, Any]:
        found = self.store.get(kind, name) if isinstance(name, str) else None
        if found is None:
            raise validation(f'Could not find {what} "{self.arn(arn_kind, str(name))}".')
        return found

    def sm_DescribeModel(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "ModelName")
        return public(self._get("Model", request["ModelName"], "model", "model"))

    def sm_DeleteModel(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "ModelName")
        self._get("Model", request["ModelName"], "model", "model")
        self.store.delete("Model", request["ModelName"])
        return {}

    def sm_ListModels(self, request: dict[str, Any]) -> dict[str, Any]:
        models = [{k: m[k] for k in ("ModelName", "ModelArn", "CreationTime")} for m in self.store.list("Model")]
        return list_page(models, request, "Models", name="ModelName", validation=validation)

    def sm_CreateEndpointConfig(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request, "EndpointConfigName")
        variants = request.get("ProductionVariants")
        if not isinstance(variants, list) or not variants:
            raise validation("ProductionVariants must name at least one variant")
        for variant in variants:
            self._get("Model", variant.get("ModelName"), "model", "model")
        arn = self.arn("endpoint-config", name)
        config = {**_record(request), "EndpointConfigArn": arn, "CreationTime": now()}
        if not self.store.insert("EndpointConfig", name, config):
            raise validation(f'Cannot create already existing endpoint configuration "{arn}".')
        return {"EndpointConfigArn": arn}

    def sm_DescribeEndpointConfig(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "EndpointConfigName")
        return public(self._get("EndpointConfig", request["EndpointConfigName"], "endpoint configuration",
                                "endpoint-config"))

    def sm_ListEndpointConfigs(self, request: dict[str, Any]) -> dict[str, Any]:
        configs = [{k: c[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")}
                   for c in self.store.list("EndpointConfig")]
        return list_page(configs, request, "EndpointConfigs", name="EndpointConfigName", validation=validation)

    def sm_DeleteEndpointConfig(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "EndpointConfigName")
        self._get("EndpointConfig", request["EndpointConfigName"], "endpoint configuration", "endpoint-config")
        self.store.delete("EndpointConfig", request["EndpointConfigName"])
        return {}

    # -- endpoints -------------------------------------------------------------------------------

    def sm_CreateEndpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request, "EndpointName")
        _required(request, "EndpointConfigName")
        self._get("EndpointConfig", request["EndpointConfigName"], "endpoint configuration", "endpoint-config")
        arn = self.arn("endpoint", name)
        at = now()
        endpoint = {"EndpointName": name, "EndpointArn": arn, "EndpointConfigName": request["EndpointConfigName"],
                    "EndpointStatus": "Creating", "CreationTime": at, "LastModifiedTime": at,
                    "_target": request["EndpointConfigName"], "_tags": _tags(request.get("Tags", []))}
        if not self.store.insert("Endpoint", name, endpoint):
            raise validation(f'Cannot create already existing endpoint "{arn}".')
        self._schedule_deploy(name, request["EndpointConfigName"])
        return {"EndpointArn": arn}

    def sm_UpdateEndpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "EndpointName", "EndpointConfigName")
        endpoint = self._get("Endpoint", request["EndpointName"], "endpoint", "endpoint")
        self._get("EndpointConfig", request["EndpointConfigName"], "endpoint configuration", "endpoint-config")
        if endpoint["EndpointStatus"] == "Failed":  # AWS: DeleteEndpoint is all a failed endpoint allows
            raise validation(f"Cannot update failed endpoint \"{endpoint['EndpointArn']}\": DeleteEndpoint is the "
                             "only operation allowed on an endpoint in status Failed.")
        if endpoint["EndpointStatus"] != "InService":
            raise validation(f"Cannot update in-progress endpoint \"{endpoint['EndpointArn']}\".")
        self.store.update("Endpoint", endpoint["EndpointName"], lambda e: e.update(
            EndpointStatus="Updating", LastModifiedTime=now(), _target=request["EndpointConfigName"]))
        self._schedule_deploy(endpoint["EndpointName"], request["EndpointConfigName"])
        return {"EndpointArn": endpoint["EndpointArn"]}

    def sm_DescribeEndpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "EndpointName")
        endpoint = public(self._get("Endpoint", request["EndpointName"], "endpoint", "endpoint"))
        config = self.store.get("EndpointConfig", endpoint["EndpointConfigName"]) or {}
        if endpoint["EndpointStatus"] == "InService":
            endpoint["ProductionVariants"] = [{"VariantName": v.get("VariantName", "AllTraffic"),
                                               "CurrentInstanceCount": v.get("InitialInstanceCount", 1),
                                               "DesiredInstanceCount": v.get("InitialInstanceCount", 1)}
                                              for v in config.get("ProductionVariants", [])]
        return endpoint

    def sm_ListEndpoints(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoints = [{k: e[k] for k in ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime",
                                        "EndpointStatus")} for e in self.store.list("Endpoint")]
        return list_page(endpoints, request, "Endpoints", name="EndpointName", status="EndpointStatus",
                         default_max=10, validation=validation)

    async def sm_DeleteEndpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "EndpointName")
        # The name as created: the endpoint server serves it so (InvokeEndpoint is case-sensitive).
        name = self._get("Endpoint", request["EndpointName"], "endpoint", "endpoint")["EndpointName"]
        # A Failed endpoint (or one whose deploy never reached the server) has nothing there to remove.
        await asyncio.to_thread(self._runtime, "DELETE", name, None, missing_ok=True)
        self.store.delete("Endpoint", name)
        return {}

    def _schedule_deploy(self, name: str, config_name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deploy(name, config_name))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _deploy(self, name: str, config_name: str) -> None:
        """Load the config's model on the endpoint server; InService, or Failed with its reason."""
        try:
            config = self.store.get("EndpointConfig", config_name)
            model = self.store.get("Model", config["ProductionVariants"][0]["ModelName"]) if config else None
            if model is None:
                raise RuntimeError(f"the endpoint configuration {config_name} or its model no longer exists")
            container = model.get("PrimaryContainer") or model["Containers"][0]
            if not container.get("ModelDataUrl"):
                raise RuntimeError(f"model {model['ModelName']} has no ModelDataUrl to serve")
            await asyncio.to_thread(self._runtime, "PUT", name, {
                "ModelDataUrl": container["ModelDataUrl"], "Image": container.get("Image"),
                "Environment": container.get("Environment") or {}})
        except Exception as exc:
            reason = str(exc)
            self.store.update("Endpoint", name, lambda e: e.update(
                EndpointStatus="Failed" if e["EndpointStatus"] == "Creating" else "InService",
                FailureReason=reason, LastModifiedTime=now()))
            return
        self.store.update("Endpoint", name, lambda e: (e.pop("FailureReason", None), e.update(
            EndpointStatus="InService", EndpointConfigName=config_name, LastModifiedTime=now())))

    def _runtime(self, method: str, name: str, payload: dict | None, *, missing_ok: bool = False) -> None:
        import urllib.error
        import urllib.request

        from botocore.credentials import Credentials

        from ferry.sagemaker.sigv4 import signed_request

        request = signed_request(method, f"{self.runtime_url}/endpoints/{name}",
                                 json.dumps(payload).encode() if payload is not None else None,
                                 credentials=Credentials(self.access_key_id, self.secret_access_key),
                                 region=self.region)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return
            try:
                message = json.loads(exc.read()).get("message", "")
            except ValueError:
                message = ""
            raise RuntimeError(f"the endpoint server refused: {message or exc.code}") from None
        except OSError as exc:
            raise RuntimeError(f"the endpoint server at {self.runtime_url} does not answer: {exc}") from None

    # -- tags ------------------------------------------------------------------------------------

    def _by_arn(self, arn: Any) -> tuple[str, str]:
        """The (kind, name) of the resource ``arn`` names; ValidationException if there is none."""
        kinds = {"training-job": (TRAINING_JOB, "TrainingJob"), "model": ("Model", "Model"),
                 "endpoint-config": ("EndpointConfig", "EndpointConfig"), "endpoint": ("Endpoint", "Endpoint")}
        prefix = f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:"
        if isinstance(arn, str) and arn.startswith(prefix):
            kind, field = kinds.get(arn.removeprefix(prefix).partition("/")[0], (None, None))
            for resource in self.store.list(kind) if kind else []:
                if resource.get(f"{field}Arn") == arn:
                    return kind, resource[f"{field}Name"]
        raise validation(f"Resource {str(arn)[:256]} does not exist or is not taggable here.")

    def sm_AddTags(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "ResourceArn", "Tags")
        kind, name = self._by_arn(request["ResourceArn"])
        given = _tags(request["Tags"])

        def add(resource: dict[str, Any]) -> None:
            tags = {t["Key"]: t["Value"] for t in resource.get("_tags", [])} | {t["Key"]: t["Value"] for t in given}
            if len(tags) > 50:
                raise validation("A resource can have at most 50 tags.")
            resource["_tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        self.store.update(kind, name, add)
        return {"Tags": given}

    def sm_ListTags(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "ResourceArn")
        kind, name = self._by_arn(request["ResourceArn"])
        return {"Tags": (self.store.get(kind, name) or {}).get("_tags", [])}

    def sm_DeleteTags(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "ResourceArn", "TagKeys")
        kind, name = self._by_arn(request["ResourceArn"])
        keys = request["TagKeys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise validation("TagKeys must be a list of tag keys")
        self.store.update(kind, name, lambda r: r.update(_tags=[t for t in r.get("_tags", []) if t["Key"] not in keys]))
        return {}

    # -- CloudWatch Logs -------------------------------------------------------------------------

    def logs_CreateLogGroup(self, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    def logs_CreateLogStream(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "logGroupName", "logStreamName")
        self.store.put_log_events(request["logGroupName"], request["logStreamName"], [])
        return {}

    def logs_PutLogEvents(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "logGroupName", "logStreamName", "logEvents")
        events = [(int(e["timestamp"]), str(e["message"])) for e in request["logEvents"]]
        self.store.put_log_events(request["logGroupName"], request["logStreamName"], events)
        return {}

    def logs_DescribeLogGroups(self, request: dict[str, Any]) -> dict[str, Any]:
        groups = [LOG_GROUP] if self.store.group_exists(LOG_GROUP) else []
        prefix = request.get("logGroupNamePrefix", "")
        return {"logGroups": [{"logGroupName": g, "arn": f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{g}:*"}
                              for g in groups if g.startswith(prefix)]}

    def logs_DescribeLogStreams(self, request: dict[str, Any]) -> dict[str, Any]:
        _required(request, "logGroupName")
        if not self.store.group_exists(request["logGroupName"]):
            raise ApiError("ResourceNotFoundException", "The specified log group does not exist.")
        streams = self.store.log_streams(request["logGroupName"], request.get("logStreamNamePrefix", ""))
        if request.get("descending"):
            streams.reverse()
        return {"logStreams": streams[: int(request.get("limit") or 50)]}

    def logs_GetLogEvents(self, request: dict[str, Any]) -> dict[str, Any]:
        """Forward tokens are ``f/<last event id>``: a caller polling with the token it got sees
        each event once and then an unchanged token, as CloudWatch Logs behaves."""
        _required(request, "logGroupName", "logStreamName")
        token = request.get("nextToken") or ""
        after = int(token[2:]) if token.startswith("f/") and token[2:].isdigit() else 0
        rows = self.store.log_events(request["logGroupName"], request["logStreamName"],
                                     start=int(request.get("startTime") or 0), end=request.get("endTime"),
                                     after_id=after, limit=int(request.get("limit") or 10_000))
        last = rows[-1][0] if rows else after
        return {"events": [{"timestamp": ts, "message": message, "ingestionTime": ingested}
                           for _id, ts, ingested, message in rows],
                "nextForwardToken": f"f/{last}", "nextBackwardToken": f"b/{after}"}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    from ferry.processes import pid_alive

    return pid_alive(pid)


def _signal(pid: Any) -> None:
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="ferry's local SageMaker control plane, CloudWatch Logs, "
                                                 "STS, IAM and KMS.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="the SQLite file holding jobs, models, endpoints")
    parser.add_argument("--credentials", type=Path, required=True,
                        help="JSON with aws_access_key_id and aws_secret_access_key: the only key pair let in")
    parser.add_argument("--runtime-url", required=True, help="the endpoint server endpoints are deployed to")
    parser.add_argument("--region", default="eu-west-1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    creds = json.loads(args.credentials.read_text())
    # Job workers are never waited for (their state is in the store): let the kernel reap them
    # instead of leaving a zombie per finished job.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    app = ControlPlane(Store(args.state), access_key_id=creds["aws_access_key_id"],
                       secret_access_key=creds["aws_secret_access_key"], runtime_url=args.runtime_url,
                       region=args.region, worker_env=dict(os.environ), kms_key=creds.get("kms_key"))
    uvicorn.run(app, host=args.host, port=args.port, lifespan="on", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
