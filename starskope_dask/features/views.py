"""Phase-folded views of a transit candidate (AstroNet) and the eclipsing-binary checks.

The global and local views follow Shallue & Vanderburg (2018, AJ 155, 94, "Identifying
Exoplanets with Deep Learning"): fold the detrended flux on the candidate's period, take the
median flux in evenly spaced bins (2001 over the whole orbit; 201 over ± 4 transit durations,
each 0.16 durations wide, so neighbouring local bins overlap), then normalise so that the
median is 0 and the transit bottom −1. Empty bins are NaN here (AstroNet filled them with the
median; leave the choice to the model's input pipeline).

Binning is vectorised: each point is repeated once per bin it falls in (one, or a few where
bins overlap), the copies are sorted by (bin, flux) with one ``lexsort``, and each bin's median
is read at the middle of its run — no loop over bins.

The odd/even and secondary-eclipse checks are the two classic tests that tell an eclipsing
binary from a planet (e.g. the Kepler Robovetter, Thompson et al. 2018): an EB found at half its
true period shows alternating depths; a self-luminous companion shows an eclipse near phase 0.5.
Depths there are box depths: the mean flux of the central half of the (second) eclipse below the
mean of a local baseline from 0.75 to 2 durations away from its centre, errors from the robust
scatter of the out-of-eclipse flux.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import numpy.typing as npt

from starskope_dask.features.series import FloatArray

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]

MAD_TO_SIGMA = 1.4826

IN_ECLIPSE_HALF_WIDTH = 0.25
"""Half-width of the in-eclipse box, in durations (the central half of the eclipse)."""

BASELINE_RANGE = (0.75, 2.0)
"""Distances from an eclipse centre, in durations, of its local baseline."""


@dataclasses.dataclass(frozen=True)
class OddEvenDepths:
    """Depths of the odd- and even-numbered transits.

    Attributes
    ----------
    depth_odd, depth_odd_err : float
        Box depth of the odd epochs and its 1-sigma error (relative flux).
    depth_even, depth_even_err : float
        The same for the even epochs (epoch 0 is the transit at ``t0``).
    ratio : float
        ``depth_odd / depth_even``; ≈ 1 for a planet, NaN when the even depth is not positive.
    significance : float
        ``|depth_odd − depth_even| / sqrt(err_odd² + err_even²)`` (sigma).
    """

    depth_odd: float
    depth_odd_err: float
    depth_even: float
    depth_even_err: float
    ratio: float
    significance: float


@dataclasses.dataclass(frozen=True)
class SecondaryEclipse:
    """The deepest eclipse-like dip near phase 0.5.

    Attributes
    ----------
    depth : float
        Box depth (relative flux); NaN when too few points cover the searched phases.
    depth_err : float
        Its 1-sigma error.
    phase : float
        Orbital phase (fraction of the period after ``t0``) where it was measured.
    """

    depth: float
    depth_err: float
    phase: float

    @property
    def significance(self) -> float:
        """``depth / depth_err`` (NaN when undefined)."""
        if not (math.isfinite(self.depth) and self.depth_err > 0):
            return float("nan")
        return self.depth / self.depth_err


def fold_epoch(time: npt.ArrayLike, period: float, t0: float) -> IntArray:
    """Number of the transit nearest each time (0 at ``t0``), consistent with :func:`phase_fold`.

    Parameters
    ----------
    time : array-like of float
        Times (days).
    period : float
        Orbital period (days), positive.
    t0 : float
        Mid-time of one transit (days).

    Returns
    -------
    ndarray of int64
        ``epoch`` with ``time == t0 + epoch × period + phase_fold(time, period, t0)``.
    """
    return _fold(np.asarray(time, np.float64), period, t0)[1]


def phase_fold(time: npt.ArrayLike, period: float, t0: float) -> FloatArray:
    """Time from the nearest transit mid-time, in days, in ``[-period / 2, period / 2)``.

    Parameters
    ----------
    time : array-like of float
        Times (days).
    period : float
        Orbital period (days), positive.
    t0 : float
        Mid-time of one transit (days).

    Returns
    -------
    ndarray of float64
        The folded phase (days); NaN where ``time`` is not finite, and everywhere for a
        non-positive or non-finite ``period`` or non-finite ``t0``.
    """
    return _fold(np.asarray(time, np.float64), period, t0)[0]


def _fold(time: FloatArray, period: float, t0: float) -> tuple[FloatArray, IntArray]:
    """Phase in ``[-P/2, P/2)`` and epoch, rounding at the boundary corrected."""
    if not (math.isfinite(period) and period > 0 and math.isfinite(t0)):
        return np.full(time.shape, np.nan), np.zeros(time.shape, np.int64)
    finite = np.isfinite(time)
    offset = np.where(finite, time - t0, 0.0)
    epoch = np.floor(offset / period + 0.5)
    phase = offset - epoch * period
    high = phase >= 0.5 * period
    low = phase < -0.5 * period
    phase = np.where(high, phase - period, np.where(low, phase + period, phase))
    epoch = epoch + high - low
    return np.where(finite, phase, np.nan), epoch.astype(np.int64)


def bin_counts(
    x: npt.ArrayLike, *, lo: float, hi: float, n_bins: int, bin_width: float | None = None
) -> IntArray:
    """Number of points in each bin of :func:`median_binned`.

    Parameters
    ----------
    x : array-like of float
        Positions; non-finite ones and those outside ``[lo, hi)`` are in no bin.
    lo, hi : float
        Range of the bins.
    n_bins : int
        Number of bins.
    bin_width : float, optional
        Width of each bin; by default ``(hi − lo) / n_bins`` (bins touching, not overlapping).

    Returns
    -------
    ndarray of int64, shape (n_bins,)
        Points per bin (a point is counted in every bin it falls in).
    """
    _, bins = _bin_membership(np.asarray(x, np.float64), lo, hi, n_bins, bin_width)
    return np.bincount(bins, minlength=n_bins).astype(np.int64)


def median_binned(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    lo: float,
    hi: float,
    n_bins: int,
    bin_width: float | None = None,
) -> FloatArray:
    """Median of ``y`` in ``n_bins`` evenly spaced bins of ``x`` (AstroNet's median filter).

    Bin ``i`` is ``[lo + i·s, lo + i·s + bin_width)`` with spacing
    ``s = (hi − lo − bin_width) / (n_bins − 1)``, so the first bin starts at ``lo`` and the last
    ends at ``hi``; a ``bin_width`` over ``s`` makes neighbouring bins overlap.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
        Positions and values; pairs with a non-finite member are ignored.
    lo, hi : float
        Range of the bins (``lo < hi``).
    n_bins : int
        Number of bins (≥ 1).
    bin_width : float, optional
        Width of each bin (``0 < bin_width ≤ hi − lo``); by default ``(hi − lo) / n_bins``.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
        The medians; NaN for empty bins.

    Raises
    ------
    ValueError
        If the bins are ill-defined (``hi ≤ lo``, ``n_bins < 1``, a bad ``bin_width``) or
        ``x`` and ``y`` differ in length.
    """
    xs = np.asarray(x, np.float64)
    ys = np.asarray(y, np.float64)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have one shape, got {xs.shape} and {ys.shape}")
    points, bins = _bin_membership(np.where(np.isfinite(ys), xs, np.nan), lo, hi, n_bins, bin_width)
    return _grouped_median(bins, ys[points], n_bins)


def normalize_view(
    view: npt.ArrayLike,
    *,
    median: float | None = None,
    depth: float | None = None,
    min_depth: float = 1e-12,
) -> FloatArray:
    """AstroNet's normalisation: ``(view − median) / (median − min)`` (bottom at −1).

    Parameters
    ----------
    view : array-like of float
        Binned flux (NaN for empty bins).
    median, depth : float, optional
        Use these instead of the view's own NaN-median and ``median − NaN-min`` (to put
        several views on one scale).
    min_depth : float
        Depths at or under this (a flat view) are not divided by: the view is only centred.

    Returns
    -------
    ndarray of float64
        The normalised view; all NaN if the view is.
    """
    values = np.asarray(view, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    centre = float(np.median(finite)) if median is None else float(median)
    scale = centre - float(finite.min()) if depth is None else float(depth)
    if not (math.isfinite(scale) and scale > min_depth):
        return values - centre
    return (values - centre) / scale


def global_view(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    *,
    n_bins: int = 2001,
    bin_width_factor: float = 1.0 / 2001,
    normalize: bool = True,
) -> FloatArray:
    """AstroNet's global view: the whole folded orbit in ``n_bins`` median bins.

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0 : float
        Candidate period and transit mid-time (days).
    n_bins : int
        Number of bins over ``[-period / 2, period / 2)``.
    bin_width_factor : float
        Bin width as a fraction of the period.
    normalize : bool
        Apply :func:`normalize_view`.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
        The view (NaN for empty bins; all NaN for a non-positive period).
    """
    if not (math.isfinite(period) and period > 0 and math.isfinite(t0)):
        return np.full(n_bins, np.nan)
    phase = phase_fold(time, period, t0)
    width = None if math.isclose(bin_width_factor * n_bins, 1.0) else bin_width_factor * period
    view = median_binned(
        phase, flux, lo=-0.5 * period, hi=0.5 * period, n_bins=n_bins, bin_width=width
    )
    return normalize_view(view) if normalize else view


def local_view(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    *,
    n_bins: int = 201,
    half_width_durations: float = 4.0,
    bin_width_factor: float = 0.16,
    normalize: bool = True,
) -> FloatArray:
    """AstroNet's local view: ± ``half_width_durations`` transit durations around the transit.

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0, duration : float
        Candidate period, transit mid-time and duration (days).
    n_bins : int
        Number of bins.
    half_width_durations : float
        Half-width of the view in durations (capped at half the period).
    bin_width_factor : float
        Bin width in durations (0.16: neighbouring bins overlap).
    normalize : bool
        Apply :func:`normalize_view`.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
        The view (NaN for empty bins; all NaN for a non-positive period or duration).
    """
    raw = _local_binned(time, flux, period, t0, duration, None, n_bins,
                        half_width_durations, bin_width_factor)  # fmt: skip
    return normalize_view(raw) if normalize else raw


def odd_even_views(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    *,
    n_bins: int = 201,
    half_width_durations: float = 4.0,
    bin_width_factor: float = 0.16,
) -> tuple[FloatArray, FloatArray]:
    """Local views of the odd and the even transits, on the scale of the full local view.

    Both are normalised with the median and depth of the local view of all transits, so an
    eclipsing binary's alternating depths show (one bottom below −1, the other above).

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0, duration : float
        Candidate period, transit mid-time and duration (days).
    n_bins, half_width_durations, bin_width_factor
        As for :func:`local_view`.

    Returns
    -------
    tuple of ndarray of float64, each of shape (n_bins,)
        ``(odd, even)`` local views.
    """
    options = (n_bins, half_width_durations, bin_width_factor)
    both = _local_binned(time, flux, period, t0, duration, None, *options)
    finite = both[np.isfinite(both)]
    if finite.size == 0:
        return np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    median = float(np.median(finite))
    depth = median - float(finite.min())
    odd = _local_binned(time, flux, period, t0, duration, 1, *options)
    even = _local_binned(time, flux, period, t0, duration, 0, *options)
    return (
        normalize_view(odd, median=median, depth=depth),
        normalize_view(even, median=median, depth=depth),
    )


def odd_even_depths(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    noise: npt.ArrayLike | None = None,
) -> OddEvenDepths:
    """Box depths of the odd and even transits, their ratio and the significance of a difference.

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0, duration : float
        Candidate period, transit mid-time and duration (days).
    noise : array-like of float, shape (n,), optional
        Per-point noise (missions and segments differ: a Kepler quarter and a TESS sector can
        differ tenfold); default one robust sigma of the out-of-transit flux for all points.

    Returns
    -------
    OddEvenDepths
        NaN members where a parity has too few points.
    """
    times, values, sigmas = _finite_triples(time, flux, noise)
    if not _valid_ephemeris(period, t0, duration) or times.size == 0:
        nan = float("nan")
        return OddEvenDepths(nan, nan, nan, nan, nan, nan)
    phase, epoch = _fold(times, period, t0)
    weight = _weights(sigmas, values, np.abs(phase) >= BASELINE_RANGE[0] * duration)
    depths = []
    for parity in (1, 0):
        chosen = (epoch % 2) == parity
        depths.append(_box_depth(phase[chosen], values[chosen], duration, weight[chosen]))
    (odd, odd_err), (even, even_err) = depths
    ratio = odd / even if even > 0 else float("nan")
    combined = math.hypot(odd_err, even_err)
    significance = abs(odd - even) / combined if combined > 0 else float("nan")
    return OddEvenDepths(odd, odd_err, even, even_err, ratio, significance)


def odd_even_depth_ratio(
    time: npt.ArrayLike, flux: npt.ArrayLike, period: float, t0: float, duration: float
) -> float:
    """``depth_odd / depth_even`` of :func:`odd_even_depths` (≈ 1 for a planet; NaN if undefined).

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0, duration : float
        Candidate period, transit mid-time and duration (days).

    Returns
    -------
    float
        The ratio.
    """
    return odd_even_depths(time, flux, period, t0, duration).ratio


def secondary_eclipse_depth(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    *,
    phase_range: float = 0.05,
    max_trials: int = 401,
    noise: npt.ArrayLike | None = None,
) -> SecondaryEclipse:
    """Depth of a secondary eclipse near phase 0.5, searched over ``0.5 ± phase_range``.

    Trial centres are a quarter duration apart (at most ``max_trials``); at each, the box depth
    (central half-duration against a local baseline 0.75–2 durations away, from cumulative
    sums, so all trials cost one sort) and its error; the trial of highest depth/error wins.
    Points within one duration of the primary transit are left out. An eccentric orbit puts
    the secondary off 0.5 (by ≈ (4/π)·e·cos ω in phase); widen ``phase_range`` for it — but
    the best of many trials is biased upwards on pure noise (look-elsewhere): judge the
    significance accordingly.

    Parameters
    ----------
    time, flux : array-like of float, shape (n,)
        Times (days) and detrended flux (≈ 1).
    period, t0, duration : float
        Candidate period, primary mid-time and (primary) duration (days).
    phase_range : float
        Half-width of the searched phases around 0.5 (fraction of the period); 0 measures
        at exactly 0.5.
    max_trials : int
        Most trial centres.
    noise : array-like of float, shape (n,), optional
        Per-point noise (weights); default one robust sigma for all points.

    Returns
    -------
    SecondaryEclipse
        Depth, error and phase; NaN depth when no trial has enough points.
    """
    nan = float("nan")
    times, values, sigmas = _finite_triples(time, flux, noise)
    if not _valid_ephemeris(period, t0, duration) or times.size == 0:
        return SecondaryEclipse(nan, nan, nan)
    phase, _ = _fold(times, period, t0)
    outside_primary = np.abs(phase) >= duration
    fraction = np.mod(phase[outside_primary] / period, 1.0)
    values = values[outside_primary]
    weight = _weights(sigmas[outside_primary], values, np.ones(values.size, bool))
    order = np.argsort(fraction, kind="stable")
    fraction, values, weight = fraction[order], values[order], weight[order]
    sigma = 1.0 if np.isfinite(weight).all() and weight.size else float("nan")
    step = 0.25 * duration / period
    n_side = min(int(phase_range / step), (max_trials - 1) // 2) if step > 0 else 0
    centres = 0.5 + step * np.arange(-n_side, n_side + 1)
    points = np.r_[0, np.cumsum(np.ones(values.size))]
    weights = np.r_[0.0, np.cumsum(weight)]
    cumulative = np.r_[0.0, np.cumsum(weight * values)]

    def count_and_sum(
        lo: npt.ArrayLike, hi: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        a = np.searchsorted(fraction, lo, side="left")
        b = np.searchsorted(fraction, hi, side="left")
        return points[b] - points[a], weights[b] - weights[a], cumulative[b] - cumulative[a]

    d = duration / period
    n_in, w_in, s_in = count_and_sum(
        centres - IN_ECLIPSE_HALF_WIDTH * d, centres + IN_ECLIPSE_HALF_WIDTH * d
    )
    n_left, w_left, s_left = count_and_sum(
        centres - BASELINE_RANGE[1] * d, centres - BASELINE_RANGE[0] * d
    )
    n_right, w_right, s_right = count_and_sum(
        centres + BASELINE_RANGE[0] * d, centres + BASELINE_RANGE[1] * d
    )
    n_out, w_out = n_left + n_right, w_left + w_right
    usable = (n_in >= 3) & (n_out >= 3) & (w_in > 0) & (w_out > 0)
    if not usable.any() or not math.isfinite(sigma):
        return SecondaryEclipse(nan, nan, nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = (s_left + s_right) / w_out - s_in / w_in
        error = np.sqrt(1.0 / w_in + 1.0 / w_out)
        score = np.where(usable, depth / np.where(error > 0, error, np.inf), -np.inf)
    best = int(np.argmax(score))
    return SecondaryEclipse(float(depth[best]), float(error[best]), float(centres[best]))


def _local_binned(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    parity: int | None,
    n_bins: int,
    half_width_durations: float,
    bin_width_factor: float,
) -> FloatArray:
    """Raw (unnormalised) local view of all epochs, or of the odd (1) or even (0) ones."""
    if not _valid_ephemeris(period, t0, duration):
        return np.full(n_bins, np.nan)
    phase, epoch = _fold(np.asarray(time, np.float64), period, t0)
    values = np.asarray(flux, np.float64)
    if parity is not None:
        values = np.where(epoch % 2 == parity, values, np.nan)
    half = min(half_width_durations * duration, 0.5 * period)
    width = min(bin_width_factor * duration, 2.0 * half)
    return median_binned(phase, values, lo=-half, hi=half, n_bins=n_bins, bin_width=width)


def _valid_ephemeris(period: float, t0: float, duration: float) -> bool:
    """Finite positive period and duration (shorter than the period), finite t0."""
    return bool(
        math.isfinite(period)
        and math.isfinite(t0)
        and math.isfinite(duration)
        and period > 0
        and 0 < duration < period
    )


def _finite_pairs(time: npt.ArrayLike, flux: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The (time, flux) pairs where both are finite."""
    times = np.asarray(time, np.float64)
    values = np.asarray(flux, np.float64)
    keep = np.isfinite(times) & np.isfinite(values)
    return times[keep], values[keep]


def _robust_sigma(values: FloatArray) -> float:
    """``1.4826 × MAD`` (NaN for fewer than 3 values)."""
    if values.size < 3:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def _box_depth(
    phase: FloatArray, values: FloatArray, duration: float, weight: FloatArray
) -> tuple[float, float]:
    """Weighted mean of the local baseline minus that in the central half of the transit, and
    its error (weights are inverse variances).
    """
    distance = np.abs(phase)
    inside = distance < IN_ECLIPSE_HALF_WIDTH * duration
    baseline = (distance >= BASELINE_RANGE[0] * duration) & (
        distance < BASELINE_RANGE[1] * duration
    )
    n_in, n_out = int(inside.sum()), int(baseline.sum())
    w_in, w_out = float(weight[inside].sum()), float(weight[baseline].sum())
    if n_in < 3 or n_out < 3 or not (w_in > 0 and w_out > 0):
        return float("nan"), float("nan")
    depth = float(
        np.sum(weight[baseline] * values[baseline]) / w_out
        - np.sum(weight[inside] * values[inside]) / w_in
    )
    return depth, float(math.sqrt(1.0 / w_in + 1.0 / w_out))


def _finite_triples(
    time: npt.ArrayLike, flux: npt.ArrayLike, noise: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Time, flux and noise where all are finite (noise NaN everywhere when not given)."""
    t = np.asarray(time, np.float64)
    f = np.asarray(flux, np.float64)
    n = np.full(t.shape, np.nan) if noise is None else np.asarray(noise, np.float64)
    keep = np.isfinite(t) & np.isfinite(f) & (np.isfinite(n) if noise is not None else True)
    if noise is not None:
        keep &= n > 0
    return t[keep], f[keep], n[keep]


def _weights(
    sigmas: FloatArray, values: FloatArray, reference: npt.NDArray[np.bool_]
) -> FloatArray:
    """Inverse variances: from the per-point noise, else one robust sigma of ``values`` where
    ``reference`` (out of transit) for every point.
    """
    if sigmas.size and np.isfinite(sigmas).all():
        return np.asarray(1.0 / sigmas**2, np.float64)
    sigma = _robust_sigma(values[reference])
    if not (math.isfinite(sigma) and sigma > 0):
        sigma = 1.0 if math.isfinite(sigma) else float("nan")
    return np.full(values.size, 1.0 / sigma**2)


def _bin_membership(
    x: FloatArray, lo: float, hi: float, n_bins: int, bin_width: float | None
) -> tuple[IntArray, IntArray]:
    """Every (point, bin) pair with the point inside the bin, as two index arrays."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo) or n_bins < 1:
        raise ValueError(f"bins need finite lo < hi and n_bins ≥ 1, got {lo}, {hi}, {n_bins}")
    if bin_width is None:
        width = spacing = (hi - lo) / n_bins
    else:
        width = float(bin_width)
        if not (0 < width <= hi - lo):
            raise ValueError(f"bin_width must be in (0, hi − lo = {hi - lo}], got {bin_width}")
        spacing = (hi - lo - width) / (n_bins - 1) if n_bins > 1 else width
        spacing = spacing if spacing > 0 else width  # one bin covering [lo, hi)
    with np.errstate(invalid="ignore"):
        inside = (x >= lo) & (x < hi)
    candidates = np.flatnonzero(inside)
    position = (x[candidates] - lo) / spacing
    last = np.minimum(np.floor(position), n_bins - 1).astype(np.int64)
    first = np.maximum(np.floor(position - width / spacing) + 1, 0).astype(np.int64)
    if bin_width is None:
        first = last  # touching bins: exactly one each
    count = np.maximum(last - first + 1, 0)
    points = np.repeat(candidates, count)
    start = np.repeat(np.cumsum(count) - count, count)
    bins = np.repeat(first, count) + (np.arange(points.size) - start)
    return points, bins


def _grouped_median(groups: IntArray, values: FloatArray, n_groups: int) -> FloatArray:
    """Median of ``values`` per group index in ``range(n_groups)`` (NaN for empty groups)."""
    result = np.full(n_groups, np.nan)
    if groups.size == 0:
        return result
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    filled = counts > 0
    low = starts[filled] + (counts[filled] - 1) // 2
    high = starts[filled] + counts[filled] // 2
    result[filled] = 0.5 * (ordered[low] + ordered[high])
    return result
