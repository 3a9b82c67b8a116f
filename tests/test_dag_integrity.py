"""Every DAG file imports without error or cycle, and parses quickly enough for the scheduler.

The budget is Airflow's own ``[core] dagbag_import_timeout`` (30 s): beyond it the scheduler
gives up on a file. It catches network or database calls made at parse time, not slowness.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def test_there_are_dags():
    assert DAG_FILES, f"no DAG files in {DAGS}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_cleanly(dag_file: Path, capsys):
    from airflow.configuration import conf

    from ferry.airflow_compat import dag_bag

    started = time.perf_counter()
    bag = dag_bag(str(dag_file))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n  parsed {dag_file.name} in {elapsed:.2f} s: {sorted(bag.dag_ids)}")
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{dag_file.name} defines no DAG"
    for dag in bag.dags.values():
        assert dag.tasks, f"{dag.dag_id} has no tasks"
        assert dag.schedule is not None or dag.timetable is not None
    assert elapsed < conf.getfloat("core", "dagbag_import_timeout")
