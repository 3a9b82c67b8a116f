"""``ferry run``: one DAG run through ``airflow dags test``, told in one line.

``airflow dags test`` is how Airflow runs a DAG without a scheduler. It prints every task's log
to the terminal (thousands of lines for the digits classifier) and, in Airflow 3, nothing at the
end that says how the run went: a failed run only exits 1 with "DagRun failed", a good one
exits 0 in silence. ``ferry run`` runs that same command with the stack's environment, keeps
its whole output in a log file, and then reads the run's state and its tasks' states from the
metadata database, where Airflow records them — not from the log's text, whose wording changes
between releases.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ferry.stack.airflow import airflow_executable


@dataclass(frozen=True)
class RunOutcome:
    dag_id: str
    #: The DagRun's state as Airflow recorded it, or ``None`` when no run was created (the DAG
    #: did not parse, the metadata database did not answer).
    state: str | None
    exit_code: int
    seconds: float
    log_file: Path
    #: ``task_id`` (``task_id[i]`` for a mapped instance) → its state (``"none"`` if never set).
    task_states: dict[str, str] = field(default_factory=dict)
    #: The log's last non-empty line: what went wrong when no run was recorded.
    last_line: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.state == "success"

    def summary(self) -> str:
        if self.state is None:
            return (f"{self.dag_id}: no run recorded (exit {self.exit_code}: {self.last_line or 'no output'}) "
                    f"— log: {self.log_file}")
        counts = Counter(self.task_states.values())
        tasks = ", ".join(f"{n} {state}" for state, n in counts.most_common())
        line = f"{self.dag_id}: {self.state} in {self.seconds:.0f} s — {len(self.task_states)} tasks: {tasks or 'none'}"
        failed = sorted({key.split("[")[0] for key, state in self.task_states.items() if state == "failed"})
        if failed:
            line += f"; failed: {', '.join(failed)}"
        return f"{line} — log: {self.log_file}"


def run_dag(dag_id: str, args: list[str], log_file: Path, env: dict[str, str]) -> RunOutcome:
    """``airflow dags test DAG *args`` with ``env``, its output to ``log_file``; how the run ended.

    ``env`` must hold the stack's Airflow settings (``stack_environment``); this process's own
    environment is made the same before Airflow is imported to read the run back.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    started = time.monotonic()
    with open(log_file, "wb") as log:
        result = subprocess.run([airflow_executable(), "dags", "test", dag_id, *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    os.environ.update(env)
    state, task_states = _recorded_run(dag_id, began)
    return RunOutcome(dag_id, state, result.returncode, seconds, log_file, task_states, _last_line(log_file))


def _recorded_run(dag_id: str, began: datetime.datetime) -> tuple[str | None, dict[str, str]]:
    """The newest test run of ``dag_id`` created after ``began``: its state and its tasks' states."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_after >= began)
                                 .order_by(DagRun.id.desc()).limit(1))
            if run is None:
                return None, {}
            instances = session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
                .order_by(TaskInstance.task_id, TaskInstance.map_index)).all()
            return str(run.state), {
                (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state or "none")
                for ti in instances}
    except SQLAlchemyError:  # the metadata database is down or not migrated: the log says which
        return None, {}


def _last_line(log_file: Path) -> str:
    with open(log_file, "rb") as log:
        log.seek(max(0, log_file.stat().st_size - 8192))
        lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
