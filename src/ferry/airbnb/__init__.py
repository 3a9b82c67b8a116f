"""The Inside Airbnb pipeline: listings snapshots in PostgreSQL, exported to S3 and crunched.

A demo pipeline: needs the ``demo`` extra (``pip install 'airflow-provider-ferry[demo]'``). The
cruncher's Docker image holds only what ``ferry.airbnb.cruncher`` imports (pandas, pyarrow, boto3).
"""

from ferry.extras import require

require("demo", "the Inside Airbnb pipeline (ferry.airbnb)", "pandas", "pyarrow")
