"""``make bench``: run every benchmark against the local stack and print ratios and peak memory.

Each candidate runs in a fresh child process; its time is the work alone (imports excluded),
its peak memory the child's maximum resident set size (imports included: importing Airflow's
S3, SFTP and Postgres hooks alone takes about 150 MB). Absolute times are noisy on a shared
2-core machine, so targets are ratios between candidates measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferry.stack import Stack
from ferry.stack.environment import stack_environment

BUCKET = "ferry-bench"
QUERY = "SELECT * FROM listings"
QUERY_X4 = "SELECT * FROM listings_x4"


def measure(name: str, *args: str) -> dict[str, float]:
    """Run one candidate in a child process: its seconds of work and its peak RSS (its own VmHWM)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([sys.executable, "-m", "bench.candidates", name, *args],
                              stdout=out, stderr=err, cwd=Path(__file__).parents[1])
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{name} failed: {err.read().decode()[-2000:]}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    return {"seconds": result["seconds"], "peak_mb": result["peak_mb"]}


def row(label: str, result: dict[str, float], base: dict[str, float] | None = None) -> str:
    ratio = f"{result['seconds'] / base['seconds']:.2f}x" if base else ""
    return f"| {label} | {result['seconds']:.2f} s | {ratio} | {result['peak_mb']:.0f} MB |"


def prepare_bucket() -> None:
    import boto3

    s3 = boto3.client("s3")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})


def prepare(stack: Stack) -> tuple[int, int]:
    """The listings table (about a million rows) and one four times larger."""
    from ferry.airbnb.generate import generate

    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        # The demo's 200,000 rows in a shared stack are too few: fixed costs would dominate.
        if not conn.execute("SELECT to_regclass('listings') IS NOT NULL").fetchone()[0] or conn.execute(
            "SELECT count(*) FROM listings"
        ).fetchone()[0] < 900_000:
            generate(conn, rows=1_000_000)
            conn.execute("DROP TABLE IF EXISTS listings_x4")
        if not conn.execute("SELECT to_regclass('listings_x4') IS NOT NULL").fetchone()[0]:
            conn.execute("CREATE TABLE listings_x4 AS SELECT l.* FROM listings l, generate_series(1, 4)")
        rows = conn.execute("SELECT count(*) FROM listings").fetchone()[0]
        rows_x4 = conn.execute("SELECT count(*) FROM listings_x4").fetchone()[0]
    return rows, rows_x4


def bench_postgres_to_s3(rows: int, rows_x4: int) -> list[str]:
    limit = measure("pipelined_copy_upload", QUERY, "limit.csv")
    limit_x4 = measure("pipelined_copy_upload", QUERY_X4, "limit-x4.csv")
    ferry_csv = measure("ferry_postgres_to_s3", QUERY, "ferry.csv")
    ferry_x4 = measure("ferry_postgres_to_s3", QUERY_X4, "ferry-x4.csv")
    bare = measure("bare_copy_multipart", QUERY, "bare.csv")
    ferry_parquet = measure("ferry_postgres_to_s3", QUERY, "ferry.parquet", "parquet")
    ferry_gzip = measure("ferry_postgres_to_s3", QUERY, "ferry.csv.gz", "csv", "gzip")
    seed = measure("seed_postgres_to_s3", QUERY, "seed.csv")
    provider = measure("provider_sql_to_s3", QUERY, "provider.csv")
    return [
        f"### PostgresToS3: `{QUERY}` ({rows:,} rows), ratios against the pipelined limit",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("COPY → pipe → boto3 upload_fileobj, default concurrency (practical limit)", limit, limit),
        row("ferry PostgresToS3Operator, csv", ferry_csv, limit),
        row("ferry PostgresToS3Operator, csv + gzip", ferry_gzip, limit),
        row("ferry PostgresToS3Operator, parquet", ferry_parquet, limit),
        row("COPY → one part at a time, synchronous (the earlier baseline)", bare, limit),
        row("seed's operator (get_records → StringIO → one upload)", seed, limit),
        row("amazon provider's SqlToS3Operator (pandas)", provider, limit),
        row(f"limit, table four times larger ({rows_x4:,} rows)", limit_x4, limit_x4),
        row(f"ferry csv, table four times larger ({rows_x4:,} rows)", ferry_x4, limit_x4),
        "",
        f"- ferry csv / limit: **{ferry_csv['seconds'] / limit['seconds']:.2f}x** at 1x rows, "
        f"**{ferry_x4['seconds'] / limit_x4['seconds']:.2f}x** at 4x (target ≤ 1.10x)",
        f"- peak memory: ferry {ferry_csv['peak_mb']:.0f} MB vs limit {limit['peak_mb']:.0f} MB "
        f"(**{ferry_csv['peak_mb'] - limit['peak_mb']:+.0f} MB**, target ≤ +64 MB); four times the rows: "
        f"{ferry_x4['peak_mb']:.0f} MB (**{ferry_x4['peak_mb'] - ferry_csv['peak_mb']:+.0f} MB**)",
        f"- seed / ferry csv: **{seed['seconds'] / ferry_csv['seconds']:.1f}x**; provider / ferry csv: "
        f"**{provider['seconds'] / ferry_csv['seconds']:.1f}x**",
        f"- parquet / csv: **{ferry_parquet['seconds'] / ferry_csv['seconds']:.2f}x** (target ≤ 2.5x)",
    ]


def _random_file(path: Path, mib: int) -> Path:
    block = os.urandom(2**20)
    with open(path, "wb") as f:
        for n in range(mib):
            f.write(block[n % 256:] + block[: n % 256])  # every MiB different, none compressible
    return path


def bench_s3_to_sftp(tmp: Path) -> list[str]:
    import boto3

    s3 = boto3.client("s3")
    small, large = _random_file(tmp / "600MiB.bin", 600), _random_file(tmp / "1200MiB.bin", 1200)
    for path in (small, large):
        s3.upload_file(str(path), BUCKET, path.name)
    out = tmp / "sftp"
    out.mkdir()

    def to_sftp(name: str, *args: str) -> dict[str, float]:
        # Each output deleted once measured: the disk's writeback of earlier files would
        # otherwise slow whichever candidate runs later.
        result = measure(name, *args)
        for path in out.iterdir():
            path.unlink()
        return result

    cat_small = to_sftp("s3_ssh_cat", small.name, str(out / "cat.bin"))
    put_small = to_sftp("openssh_sftp_put", str(small), str(out / "openssh.bin"))
    ferry_small = to_sftp("ferry_s3_to_sftp", small.name, str(out / "ferry.bin"))
    provider = to_sftp("provider_s3_to_sftp", small.name, str(out / "provider.bin"), "false")
    cat_large = to_sftp("s3_ssh_cat", large.name, str(out / "cat-large.bin"))
    put_large = to_sftp("openssh_sftp_put", str(large), str(out / "openssh-large.bin"))
    ferry_large = to_sftp("ferry_s3_to_sftp", large.name, str(out / "ferry-large.bin"))
    provider_large = to_sftp("provider_s3_to_sftp", large.name, str(out / "provider-large.bin"), "false")
    return [
        "### S3ToSFTP: 600 MiB and 1.2 GiB of random bytes, ratios against S3 GET piped into OpenSSH `ssh cat`",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("boto3 download_fileobj (default concurrency) → OpenSSH `ssh 'cat > file'`, 600 MiB (practical limit)",
            cat_small, cat_small),
        row("OpenSSH `sftp put` from local disk, 600 MiB (reads no S3)", put_small, cat_small),
        row("ferry S3ToSFTPOperator, 600 MiB", ferry_small, cat_small),
        row("amazon provider's S3ToSFTPOperator, 600 MiB, compression off", provider, cat_small),
        row("`ssh cat` limit, 1.2 GiB", cat_large, cat_large),
        row("OpenSSH `sftp put` from local disk, 1.2 GiB", put_large, cat_large),
        row("ferry S3ToSFTPOperator, 1.2 GiB", ferry_large, cat_large),
        row("amazon provider's S3ToSFTPOperator, 1.2 GiB, compression off", provider_large, cat_large),
        "",
        f"- ferry / `ssh cat` limit: **{ferry_small['seconds'] / cat_small['seconds']:.2f}x** at 600 MiB, "
        f"**{ferry_large['seconds'] / cat_large['seconds']:.2f}x** at 1.2 GiB (target ≤ 1.25x); "
        f"ferry / `sftp put`: {ferry_small['seconds'] / put_small['seconds']:.2f}x, "
        f"{ferry_large['seconds'] / put_large['seconds']:.2f}x",
        "- provider (same connection, compression off) / ferry: "
        f"**{provider['seconds'] / ferry_small['seconds']:.2f}x** at 600 MiB, "
        f"**{provider_large['seconds'] / ferry_large['seconds']:.2f}x** at 1.2 GiB (target ≥ 2x)",
        f"- peak memory 1.2 GiB − 600 MiB: **{ferry_large['peak_mb'] - ferry_small['peak_mb']:+.0f} MB** "
        "(target within ±32 MB)",
    ]


def bench_reverse(tmp: Path) -> list[str]:
    """The reverse directions: S3 → PostgreSQL, SFTP → S3."""
    measure("ferry_postgres_to_s3", "SELECT * FROM listings LIMIT 200000", "reverse/listings.csv")
    limit = measure("bare_s3_copy_in", "reverse/listings.csv", "listings_load")
    ferry = measure("ferry_s3_to_postgres", "reverse/listings.csv", "listings_load")
    provider = measure("provider_s3_to_sql", "reverse/listings.csv", "listings_load")
    source = _random_file(tmp / "600MiB.bin", 600)
    cat = measure("ssh_cat_upload", str(source), "reverse/cat.bin")
    ferry_sftp = measure("ferry_sftp_to_s3", str(source), "reverse/ferry.bin")
    provider_sftp = measure("provider_sftp_to_s3", str(source), "reverse/provider.bin")
    return [
        "### S3ToPostgres: a 200,000-row listings csv into an empty table, ratios against a bare S3 body → COPY loop",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("S3 body streamed into COPY FROM STDIN (practical limit)", limit, limit),
        row("ferry S3ToPostgresOperator", ferry, limit),
        row("amazon provider's S3ToSqlOperator (temp file, csv parser, insert_rows)", provider, limit),
        "",
        f"- ferry / limit: **{ferry['seconds'] / limit['seconds']:.2f}x**; "
        f"provider / ferry: **{provider['seconds'] / ferry['seconds']:.1f}x**",
        "",
        "### SFTPToS3: 600 MiB of random bytes, ratios against `ssh cat` piped into boto3 upload_fileobj",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("OpenSSH `ssh cat` → boto3 upload_fileobj, default concurrency (practical limit)", cat, cat),
        row("ferry SFTPToS3Operator", ferry_sftp, cat),
        row("amazon provider's SFTPToS3Operator (temp file, then upload)", provider_sftp, cat),
        "",
        f"- ferry / limit: **{ferry_sftp['seconds'] / cat['seconds']:.2f}x**; "
        f"provider / ferry: **{provider_sftp['seconds'] / ferry_sftp['seconds']:.2f}x**",
    ]


def prepare_snapshots(stack: Stack) -> tuple[int, int]:
    """Every monthly interval exported once (as the DAG does), and a copy with twice the snapshots:
    each object again with its dates moved by a day, so the listings stay the same."""
    import io

    import boto3
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from ferry.airbnb.backfill import monthly_dates
    from ferry.transfers import PostgresToS3Operator

    s3 = boto3.client("s3")
    have = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="airbnb")
            for o in page.get("Contents", [])}
    starts = monthly_dates()
    for start in starts:
        key = f"airbnb/listing-{start.date()}.csv"
        if key not in have:
            PostgresToS3Operator(task_id="x", postgres_conn_id="inside_airbnb", s3_bucket=BUCKET, s3_key=key,
                                 query="SELECT * FROM listings WHERE download_date >= %s AND download_date < %s",
                                 parameters=[start.date(), start.add(months=1).date()]).execute({})
        for copy, days in (("a", 0), ("b", 1)):
            twin = f"airbnb-x2/listing-{start.date()}-{copy}.csv"
            if twin in have:
                continue
            table = pacsv.read_csv(s3.get_object(Bucket=BUCKET, Key=key)["Body"])
            if days and table.num_rows:
                column = table.schema.get_field_index("download_date")
                shifted = pc.cast(pc.add(table["download_date"], pa_days(days)), pa.date32())
                table = table.set_column(column, "download_date", shifted)
            out = io.BytesIO()
            pacsv.write_csv(table, out)
            s3.put_object(Bucket=BUCKET, Key=twin, Body=out.getvalue())
    return len(starts), 2 * len(starts)


def pa_days(n: int):
    import pyarrow as pa

    return pa.scalar(n * 86_400_000, type=pa.duration("ms"))


def bench_cruncher(objects: int, objects_x2: int) -> list[str]:
    book = measure("book_crunch", "airbnb/")
    ferry = measure("ferry_crunch", "airbnb/")
    book_x2 = measure("book_crunch", "airbnb-x2/")
    ferry_x2 = measure("ferry_crunch", "airbnb-x2/")
    return [
        f"### Number cruncher: {objects} monthly snapshot objects, ratios against the book's pandas method",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("book's pandas cruncher (concat instead of append)", book, book),
        row("ferry cruncher (streaming, pyarrow)", ferry, book),
        row(f"book's, twice the snapshots ({objects_x2} objects)", book_x2, book),
        row(f"ferry, twice the snapshots ({objects_x2} objects)", ferry_x2, book),
        "",
        f"- book / ferry: **{book['seconds'] / ferry['seconds']:.1f}x** (target ≥ 3x)",
        f"- peak memory with twice the snapshots: ferry {ferry['peak_mb']:.0f} → {ferry_x2['peak_mb']:.0f} MB "
        f"(**{(ferry_x2['peak_mb'] / ferry['peak_mb'] - 1) * 100:+.1f} %**); book {book['peak_mb']:.0f} → "
        f"{book_x2['peak_mb']:.0f} MB",
    ]


#: The demo's reviews collection (1M documents) and a quarter of it: memory must not grow 4x.
REVIEWS, REVIEWS_QUARTER = "reviews", "reviews_quarter"


def prepare_reviews(stack: Stack) -> tuple[int, int]:
    from ferry.airbnb.generate import listings_for_rows
    from ferry.airbnb.reviews import generate_reviews

    with stack.service("mongo").client() as client:
        database = client["inside_airbnb"]
        full = generate_reviews(database, count=1_000_000, listings=listings_for_rows(1_000_000))
        if database[REVIEWS_QUARTER].estimated_document_count() != full // 4:
            database[REVIEWS_QUARTER].drop()
            database[REVIEWS].aggregate([{"$limit": full // 4}, {"$out": REVIEWS_QUARTER}])
        return database[REVIEWS_QUARTER].estimated_document_count(), full


def bench_mongo_to_s3(quarter: int, full: int) -> list[str]:
    limit = measure("pipelined_find_upload", REVIEWS_QUARTER, "mongo-limit.jsonl")
    floor = measure("raw_batches_upload", REVIEWS_QUARTER, "mongo-raw.bson")
    ferry = measure("ferry_mongo_to_s3", REVIEWS_QUARTER, "mongo-ferry.jsonl")
    ferry_parquet = measure("ferry_mongo_to_s3", REVIEWS_QUARTER, "mongo-ferry.parquet", "parquet")
    provider = measure("provider_mongo_to_s3", REVIEWS_QUARTER, "mongo-provider.json")
    limit_x4 = measure("pipelined_find_upload", REVIEWS, "mongo-limit-x4.jsonl")
    ferry_x4 = measure("ferry_mongo_to_s3", REVIEWS, "mongo-ferry-x4.jsonl")
    provider_x4 = measure("provider_mongo_to_s3", REVIEWS, "mongo-provider-x4.json")
    return [
        f"### MongoToS3: the reviews collection ({quarter:,} documents; 4x: {full:,}), "
        "ratios against the pipelined limit",
        "| candidate | time | ratio | peak memory |", "| --- | --- | --- | --- |",
        row("find → Extended JSON → pipe → boto3 upload_fileobj (practical limit)", limit, limit),
        row("raw BSON batches → pipe → upload_fileobj (floor: no decoding)", floor, limit),
        row("ferry MongoToS3Operator, jsonl", ferry, limit),
        row("ferry MongoToS3Operator, parquet", ferry_parquet, limit),
        row("amazon provider MongoToS3Operator", provider, limit),
        row("practical limit, 4x documents", limit_x4, limit_x4),
        row("ferry MongoToS3Operator, jsonl, 4x documents", ferry_x4, limit_x4),
        row("amazon provider MongoToS3Operator, 4x documents", provider_x4, limit_x4),
    ]


SECTIONS = ("postgres", "sftp", "reverse", "mongo", "cruncher", "digits", "s3")


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks, ferry beside its baselines, against the local stack (started if it is not running; "
                    "FERRY_HOME and the FERRY_*_PORT variables choose which). All of them take about 20 minutes. "
                    "The report is printed and written to bench/out/latest.md; bench/RESULTS.md records curated runs.")
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"run only these: {', '.join(SECTIONS)} (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    stack = Stack()
    stack.up(echo=lambda line: None)
    os.environ.update(stack_environment(stack.settings))
    os.environ.setdefault("FERRY_SSH_PORT", str(stack.settings.ports["sshd"]))
    os.environ["USER_NAME"] = stack.service("sshd").user
    wanted = set(args.sections) or set(SECTIONS)
    prepare_bucket()
    rows, rows_x4 = prepare(stack) if wanted & {"postgres", "reverse", "cruncher"} else (0, 0)
    report = [f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({os.cpu_count()} cores)", ""]
    if "postgres" in wanted:
        report += [*bench_postgres_to_s3(rows, rows_x4), ""]
    if "mongo" in wanted:
        report += [*bench_mongo_to_s3(*prepare_reviews(stack)), ""]
    if "cruncher" in wanted:
        report += [*bench_cruncher(*prepare_snapshots(stack)), ""]
    if "sftp" in wanted:
        with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
            report += bench_s3_to_sftp(Path(tmp))
    if "reverse" in wanted:
        with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
            report += ["", *bench_reverse(Path(tmp))]
    if "digits" in wanted:
        from bench.digits import bench_digits

        report += ["", *bench_digits(stack)]
    if "s3" in wanted:
        from bench.s3 import bench_s3_memory

        report += ["", *bench_s3_memory(stack)]
    text = "\n".join(report)
    print(text)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
