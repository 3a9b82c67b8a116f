"""Operators of the digits pipeline: SageMaker's requests, run here or on SageMaker.

``LocalTrainingOperator`` and ``LocalEndpointOperator`` take the same ``config`` as the amazon
provider's ``SageMakerTrainingOperator`` and ``SageMakerEndpointOperator`` and return the same
XCom shape, so the two backends differ by one operator class per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException


class LocalTrainingOperator(BaseOperator):
    """Run a CreateTrainingJob request on this machine (see ferry.digits.training)."""

    template_fields: Sequence[str] = ("config",)
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, config: dict[str, Any], aws_conn_id: str = "aws_default", **kwargs) -> None:
        super().__init__(**kwargs)
        self.config, self.aws_conn_id = config, aws_conn_id

    def execute(self, context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.digits.training import run_training_job

        try:
            job = run_training_job(S3Hook(aws_conn_id=self.aws_conn_id).get_conn(), self.config)
        except (ValueError, FileNotFoundError) as exc:
            raise AirflowException(f"training job {self.config.get('TrainingJobName')}: {exc}") from exc
        self.log.info("training job %s: %s in %.1f s, metrics %s", job["TrainingJobName"],
                      job["ModelArtifacts"]["S3ModelArtifacts"], job["TrainingTimeInSeconds"],
                      job["FinalMetricDataList"])
        return {"Training": job}


class LocalEndpointOperator(BaseOperator):
    """Make a CreateModel/EndpointConfig/Endpoint request live on ferry's endpoint server.

    The server is the one the AWS connection sends ``sagemaker-runtime`` calls to (its extra
    ``service_config.sagemaker-runtime.endpoint_url``), so deploying and invoking agree.
    """

    template_fields: Sequence[str] = ("config",)
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, config: dict[str, Any], aws_conn_id: str = "aws_default", timeout: float = 120,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.config, self.aws_conn_id, self.timeout = config, aws_conn_id, timeout

    def runtime_url(self) -> str:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="sagemaker-runtime")
        url = hook.conn_config.get_service_endpoint_url("sagemaker-runtime")
        if not url:
            raise AirflowException(
                f"connection {self.aws_conn_id!r} sends sagemaker-runtime calls to AWS; the local backend needs "
                "extra.service_config['sagemaker-runtime'].endpoint_url = ferry's endpoint server")
        return url.rstrip("/")

    def execute(self, context) -> dict[str, Any]:
        import urllib.error

        from ferry.digits.configs import model_data_url
        from ferry.digits.endpoint import deploy_model

        name = self.config["Endpoint"]["EndpointName"]
        model_data = model_data_url(self.config)
        runtime_url = self.runtime_url()
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="sagemaker-runtime")
        credentials = hook.get_session().get_credentials()
        try:
            endpoint = deploy_model(runtime_url, name, model_data, credentials=credentials,
                                    region=hook.conn_region_name or "eu-west-1", timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise AirflowException(f"deploying {model_data} to {name}: {exc.code} {exc.read().decode()}") from exc
        except OSError as exc:
            raise AirflowException(f"the endpoint server at {runtime_url} does not answer: {exc}") from exc
        self.log.info("endpoint %s is serving %s", name, model_data)
        return {"Endpoint": endpoint}


class ReusingSageMakerEndpointOperator(SageMakerEndpointOperator):
    """SageMakerEndpointOperator that reuses a model or endpoint config created by an earlier try.

    The provider's operator always creates both, so rerunning a deploy whose first try got as
    far as creating the model fails with "Cannot create already existing model".
    """

    def execute(self, context) -> dict:
        from botocore.exceptions import ClientError

        for key, describe, name_field in (("Model", self.hook.describe_model, "ModelName"),
                                          ("EndpointConfig", self.hook.describe_endpoint_config,
                                           "EndpointConfigName")):
            if key not in self.config:
                continue
            try:
                describe(self.config[key][name_field])
            except ClientError:
                continue  # does not exist yet: create it
            self.log.info("%s %s exists already; reusing it", key, self.config[key][name_field])
            del self.config[key]
        return super().execute(context)
