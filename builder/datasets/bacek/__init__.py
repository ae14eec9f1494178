"""Bacek et al. 2024 (Sci Data) (catalogue source bacek2024): adapter.py reads it, miniature.py
writes its demo copy, catalog.yaml declares it."""
