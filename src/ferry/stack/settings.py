"""Where the stack keeps its state, which ports it uses, and its generated credentials."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

#: Default ports; each can be overridden by the environment variable named beside it.
DEFAULT_PORTS: dict[str, tuple[str, int]] = {
    "postgres": ("FERRY_POSTGRES_PORT", 15432),
    "s3": ("FERRY_S3_PORT", 15000),
    # SeaweedFS's own servers behind the S3 gateway (HTTP and gRPC), all on loopback.
    "s3-grpc": ("FERRY_S3_GRPC_PORT", 15001),
    "s3-master": ("FERRY_S3_MASTER_PORT", 15002),
    "s3-master-grpc": ("FERRY_S3_MASTER_GRPC_PORT", 15003),
    "s3-volume": ("FERRY_S3_VOLUME_PORT", 15004),
    "s3-volume-grpc": ("FERRY_S3_VOLUME_GRPC_PORT", 15005),
    "s3-filer": ("FERRY_S3_FILER_PORT", 15006),
    "s3-filer-grpc": ("FERRY_S3_FILER_GRPC_PORT", 15007),
    "sagemaker": ("FERRY_SAGEMAKER_PORT", 15100),
    "mongo": ("FERRY_MONGO_PORT", 17017),
    "sshd": ("FERRY_SSH_PORT", 12222),
    "airflow": ("FERRY_AIRFLOW_PORT", 18080),
    "spark": ("FERRY_SPARK_PORT", 17077),
    "spark-rest": ("FERRY_SPARK_REST_PORT", 16066),
    "spark-ui": ("FERRY_SPARK_UI_PORT", 18088),
    "spark-worker": ("FERRY_SPARK_WORKER_UI_PORT", 18089),
    "endpoint": ("FERRY_ENDPOINT_PORT", 18090),
    "api": ("FERRY_API_PORT", 18000),
}

#: AWS region the local stack pretends to be in; the seed's sample bucket lives there.
REGION = "eu-west-1"


def project_root() -> Path:
    """The checkout ferry runs from (the folder holding ``dags/`` and ``pyproject.toml``).

    ``FERRY_PROJECT_ROOT`` if set; else the checkout this module lies in (``src/ferry/stack``);
    for ferry installed from a wheel, the current directory (run the stack from the checkout).
    """
    if configured := os.environ.get("FERRY_PROJECT_ROOT"):
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True)
class Credentials:
    """Secrets generated on first start and kept in ``$FERRY_HOME/credentials.json`` (0600).

    They never enter the repository; ``ferry stack env`` hands them to shells and Airflow.
    """

    postgres_user: str
    postgres_password: str
    aws_access_key_id: str
    aws_secret_access_key: str
    airflow_admin_password: str
    airflow_jwt_secret: str
    airflow_fernet_key: str
    mongo_user: str
    mongo_password: str
    #: SeaweedFS's SSE-S3 key-encryption key is derived from it: losing it loses AES256 objects.
    s3_sse_key: str
    #: The material of the stack's KMS key (ferry.sagemaker.kms): losing it loses aws:kms objects.
    kms_key: str

    @staticmethod
    def _generate() -> dict[str, str]:
        from cryptography.fernet import Fernet

        return {
            "postgres_user": "ferry",
            "postgres_password": secrets.token_urlsafe(18),
            # Shaped like real keys so tools that validate the format accept them.
            "aws_access_key_id": "FERRY" + secrets.token_hex(8).upper(),
            "aws_secret_access_key": secrets.token_urlsafe(30),
            "airflow_admin_password": secrets.token_urlsafe(12),
            "airflow_jwt_secret": secrets.token_urlsafe(32),
            "airflow_fernet_key": Fernet.generate_key().decode(),
            "mongo_user": "ferry",
            "mongo_password": secrets.token_urlsafe(18),
            "s3_sse_key": secrets.token_urlsafe(32),
            "kms_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """Read the file; create it on first start; add secrets that a newer ferry needs (a
        file written by an older one keeps every value it has)."""
        stored = json.loads(path.read_text()) if path.exists() else {}
        missing = {k: v for k, v in cls._generate().items() if k not in stored}
        if missing:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write a new file with 0600 from the start (no world-readable window), then rename.
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**stored, **missing}, f, indent=2)
            os.replace(temp, path)
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in {**stored, **missing}.items() if k in fields})


@dataclass(frozen=True)
class StackSettings:
    """Everything a service needs to know about the stack it belongs to."""

    home: Path
    ports: dict[str, int]
    host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] | None = None) -> StackSettings:
        env = os.environ if env is None else env
        home = Path(env.get("FERRY_HOME") or project_root() / ".ferry").resolve()
        ports = {name: int(env.get(var) or default) for name, (var, default) in DEFAULT_PORTS.items()}
        return cls(home=home, ports=ports)

    @cached_property
    def credentials(self) -> Credentials:
        # Read once per settings object: building the environment asks for it many times.
        return Credentials.load_or_create(self.home / "credentials.json")

    @property
    def logs(self) -> Path:
        path = self.home / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def run(self) -> Path:
        """Pid files and sockets."""
        path = self.home / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data(self, service: str) -> Path:
        path = self.home / "data" / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"
