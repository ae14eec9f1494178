"""Lencioni et al. 2019 (Sci Data) (catalogue source lencioni2019): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
