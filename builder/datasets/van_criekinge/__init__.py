"""Van Criekinge et al. 2023 (Sci Data) (catalogue source van_criekinge2023): adapter.py reads
it, miniature.py writes its demo copy, catalog.yaml declares it."""
