"""Vetting of transit signals against look-alikes that are not transits.

A box search finds any periodic dip, and a pulsating or spotted star is full of them: a
δ Scuti pulsation at 0.16 d comes out as a "transit" at 0.63 d (four cycles per box period),
at SNR 15. What tells them apart is the shape. A box of duty cycle ``q`` spreads its signal
over many harmonics of ``1/P`` (its fundamental carries ``2 sin²(πq) / (π² q (1 − q))`` of
its variance: under half for ``q ≤ 0.2``), while a sinusoid puts all of its power in one
harmonic and a box captures at most ``8/π² ≈ 81 %`` of it. So, on the same points with the
same weights, if one sinusoid at a harmonic ``k/P`` explains more of the flux than the best
box does, the signal is variability, not a transit. Such a sinusoid is then removed
(prewhitening, as asteroseismology does) and the search is run again, so that a planet under a
pulsation is still found.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from starskope_dask.features.search import transit_mask

#: Most harmonics of the box period tried as sinusoids (a δ Scuti mode at 0.06 d poses as a
#: 0.56 d "transit": the 9th harmonic).
MAX_HARMONIC = 64


def _delta_chi2_sinusoids(
    time: npt.NDArray[np.float64],
    residual: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    frequencies: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """χ² reduction of the best weighted sinusoid (with an offset) at each frequency, over a
    constant: the normal equations of ``a + b sin + c cos``, solved for all at once.
    """
    w = weight / weight.sum()
    r = residual - np.sum(w * residual)  # weighted mean removed: the offset is free
    phase = 2 * np.pi * np.outer(time, frequencies)
    sin, cos = np.sin(phase), np.cos(phase)
    ws, wc = w @ sin, w @ cos  # mean of each basis function
    sin -= ws
    cos -= wc
    a = w @ (sin * sin)
    b = w @ (sin * cos)
    c = w @ (cos * cos)
    y_s = (w * r) @ sin
    y_c = (w * r) @ cos
    det = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        reduction = (c * y_s**2 - 2 * b * y_s * y_c + a * y_c**2) / det
    reduction = np.where(det > 1e-12 * np.maximum(a * c, 1e-300), reduction, 0.0)
    return np.asarray(reduction * weight.sum(), np.float64)


@dataclasses.dataclass(frozen=True)
class SinusoidTest:
    """The best sinusoid at a harmonic of a box signal's period against the box.

    Attributes
    ----------
    ratio : float
        χ² reduction of the sinusoid over that of the box; above 1 the signal is sinusoidal
        variability (pulsation, rotation, ellipsoidal) rather than a transit. NaN when it
        cannot be measured.
    frequency : float
        Frequency of the best sinusoid (cycles per day).
    """

    ratio: float
    frequency: float

    @property
    def is_variability(self) -> bool:
        """Whether the sinusoid explains the signal better than the box."""
        return bool(self.ratio > 1.0)


def sinusoid_test(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    noise: npt.ArrayLike,
    period: float,
    t0: float,
    duration: float,
    harmonics: tuple[int, ...] = (),
) -> SinusoidTest:
    """Compare the best single sinusoid at a harmonic of ``1/period`` with the box.

    Parameters
    ----------
    time, flux, noise : array-like
        Detrended flux (≈ 1) and its per-point noise.
    period, t0, duration : float
        The box signal.
    harmonics : tuple of int
        Harmonics ``k`` of ``1/period`` tried; empty: every one up to the cadence's Nyquist
        frequency, at most :data:`MAX_HARMONIC`.

    Returns
    -------
    SinusoidTest
    """
    nothing = SinusoidTest(float("nan"), float("nan"))
    t = np.asarray(time, np.float64)
    f = np.asarray(flux, np.float64)
    sigma = np.asarray(noise, np.float64)
    good = np.isfinite(t) & np.isfinite(f) & np.isfinite(sigma) & (sigma > 0)
    t, f, sigma = t[good], f[good], sigma[good]
    if t.size < 10 or not period > 0 or not duration > 0:
        return nothing
    weight = 1.0 / sigma**2
    inside = transit_mask(t, period, t0, duration)
    if inside.sum() < 2 or (~inside).sum() < 2:
        return nothing
    residual = f - 1.0
    w_in, w_out = weight[inside], weight[~inside]
    level_in = np.sum(w_in * residual[inside]) / np.sum(w_in)
    level_out = np.sum(w_out * residual[~inside]) / np.sum(w_out)
    # χ² reduction of a two-level box over a constant
    box = (level_out - level_in) ** 2 / (1 / np.sum(w_in) + 1 / np.sum(w_out))
    if harmonics:
        ks = np.asarray(harmonics, np.float64)
    else:  # every harmonic up to the Nyquist frequency of the cadence (at most MAX_HARMONIC)
        cadence = float(np.median(np.diff(t))) if t.size > 1 else period
        ks = np.arange(1, max(1, min(MAX_HARMONIC, int(period / (2 * cadence)))) + 1.0)
    # a sinusoid at k / period is periodic in period: fit it to the folded curve, binned
    # finely enough (8 bins per cycle of the highest harmonic) to keep its amplitude
    n_bins = int(min(2048, max(64, 8 * ks.max())))
    index = np.minimum((((t - t0) / period) % 1.0 * n_bins).astype(np.int64), n_bins - 1)
    bin_weight = np.bincount(index, weight, n_bins).astype(np.float64)
    filled = bin_weight > 0
    bin_mean = np.bincount(index, weight * residual, n_bins)[filled] / bin_weight[filled]
    bin_time = (np.flatnonzero(filled) + 0.5) / n_bins * period
    reductions = _delta_chi2_sinusoids(bin_time, bin_mean, bin_weight[filled], ks / period)
    best = int(np.argmax(reductions))
    ratio = reductions[best] / box if box > 0 else float("inf")
    return SinusoidTest(float(ratio), float(ks[best] / period))


def refine_frequency(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    noise: npt.ArrayLike,
    frequency: float,
    n_trials: int = 81,
) -> float:
    """The frequency of the best weighted sinusoid within ``± 2 / baseline`` of ``frequency``
    (a box period's harmonic is only as precise as the box).
    """
    t = np.asarray(time, np.float64)
    f = np.asarray(flux, np.float64)
    sigma = np.asarray(noise, np.float64)
    good = np.isfinite(t) & np.isfinite(f) & np.isfinite(sigma) & (sigma > 0)
    t, f, sigma = t[good], f[good], sigma[good]
    if t.size < 10:
        return frequency
    baseline = float(t[-1] - t[0])
    trials = frequency + np.linspace(-2.0, 2.0, n_trials) / max(baseline, 1e-3)
    trials = trials[trials > 0]
    best = 0.0
    for chunk in np.array_split(trials, max(1, trials.size // 64)):
        reductions = _delta_chi2_sinusoids(t - t[0], f - 1.0, 1.0 / sigma**2, chunk)
        if reductions.max() > best:
            best, frequency = float(reductions.max()), float(chunk[int(np.argmax(reductions))])
    return frequency


def is_harmonic(frequency: float, period: float, tolerance: float) -> bool:
    """Whether ``frequency`` is within ``tolerance`` of a harmonic ``k / period``."""
    k = round(frequency * period)
    return k >= 1 and abs(frequency - k / period) <= tolerance


def remove_sinusoids(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    noise: npt.ArrayLike,
    frequencies: npt.ArrayLike,
    exclude: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Prewhiten: subtract the joint weighted least-squares fit of sinusoids at
    ``frequencies`` (cycles per day) from ``flux`` (≈ 1). Points under ``exclude``
    (transits) are left out of the fit but have the model subtracted too; points with
    non-finite values are left as they are.
    """
    t = np.asarray(time, np.float64)
    f = np.asarray(flux, np.float64).copy()
    sigma = np.asarray(noise, np.float64)
    freqs = np.atleast_1d(np.asarray(frequencies, np.float64))
    good = np.isfinite(t) & np.isfinite(f) & np.isfinite(sigma) & (sigma > 0)
    fit = good & ~(np.zeros(t.size, bool) if exclude is None else np.asarray(exclude, bool))
    if fit.sum() < 2 * freqs.size + 2 or freqs.size == 0:
        return f
    centre = np.median(t[fit])

    def design(times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        columns = [np.ones_like(times)]
        for nu in freqs:
            phase = 2 * np.pi * nu * (times - centre)
            columns += [np.sin(phase), np.cos(phase)]
        return np.column_stack(columns)

    sqrt_w = 1.0 / sigma[fit]
    coeffs, *_ = np.linalg.lstsq(
        design(t[fit]) * sqrt_w[:, None], (f[fit] - 1.0) * sqrt_w, rcond=None
    )
    f[good] -= design(t[good])[:, 1:] @ coeffs[1:]
    return f
