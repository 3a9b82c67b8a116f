"""A local SageMaker: a control plane that really trains and deploys, apart from any one model.

- ``control_plane``: the SageMaker API (training jobs, models, endpoint configs, endpoints) and
  the part of CloudWatch Logs that training logs need, over AWS's JSON protocol with SigV4
  signatures checked against the stack's key pair; state in SQLite (``store``).
- ``worker``: one process per training job, as SageMaker runs one container per job.
- ``algorithms``: what a training image means here (built-in k-means, …), with AWS's
  hyperparameter validation.

The digits pipeline (``ferry.digits``) is one user of it; nothing here knows about digits.
Needs the ``sagemaker`` extra: ``pip install 'airflow-provider-ferry[sagemaker]'``.
"""

from ferry.extras import require

require("sagemaker", "the local SageMaker (ferry.sagemaker)", "numpy", "sklearn", "uvicorn")
