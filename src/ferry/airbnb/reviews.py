"""Inside Airbnb reviews as a MongoDB collection, generated reproducibly (the seed's section 2-1).

Real Inside Airbnb ``reviews.csv`` files have one row per review: ``listing_id, id, date,
reviewer_id, reviewer_name, comments``. We generate documents of that shape for the generated
listings (ids 1…N, as in ``ferry.airbnb.generate``), with the date kept as the files' text
(``YYYY-MM-DD``), so the seed's query ``{"date": {"$lte": "{{ ds }}"}}`` selects by day.

Documents are inserted in batches of 10,000 (unordered: the server may apply them as it likes).
A small ``generated`` document records the seed and count; generating again with the same
arguments does nothing, with others it replaces the collection.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np

from ferry.airbnb.generate import FIRST, LAST

REVIEWERS = ["Anouk", "Bas", "Chloé", "David", "Eva", "Finn", "Giulia", "Hiro", "Ines", "Jonas", "Kemal",
             "Lena", "Mateo", "Noor", "Olga", "Pieter", "Quinn", "Rosa", "Sven", "Tomás", "Ulla", "Vera"]
OPENINGS = ["Great stay", "Lovely place", "Very central", "Cosy flat", "Nice host", "Good value",
            "Clean and quiet", "Perfect location", "A bit noisy", "Smaller than expected"]
DETAILS = ["close to the canals", "the bikes were a bonus", "check-in was easy", "the bed was comfortable",
           "lots of cafés nearby", "the stairs are steep", "tram stop around the corner",
           "host answered quickly", "would come back", "the kitchen had everything"]

BATCH = 10_000


def review_documents(count: int, *, listings: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` reviews of listings ``1…listings``, dated between the first and last snapshot."""
    rng = np.random.default_rng(seed)
    days = (LAST - FIRST).days
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        listing = rng.integers(1, listings + 1, n)
        # More reviews in later years, as Airbnb grew.
        day = (np.sqrt(rng.random(n)) * days).astype(int)
        reviewer = rng.integers(1, 5_000_000, n)
        opening = rng.integers(0, len(OPENINGS), n)
        detail = rng.integers(0, len(DETAILS), n)
        for i in range(n):
            yield {
                "listing_id": int(listing[i]),
                "id": start + i + 1,
                "date": (FIRST + timedelta(days=int(day[i]))).isoformat(),
                "reviewer_id": int(reviewer[i]),
                "reviewer_name": REVIEWERS[reviewer[i] % len(REVIEWERS)],
                "comments": f"{OPENINGS[opening[i]]}, {DETAILS[detail[i]]}.",
            }


def generate_reviews(database: Any, *, count: int = 1_000_000, listings: int, seed: int = 7) -> int:
    """Fill ``database.reviews`` (a pymongo Database) unless it already holds this generation."""
    wanted = {"_id": "reviews", "count": count, "listings": listings, "seed": seed}
    done = database.generated.find_one({"_id": "reviews"}) == wanted
    if done and database.reviews.estimated_document_count() == count:
        return count
    database.reviews.drop()
    database.generated.delete_one({"_id": "reviews"})
    batch: list[dict[str, Any]] = []
    for doc in review_documents(count, listings=listings, seed=seed):
        batch.append(doc)
        if len(batch) == BATCH:
            database.reviews.insert_many(batch, ordered=False)
            batch = []
    if batch:
        database.reviews.insert_many(batch, ordered=False)
    database.generated.insert_one(wanted)
    return database.reviews.estimated_document_count()
