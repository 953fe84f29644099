"""The ``features`` stage: per-star science on the cube (pure functions) and its Dask wiring."""
