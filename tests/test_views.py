"""Folded views (AstroNet), median binning, odd/even and secondary-eclipse checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starskope_dask.features.views import (
    bin_counts,
    fold_epoch,
    global_view,
    local_view,
    median_binned,
    normalize_view,
    odd_even_depth_ratio,
    odd_even_depths,
    odd_even_views,
    phase_fold,
    secondary_eclipse_depth,
)

CADENCE = 0.02043359821692
BJD = st.floats(2.45e6, 2.47e6, allow_nan=False)
PERIOD = st.floats(0.2, 500.0, allow_nan=False)
FAST = settings(max_examples=60, deadline=None)


def eclipsing(
    period: float,
    t0: float,
    duration: float,
    primary: float,
    secondary: float = 0.0,
    *,
    secondary_phase: float = 0.5,
    noise: float = 5e-4,
    days: float = 90.0,
    alternate: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Box eclipses on the Kepler grid; ``alternate`` replaces every odd primary's depth."""
    rng = np.random.default_rng(seed)
    time = 2455000.0 + (np.arange(int(days / CADENCE)) + 0.5) * CADENCE
    phase = phase_fold(time, period, t0)
    depth = np.full(time.size, primary)
    if alternate is not None:
        depth = np.where(fold_epoch(time, period, t0) % 2 == 1, alternate, primary)
    flux = 1.0 - depth * (np.abs(phase) < duration / 2)
    second = phase_fold(time, period, t0 + secondary_phase * period)
    flux -= secondary * (np.abs(second) < duration / 2)
    return time, flux + noise * rng.standard_normal(time.size)


@FAST
@given(time=st.lists(BJD, min_size=1, max_size=30), period=PERIOD, t0=BJD)
def test_fold_phase_in_range_and_round_trips(time: list[float], period: float, t0: float) -> None:
    t = np.array(time)
    phase = phase_fold(t, period, t0)
    assert np.all(phase >= -period / 2) and np.all(phase < period / 2)
    epoch = fold_epoch(t, period, t0)
    np.testing.assert_allclose(t0 + epoch * period + phase, t, rtol=0, atol=1e-6)


@FAST
@given(time=st.lists(BJD, min_size=1, max_size=30), period=PERIOD, t0=BJD, k=st.integers(-200, 200))
def test_fold_is_periodic(time: list[float], period: float, t0: float, k: int) -> None:
    t = np.array(time)
    a = phase_fold(t, period, t0)
    b = phase_fold(t + k * period, period, t0)
    circular = np.mod(a - b + period / 2, period) - period / 2
    np.testing.assert_allclose(circular, 0.0, atol=1e-6)


def test_fold_handles_non_finite_times() -> None:
    phase = phase_fold(np.array([np.nan, 2455000.0, np.inf]), 3.0, 2455000.0)
    assert np.isnan(phase[[0, 2]]).all() and phase[1] == 0.0


positions = st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=0, max_size=200)


@FAST
@given(x=positions, value=st.floats(-5, 5, allow_nan=False), n_bins=st.integers(1, 60))
def test_binning_a_constant_gives_the_constant(x: list[float], value: float, n_bins: int) -> None:
    xs = np.array(x)
    binned = median_binned(xs, np.full(xs.size, value), lo=-1.0, hi=1.0, n_bins=n_bins)
    counts = bin_counts(xs, lo=-1.0, hi=1.0, n_bins=n_bins)
    assert binned.shape == (n_bins,)
    np.testing.assert_array_equal(binned[counts > 0], value)
    assert np.isnan(binned[counts == 0]).all()


@FAST
@given(x=positions, n_bins=st.integers(1, 60))
def test_bin_counts_sum_to_points_in_range(x: list[float], n_bins: int) -> None:
    xs = np.array(x)
    counts = bin_counts(xs, lo=-1.0, hi=1.0, n_bins=n_bins)
    assert counts.sum() == np.count_nonzero((xs >= -1.0) & (xs < 1.0))


@FAST
@given(
    pairs=st.lists(
        st.tuples(st.floats(-1, 1, allow_nan=False), st.floats(-3, 3, allow_nan=False)),
        min_size=1,
        max_size=150,
    ),
    n_bins=st.integers(1, 40),
    seed=st.integers(0, 1000),
)
def test_binning_is_order_invariant(
    pairs: list[tuple[float, float]], n_bins: int, seed: int
) -> None:
    x, y = np.array(pairs).T
    order = np.random.default_rng(seed).permutation(x.size)
    for width in (None, 0.3):
        a = median_binned(x, y, lo=-1.0, hi=1.0, n_bins=n_bins, bin_width=width)
        b = median_binned(x[order], y[order], lo=-1.0, hi=1.0, n_bins=n_bins, bin_width=width)
        np.testing.assert_array_equal(a, b)


def test_overlapping_bins_match_a_loop_over_bins() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1.1, 1.1, 3000), rng.standard_normal(3000)
    n_bins, width = 201, 0.05
    spacing = (2.0 - width) / (n_bins - 1)
    expected = []
    for i in range(n_bins):
        inside = (x >= -1.0 + i * spacing) & (x < -1.0 + i * spacing + width)
        expected.append(np.median(y[inside]) if inside.any() else np.nan)
    got = median_binned(x, y, lo=-1.0, hi=1.0, n_bins=n_bins, bin_width=width)
    np.testing.assert_allclose(got, expected)
    assert bin_counts(x, lo=-1.0, hi=1.0, n_bins=n_bins, bin_width=width).sum() > 3000


def test_bad_bins_are_refused() -> None:
    with pytest.raises(ValueError):
        median_binned([0.0], [1.0], lo=1.0, hi=0.0, n_bins=3)
    with pytest.raises(ValueError):
        median_binned([0.0], [1.0], lo=0.0, hi=1.0, n_bins=3, bin_width=2.0)


def test_planet_local_view_bottom_minus_one_at_the_centre() -> None:
    period, t0, duration = 3.5, 2455001.3, 0.125
    time, flux = eclipsing(period, t0, duration, 1e-3, noise=1e-4)
    view = local_view(time, flux, period, t0, duration)
    assert view.shape == (201,)
    assert np.nanmin(view) == -1.0
    assert view[100] == pytest.approx(-1.0, abs=0.1)
    assert np.nanmedian(view) == pytest.approx(0.0, abs=1e-12)
    assert np.abs(view[:60]).max() < 0.3 and np.abs(view[-60:]).max() < 0.3
    glob = global_view(time, flux, period, t0)
    assert glob.shape == (2001,)
    # Global bins (P / 2001) hold ~2 points here: the min is a noise dip, the centre ≈ −0.8.
    assert np.nanmin(glob) == -1.0
    assert -1.0 <= np.nanmedian(glob[995:1006]) < -0.6


def test_views_of_nothing_are_nan_of_the_fixed_shape() -> None:
    assert np.isnan(local_view([], [], 3.0, 0.0, 0.1)).all()
    assert global_view([], [], 3.0, 0.0).shape == (2001,)
    assert np.isnan(local_view([1.0, 2.0], [1.0, 1.0], 0.0, 0.0, 0.1)).all()
    assert np.isnan(local_view([1.0, 2.0], [1.0, 1.0], 3.0, 0.0, np.nan)).all()
    odd, even = odd_even_views([], [], 3.0, 0.0, 0.1)
    assert odd.shape == even.shape == (201,)
    assert np.isnan(odd_even_depth_ratio([], [], 3.0, 0.0, 0.1))
    assert np.isnan(secondary_eclipse_depth([1.0], [1.0], 3.0, 0.0, 0.1).depth)


def test_normalisation_guards_zero_depth() -> None:
    np.testing.assert_array_equal(normalize_view(np.ones(5)), 0.0)
    assert np.isnan(normalize_view(np.full(4, np.nan))).all()
    np.testing.assert_allclose(normalize_view([1.0, 1.0, 0.5, 1.0]), [0, 0, -1, 0])


def test_eclipsing_binary_secondary_recovered_planet_has_none() -> None:
    period, t0, duration = 2.7, 2455001.3, 0.15
    time, flux = eclipsing(period, t0, duration, 0.02, 0.005)
    secondary = secondary_eclipse_depth(time, flux, period, t0, duration)
    assert secondary.depth == pytest.approx(0.005, rel=0.05)
    assert secondary.phase == pytest.approx(0.5, abs=0.5 * duration / period)
    assert secondary.significance > 50
    time, flux = eclipsing(period, t0, duration, 0.02)
    planet = secondary_eclipse_depth(time, flux, period, t0, duration, phase_range=0.0)
    assert abs(planet.depth) < 4 * planet.depth_err
    assert planet.phase == 0.5


def test_eccentric_secondary_found_off_half_phase() -> None:
    period, t0, duration = 5.0, 2455001.3, 0.2
    time, flux = eclipsing(period, t0, duration, 0.02, 0.004, secondary_phase=0.535)
    secondary = secondary_eclipse_depth(time, flux, period, t0, duration, phase_range=0.05)
    assert secondary.phase == pytest.approx(0.535, abs=0.5 * duration / period)
    assert secondary.depth == pytest.approx(0.004, rel=0.1)
    at_half = secondary_eclipse_depth(time, flux, period, t0, duration, phase_range=0.0)
    assert at_half.depth < 0.5 * secondary.depth


def test_odd_even_ratio_far_from_one_for_a_binary_one_for_a_planet() -> None:
    # An EB of period 5.4 d found at half its period: odd and even eclipses differ.
    period, t0, duration = 2.7, 2455001.3, 0.15
    time, flux = eclipsing(period, t0, duration, 0.02, alternate=0.012)
    binary = odd_even_depths(time, flux, period, t0, duration)
    assert binary.ratio == pytest.approx(0.6, rel=0.05)
    assert binary.significance > 20
    odd, even = odd_even_views(time, flux, period, t0, duration)
    assert np.nanmin(even) < -1.0 < np.nanmin(odd)
    time, flux = eclipsing(period, t0, duration, 1e-3, noise=1e-4)
    assert odd_even_depth_ratio(time, flux, period, t0, duration) == pytest.approx(1.0, abs=0.05)
    assert odd_even_depths(time, flux, period, t0, duration).significance < 4


def test_depth_errors_follow_each_points_noise() -> None:
    """Two missions of tenfold different noise: with per-point noise the secondary depth of
    pure noise is N(0, 1) in units of its error, and a planet's odd/even difference is too
    (one noise level for all points made 57 % of noise stars "eclipsing binaries")."""
    rng = np.random.default_rng(0)
    ta = 2457000 + np.arange(0, 80, 0.0204336)
    tb = 2458500 + np.arange(0, 27, 0.0204336)
    t = np.r_[ta, tb]
    noise = np.r_[np.full(ta.size, 1e-4), np.full(tb.size, 1.5e-3)]
    z, odd_even = [], []
    for _ in range(100):
        f = 1 + noise * rng.standard_normal(t.size)
        period, t0 = rng.uniform(3, 10), 2457000 + rng.uniform(0, 3)
        secondary = secondary_eclipse_depth(t, f, period, t0, 0.15, phase_range=0.0, noise=noise)
        z.append(secondary.depth / secondary.depth_err)
        phase = (t - t0 + period / 2) % period - period / 2
        f[np.abs(phase) < 0.075] -= 1e-3
        odd_even.append(odd_even_depths(t, f, period, t0, 0.15, noise=noise).significance)
    assert 0.8 < np.std(z) < 1.25
    assert np.mean(np.array(odd_even) > 3) < 0.05
