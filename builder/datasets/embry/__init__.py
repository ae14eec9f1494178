"""Embry et al. 2018 (IEEE DataPort) (catalogue source embry2018): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
