"""One training job, in a process of its own (``python -m ferry.sagemaker.worker STATE_DB JOB``).

SageMaker runs each job in a container on an instance of its own; here a process, started by
the control plane, that works through SageMaker's secondary statuses — Starting, Downloading
(every channel, as File input mode copies it, each object by its key relative to the
channel's prefix), Training (a built-in algorithm, or the user's
script for the scikit-learn image: ferry.sagemaker.script_mode), Uploading
(``<S3OutputPath>/<job>/output/model.tar.gz``, one PUT or one completed multipart upload) —
and ends Completed, or Failed with the reason. Everything it prints goes to CloudWatch Logs,
group ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<epoch seconds>``, as SageMaker's
containers' output does. ``StopTrainingJob`` sends it SIGTERM: it ends Stopped; past
``StoppingCondition.MaxRuntimeInSeconds`` it stops itself (Stopped, secondary status
MaxRuntimeExceeded). If it is killed outright, the control plane notices within seconds and
fails the job.
"""

from __future__ import annotations

import re
import signal
import sys
import tarfile
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ferry.sagemaker.algorithms import AlgorithmError, algorithm_for_image, is_script_mode_image, read_channel
from ferry.sagemaker.archives import split_s3_uri
from ferry.sagemaker.script_mode import run_training_script
from ferry.sagemaker.store import Store

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
KIND = "TrainingJob"
#: A training job in one of these has ended, for good.
TERMINAL = ("Completed", "Failed", "Stopped")
#: AWS's ChannelName pattern; the name becomes a folder (``input/data/<name>``), so never . or ..
CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")


def is_channel_name(name: Any) -> bool:
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None and name not in (".", "..")


class Stopped(BaseException):
    """SIGTERM from StopTrainingJob; a BaseException, so that no ``except Exception`` in an
    algorithm's libraries swallows it."""


class RuntimeExceeded(Stopped):
    """``StoppingCondition.MaxRuntimeInSeconds`` passed (SIGALRM): the job ends Stopped, with
    secondary status MaxRuntimeExceeded, as SageMaker's does."""


def now() -> float:
    return datetime.now(timezone.utc).timestamp()


class Job:
    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        self.stream = f"{name}/algo-1-{int(time.time())}"

    def log(self, message: str) -> None:
        stamp = int(time.time() * 1000)
        self.store.put_log_events(LOG_GROUP, self.stream, [(stamp, line) for line in message.splitlines() or [""]])

    def status(self, secondary: str, message: str, **fields: Any) -> None:
        def change(job: dict[str, Any]) -> None:
            if job["TrainingJobStatus"] in TERMINAL:
                return  # already ended (the control plane failed it): an ended job stays as it ended
            at = now()
            transitions = job.setdefault("SecondaryStatusTransitions", [])
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = at
            transitions.append({"Status": secondary, "StartTime": at, "StatusMessage": message})
            job.update(SecondaryStatus=secondary, LastModifiedTime=at, **fields)
            if job["TrainingJobStatus"] != "InProgress":
                transitions[-1]["EndTime"] = at
        self.store.update(KIND, self.name, change)
        self.log(f"[{secondary}] {message}")

    def run(self, s3: Any) -> None:
        job = self.store.get(KIND, self.name)
        self.status("Starting", "Preparing the instances for training", TrainingStartTime=now())
        image = job["AlgorithmSpecification"]["TrainingImage"]
        script_mode = is_script_mode_image(image)
        algorithm = None if script_mode else algorithm_for_image(image)
        channels = {c["ChannelName"]: c for c in job.get("InputDataConfig", [])}
        for name in channels:  # checked at CreateTrainingJob too; a name becomes a folder
            if not is_channel_name(name):
                raise AlgorithmError(f"ClientError: channel name {str(name)[:80]!r} cannot be a folder name")
        if "train" not in channels and not script_mode:
            raise AlgorithmError("ClientError: the training job has no channel named 'train'")
        unknown = sorted(set(channels) - {"train", "test"}) if not script_mode else []
        if unknown:  # AWS's built-ins validate their channels the same way
            raise AlgorithmError(f"ClientError: {algorithm.name} takes the channels train and test only "
                                 f"({', '.join(repr(u) for u in unknown)} unexpected)")
        out_bucket, out_prefix = split_s3_uri(job["OutputDataConfig"]["S3OutputPath"])
        artifact_key = "/".join(p for p in (out_prefix.rstrip("/"), self.name, "output", "model.tar.gz") if p)
        with tempfile.TemporaryDirectory(prefix=f"ferry-training-{self.name}-") as scratch:
            root = Path(scratch)
            self.status("Downloading", "Downloading input data")
            files = {name: self.download_channel(s3, channel, root / "input" / "data" / name)
                     for name, channel in channels.items()}
            self.status("Training", "Training image download completed. Training in progress.")
            if script_mode:
                metrics = run_training_script(job, s3, root, list(channels), self.log)
            else:
                read = {name: read_channel(files[name], channels[name].get("ContentType",
                                                                           "application/x-recordio-protobuf"))
                        for name in ("train", "test") if name in channels}
                metrics = algorithm.train(job.get("HyperParameters", {}), *read["train"], root / "model", self.log,
                                          test=read.get("test"))
            self.status("Uploading", "Uploading generated training model")
            archive = root / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted((root / "model").iterdir()):
                    tar.add(path, arcname=path.name)
            # OutputDataConfig.KmsKeyId: the model is written with SSE-KMS under that key, as AWS does.
            kms_key = job["OutputDataConfig"].get("KmsKeyId")
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
            s3.upload_file(str(archive), out_bucket, artifact_key, ExtraArgs=extra)
        at = now()
        self.status("Completed", "Training job completed", TrainingJobStatus="Completed", TrainingEndTime=at,
                    ModelArtifacts={"S3ModelArtifacts": f"s3://{out_bucket}/{artifact_key}"},
                    FinalMetricDataList=[{"MetricName": k, "Value": v, "Timestamp": at} for k, v in metrics.items()],
                    TrainingTimeInSeconds=int(at - job["CreationTime"]) or 1,
                    BillableTimeInSeconds=int(at - job["CreationTime"]) or 1)

    def download_channel(self, s3: Any, channel: dict[str, Any], directory: Path) -> list[Path]:
        """File input mode: every object under the channel's prefix, copied before training starts."""
        source = channel["DataSource"]["S3DataSource"]
        data_type = source.get("S3DataType", "S3Prefix")
        if data_type not in ("S3Prefix", "ManifestFile"):
            raise AlgorithmError(f"ClientError: S3DataType={data_type} is not supported here (S3Prefix and "
                                 "ManifestFile are)")
        bucket, prefix = split_s3_uri(source["S3Uri"])
        if data_type == "ManifestFile":
            files = download_manifest(s3, bucket, prefix, directory)
        else:
            files = download_prefix(s3, bucket, prefix, directory)
        if not files:
            raise AlgorithmError(f"ClientError: no objects under the {channel['ChannelName']} channel's "
                                 f"{source['S3Uri']}")
        self.log(f"downloaded {len(files)} object(s) from {source['S3Uri']}")
        return files


def download_prefix(s3: Any, bucket: str, prefix: str, directory: Path) -> list[Path]:
    """File input mode as SageMaker delivers a channel: each object under ``directory`` by its key
    relative to the prefix (``s3://b/data/train`` + ``data/train/a/x.csv`` → ``a/x.csv``), or, when
    the prefix names an object itself, that one object by its base name — the rule of the
    SageMaker SDK's own local mode (``sagemaker.core.common_utils.download_folder``).
    Keys are hostile: one that would not stay under ``directory`` fails the job (:func:`channel_file`).
    """
    from botocore.exceptions import ClientError

    directory.mkdir(parents=True, exist_ok=True)
    if prefix and not prefix.endswith("/"):
        target = channel_file(directory, prefix, prefix)
        try:
            s3.download_file(bucket, prefix, str(target))
            return [target]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                raise
    listed = [(item["Key"], channel_file(directory, prefix, item["Key"]))
              for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
              for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return _download_each(s3, bucket, listed)


def _download_each(s3: Any, bucket: str, objects: list[tuple[str, Path]]) -> list[Path]:
    """Download each (key, local path); two keys for one path (``a`` and ``a//``, ``a`` and
    ``a/b``) or a name the file system refuses fail the job with a ClientError."""
    files, seen = [], set()
    for key, target in objects:
        if target in seen:
            raise AlgorithmError(f"ClientError: object {key[:200]!r} lands on the same file as another key of "
                                 "the channel")
        seen.add(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
        except OSError as exc:  # a file where a folder must be, a name too long…
            raise AlgorithmError(f"ClientError: object {key[:200]!r} cannot be written under the channel's "
                                 f"directory: {exc.strerror or exc}") from None
        files.append(target)
    return files


#: A manifest larger than this is refused before it is read (AWS lists no limit; a manifest is a list of keys).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def download_manifest(s3: Any, bucket: str, key: str, directory: Path) -> list[Path]:
    """A ``ManifestFile`` channel: the object at ``key`` is a JSON list, ``[{"prefix": "s3://b/p/"},
    "relative/key", …]`` (AWS's S3DataSource documentation; what the SageMaker SDK's
    ``record_set`` writes); each object ``prefix + relative key`` goes under ``directory`` by its
    relative key, which must stay there (:func:`channel_file`)."""
    import json

    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if size > MAX_MANIFEST_BYTES:
        raise AlgorithmError(f"ClientError: the manifest s3://{bucket}/{key} is {size:,} bytes; at most "
                             f"{MAX_MANIFEST_BYTES:,} are read")
    not_a_manifest = AlgorithmError(f"ClientError: s3://{bucket}/{key} is not a manifest: a JSON list whose first "
                                    'item is {"prefix": "s3://bucket/prefix/"} and whose others are keys under it')
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        base, entries = manifest[0]["prefix"], manifest[1:]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        raise not_a_manifest from None
    if not isinstance(base, str) or not all(isinstance(entry, str) and entry for entry in entries):
        raise not_a_manifest
    source_bucket, source_prefix = split_s3_uri(base)
    directory.mkdir(parents=True, exist_ok=True)
    return _download_each(s3, source_bucket, [(source_prefix + entry, channel_file(directory, "", entry))
                                              for entry in entries])


def channel_file(directory: Path, prefix: str, key: str) -> Path:
    """Where object ``key`` goes under ``directory``; AlgorithmError for a key that cannot be a path there."""
    relative = key[len(prefix):].lstrip("/") if key != prefix else PurePosixPath(key).name
    parts = PurePosixPath(relative).parts
    if not parts or "\0" in relative or any(part in (".", "..") for part in relative.split("/")):
        raise AlgorithmError(f"ClientError: object key {key!r} cannot be a file under the channel's directory")
    target = directory.joinpath(*parts)
    if not target.resolve().is_relative_to(directory.resolve()):
        raise AlgorithmError(f"ClientError: object key {key!r} would leave the channel's directory")
    return target


def main(argv: list[str] | None = None) -> int:
    import boto3

    state_db, name = (argv or sys.argv[1:])[:2]
    job = Job(Store(Path(state_db)), name)

    def stop(signum, frame) -> None:
        raise Stopped

    def out_of_time(signum, frame) -> None:
        raise RuntimeExceeded

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, out_of_time)
    limit = (job.store.get(KIND, name) or {}).get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    if isinstance(limit, int) and limit > 0:
        signal.alarm(limit)
    # The control plane ignores SIGCHLD (so finished workers need no waiting for), and an ignored
    # SIGCHLD is inherited: without this, a training script's exit status would be lost (always 0).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        job.run(boto3.client("s3"))
        return 0
    except RuntimeExceeded:
        job.status("MaxRuntimeExceeded", f"The job stopped because it exceeded the maximum allowed runtime "
                   f"({limit} s)", TrainingJobStatus="Stopped", TrainingEndTime=now())
    except Stopped:
        job.status("Stopped", "Training job stopped", TrainingJobStatus="Stopped", TrainingEndTime=now())
    except AlgorithmError as exc:
        job.status("Failed", str(exc), TrainingJobStatus="Failed", FailureReason=str(exc), TrainingEndTime=now())
    except Exception as exc:  # the algorithm or S3 broke: say what, keep the trace in the job's log
        job.log(traceback.format_exc())
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
        job.status("Failed", reason, TrainingJobStatus="Failed", FailureReason=reason, TrainingEndTime=now())
    return 1


if __name__ == "__main__":
    sys.exit(main())
