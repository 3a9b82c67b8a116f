"""The Inside Airbnb cruncher in a container, as the seed runs it (section 2-2, DockerOperator).

Run it after inside_airbnb has exported the snapshots. The image is built on this machine by
`ferry stack up --docker` (docker/numbercruncher.Dockerfile on a Debian base); the engine is
DOCKER_HOST's, which `ferry stack env` sets. S3 settings come from the aws_default connection,
not from this file; the results go beside the in-process cruncher's, under results/docker/.

    remove_leftover_containers → crunch_numbers
"""

from __future__ import annotations

import pendulum
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Param, dag, task

from ferry.airbnb.containers import task_label


@dag(schedule=None, start_date=pendulum.datetime(2015, 4, 1, tz="UTC"), catchup=False,
     max_active_runs=1,  # so that any container labelled for this DAG is a leftover
     tags=["ferry", "seed", "inside-airbnb", "docker"],
     params={"bucket": Param("inside-airbnb", type="string"),
             "prefix": Param("listing-", type="string"),
             "results_prefix": Param("results/docker/", type="string")})
def inside_airbnb_docker():
    @task
    def remove_leftover_containers(dag=None) -> list[str]:
        """Containers of a crunch_numbers whose task process was killed outright (see ferry.airbnb.containers)."""
        import docker

        from ferry.airbnb.containers import remove_leftovers

        client = docker.from_env()  # DOCKER_HOST, as DockerOperator's default
        try:
            return remove_leftovers(client, dag.dag_id, "crunch_numbers")
        finally:
            client.close()

    remove_leftover_containers() >> DockerOperator(
        task_id="crunch_numbers",
        labels=task_label("inside_airbnb_docker", "crunch_numbers"),
        image="ferry/numbercruncher:latest",
        api_version="auto",
        # Removed whatever happened (its log lines are already in the task log), also when the
        # task is killed: nothing is left behind for a rerun to trip over.
        auto_remove="force",
        network_mode="host",  # reach the stack's S3 endpoint on the host's loopback
        mount_tmp_dir=False,
        # Only `environment` is templated in the Docker provider (`private_environment` is
        # passed as written), so the connection's values go here; Airflow masks the
        # connection's password wherever it would be logged or shown as a rendered field.
        environment={
            "S3_ENDPOINT": "{{ conn.aws_default.extra_dejson.get('endpoint_url', '') }}",
            "AWS_DEFAULT_REGION": "{{ conn.aws_default.extra_dejson.get('region_name', 'eu-west-1') }}",
            "S3_ACCESS_KEY": "{{ conn.aws_default.login or '' }}",
            "S3_SECRET_KEY": "{{ conn.aws_default.password or '' }}",
            "BUCKET": "{{ params.bucket }}",
            "PREFIX": "{{ params.prefix }}",
            "RESULTS_PREFIX": "{{ params.results_prefix }}",
        },
    )


inside_airbnb_docker()
