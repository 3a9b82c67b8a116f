"""The Inside Airbnb cruncher offloaded to Spark the three ways the seed names (section 2-2),
side by side: spark-submit (local[*] and the standalone master), spark-submit over SSH on the
"remote" master, and Spark's REST submission API. Run after inside_airbnb has exported.

To use a real cluster, change connections, not this file: spark_default (its master URL),
ssh_default (the master host), spark_rest (its REST server), and the Variables
ferry_spark_submit (spark-submit on that host) and ferry_spark_input (an s3a:// URI where the
cluster has the S3 connector; staging is then skipped).
"""

from __future__ import annotations

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.sdk import Variable, dag, task

from ferry.spark import JOB
from ferry.spark.rest import driver_finished, submission_id

WORK = "{{ var.value.get('ferry_spark_work_dir', '/tmp/ferry-spark') }}"
OUT = WORK + "/results/{{ run_id | replace(':', '_') | replace('+', '_') }}"
INPUT = "{{ ti.xcom_pull(task_ids='stage_snapshots') }}"


@dag(schedule=None, start_date=pendulum.datetime(2015, 4, 1, tz="UTC"), catchup=False,
     tags=["ferry", "seed", "inside-airbnb", "spark"])
def inside_airbnb_spark():
    @task
    def stage_snapshots() -> str:
        """The input for Spark: the Variable ferry_spark_input if set, else a staged copy."""
        if uri := Variable.get("ferry_spark_input", default=""):
            return uri
        from pathlib import Path

        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.spark.staging import stage_from_s3

        work = Path(Variable.get("ferry_spark_work_dir", default="/tmp/ferry-spark"))
        return stage_from_s3(S3Hook(aws_conn_id="aws_default").get_conn(), "inside-airbnb", "listing-",
                             work / "staging")

    @task
    def check_spark_master() -> None:
        """One clear line if the standalone master (or its REST server) is down."""
        from airflow.sdk import BaseHook

        from ferry.spark.rest import require_master

        master, rest = BaseHook.get_connection("spark_default"), BaseHook.get_connection("spark_rest")
        require_master(f"{master.host}:{master.port}", rest_port=rest.port)

    staged = stage_snapshots()
    master_up = check_spark_master()
    spark_conf = {"spark.ui.enabled": "false"}

    spark_submit_local = SparkSubmitOperator(
        task_id="spark_submit_local", conn_id="spark_local", application=str(JOB), conf=spark_conf,
        application_args=["--input", INPUT, "--output", OUT + "/spark_submit_local"],
    )
    spark_submit_standalone = SparkSubmitOperator(
        task_id="spark_submit_standalone", conn_id="spark_default", application=str(JOB), conf=spark_conf,
        application_args=["--input", INPUT, "--output", OUT + "/spark_submit_standalone"],
    )
    ssh_spark_submit = SSHOperator(
        task_id="ssh_spark_submit",
        ssh_conn_id="ssh_default",
        command="{{ var.value.get('ferry_spark_submit', 'spark-submit') }} "
        "--master {{ conn.spark_default.host }}:{{ conn.spark_default.port }} --conf spark.ui.enabled=false "
        f"{JOB} --input '{INPUT}' --output '{OUT}/ssh_spark_submit'",
        cmd_timeout=900,  # the default, 10 s, ends any real job
    )

    @task
    def rest_request(input_uri: str, run_id: str | None = None) -> str:
        import os
        import sys

        from airflow.sdk import BaseHook

        from ferry.spark.rest import create_submission

        master = BaseHook.get_connection("spark_default")
        work = Variable.get("ferry_spark_work_dir", default="/tmp/ferry-spark")
        out = f"{work}/results/{run_id.replace(':', '_').replace('+', '_')}/rest_submission"
        return create_submission(
            master=f"{master.host}:{master.port}", script=str(JOB), args=["--input", input_uri, "--output", out],
            spark_version=os.environ.get("FERRY_SPARK_VERSION", "4.2.0"), app_name="ferry-cruncher-rest",
            environment={"PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)},
        )

    rest_submit = HttpOperator(
        task_id="rest_submit", http_conn_id="spark_rest", endpoint="v1/submissions/create", method="POST",
        headers={"Content-Type": "application/json"}, data="{{ ti.xcom_pull(task_ids='rest_request') }}",
        response_filter=submission_id,
    )
    rest_wait_for_driver = HttpSensor(
        task_id="rest_wait_for_driver", http_conn_id="spark_rest", method="GET",
        endpoint="v1/submissions/status/{{ ti.xcom_pull(task_ids='rest_submit') }}",
        response_check=driver_finished, poke_interval=3, timeout=900,
    )

    @task
    def compare_and_publish(run_id: str | None = None) -> dict:
        """All ways agree, and agree with the in-process cruncher; the results go to S3."""
        from pathlib import Path

        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.spark.results import compare_and_publish

        work = Path(Variable.get("ferry_spark_work_dir", default="/tmp/ferry-spark"))
        return compare_and_publish(S3Hook(aws_conn_id="aws_default").get_conn(), "inside-airbnb",
                                   work / "results" / run_id.replace(":", "_").replace("+", "_"))

    request = rest_request(staged)
    master_up >> [spark_submit_standalone, ssh_spark_submit, request]
    staged >> [spark_submit_local, spark_submit_standalone, ssh_spark_submit]
    request >> rest_submit >> rest_wait_for_driver
    [spark_submit_local, spark_submit_standalone, ssh_spark_submit, rest_wait_for_driver] >> compare_and_publish()


inside_airbnb_spark()
