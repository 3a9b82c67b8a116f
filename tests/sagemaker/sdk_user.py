"""A SageMaker Python SDK (v2) user's code, run by tests/sagemaker/test_sdk.py in the SDK's own
venv (.tools/sagemaker-sdk) with the stack's environment (``eval "$(ferry stack env)"``).

Written as AWS's examples write it, with the SDK's defaults: no endpoint URLs, no bucket, no
serializers named. ``python sdk_user.py FLOW WORKDIR`` runs one flow and prints, last, one JSON
line of what it saw, for the test to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import numpy as np
import sagemaker
from botocore.exceptions import ClientError
from sagemaker import KNN, KMeans, image_uris
from sagemaker.deserializers import JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn import SKLearn

ROLE = "arn:aws:iam::000000000000:role/ferry-sagemaker"
TRAINING, SERVING = "ml.c5.xlarge", "ml.m5.large"

TRAIN_SCRIPT = '''
import argparse, os
import joblib, numpy as np
from sklearn.linear_model import LogisticRegression

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-C", type=float, default=1.0)  # the toolkit passes {"C": 0.5} as -C 0.5
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    args = parser.parse_args()
    data = np.loadtxt(os.path.join(args.train, "train.csv"), delimiter=",")  # the object's own name
    print(f"training with C={args.C} on {len(data)} rows", flush=True)
    model = LogisticRegression(C=args.C).fit(data[:, 1:], data[:, 0])
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
'''


def blobs(per_blob: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three well-apart clusters of 4 features: (features, labels, one probe point per cluster)."""
    rng = np.random.default_rng(7)
    centers = np.array([[0, 0, 0, 0], [10, 10, 0, 0], [0, 10, 10, 10]], dtype=np.float32)
    labels = np.repeat(np.arange(3), per_blob).astype(np.float32)
    features = (centers[labels.astype(int)] + rng.normal(0, 0.3, (len(labels), 4))).astype(np.float32)
    return features, labels, centers


def model_encryption(model_data: str) -> str:
    bucket, key = model_data.removeprefix("s3://").split("/", 1)
    return boto3.client("s3").head_object(Bucket=bucket, Key=key).get("ServerSideEncryption", "")


def endpoint_gone(name: str) -> bool:
    try:
        boto3.client("sagemaker").describe_endpoint(EndpointName=name)
    except ClientError:
        return True
    return False


def kmeans(_work: Path) -> dict:
    features, _labels, centers = blobs()
    estimator = KMeans(role=ROLE, instance_count=1, instance_type=TRAINING, k=3)
    estimator.fit(estimator.record_set(features))
    predictor = estimator.deploy(initial_instance_count=1, instance_type=SERVING)
    answers = predictor.predict(centers)  # RecordIO in and out: the SDK's own (de)serializers
    clusters = [r.label["closest_cluster"].float32_tensor.values[0] for r in answers]
    predictor.delete_endpoint()
    return {"clusters": clusters, "encryption": model_encryption(estimator.model_data),
            "gone": endpoint_gone(predictor.endpoint_name)}


def knn(_work: Path) -> dict:
    features, labels, centers = blobs()
    estimator = KNN(role=ROLE, instance_count=1, instance_type=TRAINING, k=5, sample_size=300,
                    predictor_type="classifier")
    estimator.fit(estimator.record_set(features, labels=labels))
    predictor = estimator.deploy(initial_instance_count=1, instance_type=SERVING)
    answers = predictor.predict(centers)
    predicted = [r.label["predicted_label"].float32_tensor.values[0] for r in answers]
    predictor.delete_endpoint()
    return {"predicted": predicted, "gone": endpoint_gone(predictor.endpoint_name)}


def builtin_image(work: Path) -> dict:
    """The generic Estimator with the k-means image, on csv without labels (AWS's label_size=0)."""
    session = sagemaker.Session()
    features, _labels, centers = blobs()
    (work / "kmeans-csv").mkdir()
    np.savetxt(work / "kmeans-csv" / "points.csv", features, delimiter=",", fmt="%.5f")
    train = session.upload_data(str(work / "kmeans-csv"), key_prefix="sdk-test/kmeans-csv")
    estimator = Estimator(image_uri=image_uris.retrieve("kmeans", session.boto_region_name), role=ROLE,
                          instance_count=1, instance_type=TRAINING,
                          hyperparameters={"k": 3, "feature_dim": 4, "mini_batch_size": 100})
    estimator.fit({"train": TrainingInput(train, content_type="text/csv;label_size=0")})
    predictor = estimator.deploy(1, SERVING, serializer=CSVSerializer(), deserializer=JSONDeserializer())
    answer = predictor.predict(centers)
    predictor.delete_endpoint()
    return {"clusters": [p["closest_cluster"] for p in answer["predictions"]], "train": train}


def sklearn(work: Path) -> dict:
    session = sagemaker.Session()
    features, labels, centers = blobs()
    (work / "src").mkdir()
    (work / "src" / "train.py").write_text(TRAIN_SCRIPT)
    (work / "data").mkdir()
    np.savetxt(work / "data" / "train.csv", np.column_stack([labels, features]), delimiter=",", fmt="%.5f")
    train = session.upload_data(str(work / "data"), key_prefix="sdk-test/sklearn")
    estimator = SKLearn(entry_point="train.py", source_dir=str(work / "src"), framework_version="1.2-1",
                        role=ROLE, instance_type=TRAINING, hyperparameters={"C": 0.5})
    estimator.fit({"train": train})
    predictor = estimator.deploy(initial_instance_count=1, instance_type=SERVING)
    predicted = predictor.predict(centers)  # npy in and out: the SDK's defaults for SKLearn
    predictor.delete_endpoint()
    return {"predicted": [float(p) for p in predicted], "encryption": model_encryption(estimator.model_data),
            "source": estimator.uploaded_code.s3_prefix, "gone": endpoint_gone(predictor.endpoint_name)}


FLOWS = {"kmeans": kmeans, "knn": knn, "builtin_image": builtin_image, "sklearn": sklearn}

if __name__ == "__main__":
    result = FLOWS[sys.argv[1]](Path(sys.argv[2]))
    print()  # the SDK's deploy waiter leaves its progress marks on an open line
    print(json.dumps(result))
