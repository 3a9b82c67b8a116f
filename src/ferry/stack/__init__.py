"""The local stack: real stand-ins for every external system ferry talks to.

PostgreSQL, S3 (SeaweedFS), the SageMaker control plane, ferry's endpoint server and API,
OpenSSH's sshd for SSH/SFTP, Spark and Airflow itself, all on loopback, with state kept under one
project-local directory (``.ferry/`` unless ``FERRY_HOME`` says otherwise).
"""

from ferry.stack.errors import StackError
from ferry.stack.settings import StackSettings
from ferry.stack.stack import Stack

__all__ = ["Stack", "StackError", "StackSettings"]
