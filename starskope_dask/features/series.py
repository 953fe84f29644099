"""The input of every per-star feature function: one star's flux from the cube, all missions.

The cube (``mission × star × time`` on one global BJD_TDB grid) holds each star's flux
normalised by its segment's median. :func:`star_series` takes one star's ``mission × time``
block (numpy, already loaded) and keeps only the occupied grid steps, so the feature functions
work on compact arrays (tens of thousands of points, not the grid's 320 000 steps).
A *segment* is a run of steps from one mission with no gap longer than ``max_gap_days``:
a Kepler quarter, a K2 campaign, half a TESS sector.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from starskope_dask.records import MISSIONS

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class StarSeries:
    """One star's light curve on the global grid, occupied steps only, time-sorted.

    Attributes
    ----------
    step : ndarray of int64
        Grid step of each point (strictly increasing); ``time = start + (step + 0.5) × cadence``.
    time : ndarray of float64
        BJD_TDB (days) of each point.
    flux : ndarray of float64
        Flux relative to its segment's median (≈ 1), finite.
    flux_err : ndarray of float64
        1-sigma error of ``flux``; NaN where unknown.
    mission : ndarray of int8
        Index into :data:`starskope_dask.records.MISSIONS` of each point.
    cadence_days : float
        The grid's step (days).
    """

    step: npt.NDArray[np.int64]
    time: FloatArray
    flux: FloatArray
    flux_err: FloatArray
    mission: npt.NDArray[np.int8]
    cadence_days: float

    @property
    def size(self) -> int:
        """Number of points."""
        return int(self.time.size)

    @property
    def baseline_days(self) -> float:
        """Last minus first time (0 for fewer than two points)."""
        return float(self.time[-1] - self.time[0]) if self.time.size > 1 else 0.0

    @property
    def missions_present(self) -> tuple[str, ...]:
        """Names of the missions with at least one point, in cube order."""
        return tuple(MISSIONS[i] for i in np.unique(self.mission))

    def subset(self, keep: npt.NDArray[np.bool_]) -> StarSeries:
        """The points where ``keep`` is true."""
        return StarSeries(
            self.step[keep],
            self.time[keep],
            self.flux[keep],
            self.flux_err[keep],
            self.mission[keep],
            self.cadence_days,
        )

    def with_flux(self, flux: FloatArray) -> StarSeries:
        """The same points with another flux (e.g. detrended)."""
        return dataclasses.replace(self, flux=np.asarray(flux, np.float64))


def star_series(
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike,
    grid_time: npt.ArrayLike,
    cadence_days: float,
) -> StarSeries:
    """Collect one star's occupied grid steps over every mission.

    Parameters
    ----------
    flux, flux_err : array-like, shape (n_missions, n_steps)
        The star's cube rows (NaN where not observed).
    grid_time : array-like, shape (n_steps,)
        BJD_TDB of each grid step.
    cadence_days : float
        The grid's step.

    Returns
    -------
    StarSeries
        Points where some mission has a finite flux. Where two missions observed the same
        step (K2 campaign 19 and TESS overlap in time), the first mission in cube order wins.
    """
    flux = np.asarray(flux, np.float64)
    flux_err = np.asarray(flux_err, np.float64)
    times = np.asarray(grid_time, np.float64)
    finite = np.isfinite(flux)
    occupied = finite.any(axis=0)
    steps = np.flatnonzero(occupied)
    mission = np.argmax(finite[:, steps], axis=0).astype(np.int8)
    return StarSeries(
        steps.astype(np.int64),
        times[steps],
        flux[mission, steps],
        flux_err[mission, steps],
        mission,
        float(cadence_days),
    )


def segment_slices(series: StarSeries, max_gap_days: float = 0.5) -> list[slice]:
    """Contiguous segments: a new one starts at a gap over ``max_gap_days`` or a new mission.

    Parameters
    ----------
    series : StarSeries
        The star's points.
    max_gap_days : float
        Longest gap inside one segment.

    Returns
    -------
    list of slice
        Index ranges into the series' arrays, in time order; empty for an empty series.
    """
    if series.size == 0:
        return []
    breaks = (np.diff(series.time) > max_gap_days) | (np.diff(series.mission) != 0)
    starts = np.r_[0, np.flatnonzero(breaks) + 1]
    stops = np.r_[starts[1:], series.size]
    return [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
