"""Variability features: amplitude, rotation and pulsation periods, quiet stars."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from starskope_dask.features.series import StarSeries
from starskope_dask.features.variability import variability

CADENCE = 0.02043359821692


def same(a: object, b: object) -> bool:
    """Dataclass equality with NaN equal to NaN."""
    return bool(np.array_equal(dataclasses.astuple(a), dataclasses.astuple(b), equal_nan=True))


def kepler_like(days: float = 90.0, noise: float = 1e-3, seed: int = 0) -> StarSeries:
    """A quarter on the grid with a 0.8-day downlink gap every 30 days."""
    rng = np.random.default_rng(seed)
    steps = np.arange(int(days / CADENCE))
    time = (steps + 0.5) * CADENCE
    keep = np.mod(time, 30.0) < 29.2
    steps = steps[keep].astype(np.int64)
    time = 2455000.0 + (steps + 0.5) * CADENCE
    flux = 1.0 + noise * rng.standard_normal(steps.size)
    return StarSeries(
        steps, time, flux, np.full(steps.size, noise), np.zeros(steps.size, np.int8), CADENCE
    )


def test_spotted_star_rotation_recovered() -> None:
    star = kepler_like()
    spotted = star.with_flux(star.flux + 0.03 * np.sin(2 * np.pi * star.time / 12.0 + 0.4))
    result = variability(spotted)
    assert result.rotation_period == pytest.approx(12.0, rel=0.05)
    assert result.rotation_power > 0.5
    assert result.rotation_false_alarm < 1e-10
    # 5–95 % range of a sinusoid: 2 A sin(0.45 π), plus a little noise.
    assert result.amplitude == pytest.approx(2 * 0.03 * math.sin(0.45 * math.pi), rel=0.03)
    assert math.isnan(result.pulsation_period)


def test_rotation_survives_spot_evolution_across_segments() -> None:
    # Four quarters (separate segments: 5-day gaps), each with a new spot phase and amplitude.
    rng = np.random.default_rng(1)
    parts = []
    for quarter in range(4):
        star = kepler_like(85.0, seed=quarter)
        shift = 90.0 * quarter / CADENCE
        steps = star.step + int(shift)
        time = 2455000.0 + (steps + 0.5) * CADENCE
        amplitude, phase = rng.uniform(0.005, 0.02), rng.uniform(0, 2 * np.pi)
        flux = star.flux + amplitude * np.sin(2 * np.pi * time / 9.3 + phase)
        parts.append((steps, time, flux))
    steps, time, flux = (np.concatenate(p) for p in zip(*parts, strict=True))
    series = StarSeries(
        steps, time, flux, np.full(steps.size, np.nan), np.zeros(steps.size, np.int8), CADENCE
    )
    result = variability(series)
    assert result.rotation_period == pytest.approx(9.3, rel=0.03)


def test_white_noise_is_quiet() -> None:
    result = variability(kepler_like())
    assert math.isnan(result.rotation_period)
    assert result.rotation_power < 0.1
    assert math.isnan(result.pulsation_period)
    assert result.pulsation_false_alarm > 1e-3
    assert result.amplitude == pytest.approx(3.29e-3, rel=0.05)  # 3.29 σ of white noise


def test_pulsation_found_beside_rotation() -> None:
    star = kepler_like()
    flux = (
        star.flux
        + 0.03 * np.sin(2 * np.pi * star.time / 12.0)
        + 3e-4 * np.sin(2 * np.pi * star.time / 0.0917)
    )
    result = variability(star.with_flux(flux))
    assert result.rotation_period == pytest.approx(12.0, rel=0.05)
    assert result.pulsation_period == pytest.approx(0.0917, rel=0.002)
    assert result.pulsation_false_alarm < 1e-10
    # Fraction of the high-passed variance: (A²/2) / (A²/2 + σ²) ≈ 0.043, ± 20 % from the
    # noise at the peak (4 σ / (A √N)).
    assert 0.03 < result.pulsation_power < 0.065


def test_time_flux_pair_matches_the_series() -> None:
    star = kepler_like()
    star = star.with_flux(star.flux + 0.01 * np.sin(2 * np.pi * star.time / 5.0))
    from_series = variability(star)
    from_arrays = variability((star.time, star.flux), cadence_days=CADENCE)
    assert same(from_arrays, from_series)
    # Irregular times: no grid for the pulsation search, the rotation still works.
    jittered = star.time + np.random.default_rng(2).uniform(-0.004, 0.004, star.size)
    irregular = variability((jittered, star.flux))
    assert irregular.rotation_period == pytest.approx(5.0, rel=0.05)
    assert math.isnan(irregular.pulsation_period) and math.isnan(irregular.pulsation_power)


def test_mask_and_non_finite_points_are_left_out() -> None:
    star = kepler_like()
    flux = star.flux.copy()
    flux[::100] = np.nan
    mask = np.zeros(star.size, bool)
    mask[:500] = True
    result = variability(star.with_flux(flux), mask=mask)
    assert result.n_points == star.size - 500 - np.count_nonzero(np.isnan(flux[500:]))


@pytest.mark.parametrize("n_points", [0, 1, 5, 50, 600])
def test_too_little_data_gives_nan_never_an_exception(n_points: int) -> None:
    star = kepler_like().subset(np.arange(kepler_like().size) < n_points)
    result = variability(star)
    assert result.n_points == n_points
    assert math.isnan(result.rotation_period)
    assert math.isnan(result.pulsation_period)
    empty = variability((np.zeros(0), np.zeros(0)))
    assert math.isnan(empty.amplitude) and math.isnan(empty.rotation_power)


def test_flux_or_flux_minus_one_give_the_same_features() -> None:
    star = kepler_like()
    flux = (
        star.flux
        + 0.02 * np.sin(2 * np.pi * star.time / 7.0)
        + 5e-4 * np.sin(2 * np.pi * star.time / 0.13)
    )
    normalised = variability(star.with_flux(flux))
    relative = variability(star.with_flux(flux - 1.0))
    np.testing.assert_allclose(
        dataclasses.astuple(relative), dataclasses.astuple(normalised), rtol=1e-6
    )
    assert normalised.pulsation_period == pytest.approx(0.13, rel=0.002)


def test_deterministic() -> None:
    star = kepler_like()
    star = star.with_flux(star.flux + 0.01 * np.sin(2 * np.pi * star.time / 3.0))
    assert same(variability(star), variability(star))
