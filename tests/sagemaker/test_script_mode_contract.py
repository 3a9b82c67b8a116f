"""Script mode against AWS's own code: SageMaker's training toolkit (``sagemaker-training``, the
library inside AWS's framework containers) turns hyperparameters into the script's command line
and its ``SM_*`` variables; ferry's script mode must do exactly what the toolkit's functions do.
Also what user code inherits, and the privacy of the local SageMaker's state files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sagemaker_training import mapping

from ferry.sagemaker.script_mode import (
    environment_value,
    training_environment,
    user_arguments,
    user_code_environment,
)

#: Hyperparameters as the toolkit hands them over after json.loads (read_hyperparameters).
HYPERPARAMETERS = [
    {"c": 5, "pca": 40},
    {"k": "10", "feature_dim": "784", "mini_batch_size": 500},
    {"learning_rate": 0.001, "use_bias": True, "layers": [64, 32], "tag": None},
    {"optimizer": {"momentum": 0.9, "name": "sgd"}, "n": {"b": 1, "a": "x y"}},
    {"name": "naïve — ünïcode", "x": "", "epochs": -1},
]


@pytest.mark.parametrize("hyperparameters", HYPERPARAMETERS)
def test_the_command_line_is_the_toolkits(hyperparameters):
    assert user_arguments(hyperparameters) == mapping.to_cmd_args(hyperparameters)


@pytest.mark.parametrize("hyperparameters", HYPERPARAMETERS)
def test_the_sm_variables_are_formatted_as_the_toolkit_formats_them(hyperparameters, tmp_path):
    ours = training_environment(tmp_path, ["train"], hyperparameters, "train.py", "job")
    theirs = mapping.to_env_vars({"hps": hyperparameters, "user_args": mapping.to_cmd_args(hyperparameters),
                                  "channels": ["train"],
                                  **{f"hp_{name}": value for name, value in hyperparameters.items()}})
    for name, value in theirs.items():
        assert ours[name] == value, name
    assert all(environment_value(v) == mapping.to_env_vars({"v": v})["SM_V"]
               for hps in HYPERPARAMETERS for v in hps.values())


def test_user_code_inherits_nothing_of_the_stacks_environment(monkeypatch):
    secrets = {"PGPASSWORD": "pg-secret", "AIRFLOW__CORE__FERNET_KEY": "fernet-secret",
               "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
               "AWS_ACCESS_KEY_ID": "aws-id", "AIRFLOW_CONN_INSIDE_AIRBNB": '{"password": "conn-secret"}',
               "FERRY_HOME": "/somewhere"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    environment = user_code_environment({"MY_SETTING": "on"}, {"SM_MODEL_DIR": "/opt/ml/model"})
    assert environment["PATH"] == "/usr/bin:/bin" and environment["MY_SETTING"] == "on"
    assert environment["SM_MODEL_DIR"] == "/opt/ml/model"
    assert not set(secrets) & set(environment)
    assert not any(secret in value for secret in secrets.values() for value in environment.values())


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_the_control_planes_state_and_the_endpoint_registry_are_private(tmp_path):
    from ferry.sagemaker.endpoint_server import Registry
    from ferry.sagemaker.store import Store

    state = tmp_path / "sagemaker" / "control-plane.sqlite"
    state.parent.mkdir(mode=0o755)
    state.write_bytes(b"")
    state.chmod(0o644)  # as an earlier ferry left it
    store = Store(state)
    store.insert("training-job", "job", {"Environment": {"TOKEN": "x"}})
    assert private(state.parent) and all(private(p) for p in state.parent.iterdir())

    registry = Registry(tmp_path / "endpoint" / "endpoints.json")
    registry.write({"e": {"Environment": {"TOKEN": "x"}}})
    assert private(registry.path.parent) and private(registry.path)
    assert json.loads(registry.path.read_text()) == {"e": {"Environment": {"TOKEN": "x"}}}
