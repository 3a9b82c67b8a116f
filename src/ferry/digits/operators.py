"""The amazon provider's SageMaker endpoint operator, made safe to retry."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator


class ReusingSageMakerEndpointOperator(SageMakerEndpointOperator):
    """SageMakerEndpointOperator that reuses a model or endpoint config created by an earlier try.

    The provider's operator always creates both, so rerunning a deploy whose first try got as
    far as creating the model fails with "Cannot create already existing model", on SageMaker
    and on ferry's control plane alike.
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
