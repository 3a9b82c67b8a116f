"""ferry as an installed Airflow provider: registered, its modules importable, its extras optional."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ferry.provider_info import PACKAGE, get_provider_info


def test_providers_manager_lists_ferry_with_the_installed_version():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert PACKAGE in providers, sorted(providers)
    assert providers[PACKAGE].version == metadata.version(PACKAGE)
    assert providers[PACKAGE].data["name"] == "ferry"


def test_provider_info_matches_airflows_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_listed_module_imports():
    info = get_provider_info()
    modules = {m for op in info["operators"] for m in op["python-modules"]}
    modules |= {t["python-module"] for t in info["transfers"]}
    assert len(modules) == 5
    for name in sorted(modules):
        importlib.import_module(name)
    integrations = {i["integration-name"] for i in info["integrations"]}
    assert {op["integration-name"] for op in info["operators"]} <= integrations


_WITHOUT_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # as if not installed (the base install has no pyarrow)
from ferry.extras import MissingExtraError
import ferry.transfers
from ferry.transfers import mongo_source, postgres_source, writers
assert "pyarrow" not in [m for m in sys.modules if sys.modules[m] is not None]
try:
    mongo_source.arrow_batches([{"a": 1}]).__next__()
except MissingExtraError as exc:
    print(exc)
else:
    raise SystemExit("parquet worked without pyarrow?")
"""


def test_text_formats_need_no_pyarrow_and_parquet_names_the_extra():
    result = subprocess.run([sys.executable, "-c", _WITHOUT_PYARROW], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'airflow-provider-ferry[parquet]'" in result.stdout, result.stdout
