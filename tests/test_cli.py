"""Every command-line entry point answers ``--help`` and refuses bad arguments without side effects.

Each runs in a child process with an empty ``FERRY_HOME`` and S3 pointed at a closed port: a
command that started anything would write its state there (credentials, logs), and a cruncher
that ran would fail to reach S3. Nothing here needs a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "ferry": [str(BIN / "ferry")],
    "ferry stack up": [str(BIN / "ferry"), "stack", "up"],
    "ferry airbnb generate": [str(BIN / "ferry"), "airbnb", "generate"],
    "ferry airbnb load": [str(BIN / "ferry"), "airbnb", "load"],
    "ferry digits samples": [str(BIN / "ferry"), "digits", "samples"],
    "ferry run": [str(BIN / "ferry"), "run"],
    "ferry-crunch": [str(BIN / "ferry-crunch")],
    "bench": [sys.executable, "-m", "bench"],
    "backfill": [sys.executable, "-m", "ferry.airbnb.backfill"],
}


@pytest.fixture
def quiet_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "ferry-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "FERRY_"))}
    return {**env, "FERRY_HOME": str(home), "S3_ENDPOINT": "127.0.0.1:9", "S3_ACCESS_KEY": "x",
            "S3_SECRET_KEY": "y", "AIRFLOW_HOME": str(tmp_path / "airflow-home")}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def untouched(env: dict[str, str]) -> None:
    assert not any(Path(env["FERRY_HOME"]).iterdir()), "the command wrote to FERRY_HOME"
    assert not Path(env["AIRFLOW_HOME"]).exists(), "the command set up an Airflow home"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_answers_and_does_nothing(name, quiet_env):
    result = run([*COMMANDS[name], "--help"], quiet_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: ") and "Traceback" not in result.stderr
    untouched(quiet_env)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_argument_is_refused_with_the_usage(name, quiet_env):
    result = run([*COMMANDS[name], "--no-such-option"], quiet_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("usage: ") and "Traceback" not in result.stderr
    untouched(quiet_env)


def test_bad_values_are_refused_before_anything_runs(quiet_env):
    for command in ([*COMMANDS["bench"], "postgres", "postgress"], [*COMMANDS["backfill"], "--every", "0"],
                    [*COMMANDS["ferry run"], "inside_airbnb", "2019-13-01"],
                    [*COMMANDS["ferry run"], "digits_classifier", "--conf", "model=knn"],
                    [*COMMANDS["ferry run"], "digits_classifier", "--conf", '["knn"]']):
        result = run(command, quiet_env)
        assert result.returncode == 2 and "error:" in result.stderr, result.stdout + result.stderr
    untouched(quiet_env)
