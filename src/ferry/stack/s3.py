"""The S3 endpoint service (moto's server; it also answers the SageMaker control plane)."""

from __future__ import annotations

import sys

from ferry.stack.process import port_answers, spawn
from ferry.stack.service import PidFileService
from ferry.stack.settings import REGION

#: Buckets the pipelines write to; on AWS they are yours and exist already.
BUCKETS = ("inside-airbnb", "ferry-digits")
#: Plays SageMaker's public sample bucket, from which the digits DAG copies mnist.pkl.gz.
SAMPLE_BUCKET = f"sagemaker-sample-data-{REGION}"


class S3Service(PidFileService):
    name = "s3"
    # Restoring a large snapshot takes a while; writing one on stop too.
    start_timeout = 300.0
    stop_timeout = 600.0

    @property
    def ready_file(self):
        return self.settings.run / "s3.ready"

    def _launch(self) -> None:
        spawn(
            [
                sys.executable,
                "-m",
                "ferry.stack.s3_server",
                "--host",
                self.settings.host,
                "--port",
                str(self.port),
                "--data",
                str(self.settings.data("s3")),
                "--ready",
                str(self.ready_file),
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
        )

    def ready(self) -> bool:
        return self.ready_file.exists() and port_answers(self.settings.host, self.port)

    def after_ready(self) -> None:
        import boto3

        creds = self.settings.credentials
        s3 = boto3.client(
            "s3",
            endpoint_url=self.settings.url("s3"),
            region_name=REGION,
            aws_access_key_id=creds.aws_access_key_id,
            aws_secret_access_key=creds.aws_secret_access_key,
        )
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in {*BUCKETS, SAMPLE_BUCKET} - existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        from ferry.digits.sample_data import SAMPLE_KEY, mnist_pickle_gz

        if "Contents" not in s3.list_objects_v2(Bucket=SAMPLE_BUCKET, Prefix=SAMPLE_KEY):
            s3.put_object(Bucket=SAMPLE_BUCKET, Key=SAMPLE_KEY, Body=mnist_pickle_gz())

    def stop(self) -> None:
        super().stop()
        self.ready_file.unlink(missing_ok=True)

    def detail(self) -> str:
        return f"{self.settings.url('s3')} (S3 + SageMaker API)"
