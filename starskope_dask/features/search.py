"""Transit search over every mission's data at once: periodic box search, single transits.

Input is detrended relative flux (≈ 1 out of transit, upward outliers clipped) of one star
from all missions (see :mod:`starskope_dask.features.series`). Everything here is a pure
function of numpy arrays: no I/O, no Dask, deterministic.

Periodic search (:func:`search_transits`)
-----------------------------------------
A box least squares (BLS, Kovács, Zucker & Mazeh 2002) search, made fast in three ways:

1. **Fast folding.** Data are binned on a uniform time grid and folded with the fast folding
   algorithm (FFA, Staelin 1969; as in ``riptide``, Morello et al. 2020): for a base period of
   ``p`` bins the ``n`` cycles are folded at all ``n`` periods from ``p`` to ``p + 1`` bins in
   ``n log2 n`` additions instead of ``n²``, so a trial period costs ``p log2 n`` operations,
   not one per data point; boxes of every phase and width come from sums of adjacent bins of
   each folded profile. The classic (wrapped) FFA misplaces a cycle each time the drift
   crosses a row, so it is only used with at most as many rows as bins per row: long periods
   fold overlapping windows without wrapping (:func:`_ffa_linear`, many base periods per
   call); short periods, with thousands of cycles, fold rows of ``K ≈ √(n/p)`` cycles at
   ``K`` row lengths (:func:`_ffa`) and add up the cycles of each fold.
2. **Bins scaled to the period.** Durations searched at a period ``P`` are fractions
   (``duration_range``, default 0.5–2.5) of the central-transit duration of a planet of that
   period around the given star (solar by default), :func:`solar_duration`; the shortest box is
   two bins wide, so the bin grows as ``P^(1/3)``: long periods are searched on coarse bins.
   Longer durations are searched on bins twice, four times … as wide (widths 2 and 3 bins at
   each level). Trial periods are spaced as the Ofir (2014) optimal grid with ``oversample``
   (adjacent trials drift apart by ``D_solar / oversample`` over the data). The coarse
   statistic takes each box's weight as its phase average, so only the flux is folded.
3. **Coarse to fine.** The coarse FFA runs on each *group* of data (split at gaps longer than
   ``coarse_gap_days``, a year by default: Kepler 2009–2013 is one group, TESS 2019 another)
   that holds at least 10 % of the statistical weight, over that group's span: the cost of a
   coherent search grows as the square of the span, and a 10-year span of which 6 years are
   empty would cost seven times a Kepler-only search. The strongest distinct coarse peaks
   (``n_candidates`` per group) are refined by a direct box search on their group at fine
   period, phase and duration steps; the best three are then searched coherently on **all**
   data within ±3σ of their group's period, where data years apart split the peak into a
   comb of aliases ``P²/ΔT`` apart, and the best aliases are zoomed on the exact points
   (:func:`_polish`): that is what pins the period with data a decade apart. A box of
   sampled points keeps the same points over a plateau of periods; the middle of the plateau
   is taken and its width enters ``period_err``.

The SNR of a signal is the depth over its error from a box fit, with the noise of each segment
measured robustly (MAD) from its out-of-transit scatter (the stated ``flux_err`` only shapes
the weights inside a segment) and inflated by the red-noise factor ``β`` at the transit's
duration (Pont, Zucker & Queloz 2006): the scatter of duration-long bins of out-of-transit
data over its white-noise expectation. A signal is reported when its SNR reaches
``snr_threshold`` (7.1, the Kepler pipeline's threshold, Jenkins et al. 2010: with the
``~10⁸`` boxes of a 4-year search its white-noise false-alarm bound is ``< 10⁻³`` per star),
with at least ``min_transits`` transits with data, none carrying more than 80 % of the signal.
Its transits are then masked and the search repeats, up to ``max_signals``: after a signal
weak per transit (a transit's own SNR under 3, so it cannot have lifted the coarse statistic
of other periods) the next pass refines the next coarse peaks on the masked data instead of
folding again; after a strong one everything is searched again. A later signal
whose transits coincide with an earlier one's (left-overs of its mask) is rejected; one whose
period is a small-integer ratio of an earlier one's is kept with ``harmonic_of`` set.

Single transits (:func:`find_single_transits`, :func:`single_transit_periods`)
-----------------------------------------------------------------------------
A matched box filter per segment over durations of 2–24 h finds single dips above a threshold
that no periodic signal explains; two or more consistent events constrain the period to
``ΔT / n`` (minus the periods that would have put a transit in observed data where none was
seen), three or more can determine it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time as _clock
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

from starskope_dask.records import MISSIONS

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_GM_SUN = 1.3271244e20  # m³ s⁻², IAU 2015 nominal solar mass parameter
_R_SUN = 6.957e8  # m, IAU 2015 nominal solar radius
_DAY = 86400.0

#: Longest transit searched, as a fraction of the period.
MAX_DUTY_CYCLE = 0.15
#: Bins per shortest box in the coarse search (phase resolution).
_BINS_PER_SHORTEST = 2
#: A coarse search group must hold this fraction of the statistical weight.
_MIN_GROUP_WEIGHT = 0.1
#: Refinement: ± this many coarse period steps, phase bins per duration.
_REFINE_STEPS = 2.5
_FINE_BINS_PER_DURATION = 6
#: Largest share of a periodic signal one transit may carry.
MAX_TRANSIT_FRACTION = 0.8
#: Fewest duration-long bins for a red-noise estimate (else β = 1).
_MIN_RED_NOISE_BINS = 20
#: Single transits: default durations (hours).
SINGLE_DURATIONS_HOURS = (2.0, 3.0, 4.5, 6.5, 9.5, 14.0, 20.0, 24.0)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class TransitSignal:
    """One periodic transit signal found by :func:`search_transits`.

    Attributes
    ----------
    period, period_err : float
        Period and its 1-sigma error (days): the transit-timing precision of a transit of
        this depth and SNR (Carter et al. 2008) over the epochs with data, combined with the
        width of the plateau of periods over which the box keeps the same points (a box of
        sampled points cannot place its period more finely).
    t0 : float
        BJD_TDB of a mid-transit with in-transit data: the epoch nearest the weighted centre of
        the transits with data (the best-determined epoch, uncorrelated with ``period``).
    duration : float
        Box duration (days).
    depth, depth_err : float
        Relative flux decrement (positive = dimming) and its error, red noise included.
    snr : float
        ``depth / depth_err``.
    sde : float
        Signal detection efficiency: the coarse peak's SNR minus the median of the coarse
        periodogram in its period octave, over that periodogram's robust standard deviation.
    false_alarm_probability : float
        A conservative (Bonferroni) bound for white Gaussian noise:
        ``min(1, n_boxes × P(z > snr))`` with ``n_boxes`` the boxes searched.
    n_transits : int
        Transits with in-transit data.
    n_in_transit : int
        In-transit points.
    missions_used : tuple of str
        Missions with in-transit data, in cube order.
    red_noise_factor : float
        ``β ≥ 1`` applied to the depth error.
    harmonic_of : int or None
        Index (in the returned list) of a stronger signal whose period is a small-integer
        ratio (``m/n``, ``m, n ≤ 6``) of this one's to within the timing precision.
    """

    period: float
    period_err: float
    t0: float
    duration: float
    depth: float
    depth_err: float
    snr: float
    sde: float
    false_alarm_probability: float
    n_transits: int
    n_in_transit: int
    missions_used: tuple[str, ...]
    red_noise_factor: float
    harmonic_of: int | None = None


@dataclasses.dataclass(frozen=True)
class BoxFit:
    """A fixed-ephemeris box fit (:func:`box_fit`).

    Attributes
    ----------
    depth, depth_err : float
        Weighted mean out of transit minus weighted mean in transit (relative flux) and its
        error: the segments' robust out-of-transit noise, times ``red_noise_factor``.
    snr : float
        ``depth / depth_err`` (NaN without in- or out-of-transit data).
    n_transits : int
        Transits with at least one in-transit point.
    n_in_transit : int
        In-transit points.
    red_noise_factor : float
        ``β ≥ 1``: robust scatter of duration-long bins of out-of-transit data over its
        white-noise expectation (1 with fewer than 20 such bins).
    largest_transit_fraction : float
        Share of the in-transit signal (weighted flux decrement) carried by the strongest
        single transit (1 for one transit; ≈ ``1/n`` for ``n`` equal ones).
    missions_used : tuple of str
        Missions with in-transit data (empty when no mission was given).
    """

    depth: float
    depth_err: float
    snr: float
    n_transits: int
    n_in_transit: int
    red_noise_factor: float
    largest_transit_fraction: float
    missions_used: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SingleTransit:
    """One transit-like dip not explained by a periodic signal (:func:`find_single_transits`).

    Attributes
    ----------
    t0, t0_err : float
        Mid-time (BJD_TDB) and its 1-sigma error (days).
    duration : float
        Box duration (days).
    depth, depth_err : float
        Relative flux decrement and its error (red noise included).
    snr : float
        ``depth / depth_err``.
    mission : str
        Mission of the segment it is in.
    """

    t0: float
    t0_err: float
    duration: float
    depth: float
    depth_err: float
    snr: float
    mission: str


@dataclasses.dataclass(frozen=True)
class LongPeriodSolution:
    """Periods allowed by single transits of one body (:func:`single_transit_periods`).

    Attributes
    ----------
    period, period_err : float
        The largest period ``ΔT_ij / n_ij`` common to all events within their timing errors,
        when three or more events determine it; NaN otherwise.
    allowed_periods : tuple of float
        Periods ``ΔT / n`` (``ΔT`` first to last event) consistent with every event and not
        excluded by observed data without a transit, longest first.
    t0 : float
        Mid-time of the strongest event (NaN without events).
    duration, depth : float
        Weighted means over the events used.
    events : tuple of SingleTransit
        The mutually consistent events used, in time order.
    """

    period: float
    period_err: float
    allowed_periods: tuple[float, ...]
    t0: float
    duration: float
    depth: float
    events: tuple[SingleTransit, ...]

    @property
    def n_events(self) -> int:
        """Number of events used."""
        return len(self.events)


@dataclasses.dataclass(frozen=True)
class TransitSearch:
    """Everything :func:`run_transit_search` did: the signals and where the time went.

    Attributes
    ----------
    signals : tuple of TransitSignal
        Strongest first.
    timings : tuple of (str, float)
        Seconds per stage, summed over search passes (``prepare``, ``bin``, ``fold``,
        ``boxes``, ``refine``, ``fit``), in order of first use.
    n_boxes : int
        Boxes (period × phase × duration) evaluated by the coarse searches, all passes.
    n_passes : int
        Searches run (one more than the signals found, unless ``max_signals`` was reached).
    n_points : int
        Finite points searched.
    """

    signals: tuple[TransitSignal, ...]
    timings: tuple[tuple[str, float], ...]
    n_boxes: int
    n_passes: int
    n_points: int


# --------------------------------------------------------------------------- period grids


def solar_duration(
    period: npt.ArrayLike, *, stellar_radius: float = 1.0, stellar_mass: float = 1.0
) -> FloatArray:
    """Duration of a central transit of a small planet on a circular orbit.

    ``D = P/π · arcsin(R⋆/a)`` with ``a`` from Kepler's third law.

    Parameters
    ----------
    period : array-like
        Orbital period (days).
    stellar_radius, stellar_mass : float
        In solar units.

    Returns
    -------
    ndarray
        Duration (days); ≈ 0.0757 d · (P/1 d)^(1/3) for the Sun.
    """
    p = np.asarray(period, np.float64) * _DAY
    a = np.cbrt(_GM_SUN * stellar_mass * p**2 / (4 * np.pi**2))
    ratio = np.minimum(1.0, stellar_radius * _R_SUN / a)
    return np.asarray(p / np.pi * np.arcsin(ratio) / _DAY, np.float64)


def ofir_frequency_grid(
    baseline_days: float,
    min_period: float,
    max_period: float,
    *,
    oversample: float = 3,
    stellar_radius: float = 1.0,
    stellar_mass: float = 1.0,
) -> FloatArray:
    """The optimal period grid of Ofir (2014), uniform in frequency to the power 1/3.

    Ofir, A. 2014, A&A 561, A138, "Optimizing the search for transiting planets in long time
    series", eqs. (5)–(7): adjacent frequencies differ by the duty cycle of a central transit
    over ``baseline × oversample``, so their folds drift apart by ``D / oversample`` over the
    data. ``N = (f_max^⅓ − f_min^⅓ + A/3) · 3/A`` with
    ``A = (2π)^⅔ / π · R⋆ / (G M⋆)^⅓ / (baseline · oversample)``.

    Parameters
    ----------
    baseline_days : float
        Span of the data (days).
    min_period, max_period : float
        Period range (days).
    oversample : float
        Oversampling factor (Ofir's ``OS``).
    stellar_radius, stellar_mass : float
        In solar units.

    Returns
    -------
    ndarray
        Periods (days), ascending; empty when the range is empty or invalid.
    """
    if not (baseline_days > 0 and 0 < min_period < max_period and oversample > 0):
        return np.empty(0)
    span = baseline_days * _DAY
    a = (
        (2 * np.pi) ** (2 / 3)
        / np.pi
        * stellar_radius
        * _R_SUN
        / (_GM_SUN * stellar_mass) ** (1 / 3)
        / (span * oversample)
    )
    f_lo3 = (1 / (max_period * _DAY)) ** (1 / 3)
    f_hi3 = (1 / (min_period * _DAY)) ** (1 / 3)
    count = int((f_hi3 - f_lo3 + a / 3) * 3 / a)
    x = np.arange(count) + 1.0
    frequency = (a / 3 * x + f_lo3 - a / 3) ** 3
    periods = 1 / frequency / _DAY
    keep = (periods >= min_period) & (periods <= max_period)
    return np.asarray(periods[keep][::-1], np.float64)


# --------------------------------------------------------------------------- preparation


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """Finite, time-sorted points with their robust noise (internal)."""

    time: FloatArray
    flux: FloatArray
    flux_err: FloatArray
    mission: npt.NDArray[np.int64]
    segment: IntArray
    y: FloatArray  # dimming: segment median minus flux
    sigma: FloatArray  # robust 1-sigma per point
    cadence: float

    @property
    def size(self) -> int:
        return int(self.time.size)

    @property
    def weight(self) -> FloatArray:
        return np.asarray(1.0 / self.sigma**2, np.float64)

    def subset(self, keep: BoolArray) -> _Prepared:
        return _Prepared(
            self.time[keep],
            self.flux[keep],
            self.flux_err[keep],
            self.mission[keep],
            self.segment[keep],
            self.y[keep],
            self.sigma[keep],
            self.cadence,
        )


def _mission_indices(mission: npt.ArrayLike | str | int | None, size: int) -> IntArray:
    """Mission indices (into :data:`MISSIONS`) from indices, names or a scalar; -1 unknown."""
    if mission is None:
        return np.full(size, -1, np.int64)
    values = np.asarray(mission)
    if values.ndim == 0:
        values = np.full(size, values.item())
    if values.dtype.kind in "US":
        lookup = {name.lower(): i for i, name in enumerate(MISSIONS)}
        return np.array([lookup.get(str(v).lower(), -1) for v in values.ravel()], np.int64)
    return np.asarray(values.ravel(), np.int64)


def _mission_names(indices: npt.ArrayLike) -> tuple[str, ...]:
    found = np.unique(np.asarray(indices, np.int64))
    return tuple(MISSIONS[i] for i in found if 0 <= i < len(MISSIONS))


def _median_cadence(time: FloatArray) -> float:
    steps = np.diff(time)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 1.0


def _segment_ids(time: FloatArray, mission: IntArray, max_gap_days: float) -> IntArray:
    """Segment number of each sorted point (as :func:`~.series.segment_slices`)."""
    if time.size == 0:
        return np.zeros(0, np.int64)
    breaks = (np.diff(time) > max_gap_days) | (np.diff(mission) != 0)
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def _robust_std(values: FloatArray) -> float:
    if values.size == 0:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _prepare(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    mission: npt.ArrayLike | str | int | None,
    *,
    max_gap_days: float = 0.5,
    exclude: npt.ArrayLike | None = None,
    noise_exclude: npt.ArrayLike | None = None,
) -> _Prepared | None:
    """Drop non-finite points and ``exclude``, sort, and measure each segment's noise.

    The noise of a segment is the MAD-based standard deviation of its flux (ignoring points in
    ``noise_exclude``, e.g. in transit); a point's sigma is its ``flux_err`` scaled so the
    segment's median error matches that (clipped to 0.5–5× the segment's), or the segment's
    noise where ``flux_err`` is missing. Returns None when fewer than 3 points remain.
    """
    t = np.asarray(time, np.float64).ravel()
    f = np.asarray(flux, np.float64).ravel()
    if t.size != f.size:
        raise ValueError(f"time and flux differ in length ({t.size} vs {f.size})")
    e = (
        np.full(t.size, np.nan)
        if flux_err is None
        else np.broadcast_to(np.asarray(flux_err, np.float64).ravel(), t.shape).copy()
    )
    m = _mission_indices(mission, t.size)
    keep = np.isfinite(t) & np.isfinite(f)
    if exclude is not None:
        keep &= ~np.asarray(exclude, bool).ravel()
    quiet = np.ones(t.size, bool)
    if noise_exclude is not None:
        quiet = ~np.asarray(noise_exclude, bool).ravel()
    idx = np.flatnonzero(keep)
    if idx.size < 3:
        return None
    idx = idx[np.argsort(t[idx], kind="stable")]
    t, f, e, m, quiet = t[idx], f[idx], e[idx], m[idx], quiet[idx]
    segment = _segment_ids(t, m, max_gap_days)
    y = np.empty_like(f)
    sigma = np.empty_like(f)
    bounds = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [t.size]])
    overall = _robust_std(f[quiet]) if quiet.any() else _robust_std(f)
    for a, b in zip(starts, stops, strict=True):
        seg_f, seg_e, seg_q = f[a:b], e[a:b], quiet[a:b]
        base = seg_f[seg_q] if np.count_nonzero(seg_q) >= 8 else seg_f
        centre = float(np.median(base))
        noise = _robust_std(base) if base.size >= 8 else math.nan
        if not (noise > 0 and math.isfinite(noise)):
            noise = overall if overall > 0 and math.isfinite(overall) else 1e-3
        y[a:b] = centre - seg_f
        good_err = np.isfinite(seg_e) & (seg_e > 0)
        if np.count_nonzero(good_err) >= max(3, seg_e.size // 2):
            scaled = seg_e * (noise / np.median(seg_e[good_err]))
            scaled = np.where(good_err, scaled, noise)
            sigma[a:b] = np.clip(scaled, 0.5 * noise, 5.0 * noise)
        else:
            sigma[a:b] = noise
    return _Prepared(t, f, e, m, segment, y, sigma, _median_cadence(t))


# --------------------------------------------------------------------------- masks and fits


def transit_mask(
    time: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    *,
    factor: float = 1.0,
) -> BoolArray:
    """Points within ``factor × duration / 2`` of a mid-transit time.

    Parameters
    ----------
    time : array-like
        Times (days, same scale as ``t0``).
    period : float
        Period (days); ``inf`` or NaN for a single event at ``t0``.
    t0 : float
        A mid-transit time.
    duration : float
        Transit duration (days).
    factor : float
        Width of the mask in durations (1: the transit itself; 1.5 or 2 to mask wings too).

    Returns
    -------
    ndarray of bool
        True in transit (False for non-finite times).
    """
    t = np.asarray(time, np.float64)
    half = 0.5 * factor * duration
    with np.errstate(invalid="ignore"):
        if not (math.isfinite(period) and period > 0):
            return np.asarray(np.abs(t - t0) < half)
        offset = np.abs((t - t0 + 0.5 * period) % period - 0.5 * period)
    return np.asarray(offset < half)


@dataclasses.dataclass(frozen=True)
class _BoxStats:
    """Everything a fixed-ephemeris box fit measures (internal)."""

    fit: BoxFit
    epochs: IntArray  # epochs with in-transit data
    epoch_weight: FloatArray  # in-transit weight per epoch (1/σ², physical)
    t0_nearest_centre: float
    period_err: float


def _red_noise_factor(data: _Prepared, use: BoolArray, duration: float) -> float:
    """Robust scatter of duration-long bins of ``use`` points over its white-noise value."""
    if not np.count_nonzero(use) or duration <= 0:
        return 1.0
    t, y, w, seg = data.time[use], data.y[use], data.weight[use], data.segment[use]
    first = np.flatnonzero(np.r_[True, np.diff(seg) != 0])
    seg_start = np.repeat(t[first], np.diff(np.r_[first, t.size]))
    window = np.floor((t - seg_start) / duration).astype(np.int64)
    key = seg * (int(window.max()) + 2) + window
    starts = np.flatnonzero(np.r_[True, np.diff(key) != 0])
    counts = np.diff(np.r_[starts, key.size])
    expected = duration / data.cadence
    full = counts >= max(1.0, 0.5 * expected)
    if np.count_nonzero(full) < _MIN_RED_NOISE_BINS:
        return 1.0
    sum_wy = np.add.reduceat(w * y, starts)[full]
    sum_w = np.add.reduceat(w, starts)[full]
    z = sum_wy / np.sqrt(sum_w)
    return max(1.0, _robust_std(z))


def _box_statistics(data: _Prepared, period: float, t0: float, duration: float) -> _BoxStats:
    """Fixed-ephemeris box fit on prepared data (internal)."""
    single = not (math.isfinite(period) and period > 0)
    inside = transit_mask(data.time, period, t0, duration)
    w = data.weight
    n_in = int(np.count_nonzero(inside))
    if n_in == 0 or n_in == data.size:
        empty = BoxFit(math.nan, math.nan, math.nan, 0, n_in, 1.0, math.nan, ())
        return _BoxStats(empty, np.zeros(0, np.int64), np.zeros(0), math.nan, math.nan)
    w_in, w_out = w[inside], w[~inside]
    r, rest = float(w_in.sum()), float(w_out.sum())
    depth = float((w_in * data.y[inside]).sum() / r - (w_out * data.y[~inside]).sum() / rest)
    beta = _red_noise_factor(data, ~inside, duration)
    depth_err = beta * math.sqrt(1 / r + 1 / rest)
    if single:
        epoch = np.zeros(n_in, np.int64)
    else:
        epoch = np.rint((data.time[inside] - t0) / period).astype(np.int64)
    epochs, which = np.unique(epoch, return_inverse=True)
    epoch_weight = np.asarray(np.bincount(which, w_in), np.float64)
    epoch_signal = np.bincount(
        which, w_in * (data.y[inside] - (data.y[~inside] * w_out).sum() / rest)
    )
    positive = np.maximum(epoch_signal, 0.0)
    total = positive.sum()
    largest = float(positive.max() / total) if total > 0 else 1.0
    fit = BoxFit(
        depth=depth,
        depth_err=depth_err,
        snr=depth / depth_err,
        n_transits=int(epochs.size),
        n_in_transit=n_in,
        red_noise_factor=beta,
        largest_transit_fraction=largest,
        missions_used=_mission_names(data.mission[inside]),
    )
    # timing precision of one transit (Carter et al. 2008): σ_tc = D/Q · sqrt(τ/2D), with
    # Q its SNR and τ the ingress, taken as max(cadence, D·Rp/R⋆) with Rp/R⋆ = sqrt(depth)
    ingress = max(data.cadence, duration * math.sqrt(max(depth, 0.0)))
    ingress = min(ingress, 0.5 * duration)
    epoch_snr2 = (max(depth, 0.0) / beta) ** 2 * epoch_weight
    with np.errstate(divide="ignore"):
        timing_var = duration**2 * ingress / (2 * duration) / epoch_snr2
    good = np.isfinite(timing_var) & (timing_var > 0)
    if single or not good.any():
        centre = t0
        period_err = math.nan
    else:
        tw = 1 / timing_var[good]
        e = epochs[good].astype(np.float64)
        mean_e = float((tw * e).sum() / tw.sum())
        spread = float((tw * (e - mean_e) ** 2).sum())
        period_err = math.sqrt(1 / spread) if spread > 0 else math.nan
        nearest = int(epochs[good][np.argmin(np.abs(e - mean_e))])
        centre = t0 + nearest * period
    return _BoxStats(fit, epochs, epoch_weight, centre, period_err)


def box_fit(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    period: float,
    t0: float,
    duration: float,
    *,
    mission: npt.ArrayLike | None = None,
    max_gap_days: float = 0.5,
) -> BoxFit:
    """Box fit at a fixed ephemeris: depth, its error and SNR, with robust noise.

    Parameters
    ----------
    time, flux, flux_err : array-like
        BJD_TDB, detrended relative flux and its error (NaN where unknown); non-finite time or
        flux points are dropped.
    period : float
        Period (days); ``inf`` fits a single event at ``t0``.
    t0, duration : float
        A mid-transit time and the duration (days).
    mission : array-like, optional
        Mission index (into :data:`~starskope_dask.records.MISSIONS`) or name per point:
        segments also break where it changes, and ``missions_used`` is filled.
    max_gap_days : float
        A longer gap starts a new segment (each has its own noise level and baseline).

    Returns
    -------
    BoxFit
        NaN depth and SNR when there are no points in or out of transit.
    """
    inside = transit_mask(np.asarray(time, np.float64).ravel(), period, t0, duration)
    data = _prepare(time, flux, flux_err, mission, max_gap_days=max_gap_days, noise_exclude=inside)
    if data is None:
        return BoxFit(math.nan, math.nan, math.nan, 0, 0, 1.0, math.nan, ())
    fit = _box_statistics(data, period, t0, duration).fit
    if mission is None:
        fit = dataclasses.replace(fit, missions_used=())
    return fit


# --------------------------------------------------------------------------- fast folding


def _ffa(x: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    """Fast folding transform of rows ``x`` (k, rows, p) into ``n`` folds (a power of two).

    Row ``s`` of the result is the sum over the ``n`` rows ``r`` of row ``r`` circularly
    shifted left by ``≈ r·s/(n−1)`` bins: the fold at ``p + s/(n−1)`` bins per row. Rows after
    ``rows`` are empty and never stored. Exact only while the total drift stays within a row
    (``n − 1 ≤ p``): beyond that a cycle slips into the next row and wrapping misplaces it
    by the drift per row at each slip — callers keep ``n ≤ p`` (rows of several cycles).
    Each of the ``log2 n`` stages merges pairs of groups with two strided additions per block
    of up to ``p`` rows (a shift by ``j`` is a diagonal view of the doubled tail).
    """
    k, rows, p = x.shape
    size = x.itemsize
    current = np.ascontiguousarray(x)
    m = 1
    doubled = np.empty(k * max(n, rows) * p, x.dtype)
    while m < n:
        groups = -(-rows // m)  # groups of m folds holding data (the rest are zero)
        pairs, odd = divmod(groups, 2)
        out = np.empty((k, (pairs + odd) * 2 * m, p), x.dtype)
        if pairs:
            merged = current[:, : pairs * 2 * m].reshape(k, pairs, 2, m, p)
            head = merged[:, :, 0]
            ext = doubled[: k * pairs * m * 2 * p].reshape(k, pairs, m, 2 * p)
            ext[..., :p] = merged[:, :, 1]
            ext[..., p:] = merged[:, :, 1]
            target = out[:, : pairs * 2 * m].reshape(k, pairs, 2 * m, p)
            strides = (pairs * m * 2 * p * size, m * 2 * p * size, (2 * p + 1) * size, size)
            for c0 in range(0, m, p):
                c1 = min(c0 + p, m)
                offset = c0 * 2 * p * size
                shape = (k, pairs, c1 - c0, p)
                by_j = np.ndarray(shape, x.dtype, buffer=ext, offset=offset, strides=strides)
                by_j1 = np.ndarray(
                    shape, x.dtype, buffer=ext, offset=offset + size, strides=strides
                )
                h = head[:, :, c0:c1]
                np.add(h, by_j, out=target[:, :, 2 * c0 : 2 * c1 : 2])
                np.add(h, by_j1, out=target[:, :, 2 * c0 + 1 : 2 * c1 : 2])
        if odd:  # the last group's partner is empty: its folds are the group's own
            alone = current[:, pairs * 2 * m : pairs * 2 * m + m]
            out[:, pairs * 2 * m :: 2] = alone
            out[:, pairs * 2 * m + 1 :: 2] = alone
        current = out
        rows = out.shape[1]
        m *= 2
    return current


def _ffa_linear(
    x: npt.NDArray[np.float32], n: int, even_only: bool = False
) -> npt.NDArray[np.float32]:
    """Fast folding of overlapping windows ``x`` (k, rows, w) into ``n`` folds (a power of 2).

    Row ``r`` of ``x[i]`` is the data from the start of cycle ``r`` on, ``w`` bins long (longer
    than the period); the cycles after ``rows`` are empty and never stored. Row ``s`` of the
    result, ``w − n + 1`` bins long, is the sum over ``r`` of row ``r`` shifted left by
    ``≈ r·s/(n−1)`` bins — the fold at ``p + s/(n−1)`` bins, not wrapped (bins past the period
    continue into the next cycle). The shifts are diagonal strided views, so nothing is copied
    but the sums; ``k`` base periods share every call. ``even_only`` computes only the folds
    ``s = 0, 2, 4, …`` in the last stage.
    """
    k, rows, width = x.shape
    size = x.itemsize
    current = np.ascontiguousarray(x)
    m = 1
    while m < n:
        groups = -(-rows // m)  # groups of m folds holding data (the rest are zero)
        pairs, odd = divmod(groups, 2)
        last = 2 * m >= n
        step = 2 if (last and even_only) else 1
        out = np.empty((k, (pairs + odd) * 2 * m // step, width - m), x.dtype)
        if pairs:
            head = current[:, : pairs * 2 * m].reshape(k, pairs, 2, m, width)[
                :, :, 0, :, : width - m
            ]
            shape = (k, pairs, m, width - m)
            row_stride = current.strides[1]
            diagonal = (current.strides[0], 2 * m * row_stride, row_stride + size, size)
            tail = m * row_stride
            by_j = np.ndarray(shape, x.dtype, buffer=current, offset=tail, strides=diagonal)
            merged = out[:, : pairs * 2 * m // step].reshape(k, pairs, 2 * m // step, width - m)
            np.add(head, by_j, out=merged[:, :, 0 :: 2 // step])
            if step == 1:
                by_j1 = np.ndarray(
                    shape, x.dtype, buffer=current, offset=tail + size, strides=diagonal
                )
                np.add(head, by_j1, out=merged[:, :, 1::2])
        if odd:  # the last group's partner is empty: its folds are the group's own
            alone = current[:, pairs * 2 * m : pairs * 2 * m + m, : width - m]
            rest = out[:, pairs * 2 * m // step :]
            rest[:, 0 :: 2 // step] = alone
            if step == 1:
                rest[:, 1::2] = alone
        current = out
        rows = out.shape[1]
        width -= m
        m *= 2
    return current


def _best_boxes(
    folded: npt.NDArray[np.float32],
    widths: Sequence[int],
    scale: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], IntArray, IntArray]:
    """Best box of each folded profile over every phase and width.

    ``folded`` is (…, trials, bins): the weighted flux decrement per phase bin over a period
    and ``max(widths)`` bins into the next cycle. The statistic is ``S · scale / √width``
    with ``scale = √(p / weight)``: the box SNR with the box's weight taken as its phase
    average (exact for even phase coverage; gaps make it conservative, over-covered phases
    inflate it by at most ``√(coverage / mean coverage)``). The refinement recomputes it
    exactly. Returns the best statistic, its first bin and the index of its width, per trial.
    """
    phases = folded.shape[-1] - max(widths)
    shape = folded.shape[:-1]
    best = np.full(shape, -np.inf, np.float32)
    best_q = np.zeros(shape, np.int64)
    best_w = np.zeros(shape, np.int64)
    box = folded[..., :phases]
    done = 1
    for i, w in enumerate(widths):
        if done < w:  # box sums by adding the next bins: widths are small (≤ 3)
            box = np.add(box, folded[..., done : done + phases])
            done += 1
            while done < w:
                box += folded[..., done : done + phases]
                done += 1
        q = np.argmax(box, axis=-1)
        value = np.take_along_axis(box, q[..., None], axis=-1)[..., 0]
        value *= scale / np.float32(math.sqrt(w))
        better = value > best
        np.copyto(best, value, where=better)
        np.copyto(best_q, q, where=better)
        np.copyto(best_w, i, where=better)
    return best, best_q, best_w


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A coarse periodogram peak (internal)."""

    period: float
    t0: float
    duration: float
    snr: float
    step: float  # coarse period step (days)
    bin: float  # coarse bin (days)
    sde: float
    centre: float  # middle of the group's data


@dataclasses.dataclass
class _Timer:
    """Seconds per stage (internal, one per search call)."""

    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, stage: str, start: float) -> float:
        now = _clock.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - start
        return now


@dataclasses.dataclass(frozen=True)
class _SearchSettings:
    min_period: float
    max_period: float
    oversample: float
    stellar_radius: float
    stellar_mass: float
    duration_range: tuple[float, float]
    n_candidates: int


def _duration_levels(
    d_lo: float, d_hi: float, base_bin: float, floor_limited: bool
) -> list[tuple[int, tuple[int, ...]]]:
    """(level, widths in that level's bins) covering durations ``d_lo``–``d_hi``.

    Level ``j`` has bins ``base_bin · 2^j`` and boxes 2 and 3 bins wide (also 1 bin at level 0
    when the bin is the data's cadence and shorter boxes are wanted).
    """
    levels: list[tuple[int, tuple[int, ...]]] = []
    j = 0
    while True:
        b = base_bin * 2**j
        if 2 * b > 1.25 * d_hi and levels:
            break
        candidates = (1, 2, 3) if (j == 0 and floor_limited and b > d_lo / 1.5) else (2, 3)
        widths = tuple(w for w in candidates if w * b <= 1.25 * d_hi or w == candidates[0])
        levels.append((j, widths))
        j += 1
        if j > 12:
            break
    return levels


@dataclasses.dataclass
class _Trials:
    """Coarse periodogram being accumulated (internal)."""

    period: list[FloatArray] = dataclasses.field(default_factory=list)
    value: list[npt.NDArray[np.float32]] = dataclasses.field(default_factory=list)
    t0: list[FloatArray] = dataclasses.field(default_factory=list)
    duration: list[FloatArray] = dataclasses.field(default_factory=list)
    step: list[FloatArray] = dataclasses.field(default_factory=list)
    bin: list[FloatArray] = dataclasses.field(default_factory=list)
    octave: list[IntArray] = dataclasses.field(default_factory=list)
    n_boxes: int = 0

    def add(
        self,
        period: FloatArray,
        value: npt.NDArray[np.float32],
        t0: FloatArray,
        duration: FloatArray,
        step: FloatArray,
        bin_width: float,
        octave: int,
    ) -> None:
        self.period.append(period)
        self.value.append(value)
        self.t0.append(t0)
        self.duration.append(duration)
        self.step.append(step)
        self.bin.append(np.full(period.size, bin_width))
        self.octave.append(np.full(period.size, octave, np.int64))


#: Linear (unwrapped) folds, batched, while the folds per base period are at most this many
#: per bin of the period (their windows are longer than the period by the fold count);
#: beyond, circular folds of rows of several cycles.
_LINEAR_FOLD_MAX_CYCLES = 0.5
#: Elements per batch of linear folds (about what stays in a core's cache).
_BATCH_ELEMENTS = 150_000


def _fold_rows(z: npt.NDArray[np.float32], lengths: IntArray, n: int) -> npt.NDArray[np.float32]:
    """:func:`_ffa` of ``z`` cut into rows of each length: (lengths, n, max length)."""
    out = np.zeros((lengths.size, n, int(lengths.max())), np.float32)
    for i, length in enumerate(lengths):
        rows = -(-z.size // int(length))
        x = np.zeros(rows * int(length), np.float32)
        x[: z.size] = z
        out[i, :, :length] = _ffa(x.reshape(1, rows, int(length)), n)[0]
    return out


def _cycles_per_row(n_bins: int, p: int) -> int:
    """Fewest cycles per row for which the circular fold of base period ``p`` is exact.

    :func:`_ffa` drifts by up to a bin per row and is exact while the total drift stays
    within a row: rows of ``K`` cycles (``≈ K·p`` bins, ``≈ n/K`` rows) need
    ``n/K ≲ K·p``, so ``K ≈ √(n/p)`` where the data hold many more cycles than a period has
    bins (short periods), else 1.
    """
    k = 1
    while True:
        n = -(-n_bins // (k * p))
        if n < 2 or (1 << (n - 1).bit_length()) - 1 <= k * p:
            return k
        k += 1


def _fold_level(
    z: npt.NDArray[np.float32],
    b: float,
    lo: float,
    hi: float,
    widths: tuple[int, ...],
    allowed_drift: float,
    weight: float,
    t_ref: float,
    octave: int,
    trials: _Trials,
    timer: _Timer,
) -> None:
    """Fold one binning ``z`` (bin ``b`` days) at every period in [lo, hi); best boxes.

    For each base period ``p`` (bins) the data are cut into windows starting every ``K·p``
    bins (``K`` cycles per row, :func:`_cycles_per_row`) and folded with :func:`_ffa_linear`
    at row lengths ``K·p + i`` (``i < K``), a batch of them at once: row length ``K·p + i``
    with fold ``s`` of ``N`` is the period ``(K·p + i + s/(N−1)) / K`` bins, so together they
    cover ``p`` to ``p + 1``. The ``K`` cycles of each folded row are then added up.
    """
    n_bins = z.size
    wmax = max(widths)
    p_first = max(int(lo / b), wmax + 1)
    p_last = math.ceil(hi / b)
    widths_arr = np.asarray(widths)
    padded = np.zeros(0, np.float32)
    p = p_first
    while p < p_last:
        if -(-n_bins // p) < 2:
            break
        start = _clock.perf_counter()
        n = -(-n_bins // p)
        if (1 << (n - 1).bit_length()) - 1 <= _LINEAR_FOLD_MAX_CYCLES * p:
            # few cycles: linear folds of a batch of base periods with the same fold count
            cycles = 1
            n_pad = 1 << (n - 1).bit_length()
            count = max(1, _BATCH_ELEMENTS // (n_pad * (p_last + wmax + n_pad)))
            rows = np.arange(p, min(p + count, p_last))
            same = [1 << (int(c) - 1).bit_length() == n_pad for c in -(-n_bins // rows)]
            rows = rows[np.asarray(same, bool)]  # a prefix: the count falls as p grows
            bases = rows
            n_max = int(-(-n_bins // rows[0]))
            width = int(rows[-1]) + wmax + n_pad
            need = int(rows[-1]) * n_max + width
            if padded.size < need:
                padded = np.zeros(max(need, 2 * n_bins), np.float32)
                padded[:n_bins] = z
            view = np.lib.stride_tricks.sliding_window_view(padded, width)
            stride = max(1, int(allowed_drift * (n_pad - 1) / max(n_max - 1, 1)))
            even_only = stride % 2 == 0
            starts = rows[:, None] * np.arange(n_max)[None, :]
            folded = _ffa_linear(view[starts], n_pad, even_only)
            s_step = 2 if even_only else 1  # folds 0, 2, 4, … only
        else:
            # many cycles: circular folds of rows of K cycles, K row lengths K·p + i
            cycles = _cycles_per_row(n_bins, p)
            rows = cycles * p + np.arange(cycles)
            bases = np.full(cycles, p)
            n_max = int(-(-n_bins // rows[0]))
            n_pad = 1 << (n_max - 1).bit_length()
            stride = max(1, int(allowed_drift * (n_pad - 1) / max(n_max - 1, 1)))
            s_step = 1
            folded = _fold_rows(z, rows, n_pad)
        s_rows = np.arange(0, n_pad - 1, stride)
        chosen = folded[:, : -(-(n_pad - 1) // s_step) : stride // s_step]
        # per-cycle period of each (row length, fold), in bins
        period_bins = (rows[:, None] + s_rows[None, :] / (n_pad - 1)) / cycles
        if cycles > 1:  # add up the K cycles of each folded row (circular in its length)
            span = p + wmax
            wrapped = np.empty((rows.size, chosen.shape[1], chosen.shape[2] + span), np.float32)
            for i, length in enumerate(rows):
                wrapped[i, :, :length] = chosen[i, :, :length]
                wrapped[i, :, length : length + span] = chosen[i, :, :span]
            shifts = np.rint(period_bins[:, :, None] * np.arange(cycles)).astype(np.int64)
            shifts %= rows[:, None, None]
            windows = np.lib.stride_tricks.sliding_window_view(wrapped, span, axis=-1)
            member = np.arange(rows.size)[:, None, None]
            trial = np.arange(s_rows.size)[None, :, None]
            chosen = windows[member, trial, shifts].sum(axis=2)
        start = timer.add("fold", start)
        scale = np.sqrt(bases / weight).astype(np.float32)[:, None]
        best_3d, q_3d, wi_3d = _best_boxes(chosen, widths, scale)
        best, q, wi = best_3d.ravel(), q_3d.ravel(), wi_3d.ravel()
        width_bins = widths_arr[wi]
        trials.n_boxes += int(bases.sum()) * s_rows.size * len(widths)
        trials.add(
            period=period_bins.ravel() * b,
            value=best,
            t0=t_ref + (q + 0.5 * width_bins) * b,
            duration=width_bins * b,
            step=np.full(best.size, stride * b / ((n_pad - 1) * cycles)),
            bin_width=b,
            octave=octave,
        )
        timer.add("boxes", start)
        p = int(bases[-1]) + 1


def _coarse_search(
    time: FloatArray,
    yw: FloatArray,
    w: FloatArray,
    cadence: float,
    settings: _SearchSettings,
    timer: _Timer,
    n_keep: int,
) -> tuple[list[_Candidate], int]:
    """FFA box search of one group of data.

    Returns its ``n_keep`` strongest distinct peaks (best first) and the boxes tried.
    """
    t_ref = float(time[0])
    span = float(time[-1] - time[0])
    top = min(settings.max_period, span)
    centre = float(np.median(time))
    f_lo, f_hi = settings.duration_range
    radius, mass = settings.stellar_radius, settings.stellar_mass
    weight = float(w.sum())
    trials = _Trials()
    lo = settings.min_period
    octave = 0
    while lo < top * (1 - 1e-9):
        hi = min(2 * lo, top)
        start = _clock.perf_counter()
        d_sol_lo = float(solar_duration(lo, stellar_radius=radius, stellar_mass=mass))
        d_sol_hi = float(solar_duration(hi, stellar_radius=radius, stellar_mass=mass))
        d_lo = f_lo * d_sol_lo
        d_hi = max(min(f_hi * d_sol_hi, MAX_DUTY_CYCLE * lo), d_lo)
        drift = d_sol_lo / settings.oversample  # Ofir: adjacent trials drift this much
        wanted = min(d_lo / _BINS_PER_SHORTEST, drift)
        base = max(cadence, wanted)
        index = np.floor((time - t_ref) / base).astype(np.int64)
        length = int(index[-1]) + 1
        sum_yw = np.bincount(index, yw, length)
        timer.add("bin", start)
        for level, widths in _duration_levels(d_lo, d_hi, base, base > wanted):
            b = base * 2**level
            factor = 2**level
            n_bins = -(-length // factor)
            z = np.zeros(n_bins * factor)
            z[:length] = sum_yw
            z32 = z.reshape(n_bins, factor).sum(axis=1).astype(np.float32)
            _fold_level(
                z32, b, lo, hi, widths, max(drift / b, 1.0), weight, t_ref, octave, trials, timer
            )
        lo = hi
        octave += 1
    if not trials.period:
        return [], trials.n_boxes
    start = _clock.perf_counter()
    period = np.concatenate(trials.period)
    value = np.concatenate(trials.value).astype(np.float64)
    t0 = np.concatenate(trials.t0)
    duration = np.concatenate(trials.duration)
    step = np.concatenate(trials.step)
    bin_width = np.concatenate(trials.bin)
    octave_index = np.concatenate(trials.octave)
    stats = {}
    for k in np.unique(octave_index):
        v = value[octave_index == k]
        spread = _robust_std(v)
        stats[int(k)] = (float(np.median(v)), spread if spread > 0 else 1.0)
    pool = min(value.size, 50 * n_keep)
    order = np.argpartition(-value, pool - 1)[:pool]
    order = order[np.argsort(-value[order], kind="stable")]
    chosen: list[_Candidate] = []
    for i in order:
        near = any(
            abs(period[i] - c.period) <= 4 * max(step[i], c.step) + 1e-3 * c.period for c in chosen
        )
        if near:
            continue
        median, spread = stats[int(octave_index[i])]
        chosen.append(
            _Candidate(
                period=float(period[i]),
                t0=float(t0[i]),
                duration=float(duration[i]),
                snr=float(value[i]),
                step=float(step[i]),
                bin=float(bin_width[i]),
                sde=(float(value[i]) - median) / spread,
                centre=centre,
            )
        )
        if len(chosen) >= n_keep:
            break
    timer.add("boxes", start)
    return chosen, trials.n_boxes


@dataclasses.dataclass(frozen=True)
class _Box:
    """A refined box (internal): ephemeris, statistic and the resolution it was found at."""

    period: float
    t0: float
    duration: float
    statistic: float
    period_step: float
    phase_bin: float
    polished: bool = False
    period_spread: float = 0.0  # extent of the polished plateau of equal statistic


def _duration_bounds(period: float, settings: _SearchSettings) -> tuple[float, float]:
    """Durations a refined box may take at ``period`` (days): (shortest, longest).

    From half the shortest searched to the longest (``duration_range`` ×
    :func:`solar_duration`), and at most ``MAX_DUTY_CYCLE`` of the period.
    """
    d_sol = float(
        solar_duration(
            period, stellar_radius=settings.stellar_radius, stellar_mass=settings.stellar_mass
        )
    )
    d_max = min(settings.duration_range[1] * d_sol, MAX_DUTY_CYCLE * period)
    return min(0.5 * settings.duration_range[0] * d_sol, d_max), d_max


def _refine(
    time: FloatArray,
    yw: FloatArray,
    w: FloatArray,
    *,
    period: float,
    t0: float,
    duration: float,
    half_window: float,
    phase_uncertainty: float,
    centre: float,
    settings: _SearchSettings,
    n_peaks: int = 1,
) -> list[_Box]:
    """Direct box search of ``time`` around a box: the best ``n_peaks`` distinct periods.

    Periods within ``± half_window``, spaced so folds drift by a twelfth of the duration over
    the data (from the epoch nearest ``centre``); phases within ``± phase_uncertainty`` (plus
    the box), in bins of a sixth of the duration; durations from half to twice ``duration``,
    within :func:`_duration_bounds`.
    """
    e = round((centre - t0) / period)
    t_ref = t0 + e * period
    x = time - t_ref
    lever = max(float(np.abs(x).max()), period)
    d_min, d_max = _duration_bounds(period, settings)
    duration = min(max(duration, d_min), d_max)
    fine = max(duration / _FINE_BINS_PER_DURATION, 1e-4)
    tried = np.clip(duration * 2 ** (np.arange(-4, 5) / 4), d_min, d_max)
    widths = np.unique(np.clip(np.rint(tried / fine), 1, None).astype(np.int64))
    step = period * 0.5 * fine / lever
    count = int(min(2 * math.ceil(half_window / step) + 1, 4001))
    trial = period + np.linspace(-half_window, half_window, count)
    trial = trial[(trial > 0.5 * settings.min_period)]
    step = 2 * half_window / max(count - 1, 1)
    half_phase = phase_uncertainty + 0.5 * duration + 0.5 * float(widths.max()) * fine + fine
    epochs = np.rint(x / period)
    offset = x - epochs * period
    near = np.abs(offset) <= half_phase + half_window * np.abs(epochs) + fine
    xs, ys, ws = x[near], yw[near], w[near]
    w_total = float(w.sum())
    n_bins = math.ceil(2 * half_phase / fine)
    logger.debug(
        "refine P=%.4f: %d periods x %d points, %d bins", period, trial.size, xs.size, n_bins
    )
    if xs.size == 0 or trial.size == 0:
        return [_Box(period, t_ref, duration, -math.inf, step, fine)]

    per_trial = np.full(trial.size, -np.inf)  # best statistic per trial period
    per_centre = np.zeros(trial.size)
    per_duration = np.zeros(trial.size)
    chunk = max(1, int(2_000_000 // xs.size))
    for c0 in range(0, trial.size, chunk):
        pf = trial[c0 : c0 + chunk, None]
        off = xs[None, :] - np.rint(xs[None, :] / pf) * pf
        k = np.floor((off + half_phase) / fine).astype(np.int64)
        ok = (k >= 0) & (k < n_bins)
        rows = np.broadcast_to(np.arange(pf.shape[0])[:, None], k.shape)
        flat = rows[ok] * n_bins + k[ok]
        size = pf.shape[0] * n_bins
        sum_y = np.bincount(flat, np.broadcast_to(ys, k.shape)[ok], size)
        sum_w = np.bincount(flat, np.broadcast_to(ws, k.shape)[ok], size)
        cum_y = np.zeros((pf.shape[0], n_bins + 1))
        cum_w = np.zeros((pf.shape[0], n_bins + 1))
        np.cumsum(sum_y.reshape(-1, n_bins), axis=1, out=cum_y[:, 1:])
        np.cumsum(sum_w.reshape(-1, n_bins), axis=1, out=cum_w[:, 1:])
        here = slice(c0, c0 + pf.shape[0])
        for width in widths:
            s = cum_y[:, width:] - cum_y[:, :-width]
            r = cum_w[:, width:] - cum_w[:, :-width]
            denominator = r * np.clip(1 - r / w_total, 1e-9, None)
            with np.errstate(divide="ignore", invalid="ignore"):
                stat = np.where(r > 0, s / np.sqrt(denominator), -np.inf)
            q = np.argmax(stat, axis=1)
            value = stat[np.arange(q.size), q]
            better = value > per_trial[here]
            per_trial[here] = np.where(better, value, per_trial[here])
            centres = -half_phase + (q + 0.5 * width) * fine
            per_centre[here] = np.where(better, centres, per_centre[here])
            per_duration[here] = np.where(better, width * fine, per_duration[here])
    boxes: list[_Box] = []
    for i in np.argsort(-per_trial, kind="stable"):
        if not math.isfinite(per_trial[i]) or len(boxes) >= n_peaks:
            break
        if any(abs(trial[i] - box.period) <= 3 * step for box in boxes):
            continue  # the same peak
        boxes.append(
            _Box(
                float(trial[i]),
                t_ref + float(per_centre[i]),
                float(per_duration[i]),
                float(per_trial[i]),
                step,
                fine,
            )
        )
    return boxes or [_Box(period, t_ref, duration, -math.inf, step, fine)]


def _polish_box(
    time: FloatArray,
    yw: FloatArray,
    w: FloatArray,
    box: _Box,
    settings: _SearchSettings,
    rounds: int = 3,
) -> _Box:
    """:func:`_polish` a refined box on the exact points (its statistic becomes exact)."""
    if box.polished or not math.isfinite(box.statistic):
        return box
    d_max = _duration_bounds(box.period, settings)[1]
    period, centre, duration, statistic, spread = _polish(
        time - box.t0,
        yw,
        w,
        float(w.sum()),
        box.period,
        0.0,
        box.duration,
        box.period_step,
        box.phase_bin,
        max_duration=d_max,
        rounds=rounds,
    )
    return _Box(
        period,
        box.t0 + centre,
        duration,
        statistic,
        box.period_step,
        box.phase_bin,
        polished=True,
        period_spread=spread,
    )


def _box_snr_grid(
    x: FloatArray,
    yw: FloatArray,
    w: FloatArray,
    w_total: float,
    periods: FloatArray,
    centres: FloatArray,
    durations: Sequence[float],
    resolution: float,
) -> FloatArray:
    """Box statistic ``S/√(R(1−R/W))`` of boxes (duration × period × centre) on points.

    The phase offsets of the points are histogrammed at ``resolution`` (a fraction of the
    centre step, so this is exact to that), each box's sums are differences of the
    cumulative histogram at its edges.
    """
    n_p, n_c = periods.size, centres.size
    lo_edge = float(centres.min()) - 0.5 * max(durations) - resolution
    n_bins = math.ceil((float(centres.max()) + 0.5 * max(durations) - lo_edge) / resolution)
    n_bins = max(n_bins, 1) + 1
    offsets = x[None, :] - np.rint(x[None, :] / periods[:, None]) * periods[:, None]
    index = np.floor((offsets - lo_edge) / resolution).astype(np.int64)
    valid = (index >= 0) & (index < n_bins)
    flat = (np.arange(n_p)[:, None] * n_bins + index)[valid]
    size = n_p * n_bins
    cum_y = np.zeros((n_p, n_bins + 1))
    cum_w = np.zeros((n_p, n_bins + 1))
    hist_y = np.bincount(flat, np.broadcast_to(yw, index.shape)[valid], size)
    hist_w = np.bincount(flat, np.broadcast_to(w, index.shape)[valid], size)
    np.cumsum(hist_y.reshape(n_p, n_bins), axis=1, out=cum_y[:, 1:])
    np.cumsum(hist_w.reshape(n_p, n_bins), axis=1, out=cum_w[:, 1:])
    out = np.empty((len(durations), n_p, n_c))
    for k, duration in enumerate(durations):
        lo = np.clip(np.ceil((centres - 0.5 * duration - lo_edge) / resolution), 0, n_bins)
        hi = np.clip(np.ceil((centres + 0.5 * duration - lo_edge) / resolution), 0, n_bins)
        s = cum_y[:, hi.astype(np.int64)] - cum_y[:, lo.astype(np.int64)]
        r = cum_w[:, hi.astype(np.int64)] - cum_w[:, lo.astype(np.int64)]
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = s / np.sqrt(r * np.clip(1 - r / w_total, 1e-9, None))
        out[k] = np.where(r > 0, stat, -np.inf)
    return out


def _polish(
    x: FloatArray,
    yw: FloatArray,
    w: FloatArray,
    w_total: float,
    period: float,
    centre: float,
    duration: float,
    period_step: float,
    phase_step: float,
    *,
    max_duration: float,
    rounds: int = 3,
    n_periods: int = 21,
    n_centres: int = 41,
) -> tuple[float, float, float, float, float]:
    """Zoom on the best box with the exact statistic (points, not bins).

    ``rounds`` rounds of a 21 × 41 (period × mid-time) grid, each an eighth the width of the
    last (never narrower than the plateau of equal statistic found), over 5 durations. Returns the
    period, centre, duration and statistic of the middle of the best plateau, and the
    plateau's extent in period (a box's period is only known to within it).
    """
    x = x - centre  # the box centre at 0
    epochs = np.rint(x / period)
    reach = 0.6 * max_duration + 2 * phase_step + 2 * period_step * np.abs(epochs)
    near = np.abs(x - epochs * period) <= reach
    xs, ys, ws = x[near], yw[near], w[near]
    if xs.size == 0:
        return period, centre, duration, -math.inf, 0.0
    half_p, half_c, spread = 1.5 * period_step, 1.5 * phase_step, 0.12
    best = (-math.inf, period, 0.0, duration, 0.0)
    for _ in range(rounds):
        p0, c0, d0 = best[1], best[2], best[3]
        periods = p0 + np.linspace(-half_p, half_p, n_periods)
        centres = c0 + np.linspace(-half_c, half_c, n_centres)
        durations = list(np.minimum(d0 * (1 + np.linspace(-spread, spread, 5)), max_duration))
        resolution = 0.25 * (centres[1] - centres[0])
        stat = _box_snr_grid(xs, ys, ws, w_total, periods, centres, durations, resolution)
        top = float(stat.max())
        if not top >= best[0]:
            break
        # boxes of points give plateaus of equal statistic (the same points in the box, over
        # a range of periods, centres and durations): take the plateau's middle
        ks, rows, cols = np.nonzero(stat >= top - 1e-9 * abs(top))
        plateau = float(np.ptp(periods[rows]))
        best = (
            top,
            float(periods[rows].mean()),
            float(centres[cols].mean()),
            float(np.mean(np.asarray(durations)[ks])),
            plateau,
        )
        half_p = max(half_p / 8, 0.6 * plateau)
        half_c = max(half_c / 8, 0.6 * float(np.ptp(centres[cols])))
        spread = max(spread / 2, 0.6 * float(np.ptp(np.asarray(durations)[ks])) / best[3])
    return best[1], centre + best[2], best[3], best[0], best[4]


# --------------------------------------------------------------------------- periodic search


def _groups(time: FloatArray, weight: FloatArray, gap_days: float) -> list[slice]:
    """Runs of data without a gap over ``gap_days`` holding ≥ 10 % of the weight (≥ 1 run)."""
    breaks = np.flatnonzero(np.diff(time) > gap_days) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [time.size]])
    total = float(weight.sum())
    share = np.array([weight[a:b].sum() / total for a, b in zip(starts, stops, strict=True)])
    chosen = np.flatnonzero(share >= _MIN_GROUP_WEIGHT)
    if chosen.size == 0:
        chosen = np.array([int(np.argmax(share))])
    return [slice(int(starts[i]), int(stops[i])) for i in chosen]


def _commensurate(period: float, other: float, span: float, duration: float) -> bool:
    """Whether ``period`` is ``m/n × other`` (m, n ≤ 6) to within ``duration`` over ``span``.

    ``span`` is that of the longest group of data: across a gap of years the two periods of a
    harmonic pair can differ by an alias step ``P²/ΔT`` and still fit every group.
    """
    for m in range(1, 7):
        for n in range(1, 7):
            if math.gcd(m, n) != 1:
                continue
            mismatch = abs(period - other * m / n)
            if mismatch * max(span / period, 1.0) < duration:
                return True
    return False


def _left_over(
    stats: _BoxStats,
    period: float,
    t0: float,
    duration: float,
    found: Sequence[TransitSignal],
    mask_factor: float,
) -> bool:
    """Whether most transits with data coincide with an earlier signal's (masked) transits."""
    if not found or stats.epochs.size == 0:
        return False
    mid = t0 + stats.epochs * period
    for signal in found:
        reach = 0.5 * (mask_factor * signal.duration + duration)
        near = transit_mask(mid, signal.period, signal.t0, 2 * reach)
        if np.count_nonzero(near) >= 0.5 * mid.size:
            return True
    return False


#: Coarse peaks kept per group, in multiples of ``n_candidates`` (for later passes).
_POOL_DEPTH = 4
#: A signal whose transits each have at most this SNR leaves the other periods' coarse
#: statistics as they were: later passes reuse the first coarse search.
_WEAK_TRANSIT_SNR = 3.0


def _weak_signal(signal: TransitSignal) -> bool:
    """Whether each transit of a signal is weak (SNR under ``_WEAK_TRANSIT_SNR``).

    A box of the coarse search at another period meets at most one transit of a signal per
    cycle; when a transit's own SNR is small against the noise peaks of the coarse statistic,
    masking the signal leaves the coarse peaks of other periods as they were (but its own and
    its aliases', which are left out), so the next pass refines the next coarse peaks on the
    masked data instead of searching again. A strong signal (say a hot Jupiter) lifts every
    period's statistic and everything is searched again.
    """
    return signal.snr / math.sqrt(max(signal.n_transits, 1)) < _WEAK_TRANSIT_SNR


def _coincides(
    candidate: _Candidate,
    found: Sequence[TransitSignal],
    mask_factor: float,
    t_lo: float,
    t_hi: float,
) -> bool:
    """Whether most of a coarse peak's transits (``t_lo``–``t_hi``) fall in a signal's mask.

    Such a peak belongs to that signal (an alias or harmonic), it is not a new one.
    """
    if not found:
        return False
    first = math.ceil((t_lo - candidate.t0) / candidate.period)
    last = math.floor((t_hi - candidate.t0) / candidate.period)
    mid = candidate.t0 + candidate.period * np.arange(first, max(last, first) + 1)
    for signal in found:
        reach = mask_factor * signal.duration + candidate.duration + 2 * candidate.bin
        if np.mean(transit_mask(mid, signal.period, signal.t0, reach)) >= 0.5:
            return True
    return False


def run_transit_search(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    mission: npt.ArrayLike | str | int | None,
    *,
    min_period: float = 0.5,
    max_period: float | None = None,
    max_period_cap: float = 500.0,
    max_signals: int = 3,
    snr_threshold: float = 7.1,
    oversample: float = 3,
    stellar_radius: float = 1.0,
    stellar_mass: float = 1.0,
    duration_range: tuple[float, float] = (0.5, 2.5),
    min_transits: int = 2,
    n_candidates: int = 12,
    mask_factor: float = 1.5,
    coarse_gap_days: float = 365.0,
    max_gap_days: float = 0.5,
) -> TransitSearch:
    """:func:`search_transits`, also returning where the time went and what was searched.

    Parameters are those of :func:`search_transits`.

    Returns
    -------
    TransitSearch
    """
    timer = _Timer()
    start = _clock.perf_counter()
    data = _prepare(time, flux, flux_err, mission, max_gap_days=max_gap_days)
    timer.add("prepare", start)
    n_points = 0 if data is None else data.size
    if data is None or data.size < 10:
        return TransitSearch((), tuple(timer.seconds.items()), 0, 0, n_points)
    baseline = float(data.time[-1] - data.time[0])
    top = min(max_period if max_period is not None else max_period_cap, baseline)
    if not (min_period > 0 and top > min_period):
        return TransitSearch((), tuple(timer.seconds.items()), 0, 0, n_points)
    settings = _SearchSettings(
        min_period=float(min_period),
        max_period=float(top),
        oversample=float(oversample),
        stellar_radius=float(stellar_radius),
        stellar_mass=float(stellar_mass),
        duration_range=(float(duration_range[0]), float(duration_range[1])),
        n_candidates=int(n_candidates),
    )
    sigma0 = float(np.median(data.sigma))
    keep = np.ones(data.size, bool)
    found: list[TransitSignal] = []
    pools: list[tuple[list[_Candidate], tuple[float, float]]] | None = None
    pass_boxes = 0
    n_boxes = 0
    n_passes = 0
    while len(found) < max_signals:
        sub = data.subset(keep)
        if sub.size < 10:
            break
        n_passes += 1
        w = (sigma0 / sub.sigma) ** 2
        yw = w * sub.y / sigma0
        if pools is None:
            # (re)search: the coarse periodograms of every group, deeper than refined
            pools = []
            pass_boxes = 0  # boxes behind the peaks refined (for the false-alarm bound)
            for group in _groups(sub.time, w, coarse_gap_days):
                if group.stop - group.start < 10:
                    continue
                chosen, boxes = _coarse_search(
                    sub.time[group],
                    yw[group],
                    w[group],
                    sub.cadence,
                    settings,
                    timer,
                    _POOL_DEPTH * settings.n_candidates,
                )
                bounds = (float(sub.time[group.start]), float(sub.time[group.stop - 1]))
                pools.append((chosen, bounds))
                pass_boxes += boxes
            n_boxes += pass_boxes
        candidates: list[tuple[_Candidate, slice]] = []
        for chosen, (t_lo, t_hi) in pools:
            group = slice(
                int(np.searchsorted(sub.time, t_lo, "left")),
                int(np.searchsorted(sub.time, t_hi, "right")),
            )
            fresh = [c for c in chosen if not _coincides(c, found, mask_factor, t_lo, t_hi)]
            candidates.extend((c, group) for c in fresh[: settings.n_candidates])
        start = _clock.perf_counter()
        refined = _refine_candidates(sub, yw, w, candidates, settings)
        start = timer.add("refine", start)
        signal = _first_valid(
            refined,
            sub,
            yw,
            w,
            found,
            settings,
            snr_threshold,
            min_transits,
            mask_factor,
            max_gap_days,
            pass_boxes,
        )
        timer.add("fit", start)
        if signal is None:
            break
        logger.debug(
            "signal %d: P=%.6f d, t0=%.5f, D=%.4f d, depth=%.2e, SNR=%.1f",
            len(found) + 1,
            signal.period,
            signal.t0,
            signal.duration,
            signal.depth,
            signal.snr,
        )
        found.append(signal)
        if not _weak_signal(signal):
            pools = None  # it lifted other periods' coarse statistics: search again
        keep &= ~transit_mask(
            data.time, signal.period, signal.t0, signal.duration, factor=mask_factor
        )
    ordered = sorted(found, key=lambda s: -s.snr)
    span = max(
        float(data.time[g][-1] - data.time[g][0])
        for g in _groups(data.time, data.weight, coarse_gap_days)
    )
    signals = []
    for i, signal in enumerate(ordered):
        parent = next(
            (
                j
                for j in range(i)
                if _commensurate(signal.period, ordered[j].period, span, signal.duration)
            ),
            None,
        )
        signals.append(dataclasses.replace(signal, harmonic_of=parent))
    timings = tuple(timer.seconds.items())
    logger.debug("transit search: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings))
    return TransitSearch(tuple(signals), timings, n_boxes, n_passes, n_points)


#: Candidates refined on all data (after refining each on its own group).
_REFINED_ON_ALL = 3
#: Best distinct periods (aliases) of the all-data refinement polished on the exact points.
_ALIASES_POLISHED = 3


def _refine_candidates(
    sub: _Prepared,
    yw: FloatArray,
    w: FloatArray,
    candidates: Sequence[tuple[_Candidate, slice]],
    settings: _SearchSettings,
) -> list[tuple[_Box, _Candidate]]:
    """Refine coarse peaks on their own group, then the best few on all data; best first.

    Data years apart make the period aliased on a comb ``P²/ΔT`` fine: the all-data search
    spans only ± 3 sigma of the group's own period (from its transit timing), so it costs a
    few hundred trial periods, not tens of thousands.
    """
    on_group: list[tuple[_Box, _Candidate, slice]] = []
    for candidate, group in candidates:
        box = _refine(
            sub.time[group],
            yw[group],
            w[group],
            period=candidate.period,
            t0=candidate.t0,
            duration=candidate.duration,
            half_window=_REFINE_STEPS * candidate.step,
            phase_uncertainty=1.5 * candidate.bin,
            centre=candidate.centre,
            settings=settings,
        )[0]
        if math.isfinite(box.statistic):
            on_group.append((box, candidate, group))
    on_group.sort(key=lambda item: -item[0].statistic)
    done: list[tuple[_Box, _Candidate]] = []
    for rank, (box, candidate, group) in enumerate(on_group):
        whole = group.start == 0 and group.stop == sub.size
        if whole or rank >= _REFINED_ON_ALL:
            done.append((box, candidate))
            continue
        # the group's own best period first, on its exact points, and its timing precision
        own = _polish_box(sub.time[group], yw[group], w[group], box, settings)
        inside = np.zeros(sub.size, bool)
        inside[group] = True
        timing = _box_statistics(sub.subset(inside), own.period, own.t0, own.duration)
        sigma = timing.period_err if math.isfinite(timing.period_err) else own.period_step
        peaks = _refine(
            sub.time,
            yw,
            w,
            period=own.period,
            t0=own.t0,
            duration=own.duration,
            half_window=min(max(3 * sigma, 0.2 * own.period_step), _REFINE_STEPS * candidate.step),
            phase_uncertainty=own.phase_bin + 3 * _timing_sigma(timing, own),
            centre=candidate.centre,
            settings=settings,
            n_peaks=_ALIASES_POLISHED,
        )
        # neighbouring aliases (comb P²/ΔT) are close in the binned statistic: a first
        # zoom on the exact points tells them apart, the best is zoomed in fully
        screened = [_polish_box(sub.time, yw, w, peak, settings, rounds=1) for peak in peaks]
        alias = peaks[int(np.argmax([b.statistic for b in screened]))]
        done.append((_polish_box(sub.time, yw, w, alias, settings), candidate))
    done.sort(key=lambda item: -item[0].statistic)
    return done


def _timing_sigma(timing: _BoxStats, box: _Box) -> float:
    """Mid-time error of the best-determined epoch of a box fit (0 when unknown)."""
    fit = timing.fit
    if not (fit.snr > 0 and math.isfinite(fit.snr)):
        return 0.0
    error = _timing_error(box.duration, float(fit.snr), float(fit.depth), box.phase_bin)
    return error if math.isfinite(error) else 0.0


def _first_valid(
    refined: Sequence[tuple[_Box, _Candidate]],
    sub: _Prepared,
    yw: FloatArray,
    w: FloatArray,
    found: Sequence[TransitSignal],
    settings: _SearchSettings,
    snr_threshold: float,
    min_transits: int,
    mask_factor: float,
    max_gap_days: float,
    n_boxes: int,
) -> TransitSignal | None:
    """The strongest refined peak that passes every check (polished first), as a signal."""
    for coarse, candidate in refined:
        if coarse.statistic < 0.8 * snr_threshold:
            break
        box = _polish_box(sub.time, yw, w, coarse, settings)
        period, t0, duration = box.period, box.t0, box.duration
        if not settings.min_period <= period <= settings.max_period:
            continue
        inside = transit_mask(sub.time, period, t0, duration)
        fitted = _prepare(
            sub.time,
            sub.flux,
            sub.flux_err,
            sub.mission,
            max_gap_days=max_gap_days,
            noise_exclude=inside,
        )
        if fitted is None:
            continue
        stats = _box_statistics(fitted, period, t0, duration)
        fit = stats.fit
        if not (
            fit.snr >= snr_threshold
            and fit.n_transits >= min_transits
            and fit.largest_transit_fraction <= MAX_TRANSIT_FRACTION
        ):
            continue
        if _left_over(stats, period, t0, duration, found, mask_factor):
            logger.debug("rejected P=%.6f d: its transits coincide with a signal's", period)
            continue
        tail = 0.5 * float(special.erfc(fit.snr / math.sqrt(2)))
        return TransitSignal(
            period=period,
            period_err=float(np.hypot(stats.period_err, box.period_spread / math.sqrt(12))),
            t0=stats.t0_nearest_centre,
            duration=duration,
            depth=fit.depth,
            depth_err=fit.depth_err,
            snr=fit.snr,
            sde=candidate.sde,
            false_alarm_probability=float(min(1.0, max(n_boxes, 1) * tail)),
            n_transits=fit.n_transits,
            n_in_transit=fit.n_in_transit,
            missions_used=fit.missions_used,
            red_noise_factor=fit.red_noise_factor,
        )
    return None


def search_transits(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    mission: npt.ArrayLike | str | int | None,
    *,
    min_period: float = 0.5,
    max_period: float | None = None,
    max_period_cap: float = 500.0,
    max_signals: int = 3,
    snr_threshold: float = 7.1,
    oversample: float = 3,
    stellar_radius: float = 1.0,
    stellar_mass: float = 1.0,
    duration_range: tuple[float, float] = (0.5, 2.5),
    min_transits: int = 2,
    n_candidates: int = 12,
    mask_factor: float = 1.5,
    coarse_gap_days: float = 365.0,
    max_gap_days: float = 0.5,
) -> list[TransitSignal]:
    """Periodic transit search of one star's detrended flux, all missions together.

    See the module docstring for the method (coarse FFA box search per group of data,
    refined coherently on all data; mask and search again).

    Parameters
    ----------
    time, flux, flux_err : array-like
        BJD_TDB, detrended relative flux (≈ 1) and its error (NaN where unknown). Points with
        non-finite time or flux are dropped.
    mission : array-like, str or int
        Mission index into :data:`~starskope_dask.records.MISSIONS` (or name) per point.
    min_period : float
        Shortest period (days).
    max_period : float, optional
        Longest period (days), default ``max_period_cap``; never beyond the baseline (two
        transits must fit in the data; at least ``min_transits`` must have data).
    max_period_cap : float
        Default ``max_period``.
    max_signals : int
        Most signals (search, mask the transits, search again).
    snr_threshold : float
        Least SNR (depth over its red-noise-inflated error) of a signal. The default 7.1 is
        the Kepler pipeline's; a 4-year Kepler search tries ~10⁸ boxes, for which white noise
        exceeds 7.1 with probability ≲ 10⁻⁴ (see ``false_alarm_probability``).
    oversample : float
        Period sampling as Ofir's (2014) ``OS``: adjacent coarse trials drift apart by
        ``D_solar / oversample`` over a group's span.
    stellar_radius, stellar_mass : float
        Star in solar units (scales the durations searched).
    duration_range : (float, float)
        Durations searched, as fractions of :func:`solar_duration` at each period (0.5–2.5:
        small stars, grazing transits down to half the solar duration; evolved stars up to
        2.5×); refinement reaches half the shortest.
    min_transits : int
        Fewest transits with in-transit data.
    n_candidates : int
        Coarse peaks refined per group and pass.
    mask_factor : float
        Transits are masked over ``mask_factor`` durations before searching again.
    coarse_gap_days : float
        Data are split at longer gaps into groups searched coarsely on their own (the
        refinement is always on all data).
    max_gap_days : float
        A longer gap starts a new segment (its own noise level and baseline).

    Returns
    -------
    list of TransitSignal
        Strongest (highest SNR) first; empty when nothing passes or there is too little data.
    """
    return list(
        run_transit_search(
            time,
            flux,
            flux_err,
            mission,
            min_period=min_period,
            max_period=max_period,
            max_period_cap=max_period_cap,
            max_signals=max_signals,
            snr_threshold=snr_threshold,
            oversample=oversample,
            stellar_radius=stellar_radius,
            stellar_mass=stellar_mass,
            duration_range=duration_range,
            min_transits=min_transits,
            n_candidates=n_candidates,
            mask_factor=mask_factor,
            coarse_gap_days=coarse_gap_days,
            max_gap_days=max_gap_days,
        ).signals
    )


# --------------------------------------------------------------------------- single transits


def _timing_error(duration: float, snr: float, depth: float, cadence: float) -> float:
    """Mid-time error of one box-like transit (Carter et al. 2008): ``D/Q · √(τ/2D)``."""
    if not (snr > 0 and duration > 0):
        return math.nan
    ingress = min(max(cadence, duration * math.sqrt(max(depth, 0.0))), 0.5 * duration)
    return duration / snr * math.sqrt(ingress / (2 * duration))


def _event_statistic(
    time: FloatArray, yw: FloatArray, w: FloatArray, centres: FloatArray, duration: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weighted decrement ``S``, weight ``R`` and points of boxes at ``centres`` (exact)."""
    lo = np.searchsorted(time, centres - 0.5 * duration, side="left")
    hi = np.searchsorted(time, centres + 0.5 * duration, side="left")
    cum_yw = np.concatenate([[0.0], np.cumsum(yw)])
    cum_w = np.concatenate([[0.0], np.cumsum(w)])
    return cum_yw[hi] - cum_yw[lo], cum_w[hi] - cum_w[lo], (hi - lo).astype(np.float64)


def find_single_transits(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    mission: npt.ArrayLike | str | int | None,
    *,
    segments: Sequence[slice] | None = None,
    durations_hours: Sequence[float] = SINGLE_DURATIONS_HOURS,
    min_snr: float = 7.1,
    exclude: npt.ArrayLike | None = None,
    signals: Sequence[TransitSignal] = (),
    mask_factor: float = 1.5,
    max_gap_days: float = 0.5,
    min_coverage: float = 0.6,
    max_point_fraction: float = 0.5,
    max_events: int = 20,
) -> list[SingleTransit]:
    """Single transit-like dips: a matched box filter in time, segment by segment.

    Every box of each duration, centred on each grid step of a segment, is scored by its SNR
    (weighted decrement over its error, with the segments' robust noise and the red-noise
    factor at that duration pooled over all segments). Events are taken strongest first, each
    suppressing overlapping boxes, down to ``min_snr``; each is then refined on the exact
    points (mid-time within a cadence, duration within ±25 %).

    Parameters
    ----------
    time, flux, flux_err : array-like
        BJD_TDB, detrended relative flux and its error (NaN where unknown), time-sorted when
        ``segments`` is given.
    mission : array-like, str or int
        Mission index or name per point (events carry their mission's name).
    segments : sequence of slice, optional
        Index ranges of the input arrays searched separately (e.g.
        :func:`~starskope_dask.features.series.segment_slices`); by default segments break
        at gaps over ``max_gap_days`` and where the mission changes.
    durations_hours : sequence of float
        Box durations tried (hours).
    min_snr : float
        Least SNR of an event.
    exclude : array-like of bool, optional
        Points to leave out (e.g. the transits of periodic signals).
    signals : sequence of TransitSignal
        Periodic signals whose transits (``mask_factor`` durations) are left out too.
    mask_factor : float
        Width of the signals' masks in durations.
    max_gap_days : float
        Gap that starts a new segment when ``segments`` is not given.
    min_coverage : float
        Least fraction of a box's cadences with data.
    max_point_fraction : float
        Largest share of an event's decrement one point may carry (rejects lone outliers).
    max_events : int
        Most events returned (the strongest).

    Returns
    -------
    list of SingleTransit
        In time order; empty when nothing passes or there is too little data.
    """
    t_in = np.asarray(time, np.float64).ravel()
    drop = np.zeros(t_in.size, bool)
    if exclude is not None:
        drop |= np.asarray(exclude, bool).ravel()
    for signal in signals:
        drop |= transit_mask(t_in, signal.period, signal.t0, signal.duration, factor=mask_factor)
    if segments is not None:
        label = np.full(t_in.size, -1, np.int64)
        for i, part in enumerate(segments):
            label[part] = i
        drop |= label < 0
        # keep the caller's segments: make every boundary a mission change for _prepare
        mission_ids = _mission_indices(mission, t_in.size)
        fake = label * (len(MISSIONS) + 2) + mission_ids + 1
        data = _prepare(t_in, flux, flux_err, fake, max_gap_days=math.inf, exclude=drop)
        if data is not None:
            data = dataclasses.replace(data, mission=data.mission % (len(MISSIONS) + 2) - 1)
    else:
        data = _prepare(t_in, flux, flux_err, mission, max_gap_days=max_gap_days, exclude=drop)
    if data is None or data.size < 10:
        return []
    cadence = data.cadence
    w = data.weight
    yw = w * data.y
    durations = np.unique(np.asarray(durations_hours, np.float64) / 24.0)
    durations = durations[durations >= cadence]
    if durations.size == 0:
        return []
    everything = np.ones(data.size, bool)
    beta = np.array([_red_noise_factor(data, everything, d) for d in durations])
    events: list[tuple[float, float, float]] = []  # (snr, centre, duration)
    bounds = np.flatnonzero(np.diff(data.segment)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, data.size], strict=True):
        if b - a < 3:
            continue
        t_seg = data.time[a:b]
        centres = np.arange(t_seg[0], t_seg[-1] + 0.5 * cadence, cadence)
        scores = np.full((durations.size, centres.size), -np.inf)
        for k, d in enumerate(durations):
            s, r, count = _event_statistic(t_seg, yw[a:b], w[a:b], centres, d)
            covered = count >= min_coverage * d / cadence
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = s / np.sqrt(r) / beta[k]
            scores[k] = np.where(covered & (r > 0), snr, -np.inf)
        for _ in range(max_events):
            i = int(np.argmax(scores))
            k, c = divmod(i, centres.size)
            if not scores[k, c] >= min_snr:
                break
            centre, d = float(centres[c]), float(durations[k])
            events.append((float(scores[k, c]), centre, d))
            for j, other in enumerate(durations):
                reach = 0.5 * (d + other)
                scores[j, np.abs(centres - centre) < reach] = -np.inf
    found = []
    for _, centre, d in sorted(events, reverse=True)[: 3 * max_events]:
        single = _refine_single(data, yw, w, centre, d, durations, beta, max_point_fraction)
        if single is not None and single.snr >= min_snr:
            found.append(single)
    found.sort(key=lambda e: -e.snr)
    return sorted(found[:max_events], key=lambda e: e.t0)


def _plateau_middle(values: FloatArray, peak: int) -> int:
    """Middle index of the run of values equal to ``values[peak]`` (to 1e-9) around it."""
    level = values[peak] - 1e-9 * abs(values[peak])
    lo = hi = peak
    while lo > 0 and values[lo - 1] >= level:
        lo -= 1
    while hi < values.size - 1 and values[hi + 1] >= level:
        hi += 1
    return (lo + hi) // 2


def _refine_single(
    data: _Prepared,
    yw: FloatArray,
    w: FloatArray,
    centre: float,
    duration: float,
    durations: FloatArray,
    beta: FloatArray,
    max_point_fraction: float,
) -> SingleTransit | None:
    """Best exact box near ``centre`` (±1 cadence, duration ±25 %), or None if an outlier."""
    cadence = data.cadence
    near = np.abs(data.time - centre) < duration + 2 * cadence
    if np.count_nonzero(near) < 3:
        return None
    t, ys, ws = data.time[near], yw[near], w[near]
    centres = centre + np.linspace(-1.5 * cadence, 1.5 * cadence, 61)
    best = (-math.inf, centre, duration, 0.0, 0.0)
    for d in duration * 2 ** np.linspace(-1 / 3, 1 / 3, 9):
        factor = float(np.interp(np.log(d), np.log(durations), beta))
        s, r, count = _event_statistic(t, ys, ws, centres, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where((r > 0) & (count >= 2), s / np.sqrt(r) / factor, -np.inf)
        i = int(np.argmax(scores))
        if scores[i] > best[0]:
            # the middle of the plateau of equal scores (points, not a continuous model)
            j = _plateau_middle(scores, i)
            best = (float(scores[j]), float(centres[j]), float(d), float(s[j]), float(r[j]))
    snr, mid, d, decrement, weight = best
    if not (math.isfinite(snr) and decrement > 0):
        return None
    inside = np.abs(t - mid) < 0.5 * d
    if ys[inside].max() > max_point_fraction * decrement:
        return None  # one point carries the dip: an outlier, not a transit
    factor = float(np.interp(np.log(d), np.log(durations), beta))
    depth = decrement / weight
    depth_err = factor / math.sqrt(weight)
    mission = _mission_names(data.mission[near][inside])
    return SingleTransit(
        t0=mid,
        t0_err=_timing_error(d, snr, depth, cadence),
        duration=d,
        depth=depth,
        depth_err=depth_err,
        snr=snr,
        mission=mission[0] if mission else "",
    )


def single_transit_periods(
    singles: Sequence[SingleTransit],
    *,
    observed_time: npt.ArrayLike | None = None,
    min_period: float = 1.0,
    max_period: float = math.inf,
    depth_tolerance: float = 0.5,
    duration_tolerance: float = 0.5,
    timing_tolerance: float | None = None,
    max_harmonic: int = 2000,
    coverage_fraction: float = 0.5,
) -> LongPeriodSolution:
    """Periods allowed by two or more single transits of one body; the period from three.

    The strongest event and those consistent with it — depth within ``depth_tolerance``
    (relative) or 3 sigma, duration within ``duration_tolerance`` (relative) — are taken to be
    one body. With ``ΔT`` from the first to the last, the candidates are ``ΔT / n`` for
    ``n = 1 … max_harmonic`` with ``min_period ≤ P ≤ max_period``; a candidate is kept when
    every event falls on its ephemeris within the timing tolerance and, if
    ``observed_time`` is given, no predicted transit falls where at least
    ``coverage_fraction`` of its duration was observed and no event was found.

    Parameters
    ----------
    singles : sequence of SingleTransit
        Events (any order).
    observed_time : array-like, optional
        Times with data (the light curve the events were searched in).
    min_period, max_period : float
        Period range (days).
    depth_tolerance, duration_tolerance : float
        Relative tolerances for events of one body.
    timing_tolerance : float, optional
        Timing tolerance (days) per event; default 3 × its ``t0_err`` (at least a tenth of
        its duration).
    max_harmonic : int
        Largest ``n`` tried.
    coverage_fraction : float
        Coverage of a predicted transit that counts as observed.

    Returns
    -------
    LongPeriodSolution
        ``period`` NaN unless three or more events determine it; ``allowed_periods``
        empty with fewer than two events.
    """
    events = sorted(singles, key=lambda e: -e.snr)
    if not events:
        return LongPeriodSolution(math.nan, math.nan, (), math.nan, math.nan, math.nan, ())
    ref = events[0]

    def consistent(e: SingleTransit) -> bool:
        depth_ok = abs(e.depth - ref.depth) <= depth_tolerance * abs(ref.depth) or abs(
            e.depth - ref.depth
        ) <= 3 * math.hypot(e.depth_err, ref.depth_err)
        duration_ok = abs(e.duration - ref.duration) <= duration_tolerance * ref.duration
        return depth_ok and duration_ok

    body = sorted((e for e in events if consistent(e)), key=lambda e: e.t0)
    # one event per transit: drop weaker events overlapping a stronger one
    kept: list[SingleTransit] = []
    for e in sorted(body, key=lambda e: -e.snr):
        if all(abs(e.t0 - k.t0) > 0.5 * (e.duration + k.duration) for k in kept):
            kept.append(e)
    body = sorted(kept, key=lambda e: e.t0)
    weights = np.array([1 / max(e.depth_err, 1e-12) ** 2 for e in body])
    depth = float(np.sum(weights * [e.depth for e in body]) / weights.sum())
    duration = float(np.sum(weights * [e.duration for e in body]) / weights.sum())
    if len(body) < 2:
        return LongPeriodSolution(math.nan, math.nan, (), ref.t0, duration, depth, tuple(body))
    t = np.array([e.t0 for e in body])
    sigma = np.array(
        [e.t0_err if math.isfinite(e.t0_err) and e.t0_err > 0 else 0.1 * e.duration for e in body]
    )
    tol = (
        np.full(t.size, float(timing_tolerance))
        if timing_tolerance is not None
        else np.maximum(3 * sigma, 0.1 * np.array([e.duration for e in body]))
    )
    span = float(t[-1] - t[0])
    n = np.arange(1, max(1, min(max_harmonic, int(span / min_period))) + 1)
    periods = span / n
    ok = (periods >= min_period) & (periods <= max_period)
    # every event on the ephemeris through the first and last
    cycles = (t[None, :] - t[0]) / periods[:, None]
    residual = np.abs(cycles - np.rint(cycles)) * periods[:, None]
    ok &= np.all(residual <= np.hypot(tol[None, :], np.hypot(tol[0], tol[-1])), axis=1)
    if observed_time is not None:
        ok &= ~_transit_would_be_seen(
            np.sort(np.asarray(observed_time, np.float64).ravel()),
            periods,
            float(t[0]),
            t,
            duration,
            tol,
            coverage_fraction,
            ok,
        )
    allowed = periods[ok]
    period, period_err = math.nan, math.nan
    if len(body) >= 3 and allowed.size:
        period = float(allowed[0])
        period_err = float(math.hypot(sigma[0], sigma[-1]) / n[ok][0])
    return LongPeriodSolution(
        period=period,
        period_err=period_err,
        allowed_periods=tuple(float(p) for p in allowed),
        t0=ref.t0,
        duration=duration,
        depth=depth,
        events=tuple(body),
    )


def _transit_would_be_seen(
    observed: FloatArray,
    periods: FloatArray,
    t_first: float,
    event_times: FloatArray,
    duration: float,
    tolerance: FloatArray,
    coverage_fraction: float,
    candidates: BoolArray,
) -> BoolArray:
    """For each period, whether a predicted transit (not at an event) was well observed."""
    seen = np.zeros(periods.size, bool)
    finite = observed[np.isfinite(observed)]
    if finite.size < 2:
        return seen
    cadence = _median_cadence(finite)
    need = coverage_fraction * duration / cadence
    lo_t, hi_t = float(finite[0]), float(finite[-1])
    for i in np.flatnonzero(candidates):
        p = float(periods[i])
        first = math.ceil((lo_t - t_first) / p)
        last = math.floor((hi_t - t_first) / p)
        if last - first > 200_000:
            seen[i] = True  # a short period over a long baseline: surely seen
            continue
        mid = t_first + p * np.arange(first, last + 1)
        distance = np.abs(mid[:, None] - event_times[None, :]).min(axis=1)
        mid = mid[distance > np.maximum(tolerance.max(), 0.5 * duration)]
        if mid.size == 0:
            continue
        count = np.searchsorted(finite, mid + 0.5 * duration) - np.searchsorted(
            finite, mid - 0.5 * duration
        )
        seen[i] = bool(np.any(count >= need))
    return seen
