"""K2MUSE 2025 (arXiv 2504.14602, IJRR 2026) (catalogue source k2muse2025): adapter.py reads
it, miniature.py writes its demo copy, catalog.yaml declares it."""
