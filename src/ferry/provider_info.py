"""ferry as an Airflow provider: what ``airflow providers list`` and the UI show.

Registered by the ``apache_airflow_provider`` entry point in pyproject.toml. Airflow calls
:func:`get_provider_info` when its ProvidersManager loads; it must import nothing heavy.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

PACKAGE = "airflow-provider-ferry"
#: Where each integration is explained: the README of the repository that builds this wheel.
HOW_TO = "README.md#use-ferry-in-your-own-airflow"


def _version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE,
        "name": "ferry",
        "description": "Streaming transfer operators between PostgreSQL, MongoDB, S3 and SFTP "
        "(data moves in bounded chunks, never whole results in memory), and a local SageMaker.",
        "versions": [_version()],
        "integrations": [
            {"integration-name": "ferry: PostgreSQL", "external-doc-url": "https://www.postgresql.org/",
             "how-to-guide": [HOW_TO], "tags": ["software"]},
            {"integration-name": "ferry: MongoDB", "external-doc-url": "https://www.mongodb.com/",
             "how-to-guide": [HOW_TO], "tags": ["software"]},
            {"integration-name": "ferry: Amazon S3", "external-doc-url": "https://aws.amazon.com/s3/",
             "how-to-guide": [HOW_TO], "tags": ["aws"]},
            {"integration-name": "ferry: SFTP", "external-doc-url": "https://www.openssh.com/",
             "how-to-guide": [HOW_TO], "tags": ["protocol"]},
            {"integration-name": "ferry: local SageMaker",
             "external-doc-url": "https://docs.aws.amazon.com/sagemaker/latest/APIReference/",
             "how-to-guide": [HOW_TO], "tags": ["aws"]},
        ],
        "operators": [
            {"integration-name": "ferry: PostgreSQL",
             "python-modules": ["ferry.transfers.postgres_to_s3", "ferry.transfers.s3_to_postgres"]},
            {"integration-name": "ferry: MongoDB", "python-modules": ["ferry.transfers.mongo_to_s3"]},
            {"integration-name": "ferry: SFTP",
             "python-modules": ["ferry.transfers.s3_to_sftp", "ferry.transfers.sftp_to_s3"]},
        ],
        "transfers": [
            {"source-integration-name": "ferry: PostgreSQL", "target-integration-name": "ferry: Amazon S3",
             "python-module": "ferry.transfers.postgres_to_s3", "how-to-guide": HOW_TO},
            {"source-integration-name": "ferry: MongoDB", "target-integration-name": "ferry: Amazon S3",
             "python-module": "ferry.transfers.mongo_to_s3", "how-to-guide": HOW_TO},
            {"source-integration-name": "ferry: Amazon S3", "target-integration-name": "ferry: SFTP",
             "python-module": "ferry.transfers.s3_to_sftp", "how-to-guide": HOW_TO},
            {"source-integration-name": "ferry: Amazon S3", "target-integration-name": "ferry: PostgreSQL",
             "python-module": "ferry.transfers.s3_to_postgres", "how-to-guide": HOW_TO},
            {"source-integration-name": "ferry: SFTP", "target-integration-name": "ferry: Amazon S3",
             "python-module": "ferry.transfers.sftp_to_s3", "how-to-guide": HOW_TO},
        ],
    }
