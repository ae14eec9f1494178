"""Training on a store: data loading (data.py); models, export and releases follow (issue 5)."""
