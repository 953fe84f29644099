"""starskope_dask: training-ready Kepler, K2 and TESS light curves from the cloud archive."""

from __future__ import annotations

__version__ = "0.1.0"
