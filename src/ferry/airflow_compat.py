"""The few Airflow names that moved between the minor versions ferry supports (3.1 to 3.3)."""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk import CronDataIntervalTimetable  # Airflow 3.2+
except ImportError:  # Airflow 3.1
    from airflow.timetables.interval import CronDataIntervalTimetable

__all__ = ["CronDataIntervalTimetable", "dag_bag"]


def dag_bag(dag_folder: str) -> Any:
    """``DagBag(dag_folder=…)``: ``airflow.dag_processing.dagbag`` from 3.2, ``airflow.models`` in 3.1."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=dag_folder)
