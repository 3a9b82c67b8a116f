"""Benchmarks: ferry beside its baselines, measured in one run. ``make bench`` runs them."""
