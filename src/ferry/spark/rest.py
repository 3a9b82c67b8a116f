"""Spark's standalone REST submission API (port 6066): the request, and reading the driver's state.

Python applications go through ``org.apache.spark.deploy.PythonRunner``, whose arguments are
the script, its extra Python files (none here) and then the script's own arguments. The API has
no authentication by default: keep port 6066 off networks you do not trust.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk.exceptions import AirflowException

FAILED_STATES = {"FAILED", "ERROR", "KILLED"}


def create_submission(*, master: str, script: str, args: list[str], spark_version: str, app_name: str,
                      environment: dict[str, str]) -> str:
    """The JSON body of ``POST /v1/submissions/create``."""
    return json.dumps({
        "action": "CreateSubmissionRequest",
        "appResource": f"file:{script}",
        "mainClass": "org.apache.spark.deploy.PythonRunner",
        "appArgs": [script, "", *args],
        "clientSparkVersion": spark_version,
        "environmentVariables": {"SPARK_ENV_LOADED": "1", **environment},
        "sparkProperties": {
            "spark.master": master,
            "spark.app.name": app_name,
            "spark.submit.deployMode": "cluster",
            "spark.driver.supervise": "false",
            "spark.ui.enabled": "false",
        },
    })


def submission_id(response: Any) -> str:
    body = response.json()
    if not body.get("success"):
        raise AirflowException(f"Spark refused the submission: {body.get('message', body)}")
    return body["submissionId"]


def driver_finished(response: Any) -> bool:
    """For an HttpSensor: True once the driver finished; fail the task if it failed."""
    body = response.json()
    state = body.get("driverState")
    if state in FAILED_STATES:
        detail = body.get("message") or ""
        raise AirflowException(f"Spark driver {body.get('submissionId')} ended {state} on "
                               f"{body.get('workerHostPort', '?')}: {detail.strip()[:2000]}")
    return state == "FINISHED"


def require_master(host_port: str, rest_port: int | None = None, timeout: float = 3.0) -> None:
    """Fail fast, in one line, when the Spark master does not answer.

    spark-submit would otherwise retry for a minute and bury the cause in a long log.
    ``host_port`` is ``spark://host:port`` or ``host:port``.
    """
    import socket

    address = host_port.removeprefix("spark://")
    host, _, port = address.rpartition(":")
    for number, what in ((int(port), "master"), (rest_port, "REST server")):
        if number is None:
            continue
        try:
            with socket.create_connection((host, number), timeout=timeout):
                pass
        except OSError as exc:
            raise AirflowException(
                f"the Spark {what} at {host}:{number} (master spark://{address}) does not answer: {exc}; "
                "is it running? (locally: `ferry stack up --spark`)"
            ) from None
