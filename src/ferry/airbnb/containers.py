"""Containers a killed task left behind, found by label and removed before the next run.

DockerOperator removes its container when the task ends, fails or is told to stop (``on_kill``).
A task process killed outright (``kill -9``, a lost worker) runs none of that, and the container
goes on. So the DAG labels its containers and, before it starts one, removes every container
carrying its label: with ``max_active_runs=1`` nothing else can own one.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
LABEL = "org.ferry.task"


def task_label(dag_id: str, task_id: str) -> dict[str, str]:
    return {LABEL: f"{dag_id}.{task_id}"}


def remove_leftovers(client: Any, dag_id: str, task_id: str) -> list[str]:
    """Force-remove every container labelled for ``dag_id.task_id``; their short ids."""
    removed = []
    label = task_label(dag_id, task_id)[LABEL]
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={label}"}):
        log.warning("removing container %s (%s) left by an earlier %s", container.short_id, container.status, label)
        container.remove(force=True)
        removed.append(container.short_id)
    return removed
