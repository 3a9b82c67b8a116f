"""ferry: run work in, and move data between, the systems around Apache Airflow 3."""
