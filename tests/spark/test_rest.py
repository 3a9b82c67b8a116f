"""Reading Spark REST answers (pure functions; the DAG test above talks to the real server)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException

from ferry.spark.rest import create_submission, driver_finished, require_master, submission_id


class Answer:
    """A stand-in for an HTTP response object: only ``.json()`` is read."""

    def __init__(self, body: dict) -> None:
        self.body = body

    def json(self) -> dict:
        return self.body


def test_python_apps_go_through_python_runner():
    body = json.loads(create_submission(master="spark://h:7077", script="/job.py", args=["--x", "1"],
                                        spark_version="4.2.0", app_name="a", environment={"PYSPARK_PYTHON": "py"}))
    assert body["mainClass"] == "org.apache.spark.deploy.PythonRunner"
    assert body["appArgs"] == ["/job.py", "", "--x", "1"]
    assert body["sparkProperties"]["spark.submit.deployMode"] == "cluster"


def test_driver_states():
    assert driver_finished(Answer({"driverState": "RUNNING"})) is False
    assert driver_finished(Answer({"driverState": "FINISHED"})) is True
    with pytest.raises(AirflowException, match=r"ended FAILED.*Exception: boom"):
        driver_finished(Answer({"driverState": "FAILED", "submissionId": "d-1", "message": "Exception: boom"}))
    with pytest.raises(AirflowException, match="refused the submission: no"):
        submission_id(Answer({"success": False, "message": "no"}))


def test_a_master_that_is_not_running_is_one_clear_line():
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AirflowException) as failure:
        require_master(f"spark://127.0.0.1:{port}")
    message = str(failure.value)
    assert f"Spark master at 127.0.0.1:{port}" in message and "ferry stack up --spark" in message
    assert "\n" not in message
