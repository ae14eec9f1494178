"""Camargo et al. 2021 (J Biomech) (catalogue source camargo2021): adapter.py reads it,
miniature.py writes its demo copy, catalog.yaml declares it."""
