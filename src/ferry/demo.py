"""``ferry demo``: start the stack, run every pipeline end to end, say what came out.

Each pipeline joins by adding a function to ``PIPELINES`` that runs it and returns the lines
of its summary. DAGs run through ``airflow dags test`` against the stack's metadata database,
exactly as a user would run them; their full logs go to ``$FERRY_HOME/logs/demo-*.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ferry import dag_runs
from ferry.stack import Stack
from ferry.stack.airflow import migrate_metadata_db
from ferry.stack.environment import stack_environment


def run_dag(stack: Stack, dag_id: str, *args: str, log_name: str | None = None) -> tuple[float, Path]:
    """``airflow dags test DAG [DATE] [--conf …]``; raise with its outcome if the run fails."""
    outcome = dag_runs.run_dag(dag_id, list(args), stack.settings.logs / f"demo-{log_name or dag_id}.log",
                               os.environ.copy())
    if not outcome.succeeded:
        raise RuntimeError(outcome.summary() + (f" (arguments: {' '.join(args)})" if args else ""))
    return outcome.seconds, outcome.log_file


def ensure_listings(stack: Stack, rows: int = 1_000_000) -> int:
    """Generate the Inside Airbnb snapshots once; later demos reuse them."""
    from ferry.airbnb.generate import generate

    with stack.service("postgres").connect("inside_airbnb", autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('listings') IS NOT NULL").fetchone()[0]:
            count = conn.execute("SELECT count(*) FROM listings").fetchone()[0]
            if count:
                return count
        return generate(conn, rows=rows)


def ensure_reviews(stack: Stack, count: int = 1_000_000) -> int:
    """Fill the MongoDB reviews collection once (about 2.5 minutes for a million); later demos reuse it."""
    from ferry.airbnb.generate import listings_for_rows
    from ferry.airbnb.reviews import generate_reviews

    with stack.service("mongo").client() as client:
        return generate_reviews(client["inside_airbnb"], count=count, listings=listings_for_rows(1_000_000))


def demo_transfers(stack: Stack) -> list[str]:
    import boto3
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    rows = ensure_listings(stack)
    reviews = ensure_reviews(stack)
    seconds, log_file = run_dag(stack, "transfers_example", "2019-12-07")
    s3 = boto3.client("s3")
    objects = s3.list_objects_v2(Bucket="inside-airbnb", Prefix="example/").get("Contents", [])
    sftp_path = "ferry-drop/inside-airbnb/listing-2019-12-07.csv"
    size = SFTPHook(ssh_conn_id="sftp_default").get_conn().stat(sftp_path).st_size
    lines = [f"transfers_example ({seconds:.0f} s): {rows:,} listings rows in PostgreSQL, {reviews:,} reviews in "
             "MongoDB; one day exported"]
    lines += [f"  s3://inside-airbnb/{o['Key']}  {o['Size']:,} bytes"
              + ("  (MongoDB reviews up to that day, gzip JSON lines)" if "reviews" in o["Key"] else "")
              for o in objects]
    lines += [f"  sftp://{stack.settings.host}:{stack.settings.ports['sshd']}/~/{sftp_path}  {size:,} bytes",
              f"  log: {log_file}"]
    return lines


#: The demo backfills every n-th monthly interval (and the last): 15 of the 57, about two
#: minutes here. `python -m ferry.airbnb.backfill` (``--every 1``) runs all of them.
AIRBNB_EVERY = 4


def demo_inside_airbnb(stack: Stack) -> list[str]:
    import json

    import boto3

    ensure_listings(stack)
    log_file = stack.settings.logs / "demo-inside_airbnb.log"
    started = time.monotonic()
    with open(log_file, "wb") as log:
        result = subprocess.run([sys.executable, "-m", "ferry.airbnb.backfill", "--every", str(AIRBNB_EVERY)],
                                env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"DAG inside_airbnb failed — log: {log_file}")
    s3 = boto3.client("s3")
    snapshots = [o for o in s3.list_objects_v2(Bucket="inside-airbnb", Prefix="listing-").get("Contents", [])]

    def movers(name: str) -> list[dict]:
        return json.loads(s3.get_object(Bucket="inside-airbnb", Key=f"results/{name}.json")["Body"].read())

    from ferry.airbnb.backfill import monthly_dates

    ran = len(monthly_dates(every=AIRBNB_EVERY))
    lines = [f"inside_airbnb ({time.monotonic() - started:.0f} s): {ran} monthly intervals exported "
             f"(every {AIRBNB_EVERY}th of 57, and the last); the cruncher read {len(snapshots)} snapshot objects"]
    for title, name in (("biggest increases", "biggest_increase"), ("biggest decreases", "biggest_decrease")):
        lines.append(f"  {title} (price change per day, oldest → latest snapshot):")
        lines += [f"    listing {m['id']:>6}: {m['oldest_price']:>4} on {m['download_date_min']} → "
                  f"{m['latest_price']:>4} on {m['download_date_max']}  ({m['price_diff_per_day']:+.3f}/day)"
                  for m in movers(name)]
    lines += [f"  s3://inside-airbnb/results/{k}" for k in
              ("biggest_increase.json", "biggest_decrease.json", "report.png", "report.html")]
    lines.append(f"  log: {log_file}")
    return lines


def demo_inside_airbnb_spark(stack: Stack) -> list[str]:
    from ferry.stack.stack import SPARK_SERVICES

    stack.up(list(SPARK_SERVICES), echo=lambda line: None)
    seconds, log_file = run_dag(stack, "inside_airbnb_spark", "2019-12-07")
    with stack.service("postgres").connect("airflow") as conn:
        durations = conn.execute(
            "SELECT task_id, extract(epoch FROM end_date - start_date) FROM task_instance "
            "WHERE dag_id = 'inside_airbnb_spark' AND run_id = (SELECT run_id FROM dag_run "
            "WHERE dag_id = 'inside_airbnb_spark' ORDER BY start_date DESC LIMIT 1)"
        ).fetchall()
    took = dict(durations)
    ways = {
        "spark-submit, local[*]": took.get("spark_submit_local"),
        "spark-submit, standalone master": took.get("spark_submit_standalone"),
        "spark-submit over SSH": took.get("ssh_spark_submit"),
        "REST API (submit, wait for the driver)": sum(
            took.get(t) or 0 for t in ("rest_submit", "rest_wait_for_driver")
        ),
    }
    lines = [f"inside_airbnb_spark ({seconds:.0f} s): the cruncher on Spark, three ways; all agree with the "
             "in-process cruncher"]
    lines += [f"  {way:<42} {t:6.1f} s" for way, t in ways.items() if t]
    lines += ["  s3://inside-airbnb/results/spark/biggest_increase.json, …/biggest_decrease.json", f"  log: {log_file}"]
    return lines


def demo_inside_airbnb_docker(stack: Stack) -> list[str]:
    """The cruncher in a container on the snapshots inside_airbnb exported; same results."""
    import json

    import boto3

    started = time.monotonic()
    stack.up(["docker"], echo=lambda line: None)  # the first time: a Debian bootstrap and the image build
    ready = time.monotonic() - started
    seconds, log_file = run_dag(stack, "inside_airbnb_docker")
    s3 = boto3.client("s3")

    def movers(prefix: str, name: str) -> list[dict]:
        return json.loads(s3.get_object(Bucket="inside-airbnb", Key=f"{prefix}{name}.json")["Body"].read())

    same = all(movers("results/docker/", n) == movers("results/", n) for n in ("biggest_increase", "biggest_decrease"))
    docker = stack.service("docker")
    return [f"inside_airbnb_docker ({seconds:.0f} s; engine and images ready in {ready:.0f} s): DockerOperator ran "
            f"ferry/numbercruncher on {docker.url}; results {'equal' if same else 'DIFFER FROM'} the in-process "
            "cruncher's",
            *[f"  listing {m['id']:>6}: {m['price_diff_per_day']:+.3f}/day"
              for m in movers("results/docker/", "biggest_increase")[:3]],
            "  s3://inside-airbnb/results/docker/biggest_increase.json, …/biggest_decrease.json",
            f"  log: {log_file}"]


def demo_digits_classifier(stack: Stack) -> list[str]:
    """Train and deploy each model on the local SageMaker, then ask the API about a few sample pictures."""
    import json
    import re
    import urllib.request

    import boto3

    from ferry.digits.sample_data import write_sample_pictures

    lines = []
    sagemaker = boto3.client("sagemaker")
    for model in ("kmeans", "knn", "sklearn"):  # the seed's model first; the default (accurate) one stays live
        seconds, log_file = run_dag(stack, "digits_classifier", "--conf", json.dumps({"model": model}),
                                    log_name=f"digits_classifier-{model}")
        log = log_file.read_text(errors="replace")
        accuracy = re.search(r"'accuracy': ([0-9.]+)", log)
        endpoint = sagemaker.describe_endpoint(EndpointName="mnistclassifier")
        job = sagemaker.describe_training_job(TrainingJobName=endpoint["EndpointConfigName"])
        trained = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
        lines.append(f"digits_classifier, model={model} ({seconds:.0f} s): SageMaker job {job['TrainingJobName']} "
                     f"trained in {trained:.0f} s, held-out accuracy {accuracy.group(1) if accuracy else '?'} "
                     f"— log: {log_file}")
    api = stack.settings.url("api")
    lines.append(f"  the API ({api}) on sample pictures (dark ink on light paper, 540x420 JPEG):")
    for picture, label in write_sample_pictures(stack.settings.data("digits-samples")):
        request = urllib.request.Request(api + "/", data=picture.read_bytes(), headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=30) as response:
            digit = json.loads(response.read())["digit"]
        lines.append(f"    {picture}  → {digit}  ({'right' if digit == label else 'wrong'})")
    lines.append(f"  draw your own: open {api}/ in a browser")
    return lines


PIPELINES: list[Callable[[Stack], list[str]]] = [
    demo_transfers, demo_inside_airbnb, demo_inside_airbnb_docker, demo_inside_airbnb_spark, demo_digits_classifier]


def main() -> int:
    import logging

    for noisy in ("botocore", "paramiko", "airflow.providers"):  # connection chatter, not results
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack = Stack()
    print("Starting the local stack…", flush=True)
    stack.up()
    os.environ.update(stack_environment(stack.settings))
    migrate_metadata_db(os.environ.copy(), stack.settings.logs / "airflow.log")
    summary = []
    for pipeline in PIPELINES:
        print(f"Running {pipeline.__name__.removeprefix('demo_')}…", flush=True)
        summary += pipeline(stack)
    print("\nWhat the demo produced:")
    print("\n".join(summary))
    print('\nLook around: eval "$(.venv/bin/ferry stack env)"; then psql, aws/boto3, or `make up` for the UI.')
    return 0


if __name__ == "__main__":
    sys.exit(main())
