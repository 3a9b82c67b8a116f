"""A SageMaker Python SDK v3 user's code (ModelTrainer), run by tests/sagemaker/test_sdk.py in
the v3 SDK's own venv (.tools/sagemaker-sdk-v3) with the stack's environment only.

``python sdk3_user.py WORKDIR`` trains the scikit-learn image's script through ModelTrainer as
AWS's examples write it, and prints, last, one JSON line of what it saw.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import boto3
import numpy as np
from sagemaker.core import image_uris
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, SourceCode

ROLE = "arn:aws:iam::000000000000:role/ferry-sagemaker"

TRAIN_SCRIPT = '''
import argparse, os
import joblib, numpy as np
from sklearn.linear_model import LogisticRegression

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0)  # v3's driver passes {"C": 0.5} as --C 0.5
args = parser.parse_args()
data = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",")
print(f"training with C={args.C} on {len(data)} rows in {os.getcwd()}", flush=True)
model = LogisticRegression(C=args.C).fit(data[:, 1:], data[:, 0])
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
'''


def main(work: Path) -> dict:
    rng = np.random.default_rng(7)
    labels = np.repeat([0, 1], 100)
    features = rng.normal(0, 0.3, (200, 4)) + labels[:, None] * 5
    (work / "src").mkdir()
    (work / "src" / "train.py").write_text(TRAIN_SCRIPT)
    s3 = boto3.client("s3")
    buffer = io.BytesIO()
    np.savetxt(buffer, np.column_stack([labels, features]), delimiter=",", fmt="%.5f")
    s3.put_object(Bucket="sagemaker-eu-west-1-000000000000", Key="sdk-test/v3/train/train.csv", Body=buffer.getvalue())
    image = image_uris.retrieve("sklearn", region="eu-west-1", version="1.2-1")
    trainer = ModelTrainer(training_image=image, role=ROLE,
                           source_code=SourceCode(source_dir=str(work / "src"), entry_script="train.py"),
                           compute=Compute(instance_type="ml.m5.large", instance_count=1),
                           hyperparameters={"C": 0.5})
    trainer.train(input_data_config=[InputData(channel_name="train",
                                               data_source="s3://sagemaker-eu-west-1-000000000000/sdk-test/v3/train")])
    job = trainer._latest_training_job
    artifact = job.model_artifacts.s3_model_artifacts
    bucket, key = artifact.removeprefix("s3://").split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        members = sorted(tar.getnames())
    return {"status": job.training_job_status, "name": job.training_job_name, "members": members,
            "entrypoint": job.algorithm_specification.container_entrypoint}


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    print()
    print(json.dumps(result))
