"""The things we measure, each run in a child process of its own (``python -m bench.candidates
NAME ARGS…``) so that its peak memory is its own. Prints one JSON line: the seconds of work.

Baselines are written the way their authors show them: the seed's operator (section 2-1,
listing 4: fetch everything, csv into a StringIO, one upload) and the amazon provider's own
operators, called through their public constructors with our connections.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BUCKET = "ferry-bench"


def seed_postgres_to_s3(query: str, key: str) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    results = PostgresHook(postgres_conn_id="inside_airbnb").get_records(query)
    data_buffer = io.StringIO()
    csv.writer(data_buffer, lineterminator=os.linesep).writerows(results)
    S3Hook(aws_conn_id="aws_default").load_file_obj(
        file_obj=io.BytesIO(data_buffer.getvalue().encode()), bucket_name=BUCKET, key=key, replace=True
    )


def provider_sql_to_s3(query: str, key: str) -> None:
    from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator

    SqlToS3Operator(task_id="b", sql_conn_id="inside_airbnb", query=query, s3_bucket=BUCKET, s3_key=key,
                    file_format="csv", replace=True, pd_kwargs={"index": False}).execute({})


def bare_copy_multipart(query: str, key: str) -> None:
    """The practical limit: COPY straight into a multipart upload, nothing else."""
    import boto3
    import psycopg

    s3 = boto3.client("s3")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts, buffer = [], bytearray()

    def send() -> None:
        number = len(parts) + 1
        etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=bytes(buffer))["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        buffer.clear()

    with psycopg.connect() as conn, conn.cursor() as cur:
        with cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                buffer += chunk
                if len(buffer) >= 16 * 1024 * 1024:
                    send()
        send()
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def pipelined_copy_upload(query: str, key: str) -> None:
    """The practical limit, built as an expert would: COPY written into a pipe by one thread while
    boto3's ``upload_fileobj`` (its default TransferConfig: 8 MiB parts, 10 threads) reads it."""
    import threading

    import boto3
    import psycopg

    s3 = boto3.client("s3")
    read_end, write_end = os.pipe()

    def produce() -> None:
        statement = f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)"
        with os.fdopen(write_end, "wb") as pipe, psycopg.connect() as conn, conn.cursor() as cur, \
                cur.copy(statement) as copy:
            for chunk in copy:
                pipe.write(chunk)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_end, "rb") as pipe:
        s3.upload_fileobj(pipe, BUCKET, key)
    producer.join()


def ferry_postgres_to_s3(query: str, key: str, file_format: str = "csv", compression: str = "") -> None:
    from ferry.transfers import PostgresToS3Operator

    PostgresToS3Operator(task_id="f", postgres_conn_id="inside_airbnb", query=query, s3_bucket=BUCKET,
                         s3_key=key, file_format=file_format, compression=compression or None).execute({})


def ferry_s3_to_sftp(key: str, path: str) -> None:
    from ferry.transfers import S3ToSFTPOperator

    S3ToSFTPOperator(task_id="f", s3_bucket=BUCKET, s3_key=key, sftp_path=path).execute({})


def provider_s3_to_sftp(key: str, path: str, compress: str = "false") -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_SFTP_DEFAULT"])
    conn["extra"]["compress"] = compress
    os.environ["AIRFLOW_CONN_SFTP_BENCH"] = json.dumps(conn)
    from airflow.providers.amazon.aws.transfers.s3_to_sftp import S3ToSFTPOperator

    S3ToSFTPOperator(task_id="b", s3_bucket=BUCKET, s3_key=key, sftp_path=path,
                     sftp_conn_id="sftp_bench").execute({})


def openssh_sftp_put(local: str, path: str) -> None:
    """OpenSSH's own client putting the same bytes from local disk: the practical limit."""
    keys = os.path.join(os.environ["FERRY_HOME"], "data", "sshd")
    subprocess.run(
        ["sftp", "-q", "-b", "-", "-i", f"{keys}/client_ed25519", "-o", f"UserKnownHostsFile={keys}/known_hosts",
         "-o", "StrictHostKeyChecking=yes", "-P", os.environ["FERRY_SSH_PORT"], f"{os.environ['USER_NAME']}@127.0.0.1"],
        input=f"put {local} {path}\n".encode(), check=True, capture_output=True,
    )


def _openssh(*args: str) -> list[str]:
    """OpenSSH's ``ssh`` to the stack's sshd with the connection's key and the pinned host key."""
    keys = os.path.join(os.environ["FERRY_HOME"], "data", "sshd")
    return ["ssh", "-i", f"{keys}/client_ed25519", "-o", f"UserKnownHostsFile={keys}/known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-p", os.environ["FERRY_SSH_PORT"],
            f"{os.environ['USER_NAME']}@127.0.0.1", *args]


def s3_ssh_cat(key: str, path: str) -> None:
    """The practical limit for S3 → SFTP, built as an expert would: boto3's ``download_fileobj``
    (its default TransferConfig: 8 MiB ranged GETs, 10 threads, written in order) into the stdin
    of OpenSSH's ``ssh host 'cat > path'``."""
    import shlex

    import boto3

    ssh = subprocess.Popen(_openssh(f"cat > {shlex.quote(path)}"), stdin=subprocess.PIPE)
    boto3.client("s3").download_fileobj(BUCKET, key, ssh.stdin)
    ssh.stdin.close()
    if ssh.wait():
        raise RuntimeError("ssh cat failed")


def _load_table(table: str) -> None:
    import psycopg

    with psycopg.connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (LIKE listings)")


def bare_s3_copy_in(key: str, table: str) -> None:
    """The practical limit for S3 → PostgreSQL: the object's body streamed into COPY FROM STDIN."""
    import boto3
    import psycopg

    _load_table(table)
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"]
    with psycopg.connect() as conn, conn.cursor() as cur, \
            cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
        for chunk in body.iter_chunks(8 * 1024 * 1024):
            copy.write(chunk)


def ferry_s3_to_postgres(key: str, table: str) -> None:
    from ferry.transfers import S3ToPostgresOperator

    _load_table(table)
    S3ToPostgresOperator(task_id="f", s3_bucket=BUCKET, s3_key=key, postgres_conn_id="inside_airbnb",
                         table=table).execute({})


def provider_s3_to_sql(key: str, table: str) -> None:
    """The provider's S3ToSqlOperator with the csv parser its documentation shows."""
    from airflow.providers.amazon.aws.transfers.s3_to_sql import S3ToSqlOperator

    def parse_csv(filepath):
        with open(filepath, newline="") as file:
            reader = csv.reader(file)
            next(reader)  # the header
            yield from ([value or None for value in row] for row in reader)

    _load_table(table)
    S3ToSqlOperator(task_id="b", s3_bucket=BUCKET, s3_key=key, table=table, parser=parse_csv,
                    sql_conn_id="inside_airbnb").execute({})


def ssh_cat_upload(path: str, key: str) -> None:
    """The practical limit for SFTP → S3: ``ssh cat`` (OpenSSH) piped into boto3's upload_fileobj."""
    import boto3

    ssh = subprocess.Popen(_openssh("cat", path), stdout=subprocess.PIPE)
    boto3.client("s3").upload_fileobj(ssh.stdout, BUCKET, key)
    if ssh.wait():
        raise RuntimeError("ssh cat failed")


def ferry_sftp_to_s3(path: str, key: str) -> None:
    from ferry.transfers import SFTPToS3Operator

    SFTPToS3Operator(task_id="f", sftp_path=path, s3_bucket=BUCKET, s3_key=key).execute({})


def provider_sftp_to_s3(path: str, key: str) -> None:
    from airflow.providers.amazon.aws.transfers.sftp_to_s3 import SFTPToS3Operator

    SFTPToS3Operator(task_id="b", sftp_path=path, s3_bucket=BUCKET, s3_key=key, sftp_conn_id="sftp_default",
                     replace=True).execute({})


def book_crunch(prefix: str) -> None:
    """The book's number cruncher, with ``DataFrame.append`` (removed in pandas 2) as ``concat``."""
    import boto3
    import pandas as pd

    s3 = boto3.client("s3")
    keys = sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                  for o in page.get("Contents", []))
    df = pd.DataFrame()
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        temp_df = pd.read_csv(io.BytesIO(body), usecols=["id", "price", "download_date"],
                              parse_dates=["download_date"])
        df = pd.concat([df, temp_df])
    # Not in the book: months with no snapshot give header-only objects, whose empty date
    # column turns the concatenated one into `object` and breaks the merges below.
    df["download_date"] = pd.to_datetime(df["download_date"])
    min_max_per_id = df.groupby(["id"]).agg(download_date_min=("download_date", "min"),
                                            download_date_max=("download_date", "max")).reset_index()
    df_with_min = pd.merge(min_max_per_id, df, how="left", left_on=["id", "download_date_min"],
                           right_on=["id", "download_date"]).rename(columns={"price": "oldest_price"}).drop(
        "download_date", axis=1)
    df_with_max = pd.merge(df_with_min, df, how="left", left_on=["id", "download_date_max"],
                           right_on=["id", "download_date"]).rename(columns={"price": "latest_price"}).drop(
        "download_date", axis=1)
    df_with_max = df_with_max[df_with_max["download_date_max"] != df_with_max["download_date_min"]]
    df_with_max["price_diff_per_day"] = (df_with_max["latest_price"] - df_with_max["oldest_price"]) / (
        (df_with_max["download_date_max"] - df_with_max["download_date_min"]).dt.days)
    df_with_max[["price_diff_per_day"]] = df_with_max[["price_diff_per_day"]].apply(pd.to_numeric)
    for name, frame in (("biggest_increase", df_with_max.nlargest(5, "price_diff_per_day")),
                        ("biggest_decrease", df_with_max.nsmallest(5, "price_diff_per_day"))):
        s3.put_object(Bucket=BUCKET, Key=f"book-results/{name}.json", Body=frame.to_json(orient="records").encode())


def ferry_crunch(prefix: str) -> None:
    import boto3

    from ferry.airbnb.cruncher import crunch_s3

    crunch_s3(boto3.client("s3"), BUCKET, prefix=prefix, results_prefix="ferry-results/")


def _mongo_collection(collection: str):
    from airflow.providers.mongo.hooks.mongo import MongoHook

    hook = MongoHook("mongo_default")
    return hook.get_conn()[hook.connection.schema][collection]


def pipelined_find_upload(collection: str, key: str) -> None:
    """The practical limit for MongoDB → S3 as JSON lines, built as an expert would: one thread
    reads the cursor (pymongo's batches) and writes Extended JSON into a pipe while boto3's
    ``upload_fileobj`` (its default TransferConfig) uploads from the other end."""
    import threading

    import boto3
    from bson import json_util

    s3 = boto3.client("s3")
    read_end, write_end = os.pipe()
    options = json_util.RELAXED_JSON_OPTIONS

    def produce() -> None:
        with os.fdopen(write_end, "wb", buffering=1024 * 1024) as pipe:
            for doc in _mongo_collection(collection).find({}):
                pipe.write(json_util.dumps(doc, json_options=options).encode() + b"\n")

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_end, "rb") as pipe:
        s3.upload_fileobj(pipe, BUCKET, key)
    producer.join()


def raw_batches_upload(collection: str, key: str) -> None:
    """A floor below any exporter: the cursor's raw BSON batches, never decoded, piped into
    ``upload_fileobj`` (what reading and uploading alone cost)."""
    import threading

    import boto3

    s3 = boto3.client("s3")
    read_end, write_end = os.pipe()

    def produce() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            for batch in _mongo_collection(collection).find_raw_batches({}):
                pipe.write(batch)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_end, "rb") as pipe:
        s3.upload_fileobj(pipe, BUCKET, key)
    producer.join()


def ferry_mongo_to_s3(collection: str, key: str, file_format: str = "jsonl") -> None:
    from ferry.transfers import MongoToS3Operator

    MongoToS3Operator(task_id="f", mongo_collection=collection, mongo_query={}, s3_bucket=BUCKET, s3_key=key,
                      file_format=file_format).execute({})


def provider_mongo_to_s3(collection: str, key: str) -> None:
    """The amazon provider's MongoToS3Operator as its documentation shows it."""
    from airflow.providers.amazon.aws.transfers.mongo_to_s3 import MongoToS3Operator

    MongoToS3Operator(task_id="p", mongo_collection=collection, mongo_query={}, s3_bucket=BUCKET, s3_key=key,
                      replace=True).execute({})


CANDIDATES = {f.__name__: f for f in (seed_postgres_to_s3, provider_sql_to_s3, bare_copy_multipart,
                                      pipelined_copy_upload,
                                      ferry_postgres_to_s3, ferry_s3_to_sftp, provider_s3_to_sftp,
                                      openssh_sftp_put, s3_ssh_cat, book_crunch, ferry_crunch, bare_s3_copy_in,
                                      ferry_s3_to_postgres, provider_s3_to_sql, ssh_cat_upload, ferry_sftp_to_s3,
                                      provider_sftp_to_s3, pipelined_find_upload, raw_batches_upload,
                                      ferry_mongo_to_s3, provider_mongo_to_s3)}

if __name__ == "__main__":
    import logging

    logging.disable(logging.INFO)  # progress lines are not what we measure
    # Import every candidate's libraries before the clock starts: we time the work, not imports.
    for module in ("airflow.providers.amazon.aws.hooks.s3", "airflow.providers.amazon.aws.transfers.s3_to_sftp",
                   "airflow.providers.amazon.aws.transfers.sql_to_s3", "airflow.providers.postgres.hooks.postgres",
                   "airflow.providers.amazon.aws.transfers.s3_to_sql",
                   "airflow.providers.amazon.aws.transfers.sftp_to_s3",
                   "airflow.providers.amazon.aws.transfers.mongo_to_s3", "airflow.providers.mongo.hooks.mongo",
                   "ferry.transfers.mongo_source", "pyarrow.parquet",
                   "ferry.transfers.s3_to_postgres", "ferry.transfers.sftp_to_s3",
                   "airflow.providers.ssh.hooks.ssh", "boto3", "psycopg", "ferry.transfers.postgres_source",
                   "ferry.transfers.writers", "ferry.airbnb.cruncher", "pandas"):
        importlib.import_module(module)
    # Not OpenLineage's SQL parser: ferry's exports no longer parse their query inside execute
    # (only when OpenLineage asks), so a candidate that still imported it would pay for it here.

    name, *args = sys.argv[1:]
    started = time.perf_counter()
    CANDIDATES[name](*args)
    seconds = time.perf_counter() - started
    # This process's own peak (VmHWM): getrusage's ru_maxrss would also count the parent's
    # memory at fork, which exec carries over into the child's maximum.
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(json.dumps({"seconds": seconds, "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
