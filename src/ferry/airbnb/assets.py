"""The Inside Airbnb pipeline's Airflow assets: what other DAGs can be scheduled on."""

from __future__ import annotations

from airflow.sdk import Asset

#: Updated by every run of ``inside_airbnb``'s export: the event's ``extra`` holds the bucket,
#: the keys written (``listing-<interval start>.csv``), and their rows and bytes.
LISTINGS_EXPORTS = Asset(name="inside_airbnb_listings", uri="s3://inside-airbnb/listings")
