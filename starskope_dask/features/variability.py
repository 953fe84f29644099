"""Stellar variability: amplitude, rotation period, and a short-period pulsation estimate.

Amplitude
    The 5–95 % range of the *un-detrended* normalised flux in each segment, median over
    segments: ``R_var`` of Basri et al. (2010, ApJ 713, L155) as McQuillan, Mazeh & Aigrain
    (2014, ApJS 211, 24) used it per Kepler quarter. It includes the noise (≈ 3.3 σ for white
    noise), so compare it with the noise before calling a star variable.

Rotation: Lomb–Scargle, averaged over segments
    The flux is binned to ``bin_days`` (0.1 d) per segment and astropy's ``LombScargle``
    (``method="fast"``, Press & Rybicki 1989; standard normalisation, so the power is the
    fraction of a segment's variance a sinusoid explains, 0–1) is computed per segment on one
    common frequency grid, periods from ``min_rotation_period_days`` (0.25 d: 2.5 bins) to a
    third of the longest segment. The powers are averaged over segments (weighted by bins), a
    Welch-like incoherent average: spots evolve and their phase drifts over months to years, so
    one sinusoid across a 4-year baseline would explain little of the variance, while each
    quarter's periodogram peaks at the period. The period is reported where the mean peak power
    is at least ``min_rotation_power`` (0.1) *and* its white-noise false-alarm probability
    (``1 − (1 − (1 − p)^((N − 3)/2))^M``, N bins, M independent frequencies) is under
    ``rotation_max_false_alarm`` (1e-3; this guards short series, where noise alone reaches
    0.1), else NaN; the power and false-alarm probability are always reported.
    Why not the ACF (McQuillan, Aigrain & Mazeh 2013)? It is more robust to double-dip light
    curves (LS may return half the period) but needs gap filling, smoothing and peak-picking
    heuristics and has no calibrated strength; the LS power is a bounded, comparable model input
    and the fast method costs milliseconds per segment.

Pulsation: periodogram of the high-passed flux on the uniform grid
    Periods from ``pulsation_max_period_days`` (0.5 d) down to the grid's Nyquist (≈ 1 h for the
    Kepler long-cadence grid): δ Scuti, RR Lyrae, sdB, short-period γ Dor. Slower variability
    (rotation, ellipsoidal) is removed first by subtracting a biweight trend of width
    2 × ``pulsation_max_period_days`` (it passes a sinusoid of period ≤ half the width). On the
    uniform grid the zero-filled, ``oversample``-padded FFT of the whole span *is* the classical
    periodogram (equal to Lomb–Scargle's for even sampling), at a fraction of the cost of a
    Lomb–Scargle over 10⁵ frequencies. Its power is normalised as ``2|X|² / (N² var)`` — the
    fraction of the high-passed variance in the peak sinusoid, like Lomb–Scargle's standard
    normalisation. The false-alarm probability treats the band as white noise:
    ``1 − (1 − exp(−z))^M`` with ``z`` the peak over the band's median-based mean power and
    ``M`` = bandwidth × span independent frequencies (conservative for gapped data). The period is
    reported where it is under ``pulsation_max_false_alarm`` (1e-3). Transits and eclipses put
    orbital harmonics into this band: pass ``mask`` to leave them out.

Non-finite points are dropped; too few points give NaN members, never an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import numpy.typing as npt
from astropy.timeseries import LombScargle
from scipy import fft as scipy_fft

from starskope_dask.features.detrend import biweight_trend, grid_steps
from starskope_dask.features.series import FloatArray, StarSeries

logger = logging.getLogger(__name__)

MIN_SEGMENT_POINTS = 10
"""Fewest points (amplitude) or bins (rotation) a segment needs to count."""


@dataclasses.dataclass(frozen=True)
class Variability:
    """Variability features of one star.

    Attributes
    ----------
    amplitude : float
        Median over segments of the 5–95 % range of the flux (relative flux).
    rotation_period : float
        Period (days) of the highest segment-averaged Lomb–Scargle peak; NaN when its power is
        under the threshold (a quiet star) or nothing could be searched.
    rotation_power : float
        That peak's segment-averaged Lomb–Scargle power (0–1), reported even when quiet.
    rotation_false_alarm : float
        Approximate white-noise false-alarm probability of that peak.
    pulsation_period : float
        Period (days) of the highest short-period peak; NaN when not significant.
    pulsation_power : float
        Fraction of the high-passed variance in that peak (0–1).
    pulsation_false_alarm : float
        White-noise false-alarm probability of that peak.
    n_points : int
        Points used.
    """

    amplitude: float
    rotation_period: float
    rotation_power: float
    rotation_false_alarm: float
    pulsation_period: float
    pulsation_power: float
    pulsation_false_alarm: float
    n_points: int


def variability(
    data: StarSeries | tuple[npt.ArrayLike, npt.ArrayLike],
    *,
    mask: npt.ArrayLike | None = None,
    max_gap_days: float = 2.0,
    bin_days: float = 0.1,
    min_rotation_period_days: float = 0.25,
    max_rotation_period_days: float | None = None,
    min_rotation_power: float = 0.1,
    rotation_max_false_alarm: float = 1e-3,
    samples_per_peak: float = 5.0,
    pulsation_max_period_days: float = 0.5,
    pulsation_max_false_alarm: float = 1e-3,
    oversample: int = 5,
    cadence_days: float | None = None,
) -> Variability:
    """Amplitude, rotation period and pulsation period of one star.

    Parameters
    ----------
    data : StarSeries or (time, flux)
        The star's un-detrended normalised flux (≈ 1, or that minus 1: every feature is
        invariant to an offset): a series, or time (days) and flux
        arrays (one segment per gap over ``max_gap_days``; the pulsation search needs the times
        on a uniform grid and is skipped otherwise).
    mask : array-like of bool, shape (n,), optional
        Points to leave out (transits, eclipses, flares).
    max_gap_days : float
        Longest gap inside a segment (2 d keeps a Kepler quarter whole across its downlinks).
    bin_days : float
        Bin width for the rotation search (days).
    min_rotation_period_days, max_rotation_period_days : float
        Searched rotation periods; the longest is also capped at a third of the longest segment.
    min_rotation_power : float
        Segment-averaged Lomb–Scargle power from which a rotation period is reported.
    rotation_max_false_alarm : float
        False-alarm probability under which a rotation period is reported (both must hold).
    samples_per_peak : float
        Rotation frequency grid step: ``1 / (samples_per_peak × longest segment)``.
    pulsation_max_period_days : float
        Longest pulsation period searched (days).
    pulsation_max_false_alarm : float
        False-alarm probability under which a pulsation period is reported.
    oversample : int
        Zero-padding factor of the pulsation periodogram.
    cadence_days : float, optional
        Grid step for ``(time, flux)`` input; by default the median time step.

    Returns
    -------
    Variability
        The features; NaN members where there is too little data.
    """
    time, flux, mission, cadence = _unpack(data, cadence_days)
    keep = np.isfinite(time) & np.isfinite(flux)
    if mask is not None:
        keep &= ~np.asarray(mask, bool)
    time, flux, mission = time[keep], flux[keep], mission[keep]
    segments = _segments(time, mission, max_gap_days)
    amplitude = _amplitude(flux, segments)
    rotation = _rotation(
        time,
        flux,
        segments,
        bin_days=bin_days,
        min_period=min_rotation_period_days,
        max_period=max_rotation_period_days,
        min_power=min_rotation_power,
        max_false_alarm=rotation_max_false_alarm,
        samples_per_peak=samples_per_peak,
    )
    pulsation = _pulsation(
        time,
        flux,
        segments,
        cadence=cadence,
        max_period=pulsation_max_period_days,
        max_false_alarm=pulsation_max_false_alarm,
        oversample=oversample,
    )
    return Variability(
        amplitude=amplitude,
        rotation_period=rotation[0],
        rotation_power=rotation[1],
        rotation_false_alarm=rotation[2],
        pulsation_period=pulsation[0],
        pulsation_power=pulsation[1],
        pulsation_false_alarm=pulsation[2],
        n_points=int(time.size),
    )


def _unpack(
    data: StarSeries | tuple[npt.ArrayLike, npt.ArrayLike], cadence_days: float | None
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int8], float]:
    """Time, flux, mission and cadence from a series or a (time, flux) pair."""
    if isinstance(data, StarSeries):
        return (
            np.asarray(data.time, np.float64),
            np.asarray(data.flux, np.float64),
            np.asarray(data.mission, np.int8),
            float(data.cadence_days),
        )
    time = np.asarray(data[0], np.float64)
    flux = np.asarray(data[1], np.float64)
    if time.shape != flux.shape or time.ndim != 1:
        raise ValueError(f"time and flux must be 1-D of one length, got {time.shape}, {flux.shape}")
    order = np.argsort(time, kind="stable")
    time, flux = time[order], flux[order]
    if cadence_days is None:
        steps = np.diff(time[np.isfinite(time)])
        steps = steps[steps > 0]
        cadence_days = float(np.median(steps)) if steps.size else float("nan")
    return time, flux, np.zeros(time.size, np.int8), float(cadence_days)


def _segments(time: FloatArray, mission: npt.NDArray[np.int8], max_gap: float) -> list[slice]:
    """Index ranges split at gaps over ``max_gap`` and at mission changes."""
    if time.size == 0:
        return []
    breaks = (np.diff(time) > max_gap) | (np.diff(mission) != 0)
    starts = np.r_[0, np.flatnonzero(breaks) + 1]
    stops = np.r_[starts[1:], time.size]
    return [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _amplitude(flux: FloatArray, segments: list[slice]) -> float:
    """Median over segments (≥ 10 points) of the 5–95 % flux range."""
    ranges = [
        float(np.subtract(*np.percentile(flux[s], [95.0, 5.0])))
        for s in segments
        if s.stop - s.start >= MIN_SEGMENT_POINTS
    ]
    return float(np.median(ranges)) if ranges else float("nan")


def _binned_segments(
    time: FloatArray, flux: FloatArray, segments: list[slice], bin_days: float
) -> list[tuple[FloatArray, FloatArray]]:
    """Mean time and flux in ``bin_days`` bins of each segment (segments with ≥ 10 bins)."""
    binned = []
    for segment in segments:
        t, f = time[segment], flux[segment]
        index = np.floor((t - t[0]) / bin_days).astype(np.int64)
        counts = np.bincount(index)
        filled = counts > 0
        if filled.sum() < MIN_SEGMENT_POINTS:
            continue
        mean_time = np.bincount(index, weights=t)[filled] / counts[filled]
        mean_flux = np.bincount(index, weights=f)[filled] / counts[filled]
        binned.append((mean_time, mean_flux))
    return binned


def _rotation(
    time: FloatArray,
    flux: FloatArray,
    segments: list[slice],
    *,
    bin_days: float,
    min_period: float,
    max_period: float | None,
    min_power: float,
    max_false_alarm: float,
    samples_per_peak: float,
) -> tuple[float, float, float]:
    """Period, power and false-alarm probability of the highest segment-averaged LS peak."""
    nan = float("nan")
    binned = _binned_segments(time, flux, segments, bin_days)
    if not binned:
        return nan, nan, nan
    longest = max(float(t[-1] - t[0]) for t, _ in binned)
    longest_period = longest / 3.0
    if max_period is not None:
        longest_period = min(longest_period, max_period)
    if not longest_period > min_period:
        return nan, nan, nan
    f_min, f_max = 1.0 / longest_period, 1.0 / min_period
    step = 1.0 / (samples_per_peak * longest)
    frequency = f_min + step * np.arange(int((f_max - f_min) / step) + 1)
    total = np.zeros(frequency.size)
    weight = 0
    for t, f in binned:
        if np.ptp(f) == 0:
            power = np.zeros(frequency.size)
        else:
            power = LombScargle(t, f).power(frequency, method="fast", assume_regular_frequency=True)
        total += t.size * np.nan_to_num(np.asarray(power, np.float64))
        weight += t.size
    mean_power = total / weight
    peak = int(np.argmax(mean_power))
    strength = float(mean_power[peak])
    # Standard-normalised LS power of white noise: P(p > z) = (1 − z)^((N − 3) / 2) per
    # frequency (N bins), over M ≈ bandwidth × longest segment independent frequencies. For
    # an average over segments, N is all their bins: approximate, the power floor guards it.
    tail = (1.0 - min(strength, 1.0)) ** (0.5 * max(weight - 3, 1))
    independent = max((f_max - f_min) * longest, 1.0)
    false_alarm = float(-np.expm1(independent * np.log1p(-min(tail, 1.0 - 1e-16))))
    significant = strength >= min_power and false_alarm < max_false_alarm
    period = 1.0 / float(frequency[peak]) if significant else nan
    logger.debug("rotation peak %.4g d at power %.3f", 1.0 / frequency[peak], strength)
    return period, strength, false_alarm


def _pulsation(
    time: FloatArray,
    flux: FloatArray,
    segments: list[slice],
    *,
    cadence: float,
    max_period: float,
    max_false_alarm: float,
    oversample: int,
) -> tuple[float, float, float]:
    """Period, power fraction and false-alarm probability of the highest short-period peak."""
    nan = (float("nan"),) * 3
    if time.size < 3 * MIN_SEGMENT_POINTS or not (math.isfinite(cadence) and cadence > 0):
        return nan
    try:
        steps = grid_steps(time, cadence)
    except ValueError:
        logger.debug("times not on a uniform grid: pulsation search skipped")
        return nan
    f_low, nyquist = 1.0 / max_period, 0.5 / cadence
    if f_low >= nyquist:
        return nan
    trend = biweight_trend(
        time,
        flux,
        window_days=2.0 * max_period,
        cadence_days=cadence,
        segments=segments,
    )
    residual = flux - trend  # a difference, so flux ≈ 1 and flux − 1 give one answer
    good = np.isfinite(residual)
    if good.sum() < 3 * MIN_SEGMENT_POINTS:
        return nan
    residual, steps = residual[good], steps[good]
    residual = residual - residual.mean()
    variance = float(np.mean(residual**2))
    if variance == 0:
        return nan
    span = int(steps[-1] - steps[0] + 1)
    n_fft = scipy_fft.next_fast_len(max(oversample, 1) * span, real=True)
    dense = np.zeros(n_fft)
    dense[steps - steps[0]] = residual
    power = np.abs(scipy_fft.rfft(dense)) ** 2
    frequency = np.fft.rfftfreq(n_fft, cadence)
    band = (frequency >= f_low) & (frequency < 0.98 * nyquist)
    if band.sum() < 10:
        return nan
    band_power, band_frequency = power[band], frequency[band]
    peak = int(np.argmax(band_power))
    fraction = float(2.0 * band_power[peak] / (residual.size**2 * variance))
    noise_level = float(np.median(band_power)) / math.log(2.0)
    z = float(band_power[peak]) / noise_level if noise_level > 0 else math.inf
    independent = max((band_frequency[-1] - band_frequency[0]) * span * cadence, 1.0)
    false_alarm = float(-np.expm1(independent * np.log1p(-np.exp(-z))))
    period = 1.0 / float(band_frequency[peak]) if false_alarm < max_false_alarm else float("nan")
    return period, min(fraction, 1.0), false_alarm
