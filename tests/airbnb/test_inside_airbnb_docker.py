"""inside_airbnb_docker for real: the stack's Docker engine, the image built here, the provider's
DockerOperator run by ``airflow dags test``; results equal to the in-process cruncher's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ferry.airbnb.cruncher import crunch_s3
from ferry.stack.docker_images import CRUNCHER_IMAGE, ensure_images
from tests.airbnb.test_cruncher import snapshots

pytestmark = pytest.mark.integration

BUCKET = "inside-airbnb"
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def engine(stack):
    """The stack's Docker engine, up with its images built (the first time: a Debian bootstrap)."""
    import docker

    stack.up(["docker"], echo=lambda line: None)
    client = docker.DockerClient(base_url=stack.service("docker").url, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def s3(stack):
    import boto3

    return boto3.client("s3")


@pytest.fixture
def prefix(s3) -> str:
    """Snapshots as the export writes them (csv with a header), under a prefix of this test's own."""
    prefix = f"docker-test-{uuid.uuid4().hex[:8]}/"
    for i, frame in enumerate(snapshots(seed=3)):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}listing-{i:02d}.csv", Body=frame.to_csv(index=False).encode())
    return prefix


def leftover_containers(engine) -> list:
    return engine.containers.list(all=True, filters={"ancestor": CRUNCHER_IMAGE})


def dags_test(conf: dict) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).parent / "airflow")
    return subprocess.run([airflow, "dags", "test", "inside_airbnb_docker", "--conf", json.dumps(conf)],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=600)


def test_images_are_built_once_and_reused(stack, engine):
    from ferry.stack.docker_images import debian_release

    docker_service = stack.service("docker")
    base = engine.images.get(f"ferry/debian:{debian_release()[0]}")
    assert base.labels["org.ferry.python"].startswith("3.")
    before = engine.images.get(CRUNCHER_IMAGE).id
    ensure_images(docker_service.url, log_file=docker_service.log_file)
    assert engine.images.get(CRUNCHER_IMAGE).id == before  # inputs unchanged: nothing rebuilt
    user = engine.containers.run(CRUNCHER_IMAGE, entrypoint=["python3", "-c", "import boto3, pyarrow, pandas, getpass; "
                                                             "print(getpass.getuser())"], remove=True)
    assert user.decode().strip() == "nobody"  # the packages import; the image runs unprivileged


def test_container_results_equal_the_in_process_cruncher(stack, engine, airflow_db, s3, prefix):
    from ferry.airbnb.containers import task_label

    # A container of an earlier run whose task process was killed outright (kill -9): still
    # running, and removed by the next run before it starts its own.
    leftover = engine.containers.run(CRUNCHER_IMAGE, entrypoint=["sleep", "600"], detach=True,
                                     labels=task_label("inside_airbnb_docker", "crunch_numbers"))
    done = dags_test({"prefix": f"{prefix}listing-", "results_prefix": f"{prefix}docker/"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    expected = crunch_s3(s3, BUCKET, prefix=f"{prefix}listing-", results_prefix=f"{prefix}in-process/")
    for name in ("biggest_increase", "biggest_decrease"):
        container = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}docker/{name}.json")["Body"].read())
        assert container == json.loads(json.dumps(expected[name], default=str)), name
    # The container's own output is in the task log; the secret key is not, anywhere.
    assert '"objects_read": 12' in output
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in output
    assert leftover.short_id in output  # the sweep named what it removed
    assert leftover_containers(engine) == []


def test_rendered_environment_hides_the_secret(stack, engine, airflow_db):
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rendered = session.scalars(select(RTIF.rendered_fields).where(RTIF.dag_id == "inside_airbnb_docker")).all()
    assert rendered, "no rendered fields recorded (the run above did not happen?)"
    text = json.dumps(rendered)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in text
    assert '"S3_SECRET_KEY": "***"' in text


def test_failing_container_fails_the_task_with_its_log(engine, airflow_db):
    done = dags_test({"bucket": "no-such-bucket-here"})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "NoSuchBucket" in output  # the container's last lines, in the task log
    assert "Docker container failed" in output
    assert leftover_containers(engine) == []


def test_killed_task_leaves_no_container(engine):
    """What Airflow does when a task is killed (marked failed, timed out): ``on_kill`` from
    another thread while ``execute`` waits for the container. The container here sleeps instead
    of crunching, so that it is still running when the kill comes."""
    from ferry.airflow_compat import dag_bag

    task = dag_bag(str(DAGS / "inside_airbnb_docker.py")).get_dag("inside_airbnb_docker") \
        .get_task("crunch_numbers")
    task.entrypoint = ["sleep", "300"]
    outcome: dict = {}

    def run() -> None:
        try:
            task.execute({})
        except BaseException as exc:  # the stopped container's exit code
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not engine.containers.list(filters={"ancestor": CRUNCHER_IMAGE, "status": "running"}):
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.2)
    task.on_kill()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert leftover_containers(engine) == []
