"""The built-in demo: a deterministic miniature raw source written into a cache folder."""
