"""Gait120 2025 (Sci Data) (catalogue source gait120): adapter.py reads it, miniature.py writes
its demo copy, catalog.yaml declares it."""
