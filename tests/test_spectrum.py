"""Welch power spectrum on the fixed grid, and the fixed-size spectrogram."""

from __future__ import annotations

import numpy as np
import pytest

from starskope_dask.features.series import StarSeries
from starskope_dask.features.spectrum import (
    frequency_grid,
    power_spectrum,
    spectrogram,
    spectrogram_bands,
)

CADENCE = 0.02043359821692


def make_series(flux: np.ndarray, steps: np.ndarray | None = None, mission=None) -> StarSeries:
    steps = np.arange(flux.size) if steps is None else steps
    steps = np.asarray(steps, np.int64)
    mission = np.zeros(flux.size, np.int8) if mission is None else np.asarray(mission, np.int8)
    time = 2454833.0 + (steps + 0.5) * CADENCE
    return StarSeries(steps, time, flux, np.full(flux.size, np.nan), mission, CADENCE)


def white(n: int, sigma: float = 1e-3, seed: int = 0) -> np.ndarray:
    return 1.0 + sigma * np.random.default_rng(seed).standard_normal(n)


def test_frequency_grid_is_the_same_for_every_star() -> None:
    grid = frequency_grid(CADENCE, 512)
    assert grid.shape == (257,)
    assert grid[0] == 0.0
    assert grid[-1] == pytest.approx(0.5 / CADENCE)
    short = power_spectrum(make_series(white(600)))
    long = power_spectrum(make_series(white(20000, seed=1), steps=5000 + np.arange(20000)))
    np.testing.assert_array_equal(short.frequency, grid)
    np.testing.assert_array_equal(long.frequency, grid)


@pytest.mark.parametrize("frequency", [0.37, 1.0, 3.3333, 11.9, 20.05])
def test_sinusoid_peaks_at_the_nearest_grid_frequency(frequency: float) -> None:
    series = make_series(white(8000, 1e-4))
    flux = series.flux + 1e-2 * np.sin(2 * np.pi * frequency * series.time + 0.7)
    spectrum = power_spectrum(series.with_flux(flux))
    nearest = np.argmin(np.abs(spectrum.frequency - frequency))
    assert np.argmax(spectrum.power) == nearest


def test_parseval_white_noise_and_sinusoid() -> None:
    series = make_series(white(30000, 1e-3))
    spectrum = power_spectrum(series)
    df = spectrum.frequency[1]
    assert spectrum.power.sum() * df == pytest.approx(np.var(series.flux), rel=0.03)
    wave = 5e-3 * np.sin(2 * np.pi * 0.8123 * series.time)
    spectrum = power_spectrum(series.with_flux(1.0 + wave))
    assert spectrum.power.sum() * df == pytest.approx(np.var(wave), rel=0.03)


def test_flux_or_flux_minus_one_give_one_spectrum() -> None:
    series = make_series(white(3000))
    a = power_spectrum(series)
    b = power_spectrum(series.with_flux(series.flux - 1.0))
    np.testing.assert_allclose(a.power, b.power, rtol=1e-6, atol=1e-20)


def test_windows_only_where_the_series_is_covered() -> None:
    # Two 30-day stretches 40 days apart: no window may reach into the gap.
    first = np.arange(1470)
    second = first + 3420
    series = make_series(white(2940), steps=np.r_[first, second])
    spectrum = power_spectrum(series)
    assert spectrum.n_windows >= 8
    half_span = 0.5 * 512 * CADENCE
    lo, hi = series.time[0], series.time[1469]
    lo2, hi2 = series.time[1470], series.time[-1]
    in_first = (spectrum.window_time - half_span >= lo - CADENCE) & (
        spectrum.window_time + half_span <= hi + 0.25 * 512 * CADENCE
    )
    in_second = (spectrum.window_time - half_span >= lo2 - CADENCE) & (
        spectrum.window_time + half_span <= hi2 + 0.25 * 512 * CADENCE
    )
    assert (in_first | in_second).all()
    assert (spectrum.window_coverage >= 0.75).all()


def test_sparse_windows_are_dropped_and_partial_ones_stay_unbiased() -> None:
    rng = np.random.default_rng(2)
    n = 20000
    for missing, expect_windows in ((0.4, False), (0.1, True)):
        keep = np.sort(rng.choice(n, int(n * (1 - missing)), replace=False))
        series = make_series(white(keep.size, 1e-3, seed=3), steps=keep)
        spectrum = power_spectrum(series, max_gap_days=1.0)
        assert (spectrum.n_windows > 0) is expect_windows
        if expect_windows:
            df = spectrum.frequency[1]
            assert spectrum.power.sum() * df == pytest.approx(1e-6, rel=0.05)


def test_windows_never_mix_missions() -> None:
    # K2 then TESS on adjacent steps: windows lie inside one mission each.
    flux = np.r_[np.full(1000, 1.0), np.full(1000, 1.05)]
    mission = np.r_[np.ones(1000), np.full(1000, 2)]
    spectrum = power_spectrum(make_series(flux, mission=mission))
    assert spectrum.n_windows > 0
    np.testing.assert_allclose(spectrum.power, 0.0, atol=1e-25)


@pytest.mark.parametrize("n_points", [0, 1, 3, 100, 380])
def test_too_short_gives_nan_of_the_fixed_shape(n_points: int) -> None:
    spectrum = power_spectrum(make_series(white(n_points)))
    assert spectrum.n_windows == 0
    assert spectrum.power.shape == (257,) and np.isnan(spectrum.power).all()
    assert spectrum.window_power.shape == (0, 257)
    assert spectrum.window_time.shape == (0,)
    image = spectrogram(spectrum)
    assert image.shape == (32, 64) and np.isnan(image).all()


def test_spectrogram_fixed_shape_rows_and_peak_band() -> None:
    frequency = 2.5
    long = make_series(white(60000, 1e-4))
    long = long.with_flux(long.flux + 1e-2 * np.sin(2 * np.pi * frequency * long.time))
    spectrum = power_spectrum(long)
    assert spectrum.n_windows > 32
    image = spectrogram(spectrum)
    assert image.shape == (32, 64) and np.isfinite(image).all()
    bands = spectrogram_bands(spectrum.frequency)
    band = np.searchsorted(bands.edges, frequency) - 1
    assert (np.argmax(image, axis=1) == band).all()
    # Rows average consecutive windows: the first row is the mean of the first group.
    first_group = np.array_split(np.arange(spectrum.n_windows), 32)[0]
    mean_power = spectrum.window_power[first_group].mean(axis=0)
    inside = (spectrum.frequency >= bands.edges[band]) & (
        spectrum.frequency < bands.edges[band + 1]
    )
    assert image[0, band] == pytest.approx(np.log10(mean_power[inside].mean()))

    short = make_series(white(3000, 1e-4))  # 10 windows
    image = spectrogram(power_spectrum(short), n_time=16, n_freq=48)
    assert image.shape == (16, 48)
    n_windows = power_spectrum(short).n_windows
    assert np.isfinite(image[:n_windows]).all() and np.isnan(image[n_windows:]).all()


def test_spectrogram_bands_are_a_fixed_log_coordinate() -> None:
    grid = frequency_grid(CADENCE, 512)
    bands = spectrogram_bands(grid, 64)
    assert bands.edges.shape == (65,) and bands.centres.shape == (64,)
    assert bands.edges[0] == pytest.approx(grid[1]) and bands.edges[-1] == pytest.approx(grid[-1])
    np.testing.assert_allclose(np.diff(np.log(bands.edges)), np.log(256) / 64)


def test_constant_star_gives_a_finite_floor() -> None:
    image = spectrogram(power_spectrum(make_series(np.ones(3000))))
    assert np.isfinite(image[:10]).all()
    assert image[:10].max() < -25
