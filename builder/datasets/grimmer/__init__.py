"""Grimmer et al. (paper not confirmed) (catalogue source grimmer): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
