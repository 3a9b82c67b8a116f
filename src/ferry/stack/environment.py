"""The environment that points Airflow, boto3 and psql at the local stack.

``ferry stack env`` prints it as ``export`` lines; the test suite and ``ferry stack up`` put it
in ``os.environ``. Connections are ``AIRFLOW_CONN_*`` variables in Airflow's JSON form, so
nothing is stored in a database or committed: to use real AWS or another PostgreSQL, define
the same connection ids elsewhere (a secrets backend, the UI, your own env) instead.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ferry.stack.docker_engine import DockerService
from ferry.stack.s3 import SDK_BUCKET
from ferry.stack.settings import REGION, StackSettings, project_root
from ferry.stack.spark import spark_environment, spark_home
from ferry.stack.sshd import SshdService

#: Connection ids the stack defines, and what they point at.
CONNECTION_IDS = {
    "aws_default": "S3 (SeaweedFS); sagemaker, logs: ferry's control plane; sagemaker-runtime: the endpoint server",
    "inside_airbnb": "PostgreSQL, database inside_airbnb",
    "mongo_default": "MongoDB (SecantusDB), database inside_airbnb",
    "sftp_default": "sshd's SFTP subsystem",
    "ssh_default": "sshd",
    "spark_local": "Spark in-process on the worker (local[*])",
    "spark_default": "the Spark standalone master",
    "spark_rest": "the Spark master's REST submission server",
}


def connections(settings: StackSettings) -> dict[str, dict]:
    creds = settings.credentials
    sshd = SshdService(settings)
    ssh_extra = {
        "key_file": str(sshd.client_key),
        "host_key": sshd.host_public_key(),
        "no_host_key_check": "false",
        # On loopback, compression only costs CPU (see bench/RESULTS.md); turn it back on for
        # slow links to a real server.
        "compress": "false",
        # paramiko prefers AES-CTR with a separate HMAC; leaving it AES-GCM (one authenticated
        # cipher pass, as OpenSSH itself prefers) makes SFTP transfers about 1.5x faster here.
        "disabled_algorithms": {"ciphers": ["aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc",
                                            "aes192-cbc", "aes256-cbc", "3des-cbc"]},
    }
    ssh = {"host": settings.host, "port": settings.ports["sshd"], "login": sshd.user, "extra": ssh_extra}
    return {
        "aws_default": {
            "conn_type": "aws",
            "login": creds.aws_access_key_id,
            "password": creds.aws_secret_access_key,
            # SeaweedFS plays S3, ferry's control plane SageMaker's API and CloudWatch Logs, ferry's
            # endpoint server SageMaker's runtime.
            "extra": {"region_name": REGION, "endpoint_url": settings.url("s3"),
                      "service_config": {"sagemaker": {"endpoint_url": settings.url("sagemaker")},
                                         "logs": {"endpoint_url": settings.url("sagemaker")},
                                         # STS and IAM for the stack's own identity ("Test connection").
                                         "sts": {"endpoint_url": settings.url("sagemaker")},
                                         "iam": {"endpoint_url": settings.url("sagemaker")},
                                         "kms": {"endpoint_url": settings.url("sagemaker")},
                                         "sagemaker-runtime": {"endpoint_url": settings.url("endpoint")}}},
        },
        "inside_airbnb": {
            "conn_type": "postgres",
            "host": settings.host,
            "port": settings.ports["postgres"],
            "login": creds.postgres_user,
            "password": creds.postgres_password,
            "schema": "inside_airbnb",
        },
        "mongo_default": {
            "conn_type": "mongo",
            "host": settings.host,
            "port": settings.ports["mongo"],
            "login": creds.mongo_user,
            "password": creds.mongo_password,
            "schema": "inside_airbnb",
            "extra": {"authSource": "admin"},
        },
        "sftp_default": {"conn_type": "sftp", **ssh},
        "ssh_default": {"conn_type": "ssh", **ssh},
        # spark-submit is found on PATH (the provider accepts only bare binary names).
        "spark_local": {"conn_type": "spark", "host": "local[*]"},
        "spark_default": {"conn_type": "spark", "host": f"spark://{settings.host}", "port": settings.ports["spark"],
                          "extra": {"deploy-mode": "client"}},
        "spark_rest": {"conn_type": "http", "host": settings.host, "port": settings.ports["spark-rest"],
                       "schema": "http"},
    }


def airflow_config(settings: StackSettings) -> dict[str, str]:
    """Airflow settings for a LocalExecutor deployment on the stack's PostgreSQL."""
    creds = settings.credentials
    home = settings.home / "airflow"
    api = settings.url("airflow")
    db = (
        f"postgresql+psycopg2://{creds.postgres_user}:{creds.postgres_password}"
        f"@{settings.host}:{settings.ports['postgres']}/airflow"
    )
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root() / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Two cores: more parallel tasks only thrash.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": creds.airflow_fernet_key,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.ports["airflow"]),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": creds.airflow_jwt_secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }


def write_sdk_config(settings: StackSettings) -> Path:
    """The SageMaker Python SDK's defaults for this stack (``SAGEMAKER_USER_CONFIG_OVERRIDE``),
    written with the environment that points to it (the SDK refuses a path that does not exist).

    They make code written for AWS run here unchanged (AWS's docs: "Configuring and using
    defaults with the SageMaker Python SDK"); each stands in for a call the SDK sends to a fixed
    AWS hostname, not to ``AWS_ENDPOINT_URL_*``:

    - ``DefaultS3Bucket``: AWS's own name, ``sagemaker-<region>-<account>`` (made by the stack's
      S3). Without it the SDK asks ``sts.<region>.amazonaws.com`` for the account id.
    - ``TelemetryOptOut``: the SDK would report each call to an AWS bucket.
    - ``OutputDataConfig.KmsKeyId: alias/aws/s3``: the SDK uploads code with ``aws:kms`` and no
      key id, meaning AWS's managed key for S3; SeaweedFS needs the key named, so the stack
      names that same key (ferry.sagemaker.kms answers to it).
    JSON is YAML, so the file is JSON.
    """
    path = settings.home / "sagemaker-sdk.yaml"
    config = {"SchemaVersion": "1.0", "SageMaker": {
        "PythonSDK": {"Modules": {"Session": {"DefaultS3Bucket": SDK_BUCKET},
                                  "TelemetryOptOut": True}},
        "TrainingJob": {"OutputDataConfig": {"KmsKeyId": "alias/aws/s3"}}}}
    text = json.dumps(config, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(text)
        os.replace(temp, path)
    return path


def stack_environment(settings: StackSettings) -> dict[str, str]:
    """Every variable ``ferry stack env`` exports."""
    creds = settings.credentials
    env = {
        "FERRY_HOME": str(settings.home),
        # Plain boto3 and the AWS CLI: per-service endpoints, so that a client for a service
        # the stack does not play is not sent to one that it does by accident.
        "AWS_ACCESS_KEY_ID": creds.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.aws_secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": settings.url("s3"),
        "AWS_ENDPOINT_URL_SAGEMAKER": settings.url("sagemaker"),
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": settings.url("sagemaker"),
        "AWS_ENDPOINT_URL_STS": settings.url("sagemaker"),
        "AWS_ENDPOINT_URL_IAM": settings.url("sagemaker"),
        "AWS_ENDPOINT_URL_KMS": settings.url("sagemaker"),
        # The endpoint server plays SageMaker's runtime (invoke_endpoint); the API is the
        # Chalice app in front of it. Unset the first to reach real SageMaker endpoints.
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": settings.url("endpoint"),
        # The SageMaker Python SDK's defaults for this stack.
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(write_sdk_config(settings)),
        "FERRY_API_URL": settings.url("api"),
        # The engine DockerOperator uses (its default docker_url): one that already answered when
        # this was computed, or ferry's own dockerd (`ferry stack up --docker`).
        "DOCKER_HOST": DockerService(settings).url,
        # psql with no arguments lands in the inside_airbnb database.
        "PGHOST": settings.host,
        "PGPORT": str(settings.ports["postgres"]),
        "PGUSER": creds.postgres_user,
        "PGPASSWORD": creds.postgres_password,
        "PGDATABASE": "inside_airbnb",
        **airflow_config(settings),
        **spark_environment(settings),
        # Where the Spark DAG stages snapshots and writes results, and the spark-submit an SSH
        # session should run (the "remote" host here is this one).
        "AIRFLOW_VAR_FERRY_SPARK_WORK_DIR": str(settings.data("spark")),
        "AIRFLOW_VAR_FERRY_SPARK_SUBMIT": str(spark_home() / "bin" / "spark-submit"),
    }
    for conn_id, conn in connections(settings).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn, separators=(",", ":"))
    return env


def export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
