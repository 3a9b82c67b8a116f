"""Test session setup: an isolated local stack (own state directory, free ports).

The environment is set at import time, before any test imports Airflow, because Airflow reads
its configuration once on import. Tests never touch the developer's own stack in ``.ferry/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.stack import Stack, StackSettings
from ferry.stack.environment import stack_environment
from ferry.stack.process import free_port
from ferry.stack.settings import DEFAULT_PORTS


def make_stack_home(prefix: str) -> Path:
    """A state directory that the ``postgres`` OS user (used when we are root) can reach."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    return home


def isolated_settings_env(prefix: str) -> dict[str, str]:
    env = {"FERRY_HOME": str(make_stack_home(prefix))}
    for var, _default in DEFAULT_PORTS.values():
        env[var] = str(free_port())
    return env


_SESSION_ENV = isolated_settings_env("ferry-test-")
os.environ.update(_SESSION_ENV)
SESSION_SETTINGS = StackSettings.from_env()
os.environ.update(stack_environment(SESSION_SETTINGS))
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """PostgreSQL, the S3 endpoint and sshd, started once for the session."""
    stack = Stack(SESSION_SETTINGS)
    stack.up(echo=lambda line: None)
    yield stack
    stack.down(echo=lambda line: None)
    shutil.rmtree(SESSION_SETTINGS.home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db(stack: Stack) -> None:
    """A migrated Airflow metadata database on the session's PostgreSQL (for dag.test())."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


def empty_bucket(s3, bucket: str) -> None:
    """Delete every object in ``bucket`` (test data left by an earlier test module)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README test last: its `make down` stops the session's stack (it starts it again)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_readme.py::test_every_readme_block"))
