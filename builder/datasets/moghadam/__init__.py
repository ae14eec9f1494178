"""Moghadam, Yeung, Choisne 2023 (Sci Rep) (catalogue source moghadam2023): adapter.py reads
it, miniature.py writes its demo copy, catalog.yaml declares it."""
