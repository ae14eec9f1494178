"""Hu, Rouse, Hargrove 2018 (Front Robot AI) (catalogue source hu2018_enabl3s): adapter.py
reads it, miniature.py writes its demo copy, catalog.yaml declares it."""
