"""The Zarr store: layout, staged per-trial results, versioned publishing, HDF5 index."""
