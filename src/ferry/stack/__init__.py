"""The local stack: real stand-ins for every external system ferry talks to.

PostgreSQL, an S3 endpoint (moto's server, which also answers the SageMaker control plane),
OpenSSH's sshd for SSH/SFTP, and Airflow itself, all on loopback, with state kept under one
project-local directory (``.ferry/`` unless ``FERRY_HOME`` says otherwise).
"""

from ferry.stack.errors import StackError
from ferry.stack.settings import StackSettings
from ferry.stack.stack import Stack

__all__ = ["Stack", "StackError", "StackSettings"]
