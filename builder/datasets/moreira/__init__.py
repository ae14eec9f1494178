"""Moreira et al. 2021 (Sci Data) (catalogue source moreira2021, moreira2021_ascii): adapter.py
reads it, miniature.py writes its demo copy, catalog.yaml declares it."""
