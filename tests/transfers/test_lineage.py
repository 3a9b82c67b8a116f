"""What the operators tell Airflow they read and wrote: OpenLineage datasets (checked on real
transfers), asset events for Asset and AssetAlias outlets, and queries the SQL parser cannot read."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset, AssetAlias

from ferry.transfers import (
    PostgresToS3Operator,
    S3ToPostgresOperator,
    S3ToSFTPOperator,
    SFTPToS3Operator,
)
from ferry.transfers.lineage import Lineage, LineageMixin

pytestmark = pytest.mark.integration


def datasets(facets, side: str) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in getattr(facets, side)]


def test_postgres_to_s3_names_the_tables_read_and_every_part_written(stack, pg, bucket, monkeypatch):
    import openlineage.common.sql

    parsed = []
    parse = openlineage.common.sql.parse
    monkeypatch.setattr(openlineage.common.sql, "parse", lambda *a, **k: parsed.append(a) or parse(*a, **k))
    op = PostgresToS3Operator(
        task_id="export", postgres_conn_id="inside_airbnb", s3_bucket=bucket, s3_key="lineage/out.csv",
        query="SELECT n.id, a.t FROM numbers n LEFT JOIN public.awkward a ON a.id = n.id "
              "WHERE n.id <= %(last)s AND n.word LIKE '%%'",
        parameters={"last": 30}, max_rows_per_file=20)
    op.execute({})
    assert parsed == []  # the task does not pay for the parser: only OpenLineage asks
    facets = op.get_openlineage_facets_on_complete(None)
    assert len(parsed) == 1
    pg_namespace = f"postgres://127.0.0.1:{stack.settings.ports['postgres']}"
    assert sorted(datasets(facets, "inputs")) == [(pg_namespace, "inside_airbnb.public.awkward"),
                                                  (pg_namespace, "inside_airbnb.public.numbers")]
    assert datasets(facets, "outputs") == [(f"s3://{bucket}", "lineage/out-part-00000.csv"),
                                           (f"s3://{bucket}", "lineage/out-part-00001.csv")]


def test_sql_the_parser_cannot_read_gives_no_inputs_not_a_failure(pg, bucket):
    op = PostgresToS3Operator(task_id="export", postgres_conn_id="inside_airbnb", s3_bucket=bucket,
                              s3_key="weird.csv", query="SELECT 1 AS x WHERE 1 OPERATOR(pg_catalog.=) 1")
    assert op.execute({})["rows"] == 1
    assert datasets(op.get_openlineage_facets_on_complete(None), "inputs") == []


def test_reverse_and_sftp_operators_name_both_sides(stack, pg, s3, bucket, tmp_path):
    sftp = f"sftp://127.0.0.1:{stack.settings.ports['sshd']}"
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"id\n1\n")
    to_sftp = S3ToSFTPOperator(task_id="t", s3_bucket=bucket, s3_key="in/", sftp_path=str(tmp_path / "out"))
    to_sftp.execute({})
    facets = to_sftp.get_openlineage_facets_on_complete(None)
    assert datasets(facets, "inputs") == [(f"s3://{bucket}", "in/a.csv")]
    assert datasets(facets, "outputs") == [(sftp, f"{tmp_path}/out/a.csv")]

    back = SFTPToS3Operator(task_id="t", sftp_path=f"{tmp_path}/out/a.csv", s3_bucket=bucket, s3_key="back/a.csv")
    back.execute({})
    facets = back.get_openlineage_facets_on_complete(None)
    assert datasets(facets, "inputs") == [(sftp, f"{tmp_path}/out/a.csv")]
    assert datasets(facets, "outputs") == [(f"s3://{bucket}", "back/a.csv")]

    pg.execute("DROP TABLE IF EXISTS lineage_load; CREATE TABLE lineage_load (id int)")
    load = S3ToPostgresOperator(task_id="t", s3_bucket=bucket, s3_key="back/a.csv", postgres_conn_id="inside_airbnb",
                                table="lineage_load")
    load.execute({})
    facets = load.get_openlineage_facets_on_complete(None)
    assert datasets(facets, "inputs") == [(f"s3://{bucket}", "back/a.csv")]
    assert datasets(facets, "outputs") == [(f"postgres://127.0.0.1:{stack.settings.ports['postgres']}",
                                            "inside_airbnb.public.lineage_load")]


class Recorder:
    """Stands in for the task runner's ``outlet_events`` (a test without a task run)."""

    def __init__(self):
        self.accessors = {}

    def __getitem__(self, key):
        class Accessor:
            def __init__(self):
                self.extra, self.added = {}, []

            def add(self, asset, extra=None):
                self.added.append((asset.uri, extra))

        return self.accessors.setdefault(key, Accessor())


def test_asset_outlets_get_the_objects_and_aliases_one_asset_per_object():
    listings, alias = Asset(name="listings", uri="s3://b/listings"), AssetAlias("exports")

    class Op(LineageMixin):
        outlets = [listings, alias]

    events = Recorder()
    Op().emit_asset_events({"outlet_events": events},
                           Lineage(uris=["s3://b/k1", "s3://b/k2"], extra={"keys": ["k1", "k2"], "rows": 3}))
    assert events[listings].extra == {"keys": ["k1", "k2"], "rows": 3}
    assert events[alias].added == [("s3://b/k1", {"keys": ["k1", "k2"], "rows": 3}),
                                   ("s3://b/k2", {"keys": ["k1", "k2"], "rows": 3})]
