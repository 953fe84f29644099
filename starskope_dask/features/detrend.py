"""Detrending: a time-windowed Tukey biweight trend per segment, and upward-outlier flags.

The trend is the *biweight location* of the flux in a sliding time window centred on each
point, as ``wotan``'s default method (Hippke, David, Mulders & Heller 2019, AJ 158, 143,
"Wōtan: comprehensive time-series detrending in Python"): start from the window median, take the
median absolute deviation (MAD) about it, then iterate
``location += Σ w·(x − location) / Σ w`` with Tukey weights ``w = (1 − u²)²`` for
``|u| = |x − location| / (c·MAD) < 1`` (``c = 5``). This module runs a fixed number of those
iterations (5; wotan iterates to a 1e-6 tolerance; the two agree to far below the noise),
for every point at once.

Why the biweight and not a spline with iterative clipping
--------------------------------------------------------
* Hippke et al. (2019) injected and recovered transits in Kepler/K2/TESS light curves with
  every common detrender; the time-windowed biweight gave the best recovery (highest SDE,
  depth best preserved) and was the most robust to outliers, with splines (robust or
  iteratively clipped, Vanderburg & Johnson 2014 style) close behind but worse near gaps.
* A robust *local* estimate needs no clipping loop: the biweight gives zero weight to points
  beyond ``c·MAD`` (a transit or flare is down-weighted in the window it falls in) without the
  asymmetric clipping a spline fit needs, and one bad region cannot bend the fit elsewhere.
* On a uniform grid it vectorises: every window is a row of a ``sliding_window_view`` over a
  NaN-filled step array, so the whole light curve is a handful of sorts and weighted sums;
  a spline needs knot placement per segment and a Python-level clipping loop.
* Its one parameter, the window, has a physical meaning: Hippke et al. advise a window of about
  three times the longest transit duration to keep most of the depth. The default 0.75 d is
  wotan's default (≈ 3 × a 6 h transit).

Windows with holes: a local parabola
------------------------------------
A *location* is only unbiased when the window is full and symmetric. Where part of the window
is missing — masked transit points, a segment edge, a gap — it lags on a slope (by
slope × the offset of the points' centroid) and, across a masked transit near a maximum or
minimum of the variability, cuts the curvature: on a 1 %, 5-day sinusoid an 8-h masked transit
comes out anywhere between 35 % and 165 % of its depth. So a window with less than
``full_coverage`` (90 %) of its steps usable, or whose usable steps' centroid is more than
``max_lag_steps`` (0.5) from its centre, is fitted with the same Tukey-weighted scheme but a
local parabola (``bridge_degree`` 2; a robust LOESS step, Cleveland 1979) evaluated at the
window centre, its MAD taken about the first fit. That keeps a masked transit's depth to ≈ 2 %
noise-free; the rest is the noise of bridging the mask (≈ 7 % of a 1e-3 depth per transit at
1e-4 per-point noise, averaging out over transits). Full windows stay wotan's biweight
location, which keeps unmasked transits best (a parabola, or a line, bends into them).

What to expect, unmasked: with the 0.75-d window an 8-h transit (the window only 2.25 × the
duration) keeps ≈ 80 % of its depth on a quiet star at 1e-4 noise and ≈ 30 % on a 1 %, 5-day
sinusoid, whose slope inflates each window's MAD so that transit points keep their weight. Mask
known transits, or widen the window (1.5 d keeps > 90 % on the quiet star), to keep more.

Windows and edges
-----------------
The window covers the grid steps within ± ``window_days / 2`` of each point. Segments (a run
without a gap over ``max_gap_days``, see :func:`starskope_dask.features.series.segment_slices`)
are independent: a window never reaches into another segment, so an offset between segments
is removed. At segment edges the window is truncated (no edge cut; the parabola keeps it from
lagging); a point whose window holds fewer than ``min_points`` usable points gets its trend by
linear interpolation from its segment's neighbours (a masked stretch longer than the window),
or NaN when its segment has none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from starskope_dask.features.series import FloatArray, StarSeries, segment_slices

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]

MAD_TO_SIGMA = 1.4826
"""Scale from a median absolute deviation to a Gaussian standard deviation."""

BIWEIGHT_TUNING = 5.0
"""wotan's default tuning constant ``c`` of the biweight (in units of the window's MAD)."""

_FAR = 1e30
"""Stand-in for a missing window entry: its Tukey weight is always exactly zero."""

_ROW_CHUNK_ELEMENTS = 1 << 20
"""Window rows are processed in chunks of about this many elements (bounded memory)."""


@dataclasses.dataclass(frozen=True)
class Detrended:
    """A light curve divided by its biweight trend.

    All arrays are aligned with the input series' points.

    Attributes
    ----------
    flux : ndarray of float64
        ``flux / trend`` (≈ 1). Outliers keep their value here; drop them with ``good``.
    trend : ndarray of float64
        The biweight trend (NaN only in a segment where no window had ``min_points`` usable
        points, e.g. a segment of one or two points).
    outlier : ndarray of bool
        Upward outliers (flares, cosmic rays): ``flux − 1 > clip_sigma × noise``. Points are
        never flagged for being low, so transits and eclipses are kept.
    noise : ndarray of float64
        Robust per-point scatter of ``flux`` (``1.4826 × MAD`` of ``flux − 1``), one value per
        segment repeated over its points (missions and quarters differ), computed without
        masked points and outliers. NaN for a segment with fewer than 3 usable points.
    """

    flux: FloatArray
    trend: FloatArray
    outlier: BoolArray
    noise: FloatArray

    @property
    def good(self) -> BoolArray:
        """Points with a finite detrended flux that are not outliers."""
        return np.isfinite(self.flux) & ~self.outlier

    @property
    def median_noise(self) -> float:
        """Median of ``noise`` over the points (NaN when there is none)."""
        finite = self.noise[np.isfinite(self.noise)]
        return float(np.median(finite)) if finite.size else float("nan")


def window_steps(window_days: float, cadence_days: float) -> int:
    """Number of grid steps in a centred window of ``window_days`` (odd, at least 1).

    Parameters
    ----------
    window_days : float
        Full width of the window (days).
    cadence_days : float
        Grid step (days).

    Returns
    -------
    int
        ``2 × floor(window_days / 2 / cadence_days) + 1``.
    """
    half = int(np.floor(window_days / 2.0 / cadence_days + 1e-9))
    return 2 * max(half, 0) + 1


def biweight_trend(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    *,
    window_days: float = 0.75,
    mask: npt.ArrayLike | None = None,
    exclude: npt.ArrayLike | None = None,
    cadence_days: float | None = None,
    segments: Sequence[slice] | None = None,
    max_gap_days: float = 0.5,
    n_iter: int = 5,
    tuning: float = BIWEIGHT_TUNING,
    min_points: int = 3,
    degree: int = 0,
    bridge_degree: int = 2,
    full_coverage: float = 0.9,
    max_lag_steps: float = 0.5,
) -> FloatArray:
    """The time-windowed Tukey biweight location of ``flux`` at every point.

    Parameters
    ----------
    time : array-like of float, shape (n,)
        Times (days), increasing, on a uniform grid of step ``cadence_days`` (gaps allowed).
    flux : array-like of float, shape (n,)
        Flux; non-finite values are excluded from every window (they still get a trend).
    window_days : float
        Full width of the sliding window (days).
    mask : array-like of bool, shape (n,), optional
        Points excluded from the trend estimate (e.g. in transit); they still get a trend.
    exclude : array-like of bool, shape (n,), optional
        Points also left out of the estimate, but not counted as holes in their windows
        (isolated outliers: they do not switch a window to the bridging parabola).
    cadence_days : float, optional
        Grid step; by default the median positive time difference.
    segments : sequence of slice, optional
        Index ranges that are detrended independently; by default split at gaps over
        ``max_gap_days``. Points outside every segment get NaN.
    max_gap_days : float
        Gap that starts a new segment when ``segments`` is not given.
    n_iter : int
        Biweight iterations from the median start.
    tuning : float
        Biweight tuning constant ``c`` (points beyond ``c × MAD`` get zero weight).
    min_points : int
        Fewest usable points in a window for its own estimate; fewer → interpolated.
    degree : int
        Degree (0, 1 or 2) of the Tukey-weighted local polynomial in full windows; 0 (the
        default) is wotan's biweight location.
    bridge_degree : int
        Degree (0, 1 or 2) of the Tukey-weighted local polynomial in windows with holes.
    full_coverage : float
        Fraction of usable steps from which a window counts as full (plain biweight location).
    max_lag_steps : float
        Largest offset (grid steps) of a full window's usable-step centroid from its centre;
        beyond it (a lopsided window: an edge, a gap) the window is bridged too.

    Returns
    -------
    ndarray of float64, shape (n,)
        The trend; NaN in a segment where no window has ``min_points`` usable points.

    Raises
    ------
    ValueError
        If ``time`` and ``flux`` differ in length, or the times are not increasing on a
        uniform grid of step ``cadence_days``.
    """
    times = np.asarray(time, np.float64)
    values = np.asarray(flux, np.float64)
    if times.shape != values.shape or times.ndim != 1:
        raise ValueError(
            f"time and flux must be 1-D arrays of one length, got {times.shape} and {values.shape}"
        )
    n = times.size
    trend = np.full(n, np.nan)
    if n == 0:
        return trend
    holes = ~np.isfinite(values)
    if mask is not None:
        holes |= np.asarray(mask, bool)
    excluded = holes.copy()
    if exclude is not None:
        excluded |= np.asarray(exclude, bool)
    if cadence_days is None:
        cadence_days = _median_cadence(times)
    steps = grid_steps(times, cadence_days)
    if segments is None:
        segments = _gap_segments(times, max_gap_days)
    segments = [s for s in segments if s.stop > s.start]
    if not segments:
        return trend
    half = window_steps(window_days, cadence_days) // 2
    points, positions, total = _packed_positions(steps, segments, pad=half)
    grid = np.full(total, np.nan)
    usable = ~excluded[points]
    grid[positions[usable]] = values[points[usable]]
    width = 2 * half + 1
    windows = np.lib.stride_tricks.sliding_window_view(grid, width)
    # Coverage and centroid of each window's non-hole steps, from cumulative sums.
    occupied = np.zeros(total, np.int64)
    occupied[positions[~holes[points]]] = 1
    count = np.r_[0, np.cumsum(occupied)]
    moment = np.r_[0, np.cumsum(occupied * np.arange(total))]
    low, high = positions - half, positions + half + 1
    in_window = count[high] - count[low]
    coverage = in_window / width
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = np.abs((moment[high] - moment[low]) / in_window - positions)
    lopsided = ~(lag <= max_lag_steps)
    chunk = max(1, _ROW_CHUNK_ELEMENTS // width)
    for begin in range(0, points.size, chunk):
        where = slice(begin, begin + chunk)
        bridging = (coverage[where] < full_coverage) | lopsided[where]
        rows = windows[positions[where] - half]
        estimate = np.empty(rows.shape[0])
        estimate[~bridging] = _biweight_rows(rows[~bridging], n_iter, tuning, min_points, degree)
        estimate[bridging] = _biweight_rows(
            rows[bridging], n_iter, tuning, min_points, bridge_degree
        )
        trend[points[where]] = estimate
    _interpolate_gaps(trend, segments)
    return trend


def detrend(
    series: StarSeries,
    *,
    window_days: float = 0.75,
    max_gap_days: float = 0.5,
    mask: npt.ArrayLike | None = None,
    clip_sigma: float | None = 3.0,
    n_iter: int = 5,
) -> Detrended:
    """Divide a star's flux by its per-segment biweight trend and flag upward outliers.

    Two passes: a trend without the masked points, upward outliers flagged at
    ``clip_sigma × noise``, then the trend again without masked points and those outliers
    (a flare does not lift the trend around it; outliers do not count as holes, so they do
    not switch windows to the bridging parabola), and the final outliers and noise from it.

    Parameters
    ----------
    series : StarSeries
        The star's points (on the global grid).
    window_days : float
        Full width of the biweight window (days).
    max_gap_days : float
        Longest gap inside a segment; segments are detrended independently.
    mask : array-like of bool, shape (n,), optional
        Points left out of the trend estimate (known transits); they still get a trend, and
        are left out of the noise estimate.
    clip_sigma : float or None
        Upward-outlier threshold in units of ``noise``; None for no clipping.
    n_iter : int
        Biweight iterations.

    Returns
    -------
    Detrended
        Detrended flux, trend, outlier flags and noise, aligned with ``series``.
    """
    flux = np.asarray(series.flux, np.float64)
    n = flux.size
    masked = np.zeros(n, bool) if mask is None else np.asarray(mask, bool).copy()
    if masked.shape != (n,):
        raise ValueError(f"mask has shape {masked.shape}, the series has {n} points")
    segments = segment_slices(series, max_gap_days)

    def one_pass(outliers: BoolArray | None) -> tuple[FloatArray, FloatArray]:
        trend = biweight_trend(
            series.time,
            flux,
            window_days=window_days,
            mask=masked,
            exclude=outliers,
            cadence_days=series.cadence_days,
            segments=segments,
            n_iter=n_iter,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            return flux / trend, trend

    def upward(detrended: FloatArray, noise: FloatArray) -> BoolArray:
        if clip_sigma is None:
            return np.zeros(n, bool)
        with np.errstate(invalid="ignore"):
            return np.asarray((detrended - 1.0) > clip_sigma * noise)

    detrended, trend = one_pass(None)
    noise = _segment_noise(detrended - 1.0, masked, segments, n)
    outlier = upward(detrended, noise)
    if outlier.any():
        detrended, trend = one_pass(outlier)
        noise = _segment_noise(detrended - 1.0, masked | outlier, segments, n)
        outlier = upward(detrended, noise)
    logger.debug(
        "detrended %d points in %d segments, %d upward outliers", n, len(segments), outlier.sum()
    )
    return Detrended(flux=detrended, trend=trend, outlier=outlier, noise=noise)


def grid_steps(time: FloatArray, cadence_days: float) -> npt.NDArray[np.int64]:
    """Integer grid steps of ``time`` counted from its first point.

    Parameters
    ----------
    time : ndarray of float64
        Increasing times on a uniform grid (gaps allowed).
    cadence_days : float
        Grid step.

    Returns
    -------
    ndarray of int64
        ``round((time − time[0]) / cadence_days)``, strictly increasing.

    Raises
    ------
    ValueError
        If two times fall on one step or the times decrease (not a uniform grid).
    """
    if time.size == 0:
        return np.zeros(0, np.int64)
    steps = np.rint((time - time[0]) / cadence_days).astype(np.int64)
    if time.size > 1 and not np.all(np.diff(steps) > 0):
        raise ValueError(
            f"times are not increasing on a uniform grid of step {cadence_days} d "
            "(two points round to one step); resample onto the grid first"
        )
    return steps


def _median_cadence(time: FloatArray) -> float:
    """Median positive time difference (1.0 for fewer than two distinct times)."""
    diffs = np.diff(time)
    diffs = diffs[diffs > 0]
    return float(np.median(diffs)) if diffs.size else 1.0


def _gap_segments(time: FloatArray, max_gap_days: float) -> list[slice]:
    """Index ranges split where the time step exceeds ``max_gap_days``."""
    starts = np.r_[0, np.flatnonzero(np.diff(time) > max_gap_days) + 1]
    stops = np.r_[starts[1:], time.size]
    return [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _packed_positions(
    steps: npt.NDArray[np.int64], segments: Sequence[slice], pad: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Lay segments one after another on one array, ``pad`` empty steps around each.

    Returns the point indices covered by ``segments``, their positions on the packed array
    and its length. A window of half-width ``pad`` around any point then sees only its own
    segment.
    """
    starts = np.array([s.start for s in segments], np.int64)
    stops = np.array([s.stop for s in segments], np.int64)
    lengths = stops - starts
    first = steps[starts]
    spans = steps[stops - 1] - first + 1
    offsets = pad + np.r_[0, np.cumsum(spans + pad)[:-1]]
    segment_of = np.repeat(np.arange(starts.size), lengths)
    points = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
    positions = offsets[segment_of] + steps[points] - first[segment_of]
    total = int(offsets[-1] + spans[-1] + pad)
    return points, positions, total


def sorted_row_median(sorted_rows: FloatArray, counts: npt.NDArray[np.int64]) -> FloatArray:
    """Median of each row of an array sorted along axis 1 with NaN last.

    Parameters
    ----------
    sorted_rows : ndarray of float64, shape (m, k)
        Rows sorted ascending, NaN at the end (as ``numpy.sort`` leaves them).
    counts : ndarray of int64, shape (m,)
        Number of finite values in each row.

    Returns
    -------
    ndarray of float64, shape (m,)
        Row medians; NaN where a row has no finite value.
    """
    low = np.clip((counts - 1) // 2, 0, None)[:, None]
    high = np.clip(counts // 2, 0, sorted_rows.shape[1] - 1)[:, None]
    median = 0.5 * (
        np.take_along_axis(sorted_rows, low, axis=1)[:, 0]
        + np.take_along_axis(sorted_rows, high, axis=1)[:, 0]
    )
    return np.where(counts > 0, median, np.nan)


def _biweight_rows(
    rows: FloatArray, n_iter: int, tuning: float, min_points: int, degree: int
) -> FloatArray:
    """Biweight estimate at the centre of each row (NaN entries ignored).

    ``degree`` 0 is wotan's biweight location (MAD about the median, kept fixed); 1 and 2
    fit a line or parabola with the same Tukey weights, the MAD taken about the first fit.
    """
    finite = np.isfinite(rows)
    counts = finite.sum(axis=1)
    median = sorted_row_median(np.sort(rows, axis=1), counts)
    centre = np.where(counts > 0, median, 0.0)
    # Missing entries sit far away, so their Tukey weight is exactly zero without a mask.
    filled = np.where(finite, rows - centre[:, None], _FAR)
    mad = sorted_row_median(np.sort(np.abs(filled), axis=1), counts)
    half = rows.shape[1] // 2
    x = (np.arange(rows.shape[1], dtype=np.float64) - half) / max(half, 1)
    coefficients = np.zeros((rows.shape[0], 3))
    work = np.empty_like(filled)
    for iteration in range(n_iter):
        np.subtract(filled, coefficients[:, :1], out=work)
        if degree > 0:
            work -= coefficients[:, 1:2] * x
        if degree > 1:
            work -= coefficients[:, 2:] * x**2
        if degree > 0 and iteration == 1:
            mad = sorted_row_median(np.sort(np.abs(work), axis=1), counts)
        inverse_scale = np.where(mad > 0, 1.0 / np.where(mad > 0, tuning * mad, 1.0), 1.0)
        # Tukey weight (1 − u²)² for |u| < 1, else 0, computed in place.
        np.multiply(work, inverse_scale[:, None], out=work)
        np.square(work, out=work)
        np.subtract(1.0, work, out=work)
        np.maximum(work, 0.0, out=work)
        np.square(work, out=work)
        coefficients = _weighted_polynomial(work, filled, x, degree, coefficients)
    location = np.where(mad > 0, centre + coefficients[:, 0], median)
    return np.where(counts >= max(min_points, degree + 1, 1), location, np.nan)


def _weighted_polynomial(
    weight: FloatArray, values: FloatArray, x: FloatArray, degree: int, previous: FloatArray
) -> FloatArray:
    """Weighted least-squares polynomial of each row (degree 0, 1 or 2), by Cramer's rule.

    A row whose normal matrix is (nearly) singular for ``degree`` falls back to a lower
    degree; a row with no weight keeps ``previous``.
    """
    weighted = weight * values
    s0 = weight.sum(axis=1)
    t0 = weighted.sum(axis=1)
    result = previous.copy()
    has_weight = s0 > 0
    result[has_weight] = 0.0
    result[has_weight, 0] = t0[has_weight] / s0[has_weight]
    if degree == 0:
        return result
    s1 = weight @ x
    s2 = weight @ x**2
    t1 = weighted @ x
    det1 = s0 * s2 - s1 * s1
    linear = has_weight & (det1 > 1e-9 * s0 * s0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a1 = (s2 * t0 - s1 * t1) / det1
        b1 = (s0 * t1 - s1 * t0) / det1
    result[linear, 0] = a1[linear]
    result[linear, 1] = b1[linear]
    if degree == 1:
        return result
    s3 = weight @ x**3
    s4 = weight @ x**4
    t2 = weighted @ x**2
    # Cramer's rule on [[s0 s1 s2] [s1 s2 s3] [s2 s3 s4]] · (a, b, c) = (t0, t1, t2).
    m00 = s2 * s4 - s3 * s3
    m01 = s1 * s4 - s3 * s2
    m02 = s1 * s3 - s2 * s2
    det2 = s0 * m00 - s1 * m01 + s2 * m02
    quadratic = linear & (det2 > 1e-9 * s0**3)
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = (t0 * m00 - s1 * (t1 * s4 - s3 * t2) + s2 * (t1 * s3 - s2 * t2)) / det2
        b2 = (s0 * (t1 * s4 - s3 * t2) - t0 * m01 + s2 * (s1 * t2 - t1 * s2)) / det2
        c2 = (s0 * (s2 * t2 - t1 * s3) - s1 * (s1 * t2 - t1 * s2) + t0 * m02) / det2
    result[quadratic, 0] = a2[quadratic]
    result[quadratic, 1] = b2[quadratic]
    result[quadratic, 2] = c2[quadratic]
    return result


def _interpolate_gaps(trend: FloatArray, segments: Sequence[slice]) -> None:
    """Fill NaN trend values inside each segment linearly from its finite ones (in place)."""
    missing = np.isnan(trend)
    if not missing.any():
        return
    for segment in segments:
        part = trend[segment]
        holes = np.isnan(part)
        if holes.any() and not holes.all():
            index = np.arange(part.size)
            part[holes] = np.interp(index[holes], index[~holes], part[~holes])


def _segment_noise(
    residual: FloatArray, excluded: BoolArray, segments: Sequence[slice], n: int
) -> FloatArray:
    """``1.4826 × MAD`` of ``residual`` per segment (excluded points left out), per point."""
    noise = np.full(n, np.nan)
    for segment in segments:
        part = residual[segment]
        use = part[~excluded[segment] & np.isfinite(part)]
        if use.size >= 3:
            noise[segment] = MAD_TO_SIGMA * np.median(np.abs(use - np.median(use)))
    return noise
