"""The Inside Airbnb cruncher in a container, as the seed runs it (section 2-2, DockerOperator).

For machines with a Docker engine (there is none on ferry's reference machine): build the image
with `docker build -t ferry/numbercruncher -f docker/numbercruncher.Dockerfile .`, then trigger
this DAG after inside_airbnb has exported the snapshots. S3 settings come from the aws_default
connection, not from the DAG file.
"""

from __future__ import annotations

import pendulum
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import dag


@dag(schedule=None, start_date=pendulum.datetime(2015, 4, 1, tz="UTC"), catchup=False,
     tags=["ferry", "seed", "inside-airbnb", "docker"])
def inside_airbnb_docker():
    DockerOperator(
        task_id="crunch_numbers",
        image="ferry/numbercruncher:latest",
        docker_url="unix://var/run/docker.sock",
        api_version="auto",
        auto_remove="success",  # the container is removed once it succeeded
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
            "BUCKET": "inside-airbnb",
            "PREFIX": "listing-",
        },
    )


inside_airbnb_docker()
