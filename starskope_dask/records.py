"""The contracts between stages: frozen dataclasses, documented in one place.

``discover`` produces manifest rows (a Parquet table, columns in ``MANIFEST_COLUMNS``);
``read`` turns one product URL into a :class:`LightCurve`; a product that fails becomes
a :class:`Failure`. ``align`` and ``store`` exchange xarray
objects with named dims (``mission``, ``star``, ``time``), described in ``store``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

MISSIONS = ("Kepler", "K2", "TESS")
"""The missions, in the order of the cube's ``mission`` dimension."""

MANIFEST_COLUMNS = (
    "mission",
    "target",
    "kic",
    "epic",
    "tic",
    "segment",
    "cadence",
    "product_type",
    "s3_uri",
    "https_url",
    "size",
    "ra",
    "dec",
    "source",
)
"""Columns of a manifest, in order. IDs are nullable integers; ``source`` says where the row
came from (``mast``, ``archive-listing``, ``archive-layout``, ``file``)."""


@dataclasses.dataclass(frozen=True)
class StarIds:
    """Catalogue identity of a star as one product states it.

    Attributes
    ----------
    kic, epic, tic : int or None
        Kepler Input Catalog, K2 Ecliptic Plane Input Catalog and TESS Input Catalog IDs.
    object_name : str
        The product's OBJECT keyword (``"KIC 10666592"``), or ``""``.
    """

    kic: int | None = None
    epic: int | None = None
    tic: int | None = None
    object_name: str = ""

    @property
    def label(self) -> str:
        """A human label: the OBJECT name, else the first known catalogue ID."""
        if self.object_name:
            return self.object_name
        for prefix, value in (("KIC", self.kic), ("EPIC", self.epic), ("TIC", self.tic)):
            if value is not None:
                return f"{prefix} {value}"
        return "unknown star"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a light curve came from and how it was read.

    Attributes
    ----------
    url : str
        The product's URL as given to the reader.
    product_type : str
        e.g. ``kepler-lc``, ``kepler-sc``, ``k2-lc``, ``tess-spoc-2min``, ``tess-spoc-20s``,
        ``tess-spoc-ffi``, ``hlsp-tess-data-alerts``, ``hlsp-k2sc``, ``hlsp-eleanor``,
        ``lightkurve``, ``custom``.
    data_release : int or None
        The archive's data release (``DATA_REL``).
    flux_column : str
        The column the flux came from.
    quality_bitmask : int
        The bitmask applied to the quality flags.
    time_reference : str
        ``"header"`` when BJDREFI/BJDREFF were read, ``"mission-default"`` when inferred.
    creator : str
        The ``CREATOR``/``ORIGIN`` of the file.
    """

    url: str
    product_type: str
    data_release: int | None
    flux_column: str
    quality_bitmask: int
    time_reference: str = "header"
    creator: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class LightCurve:
    """One product's light curve, every cadence kept, with a mask of the good ones.

    Attributes
    ----------
    mission : str
        ``"Kepler"``, ``"K2"`` or ``"TESS"``.
    ids : StarIds
        Catalogue identity.
    ra, dec : float
        Target position in degrees (ICRS, J2000); NaN where the product does not say.
    segment : int
        Quarter (Kepler), campaign (K2) or sector (TESS); -1 when unknown.
    cadence_days : float
        Exposure cadence in days.
    time : ndarray of float64
        BJD_TDB in days (TIME + BJDREFI + BJDREFF). NaN where the file has no time.
    flux, flux_err : ndarray of float64
        Flux and its 1-sigma error in e-/s (NaN where missing).
    quality : ndarray of int32
        The mission's quality flags (0 when the product has none).
    good : ndarray of bool
        Cadences with finite time and flux and no flag in the bitmask.
    provenance : Provenance
        Where it came from.
    """

    mission: str
    ids: StarIds
    ra: float
    dec: float
    segment: int
    cadence_days: float
    time: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]
    flux_err: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int32]
    good: npt.NDArray[np.bool_]
    provenance: Provenance

    def __len__(self) -> int:
        return int(self.time.size)

    @property
    def n_good(self) -> int:
        """Number of good cadences."""
        return int(np.count_nonzero(self.good))

    @property
    def time_range(self) -> tuple[float, float]:
        """First and last finite BJD_TDB, or NaNs when there is none."""
        finite = self.time[np.isfinite(self.time)]
        if finite.size == 0:
            return (math.nan, math.nan)
        return (float(finite.min()), float(finite.max()))

    def good_only(self) -> LightCurve:
        """Return a copy holding only the good cadences."""
        keep = self.good
        return dataclasses.replace(
            self,
            time=self.time[keep],
            flux=self.flux[keep],
            flux_err=self.flux_err[keep],
            quality=self.quality[keep],
            good=np.ones(int(keep.sum()), dtype=bool),
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``starskope inspect`` prints)."""
        start, stop = self.time_range
        return {
            "url": self.provenance.url,
            "mission": self.mission,
            "object": self.ids.label,
            "kic": self.ids.kic,
            "epic": self.ids.epic,
            "tic": self.ids.tic,
            "ra": None if math.isnan(self.ra) else round(self.ra, 6),
            "dec": None if math.isnan(self.dec) else round(self.dec, 6),
            "segment": self.segment,
            "cadence_days": self.cadence_days,
            "product_type": self.provenance.product_type,
            "n_cadences": len(self),
            "n_good": self.n_good,
            "bjd_start": None if math.isnan(start) else start,
            "bjd_stop": None if math.isnan(stop) else stop,
        }


@dataclasses.dataclass(frozen=True)
class Failure:
    """A product that could not be read, kept as data.

    Attributes
    ----------
    url : str
        The product.
    error_type : str
        The exception class name (``CorruptProductError``).
    message : str
        The error message.
    stage : str
        Where it failed (``header``, ``read``, ``write``).
    """

    url: str
    error_type: str
    message: str
    stage: str = "read"

    @classmethod
    def from_exception(cls, url: str, exc: BaseException, stage: str = "read") -> Failure:
        """Record ``exc`` raised while handling ``url``."""
        return cls(url=url, error_type=type(exc).__name__, message=str(exc), stage=stage)
