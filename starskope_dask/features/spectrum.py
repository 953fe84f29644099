"""The power spectrum of a star's flux on one fixed frequency grid, and a fixed-size spectrogram.

Every star gets the same frequencies (``rfftfreq(nperseg, cadence_days)``, cycles per day):
the cube's grid cadence is global, so spectra of Kepler, K2 and TESS stars are comparable model
inputs without resampling. The estimate is Welch's (1967) averaged periodogram, adapted to a
gapped grid:

* windows of ``nperseg`` grid steps (default 512 ≈ 10.5 d) are laid along each segment from
  its first step, ``overlap`` (50 %) apart; a window never takes points of another segment (no
  window straddles a gap over ``max_gap_days`` or two missions);
* a window is kept only if at least ``min_coverage`` (75 %) of its steps hold a point;
* in each window a straight line is fitted to the present points and subtracted; the missing
  steps are then filled with the window mean (zero, after the fit); a periodic Hann window is
  applied and the ``rfft`` taken;
* the one-sided power spectral density is scaled so that Parseval holds:
  ``Σ_k PSD_k · Δf = Σ (x·w)² / Σ_present w²`` — the Hann-weighted variance of the window's
  points. For a fully covered window that is scipy's ``welch(..., scaling="density")``, and its
  integral is the variance of the data; dividing by the window power of the *present* steps only
  keeps a partly covered window's white-noise level unbiased too.

Units: PSD in (relative flux)² per (cycle/day). The input is the normalised flux (≈ 1); the
per-window line removes the 1, so ``flux`` and ``flux − 1`` give the same spectrum, and a
detrended series works as well (the variability is then gone, by design).

:func:`spectrogram` turns the windows into a fixed ``n_time × n_freq`` image per star (a CNN
input): log10 of the power in log-spaced frequency bands (:func:`spectrogram_bands`), one row per
window in time order, resampled to ``n_time`` rows.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import numpy.typing as npt
from scipy.signal import windows as signal_windows

from starskope_dask.features.series import FloatArray, StarSeries, segment_slices

logger = logging.getLogger(__name__)

POWER_FLOOR = 1e-30
"""Power below which :func:`spectrogram` takes the log of this instead (a constant star)."""


@dataclasses.dataclass(frozen=True)
class PowerSpectrum:
    """One star's averaged power spectrum and the per-window spectra behind it.

    Attributes
    ----------
    frequency : ndarray of float64, shape (n_freq,)
        Frequencies (cycles/day), ``rfftfreq(nperseg, cadence_days)``: the same for every star.
    power : ndarray of float64, shape (n_freq,)
        Mean of ``window_power`` over the windows: PSD in relative flux² per cycle/day.
        All NaN when there is no window.
    n_windows : int
        Number of windows that met the coverage threshold.
    window_time : ndarray of float64, shape (n_windows,)
        BJD_TDB mid-time of each window, increasing.
    window_power : ndarray of float64, shape (n_windows, n_freq)
        PSD of each window.
    window_coverage : ndarray of float64, shape (n_windows,)
        Fraction of each window's steps that held a point.
    """

    frequency: FloatArray
    power: FloatArray
    n_windows: int
    window_time: FloatArray
    window_power: FloatArray
    window_coverage: FloatArray


@dataclasses.dataclass(frozen=True)
class SpectrogramBands:
    """The fixed frequency coordinate of :func:`spectrogram`.

    Attributes
    ----------
    edges : ndarray of float64, shape (n_freq + 1,)
        Band edges (cycles/day), log-spaced from the lowest nonzero grid frequency to Nyquist.
    centres : ndarray of float64, shape (n_freq,)
        Geometric centre of each band.
    """

    edges: FloatArray
    centres: FloatArray


def frequency_grid(cadence_days: float, nperseg: int = 512) -> FloatArray:
    """The frequency grid of every star's spectrum.

    Parameters
    ----------
    cadence_days : float
        The global grid's step (days).
    nperseg : int
        Window length in grid steps.

    Returns
    -------
    ndarray of float64, shape (nperseg // 2 + 1,)
        ``numpy.fft.rfftfreq(nperseg, cadence_days)`` in cycles/day, from 0 to Nyquist.
    """
    return np.asarray(np.fft.rfftfreq(int(nperseg), d=float(cadence_days)), np.float64)


def power_spectrum(
    series: StarSeries,
    *,
    nperseg: int = 512,
    overlap: float = 0.5,
    min_coverage: float = 0.75,
    max_gap_days: float = 0.5,
) -> PowerSpectrum:
    """Welch-averaged power spectral density of a star's flux on the fixed frequency grid.

    Parameters
    ----------
    series : StarSeries
        The star's points (normalised flux, or detrended); non-finite fluxes are dropped.
    nperseg : int
        Window length in grid steps (≥ 4).
    overlap : float
        Fraction of a window shared with the next one, in [0, 1).
    min_coverage : float
        Fewest fraction of a window's steps that must hold a point for it to be used.
    max_gap_days : float
        Longest gap inside a segment; windows stay inside one segment.

    Returns
    -------
    PowerSpectrum
        The averaged PSD and the per-window PSDs; NaN power and no windows when nothing
        qualifies (never an exception).

    Raises
    ------
    ValueError
        If ``nperseg`` < 4 or ``overlap`` is outside [0, 1).
    """
    if nperseg < 4:
        raise ValueError(f"nperseg must be at least 4 grid steps, got {nperseg}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    frequency = frequency_grid(series.cadence_days, nperseg)
    series = series.subset(np.isfinite(series.flux))
    segments = [s for s in segment_slices(series, max_gap_days) if s.stop > s.start]
    hop = max(1, round(nperseg * (1.0 - overlap)))
    window_start, window_segment = _candidate_windows(series, segments, nperseg, hop)
    present, values = _gather_windows(series, segments, window_start, window_segment, nperseg)
    coverage = present.mean(axis=1) if present.size else np.zeros(0)
    keep = coverage >= min_coverage
    present, values, coverage = present[keep], values[keep], coverage[keep]
    window_start = window_start[keep]
    n_windows = int(keep.sum())
    if n_windows == 0:
        logger.debug("no window of %d steps with %.0f %% coverage", nperseg, 100 * min_coverage)
        return PowerSpectrum(
            frequency=frequency,
            power=np.full(frequency.size, np.nan),
            n_windows=0,
            window_time=np.zeros(0),
            window_power=np.zeros((0, frequency.size)),
            window_coverage=np.zeros(0),
        )
    residual = _remove_line(values, present)
    taper = signal_windows.hann(nperseg, sym=False)
    spectrum = np.fft.rfft(residual * taper, axis=1)
    sampling = 1.0 / series.cadence_days
    taper_power = (present * taper**2).sum(axis=1)
    window_power = np.abs(spectrum) ** 2 / (sampling * taper_power[:, None])
    window_power[:, 1 : (nperseg + 1) // 2] *= 2.0  # one-sided: all but DC (and Nyquist)
    start_time = series.time[0] + (window_start - series.step[0]) * series.cadence_days
    window_time = start_time + 0.5 * (nperseg - 1) * series.cadence_days
    return PowerSpectrum(
        frequency=frequency,
        power=window_power.mean(axis=0),
        n_windows=n_windows,
        window_time=window_time,
        window_power=window_power,
        window_coverage=coverage,
    )


def spectrogram_bands(frequency: npt.ArrayLike, n_freq: int = 64) -> SpectrogramBands:
    """Log-spaced bands from the lowest nonzero grid frequency to the highest (Nyquist).

    Parameters
    ----------
    frequency : array-like of float
        The spectrum's frequency grid (:func:`frequency_grid`), increasing from 0.
    n_freq : int
        Number of bands.

    Returns
    -------
    SpectrogramBands
        ``n_freq + 1`` edges and ``n_freq`` geometric centres (cycles/day).
    """
    grid = np.asarray(frequency, np.float64)
    positive = grid[grid > 0]
    edges = np.geomspace(positive[0], positive[-1], int(n_freq) + 1)
    return SpectrogramBands(edges=edges, centres=np.sqrt(edges[:-1] * edges[1:]))


def spectrogram(spectrum: PowerSpectrum, *, n_time: int = 32, n_freq: int = 64) -> FloatArray:
    """A fixed-size log-power image of one star: windows in time × log-spaced frequency bands.

    Columns are the bands of :func:`spectrogram_bands` (same for every star); each holds log10 of
    the mean PSD of the grid frequencies inside the band. A band narrower than the grid spacing
    (the lowest bands: the grid is linear, the bands logarithmic) holds no grid frequency; it
    gets log10 power interpolated linearly in log frequency at its centre, so no column is
    empty. Power under :data:`POWER_FLOOR` counts as that floor.

    Rows are the windows in time order. With more windows than ``n_time``, consecutive windows
    are averaged in ``n_time`` groups as equal as possible (``numpy.array_split``: every window
    counts, rows may differ by one window); with fewer, the windows fill the first rows and the
    rest are NaN (use the count of finite rows, or ``spectrum.n_windows``, as the valid length).

    Parameters
    ----------
    spectrum : PowerSpectrum
        The star's spectrum (:func:`power_spectrum`).
    n_time : int
        Number of rows.
    n_freq : int
        Number of frequency bands.

    Returns
    -------
    ndarray of float64, shape (n_time, n_freq)
        log10 PSD; NaN rows where there are no more windows (all NaN with no window).
    """
    image = np.full((int(n_time), int(n_freq)), np.nan)
    if spectrum.n_windows == 0 or n_time < 1:
        return image
    order = np.argsort(spectrum.window_time, kind="stable")
    power = spectrum.window_power[order]
    if power.shape[0] > n_time:
        groups = np.array_split(np.arange(power.shape[0]), n_time)
        starts = np.array([g[0] for g in groups])
        sizes = np.array([g.size for g in groups])
        power = np.add.reduceat(power, starts, axis=0) / sizes[:, None]
    image[: power.shape[0]] = _band_log_power(power, spectrum.frequency, n_freq)
    return image


def _candidate_windows(
    series: StarSeries, segments: list[slice], nperseg: int, hop: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """First grid step and segment index of every window laid along every segment."""
    if not segments:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = series.step[[s.start for s in segments]]
    last = series.step[[s.stop - 1 for s in segments]]
    counts = (last - first) // hop + 1
    segment = np.repeat(np.arange(len(segments)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return first[segment] + hop * offset, segment


def _gather_windows(
    series: StarSeries,
    segments: list[slice],
    window_start: npt.NDArray[np.int64],
    window_segment: npt.NDArray[np.int64],
    nperseg: int,
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Presence mask and flux (0 where absent) of every window's steps, own segment only."""
    if window_start.size == 0:
        return np.zeros((0, nperseg), bool), np.zeros((0, nperseg))
    steps = window_start[:, None] + np.arange(nperseg)
    index = np.clip(np.searchsorted(series.step, steps), 0, series.size - 1)
    seg_start = np.array([s.start for s in segments])[window_segment][:, None]
    seg_stop = np.array([s.stop for s in segments])[window_segment][:, None]
    present = (series.step[index] == steps) & (index >= seg_start) & (index < seg_stop)
    return present, np.where(present, series.flux[index], 0.0)


def _remove_line(values: FloatArray, present: npt.NDArray[np.bool_]) -> FloatArray:
    """Subtract each row's least-squares line through its present steps; absent steps → 0."""
    x = np.arange(values.shape[1], dtype=np.float64)
    x -= x.mean()
    weight = present.astype(np.float64)
    n = weight.sum(axis=1)
    sx = weight @ x
    sxx = weight @ x**2
    sy = values.sum(axis=1)
    sxy = values @ x
    det = n * sxx - sx * sx
    slope = np.divide(n * sxy - sx * sy, det, out=np.zeros_like(det), where=det > 0)
    intercept = np.divide(sy - slope * sx, n, out=np.zeros_like(n), where=n > 0)
    line = intercept[:, None] + slope[:, None] * x
    return np.where(present, values - line, 0.0)


def _band_log_power(power: FloatArray, frequency: FloatArray, n_freq: int) -> FloatArray:
    """log10 of the mean power per log band (interpolated for bands without a grid frequency)."""
    bands = spectrogram_bands(frequency, n_freq)
    positive = frequency > 0
    grid = frequency[positive]
    log_power = np.log10(np.maximum(power[:, positive], POWER_FLOOR))
    band = np.clip(np.searchsorted(bands.edges, grid, side="right") - 1, 0, n_freq - 1)
    members = np.zeros((grid.size, n_freq))
    members[np.arange(grid.size), band] = 1.0
    counts = members.sum(axis=0)
    mean_power = power[:, positive] @ members
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.log10(np.maximum(mean_power / counts, POWER_FLOOR))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        # Linear interpolation in log frequency, as a matrix over the grid frequencies.
        log_grid = np.log10(grid)
        target = np.log10(bands.centres[empty])
        upper = np.clip(np.searchsorted(log_grid, target), 1, grid.size - 1)
        fraction = (target - log_grid[upper - 1]) / (log_grid[upper] - log_grid[upper - 1])
        fraction = np.clip(fraction, 0.0, 1.0)
        result[:, empty] = (1.0 - fraction) * log_power[:, upper - 1] + fraction * log_power[
            :, upper
        ]
    return result
