"""`make up`'s Airflow and Spark, and the Docker engine: healthy, the generated login accepted,
every socket on loopback, and a deployment with dead components restarted by the next ``up`` instead of waited on."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import psutil
import pytest

from ferry.stack.process import read_pid

pytestmark = pytest.mark.integration

OPTIONAL = ["docker", "airflow", "spark", "spark-worker"]


@pytest.fixture(scope="module")
def everything(stack, airflow_db):
    stack.up(OPTIONAL, echo=lambda line: None)
    yield stack
    stack.down(OPTIONAL, echo=lambda line: None)
    assert not stack.service("airflow").is_running()


def component_pid(stack, component: str) -> int:
    pid = read_pid(stack.settings.run / f"airflow-{component}.pid")
    assert pid is not None, component
    return pid


def test_airflow_services_start_healthy_and_accept_the_generated_login(everything):
    base = everything.settings.url("airflow")
    with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=10) as response:
        health = json.load(response)
    assert health["metadatabase"]["status"] == "healthy"
    # The other components report once they have heartbeated; the API answers already.
    assert set(health) >= {"scheduler", "triggerer", "dag_processor"}

    login = urllib.request.Request(
        f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "admin",
                         "password": everything.settings.credentials.airflow_admin_password}).encode(),
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        assert json.load(response)["access_token"]
    wrong = urllib.request.Request(login.full_url, method="POST", headers=login.headers,
                                   data=json.dumps({"username": "admin", "password": "guess"}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code in (401, 403)


def stack_processes(stack) -> list[psutil.Process]:
    """Every process of the stack: those in its pid files, PostgreSQL's, and their children."""
    pids = {read_pid(f) for f in stack.settings.run.glob("*.pid")}
    pids.add(int((stack.service("postgres").pgdata / "postmaster.pid").read_text().split()[0]))
    roots = [psutil.Process(pid) for pid in pids if pid is not None]
    return [p for root in roots for p in (root, *root.children(recursive=True))]


def test_every_listening_socket_is_on_loopback(everything):
    listening = {}
    for process in stack_processes(everything):
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                listening[(conn.laddr.ip, conn.laddr.port)] = process.name()
    ports = {port for _ip, port in listening}
    settings = everything.settings
    # Sanity: the scan sees the services this module started, not just the core ones.
    assert {settings.ports[n] for n in ("s3", "s3-filer", "postgres", "mongo", "sshd", "airflow", "spark-ui",
                                        "spark-worker")} <= ports, listening
    assert any(p.name() == "dockerd" for p in stack_processes(everything))
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    exposed = {addr: name for addr, name in listening.items() if addr[0] not in loopback}
    assert exposed == {}


def test_dead_components_are_restarted_by_up(everything):
    airflow = everything.service("airflow")
    scheduler, api_server = component_pid(everything, "scheduler"), component_pid(everything, "api-server")
    for component in ("scheduler", "triggerer"):
        os.kill(component_pid(everything, component), signal.SIGKILL)
    master = read_pid(everything.service("spark").pid_file)
    os.kill(master, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(scheduler)], timeout=10)
    line = airflow.status_line()
    assert line.split()[1] == "partly" and "scheduler down" in line and "api-server up" in line

    lines = []
    everything.up(OPTIONAL, echo=lines.append)
    assert [line.split()[:2] for line in lines] == [[n, "up"] for n in OPTIONAL]
    assert airflow.alive() and component_pid(everything, "scheduler") != scheduler
    assert component_pid(everything, "api-server") != api_server  # the whole deployment restarted
    assert everything.service("spark-worker").ready()  # registered with the new master
