"""What a transfer read and wrote, told to Airflow: OpenLineage datasets and asset events.

Two consumers, two shapes. OpenLineage (``get_openlineage_facets_on_complete``) gets one dataset
per table read and per object or file written, named by OpenLineage's naming conventions
(``postgres://host:port`` + ``database.schema.table``, ``s3://bucket`` + key,
``sftp://host:port`` + path). Airflow assets get events for the outlets a DAG declared on the
task: an ``Asset`` outlet gets one event whose ``extra`` lists what was written (keys, rows,
bytes); an ``AssetAlias`` outlet gets one asset per object (``s3://bucket/key``), for DAGs that
want to be scheduled on exactly the objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: psycopg's placeholders (``%s``, ``%(name)s``); the SQL parser knows none of them.
_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?s")


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str


@dataclass
class Lineage:
    """Filled in by an operator's ``execute``; read by the two methods of :class:`LineageMixin`."""

    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)
    #: ``s3://bucket/key`` of each object written, for asset aliases.
    uris: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: A query whose tables are inputs too, read only when OpenLineage asks (:class:`QueryInputs`).
    query_inputs: QueryInputs | None = None

    def all_inputs(self) -> list[Dataset]:
        return self.inputs + (self.query_inputs.datasets() if self.query_inputs else [])


@dataclass(frozen=True)
class QueryInputs:
    """The tables a PostgreSQL query reads, parsed when asked for, not when the query runs.

    OpenLineage's SQL parser takes half a second to import, longer than many exports take, and
    only OpenLineage wants its answer: the task does not pay for it (nor, without the
    OpenLineage provider, does anyone). Taken off a thread of its own, the import cost the same
    (it holds the GIL the export needs).
    """

    namespace: str
    database: str
    query: str

    def datasets(self) -> list[Dataset]:
        """One dataset per table, or none if the parser cannot read the query (never an error)."""
        try:
            from openlineage.common.sql import parse

            meta = parse([_PLACEHOLDER.sub("NULL", self.query).replace("%%", "%")], dialect="postgres")
        except Exception:  # lineage is a report; it must not fail the transfer
            return []
        return [postgres_table(self.namespace, self.database, f"{t.schema}.{t.name}" if t.schema else t.name)
                for t in (meta.in_tables if meta else [])]


def postgres_namespace(conn: Any) -> tuple[str, str]:
    """``(postgres://host:port, database)`` of a psycopg connection."""
    return f"postgres://{conn.info.host}:{conn.info.port}", conn.info.dbname


def postgres_query_inputs(conn: Any, query: str) -> QueryInputs:
    """The tables ``query`` reads on a psycopg connection's database, to be parsed later."""
    return QueryInputs(*postgres_namespace(conn), query)


def postgres_table(namespace: str, database: str, table: str) -> Dataset:
    return Dataset(namespace, f"{database}.{table if '.' in table else 'public.' + table}")


def s3_objects(bucket: str, keys: list[str]) -> list[Dataset]:
    return [Dataset(f"s3://{bucket}", key) for key in keys]


def wrote_to_s3(bucket: str, keys: list[str], inputs: list[Dataset], *, query_inputs: QueryInputs | None = None,
                **extra: Any) -> Lineage:
    """The lineage of a transfer into S3: its inputs, the objects, and ``extra`` for asset events."""
    return Lineage(inputs=inputs, outputs=s3_objects(bucket, keys), uris=[f"s3://{bucket}/{k}" for k in keys],
                   extra={"bucket": bucket, "keys": keys, **extra}, query_inputs=query_inputs)


class LineageMixin:
    """For operators: record a :class:`Lineage` in ``execute``, then emit it."""

    lineage: Lineage | None = None

    def emit_asset_events(self, context: Any, lineage: Lineage) -> None:
        """Events for the task's Asset and AssetAlias outlets, and keep ``lineage`` for OpenLineage."""
        from airflow.sdk import Asset, AssetAlias

        self.lineage = lineage
        events = context.get("outlet_events")
        if events is None:  # execute() called outside a task run (a test, a script)
            return
        for outlet in getattr(self, "outlets", []) or []:
            if isinstance(outlet, Asset):
                events[outlet].extra.update(lineage.extra)
            elif isinstance(outlet, AssetAlias):
                for uri in lineage.uris:
                    events[outlet].add(Asset(uri=uri), extra=lineage.extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow.providers.common.compat.openlineage.facet import Dataset as OLDataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        lineage = self.lineage or Lineage()
        return OperatorLineage(inputs=[OLDataset(namespace=d.namespace, name=d.name) for d in lineage.all_inputs()],
                               outputs=[OLDataset(namespace=d.namespace, name=d.name) for d in lineage.outputs])
