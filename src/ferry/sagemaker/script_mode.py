"""Script mode: the scikit-learn framework image runs the user's own training and serving code.

This is the contract of SageMaker's scikit-learn container (``sagemaker-scikit-learn:<ver>-cpu-py3``)
and its training and inference toolkits, kept so that a script runs unchanged here and there.

Training (:func:`run_training_script`):

- hyperparameter ``sagemaker_submit_directory`` is an ``s3://…tar.gz`` of the code and
  ``sagemaker_program`` the file in it to run. The SageMaker SDK JSON-encodes every value
  (``"\\"train.py\\""``); plain strings are accepted too;
- every channel is copied to ``<input>/data/<channel>`` (File mode) and named in ``SM_CHANNELS``
  and ``SM_CHANNEL_<NAME>``; ``SM_MODEL_DIR`` is where the model goes (packed as
  ``model.tar.gz``), ``SM_OUTPUT_DATA_DIR``, ``SM_HPS`` (the user's hyperparameters as JSON),
  ``SM_HP_<NAME>``, ``SM_NUM_CPUS``, ``SM_HOSTS``, ``SM_CURRENT_HOST`` as in the container;
- the user's hyperparameters are also passed as arguments, as the toolkit's
  ``mapping.to_cmd_args`` writes them: sorted, ``--name value``, but ``-n value`` for a one-letter
  name, a dict as ``k=v,k2=v2``; the ``SM_*`` values as its ``mapping.to_env_vars`` formats them
  (tests/sagemaker/test_script_mode_contract.py runs the toolkit's own functions beside these);
- the script runs with SageMaker's variables and nothing of the stack's environment (no
  database password, no Airflow key, not the stack's AWS key pair), as a container would;
- the script's output is the job's log; ``MetricDefinitions`` regexes over it give
  ``FinalMetricDataList``; a non-zero exit fails the job with the script's last line.

Serving (:func:`script_code_dir`, :func:`import_script_model`): the model's ``Environment`` names the code
(``SAGEMAKER_PROGRAM``; ``SAGEMAKER_SUBMIT_DIRECTORY`` is an ``s3://`` tar.gz or, as the SDK
sets it when the code is packed in the model, ``/opt/ml/model/code``). The module is imported
and its ``model_fn(model_dir)`` (required) loads the model; each request goes through
``input_fn(body, content_type)``, ``predict_fn(data, model)`` and ``output_fn(prediction,
accept)``, with the toolkit's defaults (JSON, csv, npy without pickle) for the ones it lacks.

Whose code runs: the script is code the job's or the model's creator chose, as on SageMaker;
only the stack's key pair can create either (the control plane checks SigV4, the endpoint
server accepts deploys signed with it only). It runs in the training job's own worker process;
at serving, in a process of its own per endpoint (ferry.sagemaker.model_process) with the
model's ``Environment``, where an exception in it fails only its own request or deploy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ferry.sagemaker.algorithms import AlgorithmError
from ferry.sagemaker.archives import fetch_tar_gz
from ferry.sagemaker.formats import UnsupportedAccept, accepted_media

#: What SageMaker's container mounts the model directory as; ``SAGEMAKER_SUBMIT_DIRECTORY`` may point under it.
CONTAINER_MODEL_DIR = "/opt/ml/model"
#: A source bundle larger than this is refused before it is unpacked.
MAX_SOURCE_BYTES = 256 * 1024 * 1024
_module_numbers = itertools.count()


def hyperparameter_value(raw: str) -> Any:
    """A hyperparameter as the training toolkit sees it: JSON-decoded if it is JSON, else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def fetch_source(s3: Any, uri: str, directory: Path) -> None:
    """Download and unpack the ``s3://`` source bundle ``uri`` into ``directory``, within the caps of
    every archive (ferry.sagemaker.archives: unpacked size, member count)."""
    try:
        fetch_tar_gz(s3, uri, directory, what=f"the source bundle {uri}", max_bytes=MAX_SOURCE_BYTES)
    except AlgorithmError:
        raise
    except ValueError as exc:
        raise AlgorithmError(f"ClientError: {exc}") from None
    except Exception as exc:
        raise AlgorithmError(f"ClientError: cannot read the source bundle {uri}: {exc}") from None


def program_path(code_dir: Path, program: Any) -> Path:
    """``program`` inside ``code_dir``: a relative path that stays there and names a file."""
    if not isinstance(program, str) or not program:
        raise AlgorithmError("ClientError: sagemaker_program must name the script to run")
    path = (code_dir / program).resolve()
    if not path.is_relative_to(code_dir.resolve()):
        raise AlgorithmError(f"ClientError: sagemaker_program {program!r} points outside the source directory")
    if not path.is_file():
        raise AlgorithmError(f"ClientError: sagemaker_program {program!r} is not in the source directory")
    return path


# -- training -------------------------------------------------------------------------------------

def training_environment(root: Path, channels: list[str], hyperparameters: dict[str, Any], program: str,
                         job_name: str) -> dict[str, str]:
    """The ``SM_*`` variables SageMaker's training toolkit sets, for a job laid out under ``root``
    (see :func:`make_job_directories`)."""
    model_dir, output_data = root / "model", root / "output" / "data"
    environment = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(output_data),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_DATA_DIR": str(root / "input" / "data"),
        "SM_CHANNELS": environment_value(sorted(channels)),
        "SM_HPS": environment_value(hyperparameters),
        "SM_USER_ARGS": environment_value(user_arguments(hyperparameters)),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_MODULE_NAME": program[:-3] if program.endswith(".py") else program,  # the toolkit's rule
        "SM_USER_ENTRY_POINT": program,
        "TRAINING_JOB_NAME": job_name,
        "PYTHONUNBUFFERED": "1",
    }
    for channel in channels:
        environment[f"SM_CHANNEL_{channel.upper()}"] = str(root / "input" / "data" / channel)
    for name, value in hyperparameters.items():
        environment[f"SM_HP_{name.upper()}"] = environment_value(value)
    return environment


def environment_value(value: Any) -> str:
    """A value as the training toolkit writes it into an ``SM_*`` variable: strings as they are,
    ``None`` as nothing, anything else as compact JSON with sorted keys."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def user_arguments(hyperparameters: dict[str, Any]) -> list[str]:
    """The script's command-line arguments, as the training toolkit's ``to_cmd_args`` makes them."""

    def text(value: Any) -> str:
        if value is None:
            return ""
        return value.decode("latin1") if isinstance(value, bytes) else str(value)

    arguments = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        if hasattr(value, "items"):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        arguments += [(f"--{name}" if len(name) > 1 else f"-{name}") if name else "", text(value)]
    return arguments


#: What of this process's environment a user's script inherits: where programs and the locale
#: are, nothing else (a SageMaker container starts with its image's environment, not ours).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
             "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def user_code_environment(*layers: dict[str, str]) -> dict[str, str]:
    """The environment user code runs with: :data:`INHERITED`, then ``layers`` in order."""
    environment = {name: os.environ[name] for name in INHERITED if name in os.environ}
    for layer in layers:
        environment.update(layer)
    return environment


def make_job_directories(root: Path, job: dict[str, Any], channels: list[str]) -> None:
    """``/opt/ml`` as SageMaker lays it out for a container: model, output/data, and the
    platform's ``input/config`` files (hyperparameters.json, inputdataconfig.json,
    resourceconfig.json) that AWS's toolkits and the SDK's v3 drivers read."""
    for folder in ("model", "output/data", "input/config"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    config = {c["ChannelName"]: {"TrainingInputMode": c.get("InputMode") or job["AlgorithmSpecification"].get(
        "TrainingInputMode", "File"), "S3DistributionType": c["DataSource"]["S3DataSource"].get(
        "S3DataDistributionType", "FullyReplicated"), "RecordWrapperType": c.get("RecordWrapperType", "None"),
        **({"ContentType": c["ContentType"]} if c.get("ContentType") else {})}
        for c in job.get("InputDataConfig", []) if c["ChannelName"] in channels}
    instance_type = (job.get("ResourceConfig") or {}).get("InstanceType", "ml.m5.large")
    resources = {"current_host": "algo-1", "current_instance_type": instance_type,
                 "current_group_name": "homogeneousCluster", "hosts": ["algo-1"], "network_interface_name": "eth0",
                 "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                                      "hosts": ["algo-1"]}]}
    for name, value in (("hyperparameters", job.get("HyperParameters") or {}), ("inputdataconfig", config),
                        ("resourceconfig", resources)):
        (root / "input" / "config" / f"{name}.json").write_text(json.dumps(value))


#: Where a container sees its job: ContainerEntrypoint jobs get their job directory mounted there.
CONTAINER_ROOT = Path("/opt/ml")


def run_container_entrypoint(job: dict[str, Any], root: Path, channels: list[str],
                             log: Callable[[str], None]) -> dict[str, float]:
    """``AlgorithmSpecification.ContainerEntrypoint`` (+ ``ContainerArguments``), as the SageMaker
    SDK v3's ModelTrainer sends it (``/bin/bash -c …/opt/ml/input/data/sm_drivers/sm_train.sh``):
    run by absolute ``/opt/ml`` paths, so in a private mount namespace (``unshare``) where the
    job's directory is bind-mounted on ``/opt/ml``, with this Python first on PATH as the image's
    ``python3``. A non-zero exit fails the job with ``/opt/ml/output/failure`` when the code wrote
    one (SageMaker's FailureReason), else its last line. Needs root (the mount), as a container
    runtime does; ``/opt/ml`` is made empty once if missing."""
    import shutil

    spec = job["AlgorithmSpecification"]
    command = [*spec["ContainerEntrypoint"], *(spec.get("ContainerArguments") or [])]
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise AlgorithmError("ClientError: ContainerEntrypoint jobs need root and unshare(1) here (their /opt/ml "
                             "is a private mount); run the stack as root or pass sagemaker_program instead")
    CONTAINER_ROOT.mkdir(parents=True, exist_ok=True)
    user = {name: hyperparameter_value(raw) for name, raw in (job.get("HyperParameters") or {}).items()}
    inside = training_environment(CONTAINER_ROOT, channels, user, "", job["TrainingJobName"])
    environment = user_code_environment(job.get("Environment") or {}, inside)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "/usr/bin:/bin")])
    mount = 'mount --bind "$0" /opt/ml && cd /opt/ml && exec "$@"'
    log(f"Invoking the container entrypoint: {' '.join(command)[:300]}")
    metrics: dict[str, float] = {}
    status, last_line = _run_logged(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", mount,
                                     str(root), *command], root, environment, log,
                                    spec.get("MetricDefinitions") or [], metrics)
    if status != 0:
        failure = root / "output" / "failure"
        reason = failure.read_text(errors="replace").strip() if failure.is_file() else ""
        raise AlgorithmError(f"AlgorithmError: {(reason or last_line)[:500]} (exit status {status})")
    return metrics


def _run_logged(command: list[str], cwd: Path, environment: dict[str, str], log: Callable[[str], None],
                definitions: list[dict[str, str]], metrics: dict[str, float] | None = None) -> tuple[int, str]:
    """Run ``command``, its output line by line into the job's log (and ``MetricDefinitions``
    regexes into ``metrics``); (exit status, last non-empty line). Stopped while it runs, it goes too."""
    last_line = ""
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            log(line)
            last_line = line.strip() or last_line
            for definition in definitions:
                found = re.search(definition["Regex"], line)
                if found and metrics is not None:
                    with contextlib.suppress(IndexError, ValueError):
                        metrics[definition["Name"]] = float(found.group(1))
        status = process.wait()
    finally:
        if process.poll() is None:  # stopped (SIGTERM) while the script ran: it goes too
            process.terminate()
            process.wait()
    return status, last_line


def run_training_script(job: dict[str, Any], s3: Any, root: Path, channels: list[str],
                        log: Callable[[str], None]) -> dict[str, float]:
    """Run the job's script (see the module docstring); the model is left in ``root/model``."""
    make_job_directories(root, job, channels)
    if job["AlgorithmSpecification"].get("ContainerEntrypoint"):
        return run_container_entrypoint(job, root, channels, log)
    given = {name: hyperparameter_value(raw) for name, raw in (job.get("HyperParameters") or {}).items()}
    program, submit = given.get("sagemaker_program"), given.get("sagemaker_submit_directory")
    if not isinstance(submit, str) or not submit.startswith("s3://"):
        raise AlgorithmError("ClientError: script mode needs hyperparameter sagemaker_submit_directory, "
                             "the s3:// URI of a tar.gz of the code")
    code_dir = root / "code"
    fetch_source(s3, submit, code_dir)
    script = program_path(code_dir, program)
    user = {name: value for name, value in given.items() if not name.startswith("sagemaker_")}
    environment = user_code_environment(job.get("Environment") or {},
                                        training_environment(root, channels, user, program, job["TrainingJobName"]))
    command = [sys.executable, str(script), *user_arguments(user)]
    log(f"Invoking script with the following command: {' '.join(command[1:])}")
    definitions = job["AlgorithmSpecification"].get("MetricDefinitions") or []
    metrics: dict[str, float] = {}
    status, last_line = _run_logged(command, code_dir, environment, log, definitions, metrics)
    if status != 0:
        raise AlgorithmError(f"AlgorithmError: ExecuteUserScriptError: {program} exited with status {status}: "
                             f"{last_line[:300]}")
    return metrics


# -- serving --------------------------------------------------------------------------------------

class ScriptModel:
    """A script-mode model: the user's handlers around the object their ``model_fn`` returned,
    called as the scikit-learn container's ``sagemaker_containers`` transformer calls them:

    - the body reaches ``input_fn`` (or ``transform_fn``) as ``str`` when the content type is
      exactly ``application/json`` or ``text/csv`` (its ``UTF8_TYPES``), as ``bytes`` otherwise;
    - no ``Accept``, or ``*/*``, means the model's ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``
      (``application/json`` unless set);
    - ``transform_fn(model, body, content_type, accept)``, if the script has one, does it all
      and answers a body or ``(body, content_type)``; beside ``input_fn``/``predict_fn``/
      ``output_fn`` it is refused at load, as the container refuses it.

    ``row_batching``: the script's module says ``ROW_BATCHING = True`` when its ``predict_fn``
    answers each row of an array on its own (as scikit-learn's ``predict`` does). Then the
    endpoint server may hand it the rows of several requests at once and split the answer by
    rows; SageMaker ignores the flag. Without it, every request is predicted alone.
    """

    algorithm = "script"

    def __init__(self, module: Any, model: Any, program: str, environment: dict[str, str] | None = None) -> None:
        self.program, self.model = program, model
        handlers = [name for name in ("input_fn", "predict_fn", "output_fn") if hasattr(module, name)]
        self.transform_fn = getattr(module, "transform_fn", None)
        if self.transform_fn is not None and handlers:
            raise AlgorithmError(f"{program}: cannot use transform_fn with {', '.join(handlers)} (the scikit-learn "
                                 "container refuses it too)")
        self.input_fn = getattr(module, "input_fn", default_input_fn)
        self.predict_fn = getattr(module, "predict_fn", default_predict_fn)
        self.output_fn = getattr(module, "output_fn", default_output_fn)
        self.row_batching = getattr(module, "ROW_BATCHING", False) is True and self.transform_fn is None
        self.default_accept = (environment or {}).get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")

    @staticmethod
    def content(body: bytes, content_type: str) -> str | bytes:
        """The body as the container hands it to user code: text for its UTF8_TYPES."""
        if content_type in ("application/json", "text/csv"):
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputRejected(f"the {content_type} body is not UTF-8: {exc}") from None
        return body

    def accept(self, accept: str) -> str:
        return self.default_accept if not accept or accept == "*/*" else accept

    def read(self, body: bytes, content_type: str) -> Any:
        """input_fn; whatever it raises becomes :class:`InputRejected` (the caller's fault, a 4xx)."""
        content = self.content(body, content_type)
        try:
            return self.input_fn(content, content_type)
        except Exception as exc:
            raise InputRejected(f"{type(exc).__name__}: {exc}") from None

    def predict(self, data: Any) -> Any:
        return self.predict_fn(data, self.model)

    def write(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        accept = self.accept(accept)
        return self._answer(self.output_fn(prediction, accept), accept)

    def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """One request through the script's ``transform_fn`` (the model process calls
        :meth:`read`, :meth:`predict` and :meth:`write` itself otherwise, to batch rows)."""
        accept = self.accept(accept)
        return self._answer(self.transform_fn(self.model, self.content(body, content_type), content_type, accept),
                            accept)

    @staticmethod
    def _answer(result: Any, accept: str) -> tuple[bytes, str]:
        if isinstance(result, tuple):
            result, accept = result[0], result[1]
        return (result.encode() if isinstance(result, str) else bytes(result)), accept


class InputRejected(ValueError):
    """The script's input_fn refused the request body."""


def default_input_fn(body: str | bytes, content_type: str) -> np.ndarray:
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        return np.asarray(json.loads(body), dtype=np.float64)
    if media == "text/csv":
        return np.loadtxt(io.StringIO(body if isinstance(body, str) else body.decode()), delimiter=",", ndmin=2)
    if media == "application/x-npy":
        return np.load(io.BytesIO(body), allow_pickle=False)
    raise ValueError(f"unsupported content type {content_type!r}")


def default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def _to_list(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """The inference toolkit's default: the prediction encoded as ``accept`` asks (JSON for
    ``*/*`` or none, ``text/csv`` as its ``array_to_csv``, ``application/x-npy``), answered with
    that content type; any other ``Accept`` is refused (:class:`UnsupportedAccept`, a 406)."""
    for offered in accepted_media(accept):
        if offered in ("*/*", "application/*", "application/json"):  # numpy values anywhere, as array_to_json
            return json.dumps(prediction, default=_to_list).encode(), "application/json"
        if offered == "text/csv":
            import csv

            array = np.array(prediction)
            array = array.reshape(array.shape[0], 1) if array.ndim == 1 else array
            stream = io.StringIO()
            csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True,
                       strict=True).writerows(array)
            return stream.getvalue().encode(), "text/csv"
        if offered == "application/x-npy":
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(prediction), allow_pickle=False)
            return buffer.getvalue(), "application/x-npy"
    raise UnsupportedAccept(f"Accept {accept[:100]!r} is not answered by the default output_fn; ask for "
                            "application/json, text/csv or application/x-npy, or give the script an output_fn")


def script_code_dir(model_dir: Path, environment: dict[str, str], s3: Any) -> Path:
    """Where the model's code is, fetched first if ``SAGEMAKER_SUBMIT_DIRECTORY`` is an ``s3://``
    tar.gz (the endpoint server does this, so the model's process needs no S3 key pair)."""
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", f"{CONTAINER_MODEL_DIR}/code")
    if submit.startswith("s3://"):
        code_dir = model_dir.parent / "code"
        fetch_source(s3, submit, code_dir)
        return code_dir
    if submit == CONTAINER_MODEL_DIR or submit.startswith(f"{CONTAINER_MODEL_DIR}/"):
        code_dir = (model_dir / submit[len(CONTAINER_MODEL_DIR):].lstrip("/")).resolve()
        if not code_dir.is_relative_to(model_dir.resolve()):
            raise AlgorithmError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} points outside the model")
        return code_dir
    raise AlgorithmError(f"SAGEMAKER_SUBMIT_DIRECTORY must be an s3:// tar.gz or under {CONTAINER_MODEL_DIR}, "
                         f"not {submit!r}")


def import_script_model(model_dir: Path, code_dir: Path, environment: dict[str, str]) -> ScriptModel:
    """Import the model's script (``SAGEMAKER_PROGRAM`` in ``code_dir``) and call its ``model_fn``.

    Run in the model's own process (ferry.sagemaker.model_process): the code directory stays on
    ``sys.path`` for the script's other modules, as the toolkit leaves it, and the script is
    imported under its own name (``SAGEMAKER_PROGRAM`` without ``.py``), as the toolkit imports it.
    """
    program = environment.get("SAGEMAKER_PROGRAM")
    script = program_path(code_dir, program)
    name = script.stem
    if not name.isidentifier() or name in sys.modules:  # never in place of a module already loaded
        name = f"ferry_script_model_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code_dir))
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "model_fn", None)):
        raise AlgorithmError(f"{program} has no model_fn(model_dir): the scikit-learn container needs one")
    return ScriptModel(module, module.model_fn(str(model_dir)), program, environment)
