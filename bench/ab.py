"""``python -m bench.ab OLD_CHECKOUT``: ferry's transfers now against an older checkout, in one run.

What a change costs, measured so that the machine's noise cancels: each candidate runs with this
checkout's ``src/`` and with the other's, alternately, ``--rounds`` times, and the medians are
compared. The pipelined limits run between them, so the ratios to the limit are there too.
Uses the data ``python -m bench postgres reverse mongo`` prepares (run that once first).

    git worktree add /tmp/ferry-before <commit>
    .venv/bin/python -m bench.ab /tmp/ferry-before --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import boto3

from bench.__main__ import BUCKET, QUERY, REVIEWS_QUARTER, _random_file, measure
from ferry.stack import Stack
from ferry.stack.environment import stack_environment

HERE = Path(__file__).resolve().parents[1]


def candidates(source: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``source`` is a local 600 MiB file, also in the bench bucket under its name."""
    return [
        ("ferry_s3_to_sftp", (source.name, str(source.with_name("sftp.bin")))),
        ("ferry_postgres_to_s3", (QUERY, "ab/ferry.csv")),
        ("ferry_postgres_to_s3", (QUERY, "ab/ferry.parquet", "parquet")),
        ("ferry_s3_to_postgres", ("reverse/listings.csv", "listings_load")),
        ("ferry_sftp_to_s3", (str(source), "ab/ferry.bin")),
        ("ferry_mongo_to_s3", (REVIEWS_QUARTER, "ab/mongo.jsonl")),
        ("ferry_mongo_to_s3", (REVIEWS_QUARTER, "ab/mongo.parquet", "parquet")),
    ]


LIMITS = {
    "ferry_postgres_to_s3": ("pipelined_copy_upload", (QUERY, "ab/limit.csv")),
    "ferry_s3_to_postgres": ("bare_s3_copy_in", ("reverse/listings.csv", "listings_load")),
    "ferry_sftp_to_s3": ("ssh_cat_upload", None),
    "ferry_s3_to_sftp": ("s3_ssh_cat", None),
    "ferry_mongo_to_s3": ("pipelined_find_upload", (REVIEWS_QUARTER, "ab/mongo-limit.jsonl")),
}


def run_with(checkout: Path, name: str, args: tuple[str, ...]) -> float:
    """Seconds of one candidate with ``checkout``'s ferry first on the path."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{checkout / 'src'}{os.pathsep}{HERE}"
    try:
        return measure(name, *args)["seconds"]
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a checkout of the earlier commit (git worktree add …)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each candidate on each side (default 3)")
    parser.add_argument("--only", default="", help="only candidates whose name contains this (e.g. s3_to_postgres)")
    options = parser.parse_args()
    if not (options.old / "src" / "ferry").is_dir():
        parser.error(f"{options.old} holds no src/ferry")
    stack = Stack()
    stack.up(echo=lambda line: None)
    os.environ.update(stack_environment(stack.settings))
    os.environ.setdefault("FERRY_SSH_PORT", str(stack.settings.ports["sshd"]))
    os.environ["USER_NAME"] = stack.service("sshd").user
    measure("ferry_postgres_to_s3", "SELECT * FROM listings LIMIT 200000", "reverse/listings.csv")
    rows = ["| candidate | before (median) | after (median) | after / before | limit (median) | after / limit |",
            "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="ferry-ab-") as tmp:
        source = _random_file(Path(tmp) / "600MiB.bin", 600)
        boto3.client("s3").upload_file(str(source), BUCKET, source.name)
        for name, args in candidates(source):
            if options.only not in name:
                continue
            limit_name, limit_args = LIMITS[name]
            limit_args = limit_args or ((source.name, str(source.with_name("cat.bin"))) if limit_name == "s3_ssh_cat"
                                        else (str(source), "ab/cat.bin"))
            before, after, limit = [], [], []
            for _ in range(options.rounds):
                before.append(run_with(options.old, name, args))
                after.append(run_with(HERE, name, args))
                limit.append(run_with(HERE, limit_name, limit_args))
            b, a, li = (statistics.median(x) for x in (before, after, limit))
            label = " ".join((name, *args[2:]))
            rows.append(f"| {label} | {b:.2f} s | {a:.2f} s | {a / b:.3f} | {li:.2f} s | {a / li:.2f}x |")
            print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
