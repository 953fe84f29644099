"""Biweight detrending: transits survive, upward outliers are flagged, segments stay apart."""

from __future__ import annotations

import numpy as np
import pytest

from starskope_dask.features.detrend import biweight_trend, detrend, window_steps
from starskope_dask.features.series import StarSeries

CADENCE = 0.02043359821692
DURATION = 8.0 / 24.0
DEPTH = 1e-3


def make_series(flux: np.ndarray, *, first_step: int = 1000, mission: int = 0) -> StarSeries:
    steps = first_step + np.arange(flux.size, dtype=np.int64)
    time = 2454833.0 + (steps + 0.5) * CADENCE
    return StarSeries(
        steps,
        time,
        flux.astype(np.float64),
        np.full(flux.size, np.nan),
        np.full(flux.size, mission, np.int8),
        CADENCE,
    )


def transit_star(
    n: int, noise: float, centres: np.ndarray, *, amplitude: float = 1e-2, seed: int = 0
) -> tuple[StarSeries, np.ndarray]:
    """A 5-day sinusoid (relative amplitude ``amplitude``) with 8-h box transits."""
    rng = np.random.default_rng(seed)
    series = make_series(np.ones(n))
    t = series.time - series.time[0]
    in_transit = np.zeros(n, bool)
    for centre in centres:
        in_transit |= np.abs(t - centre) < DURATION / 2
    flux = (1 + amplitude * np.sin(2 * np.pi * t / 5.0)) * np.where(in_transit, 1 - DEPTH, 1)
    flux += noise * rng.standard_normal(n)
    return series.with_flux(flux), in_transit


def depth_kept(flux: np.ndarray, in_transit: np.ndarray) -> float:
    return float((1.0 - flux[in_transit].mean()) / DEPTH)


def test_window_steps_is_odd_and_covers_the_window() -> None:
    assert window_steps(0.75, CADENCE) == 37
    assert window_steps(0.0, CADENCE) == 1


def test_constant_series_stays_one() -> None:
    result = detrend(make_series(np.full(3000, 1.0)))
    np.testing.assert_array_equal(result.flux, 1.0)
    np.testing.assert_array_equal(result.trend, 1.0)
    assert not result.outlier.any()
    np.testing.assert_array_equal(result.noise, 0.0)


def test_masked_transits_keep_their_depth_on_a_steep_sinusoid() -> None:
    # 27 transits of a 3.3-day planet across every phase of a 1 %, 5-day sinusoid.
    centres = np.arange(1.7, 88.0, 3.3)
    series, in_transit = transit_star(4400, 1e-4, centres)
    result = detrend(series, mask=in_transit)
    assert depth_kept(result.flux, in_transit) == pytest.approx(1.0, abs=0.1)
    per_transit = [
        depth_kept(result.flux, in_transit & (np.abs(series.time - series.time[0] - c) < 0.5))
        for c in centres
    ]
    assert np.std(per_transit) < 0.15  # the noise of bridging 8 h of mask, ≈ 0.07 expected
    assert not result.outlier[in_transit].any()


def test_masked_transit_noise_free_depth_at_any_phase() -> None:
    # Without noise only the bridging bias is left: within 3 % wherever the transit falls.
    for centre in np.arange(10.1, 15.2, 0.6):
        series, in_transit = transit_star(1500, 0.0, np.array([centre]))
        result = detrend(series, mask=in_transit)
        assert depth_kept(result.flux, in_transit) == pytest.approx(1.0, abs=0.03), centre


def test_unmasked_transit_depth_what_the_window_allows() -> None:
    # An 8-h transit is 44 % of the 0.75-d window: realistic retention, not 100 %.
    centres = np.arange(1.7, 88.0, 3.3)
    quiet, in_transit = transit_star(4400, 1e-4, centres, amplitude=0.0)
    kept_quiet = depth_kept(detrend(quiet).flux, in_transit)
    assert 0.65 < kept_quiet < 0.95  # ≈ 0.78
    spotted, in_transit = transit_star(4400, 1e-4, centres)
    kept_spotted = depth_kept(detrend(spotted).flux, in_transit)
    assert 0.2 < kept_spotted < 0.6  # ≈ 0.3: the sinusoid's slope inflates the window MAD
    wider = depth_kept(detrend(quiet, window_days=1.5).flux, in_transit)
    assert wider > 0.9  # a window ≥ 3 × the duration keeps the depth (Hippke et al. 2019)


def test_upward_outliers_flagged_downward_kept() -> None:
    rng = np.random.default_rng(3)
    flux = 1.0 + 1e-4 * rng.standard_normal(3000)
    up = np.arange(100, 3000, 290)
    down = up + 120
    flux[up] += 30e-4
    flux[down] -= 30e-4
    result = detrend(make_series(flux))
    assert result.outlier[up].all()
    assert not result.outlier[down].any()
    np.testing.assert_allclose(result.flux[down], flux[down], atol=2e-4)
    assert result.outlier.sum() < up.size + 15  # 3-sigma one-sided clips ≈ 0.13 % of noise
    assert result.median_noise == pytest.approx(1e-4, rel=0.1)
    assert result.good.sum() == 3000 - result.outlier.sum()


def test_flare_does_not_lift_the_trend() -> None:
    rng = np.random.default_rng(4)
    flux = 1.0 + 1e-4 * rng.standard_normal(2000)
    flare = np.arange(1000, 1012)
    flux[flare] += 5e-3 * np.exp(-np.arange(flare.size) / 4.0)
    result = detrend(make_series(flux))
    assert result.outlier[flare[:6]].all()
    # Lifted, the trend would sit ≈ 5e-4 high here; it stays within its own noise.
    np.testing.assert_allclose(result.trend[980:1040], 1.0, atol=1.2e-4)


def test_segments_are_independent() -> None:
    # Two Kepler quarters 3 days apart with 1 % different levels, then TESS right after.
    a = 1.0 + np.zeros(1500)
    b = 1.01 + np.zeros(1500)
    c = 0.99 + np.zeros(500)
    steps = np.r_[np.arange(1500), 1650 + np.arange(1500), 3150 + np.arange(500)]
    time = 2454833.0 + (steps + 0.5) * CADENCE
    series = StarSeries(
        steps.astype(np.int64),
        time,
        np.r_[a, b, c],
        np.full(3500, np.nan),
        np.r_[np.zeros(3000, np.int8), np.full(500, 2, np.int8)],
        CADENCE,
    )
    result = detrend(series)
    np.testing.assert_allclose(result.flux, 1.0, atol=1e-12)
    np.testing.assert_allclose(result.trend[3000:], 0.99, atol=1e-12)


def reference_biweight_location(values: np.ndarray, tuning: float = 5.0) -> float:
    """wotan's ``location_iter``, written out point by point."""
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    if mad == 0:
        return float(median)
    centre = median
    for _ in range(100):
        distance = values - centre
        u2 = (distance / (tuning * mad)) ** 2
        weight = np.where(u2 < 1, (1 - u2) ** 2, 0.0)
        step = np.sum(weight * distance) / np.sum(weight)
        centre += step
        if abs(step) < 1e-12:
            break
    return float(centre)


def test_vectorised_biweight_matches_a_point_by_point_reference() -> None:
    rng = np.random.default_rng(5)
    n = 400
    time = (np.arange(n) + 0.5) * CADENCE
    flux = 1 + 3e-3 * np.sin(time) + 2e-4 * rng.standard_normal(n)
    flux[rng.choice(n, 20, replace=False)] += 5e-3
    half = 18
    expected = [
        reference_biweight_location(flux[max(i - half, 0) : i + half + 1]) for i in range(n)
    ]
    # degree 0 everywhere is wotan's method; five iterations meet wotan's 1e-6 tolerance.
    trend = biweight_trend(time, flux, window_days=0.75, degree=0, bridge_degree=0)
    np.testing.assert_allclose(trend, expected, rtol=0, atol=2e-6)
    converged = biweight_trend(time, flux, degree=0, bridge_degree=0, n_iter=40)
    np.testing.assert_allclose(converged, expected, rtol=0, atol=1e-10)


def test_non_finite_and_tiny_inputs_never_raise() -> None:
    flux = 1 + 1e-4 * np.random.default_rng(6).standard_normal(500)
    flux[[10, 200, 201]] = np.nan
    result = detrend(make_series(flux))
    assert np.isnan(result.flux[[10, 200, 201]]).all()
    assert np.isfinite(result.trend).all()
    assert not result.outlier[[10, 200, 201]].any()
    for n in (0, 1, 2):
        tiny = detrend(make_series(np.ones(n)))
        assert tiny.flux.shape == tiny.trend.shape == tiny.noise.shape == (n,)
    assert biweight_trend(np.zeros(0), np.zeros(0)).shape == (0,)


def test_masked_stretch_longer_than_the_window_is_interpolated() -> None:
    series = make_series(np.linspace(1.0, 1.01, 2000))
    mask = np.zeros(2000, bool)
    mask[800:900] = True  # 2 days masked, window 0.75 d
    result = detrend(series, mask=mask)
    np.testing.assert_allclose(result.flux[800:900], 1.0, atol=1e-9)
    # Elsewhere only the lag a nearly full window may have (≤ 0.5 step × slope) is left.
    np.testing.assert_allclose(result.flux, 1.0, atol=0.6 * 0.01 / 2000)


def test_off_grid_times_are_refused() -> None:
    with pytest.raises(ValueError, match="uniform grid"):
        biweight_trend(np.array([0.0, 0.01, 0.011, 0.05]), np.ones(4), cadence_days=0.02)
