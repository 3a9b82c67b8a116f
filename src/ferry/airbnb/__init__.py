"""The Inside Airbnb pipeline: listings snapshots in PostgreSQL, exported to S3 and crunched."""
