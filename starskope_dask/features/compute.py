"""One star's features from its series: the pure composition of the features stage.

Order (each step a pure function of its own module, tested on its own):

1. detrend every segment (time-windowed biweight) and clip upward outliers;
2. search all missions' detrended flux together for up to ``max_signals`` transit signals,
   and drop those a sinusoid explains better than a box (pulsation, rotation: :mod:`vetting`);
3. detrend again with the detected transits masked (so the trend does not eat the depth), and
   measure each signal's depth, SNR, odd/even and secondary eclipse on that flux;
4. fold: AstroNet global and local views (and odd/even local views) per signal;
5. single transits not explained by a signal, and the long periods they allow;
6. power spectrum and spectrogram of the relative flux (variability kept), variability.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from starskope_dask.config import FeaturesConfig
from starskope_dask.features import detrend, search, spectrum, variability, vetting, views
from starskope_dask.features.layout import (
    MAX_ALLOWED_PERIODS,
    MAX_SINGLE_TRANSITS,
    STATUS_OK,
    STATUS_TOO_LITTLE_DATA,
    STELLAR_VARIABLES,
    mission_bits,
)
from starskope_dask.features.series import StarSeries, segment_slices

logger = logging.getLogger(__name__)

#: In-transit mask width, in transit durations, for re-detrending and searching again.
MASK_DURATIONS = 1.5
#: Searches again after removing sinusoids that posed as transits (pulsators).
MAX_PREWHITENING_ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class StarAnalysis:
    """Intermediate results of one star (what the features and the plot page are made of)."""

    series: StarSeries
    detrended: detrend.Detrended  # the final detrending (transits masked, sinusoids removed)
    clean: npt.NDArray[np.bool_]  # points kept (not upward outliers)
    signals: tuple[search.TransitSignal, ...]  # strongest first
    singles: tuple[search.SingleTransit, ...]
    long_period: search.LongPeriodSolution | None
    spectrum: spectrum.PowerSpectrum
    removed_frequencies: tuple[float, ...]  # sinusoids that posed as transits (cycles/day)


def segment_edges(
    series: StarSeries, max_gap_days: float, edge_days: float
) -> npt.NDArray[np.bool_]:
    """Points within ``edge_days`` of the start or end of their segment (ramps after gaps and
    safe modes, where a detrended light curve is least trustworthy).
    """
    edges = np.zeros(series.size, bool)
    if edge_days <= 0:
        return edges
    for part in segment_slices(series, max_gap_days):
        times = series.time[part]
        edges[part] = (times - times[0] < edge_days) | (times[-1] - times < edge_days)
    return edges


def _search_with_prewhitening(
    time: npt.NDArray[np.float64],
    flux: npt.NDArray[np.float64],
    err: npt.NDArray[np.float64],
    mission: npt.NDArray[np.int8],
    noise: npt.NDArray[np.float64],
    config: FeaturesConfig,
    min_period: float,
    frequencies: list[float],
    baseline_days: float,
) -> tuple[search.TransitSignal, ...]:
    """Search; drop signals a sinusoid explains better (removing those sinusoids from the flux
    and searching again, ``frequencies`` grows) or that stand out too little (SDE).
    """
    resolution = 0.5 / max(baseline_days, 1.0)
    base = flux
    if frequencies:
        flux = vetting.remove_sinusoids(time, base, noise, frequencies)
    signals: tuple[search.TransitSignal, ...] = ()
    for _ in range(MAX_PREWHITENING_ROUNDS + 1):
        found = search.search_transits(
            time,
            flux,
            err,
            mission,
            min_period=min_period,
            max_period=config.max_period_days,
            max_signals=config.max_signals,
            snr_threshold=config.snr_threshold,
            oversample=config.oversample,
        )
        tests = [
            vetting.sinusoid_test(time, flux, noise, s.period, s.t0, s.duration) for s in found
        ]
        signals = tuple(
            s
            for s, test in zip(found, tests, strict=True)
            if not test.is_variability and not s.sde < config.sde_threshold
        )
        # a pulsation or rotation posing as transits: remove it and search again; never a
        # harmonic of a transit kept (an eclipse's phase curve, a secondary eclipse): that
        # sinusoid would eat the transit
        new = [
            refined
            for refined in (
                vetting.refine_frequency(time, flux, noise, test.frequency)
                for test in tests
                if test.is_variability
            )
            if all(abs(refined - known) > 5 * resolution for known in frequencies)
            and not any(vetting.is_harmonic(refined, s.period, 5 * resolution) for s in signals)
        ]
        if not new:
            break
        for frequency in new:  # two aliases of one mode give one frequency
            if all(abs(frequency - known) > 5 * resolution for known in frequencies):
                frequencies.append(frequency)
        in_transit = _transits(time, signals)
        flux = vetting.remove_sinusoids(time, base, noise, frequencies, exclude=in_transit)
    return signals


def _transits(
    time: npt.NDArray[np.float64], signals: tuple[search.TransitSignal, ...]
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(time.size, bool)
    for signal in signals:
        mask |= search.transit_mask(
            time, signal.period, signal.t0, signal.duration, factor=MASK_DURATIONS
        )
    return mask


def given_signals(
    series: StarSeries,
    flux: npt.NDArray[np.float64],
    ephemerides: Sequence[tuple[float, float, float]],
    max_gap_days: float,
) -> tuple[search.TransitSignal, ...]:
    """Signals at a user's ephemerides (period, t0, duration), measured by a box fit."""
    signals = []
    for period, t0, duration in ephemerides:
        fit = search.box_fit(
            series.time, flux, series.flux_err, period, t0, duration,
            mission=series.mission, max_gap_days=max_gap_days,
        )  # fmt: skip
        signals.append(
            search.TransitSignal(
                period=period,
                period_err=float("nan"),
                t0=t0,
                duration=duration,
                depth=fit.depth,
                depth_err=fit.depth_err,
                snr=fit.snr,
                sde=float("nan"),
                false_alarm_probability=float("nan"),
                n_transits=fit.n_transits,
                n_in_transit=fit.n_in_transit,
                missions_used=fit.missions_used,
                red_noise_factor=fit.red_noise_factor,
            )
        )
    return tuple(signals)


def analyse_star(
    series: StarSeries,
    config: FeaturesConfig,
    ephemerides: Sequence[tuple[float, float, float]] = (),
) -> StarAnalysis:
    """Detrend, search (a short window for all periods, a long one for long periods), re-detrend
    with the transits masked and confirm each signal on it, find single transits, spectra.
    With ``ephemerides`` (period, t0, duration) the search is replaced by those signals.
    """
    first = detrend.detrend(
        series,
        window_days=config.detrend_window_days,
        max_gap_days=config.max_gap_days,
        clip_sigma=config.clip_sigma,
    )
    edges = segment_edges(series, config.max_gap_days, config.edge_days)
    use = ~first.outlier & np.isfinite(first.flux) & ~edges
    frequencies: list[float] = []
    if ephemerides:
        signals = given_signals(
            series.subset(use), first.flux[use], ephemerides[: config.max_signals],
            config.max_gap_days,
        )  # fmt: skip
    else:
        signals = _search_with_prewhitening(
            series.time[use], first.flux[use], series.flux_err[use], series.mission[use],
            first.noise[use], config, config.min_period_days, frequencies, series.baseline_days,
        )  # fmt: skip
    long_window = config.long_detrend_window_days
    if (
        not ephemerides
        and long_window > config.detrend_window_days
        and config.max_period_days > config.long_period_min_days
    ):
        # long transits (half a day at 300 d) lose depth to a 0.75-day window: search long
        # periods again on a wider one, with the transits found so far left out
        known = _transits(series.time, signals)
        wide = detrend.detrend(
            series, window_days=long_window, max_gap_days=config.max_gap_days,
            clip_sigma=config.clip_sigma, mask=known,
        )  # fmt: skip
        use_wide = ~wide.outlier & np.isfinite(wide.flux) & ~edges & ~known
        more = _search_with_prewhitening(
            series.time[use_wide], wide.flux[use_wide], series.flux_err[use_wide],
            series.mission[use_wide], wide.noise[use_wide], config,
            max(config.long_period_min_days, config.min_period_days), frequencies,
            series.baseline_days,
        )  # fmt: skip
        signals = tuple(sorted((*signals, *more), key=lambda s: -s.snr))[: config.max_signals]
    mask = _transits(series.time, signals)
    final = first
    clean = ~first.outlier & np.isfinite(first.flux)
    if signals:
        final = detrend.detrend(
            series,
            window_days=config.detrend_window_days,
            max_gap_days=config.max_gap_days,
            clip_sigma=config.clip_sigma,
            mask=mask,
        )
        clean = ~final.outlier & np.isfinite(final.flux)
    if frequencies:
        final = dataclasses.replace(
            final,
            flux=vetting.remove_sinusoids(
                series.time, final.flux, final.noise, frequencies, exclude=mask
            ),
        )
    # confirm each signal on the final flux (the transits masked from the trend): a dip that
    # the first trend made (at a gap, on a slope) does not survive
    use = clean & ~edges
    signals = tuple(
        s
        for s in signals
        if ephemerides  # a user's ephemeris is kept, however weak
        or search.box_fit(
            series.time[use],
            final.flux[use],
            series.flux_err[use],
            s.period,
            s.t0,
            s.duration,
            mission=series.mission[use],
            max_gap_days=config.max_gap_days,
        ).snr
        >= config.snr_threshold
    )
    mask = _transits(series.time, signals)
    singles = tuple(
        search.find_single_transits(
            series.time[clean],
            final.flux[clean],
            series.flux_err[clean],
            series.mission[clean],
            exclude=mask[clean],
            max_gap_days=config.max_gap_days,
        )
    )
    long_period = (
        search.single_transit_periods(
            singles,
            observed_time=series.time[clean],
            min_period=config.min_period_days,
        )
        if len(singles) >= 2
        else None
    )
    relative = series.with_flux(series.flux - 1.0)
    power = spectrum.power_spectrum(
        relative, nperseg=config.nperseg, max_gap_days=config.max_gap_days
    )
    return StarAnalysis(
        series, final, clean, signals, singles, long_period, power, tuple(frequencies)
    )


def star_features(
    series: StarSeries,
    config: FeaturesConfig,
    stellar: Mapping[str, float],
    ephemerides: Sequence[tuple[float, float, float]] = (),
) -> tuple[dict[str, Any], str]:
    """Every feature of one star (arrays without the ``star`` dim) and a reason ("" if none).

    A star with fewer than ``config.min_points`` observed steps gets only its counts, its
    stellar properties and status :data:`STATUS_TOO_LITTLE_DATA`; everything else stays NaN.
    """
    values: dict[str, Any] = {
        "n_points": series.size,
        "baseline_days": series.baseline_days,
        "missions_observed": mission_bits(series.missions_present),
    }
    for name in STELLAR_VARIABLES:
        value = stellar.get(name)
        if value is not None and math.isfinite(value):
            values[name] = value
    if series.size < config.min_points:
        values["status"] = STATUS_TOO_LITTLE_DATA
        values["n_signals"] = 0
        return values, (
            f"too little data: {series.size} observed grid steps, features need "
            f"{config.min_points} (features.min_points)"
        )
    analysis = analyse_star(series, config, ephemerides)
    values.update(_signal_values(analysis, config))
    values.update(_single_values(analysis))
    values.update(_spectral_values(analysis, config))
    values["status"] = STATUS_OK
    return values, ""


def _signal_values(analysis: StarAnalysis, config: FeaturesConfig) -> dict[str, Any]:
    series, flux, clean = analysis.series, analysis.detrended.flux, analysis.clean
    time, err = series.time[clean], series.flux_err[clean]
    flux = flux[clean]
    noise = analysis.detrended.noise[clean]
    mission = series.mission[clean]
    k = config.max_signals
    out: dict[str, Any] = {
        "n_signals": len(analysis.signals),
        "n_removed_sinusoids": len(analysis.removed_frequencies),
        "noise_ppm": analysis.detrended.median_noise * 1e6,
    }
    columns: dict[str, npt.NDArray[Any]] = {
        name: np.full(k, np.nan)
        for name in (
            "period",
            "t0",
            "duration",
            "depth",
            "depth_err",
            "snr",
            "sde",
            "odd_even_ratio",
            "odd_even_sigma",
            "secondary_depth",
            "secondary_depth_err",
        )
    }
    n_transits = np.full(k, -1, np.int16)
    missions_used = np.full(k, -1, np.int8)
    harmonic_of = np.full(k, -1, np.int8)
    global_view = np.full((k, config.global_bins), np.nan, np.float32)
    local_view = np.full((k, config.local_bins), np.nan, np.float32)
    local_odd = np.full_like(local_view, np.nan)
    local_even = np.full_like(local_view, np.nan)
    others = np.zeros(time.size, bool)
    for i, signal in enumerate(analysis.signals[:k]):
        # measure each signal with the other signals' transits left out
        own = ~others
        fit = search.box_fit(
            time[own],
            flux[own],
            err[own],
            signal.period,
            signal.t0,
            signal.duration,
            mission=mission[own],
            max_gap_days=config.max_gap_days,
        )
        columns["period"][i] = signal.period
        columns["t0"][i] = signal.t0
        columns["duration"][i] = signal.duration
        columns["depth"][i] = fit.depth
        columns["depth_err"][i] = fit.depth_err
        columns["snr"][i] = fit.snr
        columns["sde"][i] = signal.sde
        n_transits[i] = fit.n_transits
        in_transit = search.transit_mask(
            time, signal.period, signal.t0, signal.duration, factor=MASK_DURATIONS
        )
        missions_used[i] = mission_bits(fit.missions_used)
        if signal.harmonic_of is not None:
            harmonic_of[i] = signal.harmonic_of
        t, f, sigma = time[own], flux[own], noise[own]
        global_view[i] = views.global_view(
            t, f, signal.period, signal.t0, n_bins=config.global_bins
        )
        local_view[i] = views.local_view(
            t,
            f,
            signal.period,
            signal.t0,
            signal.duration,
            n_bins=config.local_bins,
            half_width_durations=config.local_half_width_durations,
        )
        odd, even = views.odd_even_views(
            t,
            f,
            signal.period,
            signal.t0,
            signal.duration,
            n_bins=config.local_bins,
            half_width_durations=config.local_half_width_durations,
        )
        local_odd[i], local_even[i] = odd, even
        odd_even = views.odd_even_depths(
            t, f, signal.period, signal.t0, signal.duration, noise=sigma
        )
        columns["odd_even_ratio"][i] = odd_even.ratio
        columns["odd_even_sigma"][i] = odd_even.significance
        secondary = views.secondary_eclipse_depth(
            t, f, signal.period, signal.t0, signal.duration, noise=sigma
        )
        columns["secondary_depth"][i] = secondary.depth
        columns["secondary_depth_err"][i] = secondary.depth_err
        others |= in_transit
    out.update(columns)
    out.update(
        n_transits=n_transits,
        missions_used=missions_used,
        harmonic_of=harmonic_of,
        global_view=global_view,
        local_view=local_view,
        local_view_odd=local_odd,
        local_view_even=local_even,
    )
    return out


def _single_values(analysis: StarAnalysis) -> dict[str, Any]:
    singles = sorted(analysis.singles, key=lambda s: -s.snr)[:MAX_SINGLE_TRANSITS]
    singles.sort(key=lambda s: s.t0)
    out: dict[str, Any] = {"n_single_transits": len(analysis.singles)}
    for name, field in (
        ("single_t0", "t0"),
        ("single_duration", "duration"),
        ("single_depth", "depth"),
        ("single_snr", "snr"),
    ):
        column = np.full(MAX_SINGLE_TRANSITS, np.nan)
        column[: len(singles)] = [getattr(s, field) for s in singles]
        out[name] = column
    allowed = np.full(MAX_ALLOWED_PERIODS, np.nan)
    solution = analysis.long_period
    if solution is not None:
        periods = np.asarray(solution.allowed_periods, float)[:MAX_ALLOWED_PERIODS]
        allowed[: periods.size] = periods
        out["long_period"] = float(solution.period)
    out["long_period_allowed"] = allowed
    return out


def _spectral_values(analysis: StarAnalysis, config: FeaturesConfig) -> dict[str, Any]:
    power = analysis.spectrum
    relative = analysis.series.with_flux(analysis.series.flux - 1.0)
    var = variability.variability(relative)
    return {
        "power_spectrum": power.power,
        "n_spectrum_windows": power.n_windows,
        "spectrogram": spectrum.spectrogram(
            power, n_time=config.spectrogram_time, n_freq=config.spectrogram_freq
        ),
        "variability_amplitude": var.amplitude,
        "rotation_period": var.rotation_period,
        "rotation_power": var.rotation_power,
        "pulsation_period": var.pulsation_period,
    }


def periodogram(
    analysis: StarAnalysis, config: FeaturesConfig, n_periods: int = 4000
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A box least-squares periodogram of the detrended flux, for plots (astropy's BLS on a
    log-spaced grid of ``n_periods``; the search itself uses the optimal grid, coarse to fine).

    Returns
    -------
    periods, power : ndarray
        Empty when the star has too little data.
    """
    from astropy.timeseries import BoxLeastSquares

    series, clean = analysis.series, analysis.clean
    time, flux = series.time[clean], analysis.detrended.flux[clean]
    finite = np.isfinite(flux)
    time, flux = time[finite], flux[finite]
    if time.size < config.min_points:
        return np.zeros(0), np.zeros(0)
    top = min(config.max_period_days, 0.5 * float(time[-1] - time[0]))
    if top <= config.min_period_days:
        return np.zeros(0), np.zeros(0)
    periods = np.geomspace(config.min_period_days, top, n_periods)
    durations = np.array([0.04, 0.08, 0.16, 0.32])
    durations = durations[durations < config.min_period_days]  # min_period_days >= 0.1
    result = BoxLeastSquares(time, flux).power(periods, durations, objective="snr")
    return periods, np.asarray(result.power, np.float64)
