"""`make up`'s Airflow: api-server, scheduler, dag-processor and triggerer on the test stack,
all healthy, and the UI's generated admin password accepted by the real login endpoint."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def test_airflow_services_start_healthy_and_accept_the_generated_login(stack, airflow_db):
    airflow = stack.service("airflow")
    try:
        stack.up(["airflow"], echo=lambda line: None)
        base = stack.settings.url("airflow")
        with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=10) as response:
            health = json.load(response)
        assert health["metadatabase"]["status"] == "healthy"
        # The other components report once they have heartbeated; the API answers already.
        assert set(health) >= {"scheduler", "triggerer", "dag_processor"}

        login = urllib.request.Request(
            f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": "admin",
                             "password": stack.settings.credentials.airflow_admin_password}).encode(),
        )
        with urllib.request.urlopen(login, timeout=10) as response:
            assert json.load(response)["access_token"]
        wrong = urllib.request.Request(login.full_url, method="POST", headers=login.headers,
                                       data=json.dumps({"username": "admin", "password": "guess"}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=10)
        assert refused.value.code in (401, 403)
    finally:
        airflow.stop()
    assert not airflow.is_running()
