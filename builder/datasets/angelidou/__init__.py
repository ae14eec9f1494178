"""Angelidou et al. (identity not confirmed) (catalogue source angelidou): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
