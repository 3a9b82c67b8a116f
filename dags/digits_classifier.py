"""The seed's handwritten-digit classifier (section 1): S3 → RecordIO-protobuf → SageMaker → endpoint.

One DAG for this machine and for AWS. The steps are the amazon provider's own operators; the
connection ``aws_default`` decides where they go: ferry's local SageMaker (``ferry stack up``
points the connection there) or SageMaker itself (README, "The same DAG on SageMaker").

    download_mnist_data → extract_mnist_data ───┐
    generate_printed_digits ────────────────────┤
    package_training_code → training_request ───┴→ sagemaker_train_model → endpoint_request
        → sagemaker_deploy_model → learn_cluster_digits → evaluate_model

Param ``model``: ``sklearn`` (ferry's classifier in script mode on SageMaker's scikit-learn
image; the default), ``kmeans`` (the seed's built-in k-means; its clusters are mapped to
digits and the map stored beside the model) or ``knn`` (built-in k-NN).
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.operators.s3 import S3CopyObjectOperator
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.sdk import Param, dag, task

from ferry.digits.configs import MODELS
from ferry.digits.operators import ReusingSageMakerEndpointOperator

BUCKET = "ferry-digits"
SAMPLE_BUCKET = "sagemaker-sample-data-eu-west-1"
AWS_CONN = "aws_default"
#: On AWS, set the Variable ferry_sagemaker_role_arn to a SageMaker execution role.
LOCAL_ROLE = "arn:aws:iam::000000000000:role/ferry-sagemaker"


def s3_client():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=AWS_CONN).get_conn()


def runtime_client():
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=AWS_CONN, client_type="sagemaker-runtime").get_conn()


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"model": Param("sklearn", enum=list(MODELS), description="sklearn (script mode), kmeans (the seed's) "
                           "or knn")},
    tags=["ferry", "seed", "digits", "sagemaker"],
)
def digits_classifier():
    download_mnist_data = S3CopyObjectOperator(
        task_id="download_mnist_data",
        source_bucket_name=SAMPLE_BUCKET,
        source_bucket_key="algorithms/kmeans/mnist/mnist.pkl.gz",
        dest_bucket_name=BUCKET,
        dest_bucket_key="mnist.pkl.gz",
    )

    @task
    def extract_mnist_data() -> dict:
        from ferry.digits.convert import mnist_to_recordio

        return mnist_to_recordio(s3_client(), BUCKET, "mnist.pkl.gz", "mnist_data")

    @task
    def generate_printed_digits() -> dict:
        """The script-mode model's second channel: printed digits in fonts the evaluation does not use."""
        from ferry.digits.synthetic import upload_training_digits

        return upload_training_digits(s3_client(), BUCKET)

    @task
    def package_training_code() -> str:
        from ferry.digits.code_bundle import upload_source_bundle

        return upload_source_bundle(s3_client(), BUCKET)

    @task
    def training_request(code_uri: str, params=None, dag_run=None) -> dict:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk import Variable

        from ferry.digits.configs import training_request

        model = params["model"]
        return training_request(
            model, bucket=BUCKET, code_uri=code_uri,
            job_name=f"mnistclassifier-{model}-{dag_run.run_after:%Y%m%d-%H%M%S}",
            region=AwsBaseHook(aws_conn_id=AWS_CONN, client_type="sagemaker").conn_region_name or "eu-west-1",
            role_arn=Variable.get("ferry_sagemaker_role_arn", default=LOCAL_ROLE))

    sagemaker_train_model = SageMakerTrainingOperator(
        task_id="sagemaker_train_model",
        config=training_request(package_training_code()),
        aws_conn_id=AWS_CONN,
        wait_for_completion=True,
        print_log=True,
        check_interval=5,
    )

    @task
    def endpoint_request(trained: dict) -> dict:
        from ferry.digits.configs import endpoint_request

        return endpoint_request(trained["Training"])

    sagemaker_deploy_model = ReusingSageMakerEndpointOperator(
        task_id="sagemaker_deploy_model",
        config=endpoint_request(sagemaker_train_model.output),
        aws_conn_id=AWS_CONN,
        wait_for_completion=True,
        check_interval=5,
    )

    @task
    def learn_cluster_digits(trained: dict) -> dict | None:
        """k-means answers clusters: which digit each stands for, from the labelled training split."""
        from ferry.digits.evaluate import learn_cluster_digits

        artifact = trained["Training"]["ModelArtifacts"]["S3ModelArtifacts"]
        return learn_cluster_digits(s3_client(), runtime_client(), BUCKET, artifact)

    @task
    def evaluate_model(cluster_map: dict | None) -> dict:
        """Accuracy of the live endpoint on the held-out test split, through sagemaker-runtime."""
        from ferry.digits.evaluate import endpoint_accuracy

        cluster_digits = cluster_map["cluster_digits"] if cluster_map else None
        return endpoint_accuracy(s3_client(), runtime_client(), BUCKET, cluster_digits=cluster_digits)

    download_mnist_data >> extract_mnist_data() >> sagemaker_train_model
    generate_printed_digits() >> sagemaker_train_model
    cluster_map = learn_cluster_digits(sagemaker_train_model.output)
    sagemaker_deploy_model >> cluster_map
    evaluate_model(cluster_map)


digits_classifier()
