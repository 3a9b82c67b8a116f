"""Every DAG file imports without error or cycle, and parses quickly enough for the scheduler.

The budget is Airflow's own ``[core] dagbag_import_timeout`` (30 s): beyond it the scheduler
gives up on a file. It catches network or database calls made at parse time, not slowness.

Airflow 3's defaults (no schedule, no catch-up) are easy to get by omission, so every ``@dag``
says ``schedule=`` and ``catchup=`` itself, and each DAG's parsed schedule is the one below.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))

#: dag_id → (timetable class, what it runs on, catchup, start, end): what each DAG file means.
SCHEDULES = {
    "digits_classifier": ("NullTimetable", None, False, "2026-01-01", None),
    "inside_airbnb": ("CronDataIntervalTimetable", "0 0 1 * *", True, "2015-04-01", "2019-12-07"),
    "inside_airbnb_docker": ("NullTimetable", None, False, "2015-04-01", None),
    "inside_airbnb_exports": ("AssetTriggeredTimetable", "s3://inside-airbnb/listings", False, "2015-04-01", None),
    "inside_airbnb_spark": ("NullTimetable", None, False, "2015-04-01", None),
    "transfers_example": ("NullTimetable", None, False, "2015-04-05", None),
}


def schedule_of(dag) -> tuple:
    timetable = dag.timetable
    # the cron expression (@monthly: 0 0 1 * *); Airflow 3.1 keeps it as _expression
    runs_on = getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
    if type(timetable).__name__ == "AssetTriggeredTimetable":
        runs_on = ", ".join(sorted(asset.uri for asset in timetable.asset_condition.objects))
    day = lambda d: d and str(d.date())  # noqa: E731
    return type(timetable).__name__, runs_on, dag.catchup, day(dag.start_date), day(dag.end_date)


def dag_keywords(dag_file: Path) -> list[set[str]]:
    """The keyword arguments of each ``@dag(...)`` / ``DAG(...)`` call in a file."""
    calls = [node for node in ast.walk(ast.parse(dag_file.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("dag", "DAG")]
    return [{k.arg for k in call.keywords} for call in calls]


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
        assert dag.dag_id in SCHEDULES, f"{dag.dag_id}: add its schedule to SCHEDULES"
        assert schedule_of(dag) == SCHEDULES[dag.dag_id]
    keywords = dag_keywords(dag_file)
    assert len(keywords) == len(bag.dags)
    for given in keywords:
        assert {"schedule", "catchup", "start_date"} <= given, f"{dag_file.name}: say schedule= and catchup="
    assert elapsed < conf.getfloat("core", "dagbag_import_timeout")
