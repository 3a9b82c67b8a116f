"""The stack's lifecycle through the real ``ferry`` CLI: up, status, env, down, up with data kept."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import boto3
import psycopg
import pymongo
import pytest

from tests.conftest import isolated_settings_env

pytestmark = pytest.mark.integration

FERRY = str(Path(sys.executable).parent / "ferry")


def run_ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # Drop AIRFLOW_CONN_* and friends inherited from the session stack: only FERRY_* decide.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PG", "DOCKER_"))}
    return subprocess.run([FERRY, *args], env={**base, **env}, capture_output=True, text=True, timeout=300)


def parse_exports(text: str) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f"{text}\nenv -0"], env={}, capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def connect(exported: dict[str, str], **kwargs) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=int(exported["PGPORT"]), user=exported["PGUSER"],
                           password=exported["PGPASSWORD"], dbname="inside_airbnb", **kwargs)


@pytest.fixture
def own_stack():
    env = isolated_settings_env("ferry-lifecycle-")
    yield env
    run_ferry(env, "stack", "down")
    shutil.rmtree(env["FERRY_HOME"], ignore_errors=True)


def test_up_status_env_down_up_keeps_data(own_stack):
    env = own_stack
    up = run_ferry(env, "stack", "up")
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["postgres", "up"], ["s3", "up"], ["mongo", "up"], ["sagemaker", "up"], ["sshd", "up"], ["endpoint", "up"],
        ["api", "up"]]

    exported = parse_exports(run_ferry(env, "stack", "env").stdout)
    for name in (
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_INSIDE_AIRBNB",
        "AIRFLOW_CONN_SFTP_DEFAULT",
        "AIRFLOW_CONN_SSH_DEFAULT",
        "AIRFLOW_CONN_MONGO_DEFAULT",
        "DOCKER_HOST",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
        "FERRY_API_URL",
        "PGPORT",
        "AIRFLOW_HOME",
    ):
        assert exported.get(name), name
    assert exported["PGPORT"] == env["FERRY_POSTGRES_PORT"]

    # Write something into each stateful service.
    with connect(exported, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    s3 = boto3.client(
        "s3",
        endpoint_url=exported["AWS_ENDPOINT_URL_S3"],
        region_name="eu-west-1",
        aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="kept", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(
        Bucket="kept",
        Key="deep/key with spaces.txt",
        Body=b"\x00bytes\xff",
        ContentType="application/x-test",
        Metadata={"who": "ferry"},
    )

    mongo = json.loads(exported["AIRFLOW_CONN_MONGO_DEFAULT"])
    mongo_uri = (f"mongodb://{mongo['login']}:{quote(mongo['password'], safe='')}@{mongo['host']}:{mongo['port']}/"
                 "?authSource=admin")
    with pymongo.MongoClient(mongo_uri) as client:
        client.kept.docs.insert_one({"_id": 1, "v": "still here"})

    # A second `up` is a no-op.
    again = run_ferry(env, "stack", "up")
    assert again.returncode == 0 and "up" in again.stdout

    down = run_ferry(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    status = run_ferry(env, "stack", "status").stdout.splitlines()
    # (An engine that was running before the stack is not the stack's to stop.)
    assert all(line.split()[1] == "down" or "already running" in line for line in status), status

    assert run_ferry(env, "stack", "up").returncode == 0
    with pymongo.MongoClient(mongo_uri) as client:
        assert client.kept.docs.find_one() == {"_id": 1, "v": "still here"}
    with connect(exported) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    obj = s3.get_object(Bucket="kept", Key="deep/key with spaces.txt")
    assert obj["Body"].read() == b"\x00bytes\xff"
    assert obj["ContentType"] == "application/x-test"
    assert obj["Metadata"] == {"who": "ferry"}


def test_port_in_use_gives_one_line_error_and_leaves_nothing_running(own_stack):
    env = own_stack
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["FERRY_S3_PORT"])))
        squatter.listen()
        result = run_ferry(env, "stack", "up")
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error: s3:") and "in use" in message and "log:" in message
    assert "Traceback" not in result.stderr
    # PostgreSQL was started before S3 failed: it must have been stopped again.
    status = run_ferry(env, "stack", "status").stdout.splitlines()
    assert all(line.split()[1] == "down" or "already running" in line for line in status), status


def test_unknown_service_is_a_clear_error(own_stack):
    result = run_ferry(own_stack, "stack", "up", "redis")
    assert result.returncode == 2
    assert "unknown service(s): redis" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another OS user")
def test_checkout_under_a_private_directory(tmp_path):
    """As root, a FERRY_HOME under a 0700 directory (say /root) still works: the cluster moves
    to /var/lib/ferry and FERRY_HOME links to it."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    env = isolated_settings_env("unused-")
    shutil.rmtree(env["FERRY_HOME"])
    env["FERRY_HOME"] = str(private / ".ferry")
    link = private / ".ferry" / "data" / "postgres" / "pgdata"
    try:
        result = run_ferry(env, "stack", "up", "postgres")
        assert result.returncode == 0, result.stderr
        assert link.is_symlink() and str(link.resolve()).startswith("/var/lib/ferry/")
        assert (link / "PG_VERSION").exists()
    finally:
        run_ferry(env, "stack", "down")
        if link.is_symlink():
            shutil.rmtree(link.resolve().parent, ignore_errors=True)
