"""Signal processing: pure functions from source signals to stride records."""
