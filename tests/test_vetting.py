"""Vetting: sinusoids posing as transits are told apart from transits, and removed."""

from __future__ import annotations

import numpy as np
import pytest

from starskope_dask.features.vetting import (
    is_harmonic,
    refine_frequency,
    remove_sinusoids,
    sinusoid_test,
)

CADENCE = 0.02043359821692
RNG_SEED = 1


def _time(days: float = 80.0) -> np.ndarray:
    return np.arange(0.0, days, CADENCE)


def _box(time: np.ndarray, period: float, t0: float, duration: float, depth: float) -> np.ndarray:
    phase = (time - t0 + period / 2) % period - period / 2
    return np.where(np.abs(phase) < duration / 2, -depth, 0.0)


@pytest.mark.parametrize(
    ("pulsation", "box_period"),
    [(0.1587, 4 * 0.1587), (0.06186, 9 * 0.06186), (2.0, 2.0)],
)
def test_a_sinusoid_posing_as_a_transit_is_variability(pulsation: float, box_period: float) -> None:
    rng = np.random.default_rng(RNG_SEED)
    t = _time()
    noise = np.full(t.size, 3e-4)
    flux = 1 + 1.5e-3 * np.sin(2 * np.pi * t / pulsation) + rng.normal(0, 3e-4, t.size)
    test = sinusoid_test(t, flux, noise, box_period, 0.1, 0.05)
    assert test.is_variability
    assert test.frequency == pytest.approx(1 / pulsation, rel=1e-6)


@pytest.mark.parametrize(
    ("period", "duration", "secondary"),
    [(3.0, 0.12, 0.0), (0.6, 0.06, 0.0), (40.0, 0.4, 0.0), (1.5, 0.15, 5e-3)],
)
def test_transits_and_eclipses_are_not_variability(
    period: float, duration: float, secondary: float
) -> None:
    rng = np.random.default_rng(RNG_SEED)
    t = _time()
    noise = np.full(t.size, 3e-4)
    flux = (
        1
        + rng.normal(0, 3e-4, t.size)
        + _box(t, period, 0.2, duration, 1e-3 + 9e-3 * bool(secondary))
    )
    if secondary:
        flux += _box(t, period, 0.2 + period / 2, duration, secondary)
    assert not sinusoid_test(t, flux, noise, period, 0.2, duration).is_variability


def test_remove_sinusoids_and_refine_frequency() -> None:
    rng = np.random.default_rng(RNG_SEED)
    t = _time(300.0)
    noise = np.full(t.size, 2e-4)
    true = 6.3012
    transit = _box(t, 7.3, 1.0, 0.15, 2e-3)
    flux = 1 + 1e-3 * np.sin(2 * np.pi * true * t + 0.3) + transit + rng.normal(0, 2e-4, t.size)
    found = refine_frequency(t, flux, noise, true + 1.5 / 300)  # a box period's imprecision
    assert found == pytest.approx(true, abs=0.2 / 300)
    in_transit = transit < 0
    cleaned = remove_sinusoids(t, flux, noise, [found], exclude=in_transit)
    assert np.std(cleaned[~in_transit] - 1) == pytest.approx(2e-4, rel=0.05)
    # the transit is left whole: the fit did not see it
    depth = np.mean(cleaned[~in_transit]) - np.mean(cleaned[in_transit])
    assert depth == pytest.approx(2e-3, rel=0.05)


def test_is_harmonic() -> None:
    assert is_harmonic(2 / 2.2047, 2.2047, 1e-4)
    assert is_harmonic(0.45357, 2.2047, 1e-4)
    assert not is_harmonic(0.9068, 2.2047, 1e-4)
    assert not is_harmonic(0.1, 2.2047, 1e-3)  # below the fundamental
