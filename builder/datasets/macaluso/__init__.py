"""Macaluso et al. 2020 (IEEE DataPort) (catalogue source macaluso2020): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
