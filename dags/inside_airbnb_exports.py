"""Scheduled on the Inside Airbnb exports (an Airflow asset), not on a clock: runs once each
``inside_airbnb`` export has written its object, and lists what the export wrote."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from ferry.airbnb.assets import LISTINGS_EXPORTS


@dag(schedule=[LISTINGS_EXPORTS], start_date=pendulum.datetime(2015, 4, 1, tz="UTC"), catchup=False,
     tags=["ferry", "inside-airbnb", "assets"])
def inside_airbnb_exports():
    @task
    def list_new_exports(triggering_asset_events=None) -> list[str]:
        keys = [f"s3://{event.extra['bucket']}/{key}"
                for events in (triggering_asset_events or {}).values() for event in events
                for key in event.extra.get("keys", [])]
        print("new exports:", ", ".join(keys) or "none")
        return keys

    list_new_exports()


inside_airbnb_exports()
