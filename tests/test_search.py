"""Transit search: box search over all missions, single transits, box fits (features.search).

Synthetic light curves sit on the cube's grid (Kepler long cadence) with white noise; the
real-data test searches HAT-P-7 (Kepler Q0 short cadence + TESS sectors 14, 15) averaged
onto that grid, each file normalised by its median and divided by a running median.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path

import batman
import numpy as np
import pandas as pd
import pytest

from starskope_dask.features import search
from starskope_dask.features.series import StarSeries, segment_slices
from tests.conftest import HAT_P_7_KEPLER, HAT_P_7_TESS

CADENCE = 0.02043359821692
KEPLER_START = 2454964.5  # 2009 May
TESS_START = 2458683.35  # 2019 July (sector 14)


def kepler_like(rng, start=KEPLER_START, days=365.0, noise=1e-4):
    """Kepler-like times (monthly downlink and quarterly gaps, 2 % lost) and white noise."""
    t = start + CADENCE * np.arange(int(days / CADENCE))
    keep = ((t - start) % 93.0 > 1.0) & ((t - start) % 31.0 > 0.4) & (rng.random(t.size) > 0.02)
    t = t[keep]
    return t, 1 + noise * rng.standard_normal(t.size)


def tess_like(rng, start=TESS_START, sectors=2, noise=2e-4):
    """TESS-like sectors (27.4 d, a 1-d gap mid-sector) on the same grid."""
    t = start + CADENCE * np.arange(int(27.4 * sectors / CADENCE))
    keep = np.abs((t - start) % 27.4 - 13.7) > 0.5
    t = t[keep]
    return t, 1 + noise * rng.standard_normal(t.size)


def box_dip(t, period, t0, duration, depth):
    phase = np.abs((t - t0 + 0.5 * period) % period - 0.5 * period)
    return np.where(phase < 0.5 * duration, depth, 0.0)


def batman_dip(t, period, t0, rp, b):
    """Limb-darkened dip (1 − model) of a planet around the Sun, supersampled to the cadence."""
    a = (1.32712440018e20 * (period * 86400) ** 2 / (4 * np.pi**2)) ** (1 / 3) / 6.957e8
    params = batman.TransitParams()
    params.t0, params.per, params.rp, params.a = t0, period, rp, a
    params.inc, params.ecc, params.w = math.degrees(math.acos(b / a)), 0.0, 90.0
    params.u, params.limb_dark = [0.4, 0.25], "quadratic"
    model = batman.TransitModel(params, t, supersample_factor=5, exp_time=CADENCE)
    return 1 - model.light_curve(params)


def depth_for_snr(t, period, t0, duration, noise, snr):
    """Box depth giving a box-fit SNR of ``snr`` with these times."""
    n_in = np.count_nonzero(box_dip(t, period, t0, duration, 1.0))
    return snr * noise / math.sqrt(n_in)


def phase_offset(t0, truth, period):
    return abs((t0 - truth + 0.5 * period) % period - 0.5 * period)


# --------------------------------------------------------------------------- grids, masks, fits


def test_solar_duration_and_ofir_grid():
    d = search.solar_duration([1.0, 365.25])
    assert d[0] * 24 == pytest.approx(1.83, abs=0.02)  # Sun-Earth analogue at 1 d
    assert d[1] * 24 == pytest.approx(12.98, abs=0.05)  # Earth: 13 h
    grid = search.ofir_frequency_grid(1470.5, 0.5, 500.0, oversample=3)
    assert np.all(np.diff(grid) > 0) and grid[0] >= 0.5 and grid[-1] <= 500.0
    # Ofir 2014: N = (f_max^⅓ − f_min^⅓ + A/3)·3/A, A ∝ 1/(baseline·OS)
    assert 1.9e5 < grid.size < 2.1e5
    twice = search.ofir_frequency_grid(1470.5, 0.5, 500.0, oversample=6)
    assert twice.size == pytest.approx(2 * grid.size, rel=1e-3)
    # uniform in frequency^(1/3)
    steps = np.diff((1 / grid) ** (1 / 3))
    assert np.allclose(steps, steps[0], rtol=1e-6)
    assert search.ofir_frequency_grid(0.0, 0.5, 10.0).size == 0


def test_transit_mask_and_box_fit():
    rng = np.random.default_rng(1)
    t, f = kepler_like(rng, days=200.0)
    period, t0, duration, depth = 9.3, KEPLER_START + 3.1, 0.2, 3e-4
    f -= box_dip(t, period, t0, duration, depth)
    inside = search.transit_mask(t, period, t0, duration)
    assert np.array_equal(inside, box_dip(t, period, t0, duration, 1.0) > 0)
    wide = search.transit_mask(t, period, t0, duration, factor=2.0)
    assert wide.sum() > 1.8 * inside.sum() and np.all(wide[inside])
    fit = search.box_fit(t, f, np.full(t.size, 1e-4), period, t0, duration, mission=0)
    assert fit.depth == pytest.approx(depth, abs=3 * fit.depth_err)
    assert fit.depth_err == pytest.approx(1e-4 / math.sqrt(inside.sum()), rel=0.15)
    assert fit.snr == pytest.approx(fit.depth / fit.depth_err)
    assert fit.n_transits == 22 and fit.n_in_transit == inside.sum()
    assert fit.missions_used == ("Kepler",)
    assert 0.03 < fit.largest_transit_fraction < 0.15
    # stated errors 10× too small do not change the SNR: the noise is measured
    small = search.box_fit(t, f, np.full(t.size, 1e-5), period, t0, duration)
    assert small.snr == pytest.approx(fit.snr, rel=1e-6)
    single = search.box_fit(t, f, None, math.inf, t0 + 5 * period, duration)
    assert single.n_transits == 1 and single.largest_transit_fraction == 1.0
    nothing = search.box_fit(t[:2], f[:2], None, period, t0, duration)
    assert math.isnan(nothing.snr)


def test_fast_folding_matches_direct_folds():
    n, p, extra = 32, 41, 40
    width = p + n + extra
    # one impulse per input (cycle r, n bins into its window): where it lands in fold s
    # tells cycle r's shift (folds are not wrapped: shifted left, it stays in the window)
    impulses = np.zeros((n, n, width), np.float32)
    impulses[np.arange(n), np.arange(n), n] = 1.0
    folded = search._ffa_linear(impulses, n)
    assert np.all(folded.sum(axis=2) == 1.0)  # every cycle lands once in every fold
    shift = n - np.argmax(folded, axis=2)  # (cycle, fold)
    ideal = np.arange(n)[:, None] * np.arange(n)[None, :] / (n - 1)
    assert np.abs(shift - ideal).max() <= 1.0  # fold s is the fold at p + s/(n−1) bins
    # a pulse train of period p + s/(n−1) bins adds up in fold s
    rng = np.random.default_rng(2)
    s = 13
    train = np.zeros(n * p + width, np.float32)
    train[np.rint(5 + np.arange(n) * (p + s / (n - 1))).astype(int)] = 1.0
    windows = np.lib.stride_tricks.sliding_window_view(train, width)
    profile = search._ffa_linear(windows[np.arange(n) * p][None].copy(), n)[0]
    peak = int(np.argmax(profile[s, :p]))
    assert profile[s, peak - 1 : peak + 2].sum() == n  # within ±1 bin (rounded shifts)
    assert np.argmax(profile[:, :p].max(axis=1)) == s
    # empty cycles at the end need not be stored; even folds alone are the same folds
    z = rng.normal(size=n * p).astype(np.float32)
    z[21 * p :] = 0.0
    windows = np.lib.stride_tricks.sliding_window_view(np.r_[z, np.zeros(width)], width)
    full = search._ffa_linear(windows[np.arange(n) * p][None].copy(), n)[0]
    short = search._ffa_linear(windows[np.arange(21) * p][None].copy(), n)[0]
    assert np.allclose(short, full, atol=1e-4)
    even = search._ffa_linear(windows[np.arange(21) * p][None].copy(), n, even_only=True)[0]
    assert np.allclose(even, full[0::2], atol=1e-4)


@pytest.mark.parametrize("period", [0.613, 1.4234, 7.77, 61.3])
def test_coarse_search_labels_its_folds_with_the_right_period(period):
    """Many cycles per bin of period (short periods) are folded with rows of several cycles."""
    rng = np.random.default_rng(9)
    t, f = kepler_like(rng, days=1000.0, noise=1e-4)
    t0 = KEPLER_START + 0.3 * period
    duration = float(search.solar_duration(period))
    f -= box_dip(t, period, t0, duration, depth_for_snr(t, period, t0, duration, 1e-4, 30.0))
    data = search._prepare(t, f, None, 0)
    w = np.ones(data.size)
    settings = search._SearchSettings(period / 1.3, period * 1.3, 3.0, 1.0, 1.0, (0.5, 2.5), 3)
    candidates, n_boxes = search._coarse_search(
        data.time, w * data.y / 1e-4, w, data.cadence, settings, search._Timer(), 3
    )
    best = candidates[0]
    assert abs(best.period - period) <= 2 * best.step
    assert best.snr > 20 and n_boxes > 1e5
    assert phase_offset(best.t0, t0, period) < 1.5 * best.bin + 0.5 * best.duration


# --------------------------------------------------------------------------- periodic search


@pytest.mark.parametrize(
    ("period", "snr", "shape"),
    [(2.73, 12.0, "box"), (27.31, 12.0, "batman"), (113.7, 14.0, "batman")],
)
def test_injected_transit_recovered(period, snr, shape):
    rng = np.random.default_rng(int(period * 100))
    t, f = kepler_like(rng)
    t0 = KEPLER_START + 0.37 * period
    duration = float(search.solar_duration(period)) * 0.9
    if shape == "box":
        depth = depth_for_snr(t, period, t0, duration, 1e-4, snr)
        f -= box_dip(t, period, t0, duration, depth)
    else:
        dip = batman_dip(t, period, t0, 0.01, 0.3)
        inside = dip > 0
        f -= dip * snr * 1e-4 / (dip[inside].mean() * math.sqrt(inside.sum()))
    signals = search.search_transits(t, f, np.full(t.size, 1e-4), 0)
    assert signals, "no signal found"
    best = signals[0]
    assert best.period == pytest.approx(period, rel=1e-3)
    assert phase_offset(best.t0, t0, period) < 0.25 * best.duration
    assert t[0] <= best.t0 <= t[-1]
    assert best.snr >= 7.1 and best.n_transits >= 2 and best.missions_used == ("Kepler",)
    assert best.sde > 5 and best.false_alarm_probability < 1e-3
    assert best.depth > 0 and best.duration > 0 and best.harmonic_of is None


def test_multi_mission_search_pins_the_period():
    """Kepler 2009–2013 (one quarter a year) + two TESS sectors in 2019, searched together."""
    rng = np.random.default_rng(7)
    parts = [kepler_like(rng, KEPLER_START + 365.25 * k, days=90.0) for k in range(4)]
    tk = np.concatenate([p[0] for p in parts])
    fk = np.concatenate([p[1] for p in parts])
    ts, fs = tess_like(rng)
    period, duration, depth = 11.3071, 0.2, 3e-4
    t0 = KEPLER_START + 4.2
    fk -= box_dip(tk, period, t0, duration, depth)
    fs -= box_dip(ts, period, t0, duration, depth)
    t, f = np.r_[tk, ts], np.r_[fk, fs]
    mission = np.r_[np.zeros(tk.size, np.int8), np.full(ts.size, 2, np.int8)]
    found = {}
    for name, sel in (("Kepler", mission == 0), ("TESS", mission == 2), ("both", mission >= 0)):
        signals = search.search_transits(
            t[sel], f[sel], None, mission[sel], min_period=5.0, max_period=20.0, max_signals=1
        )
        assert signals, f"{name}: no signal"
        found[name] = signals[0]
        assert found[name].period == pytest.approx(period, rel=1e-3)
    both = found["both"]
    assert both.missions_used == ("Kepler", "TESS")
    assert both.period_err < 0.75 * min(found["Kepler"].period_err, found["TESS"].period_err)
    assert abs(both.period - period) < 4 * both.period_err
    assert abs(both.period - period) < abs(found["TESS"].period - period)
    assert abs(both.period - period) < 1e-5 * period
    # TESS transits really are in the combined fit
    assert both.n_transits > found["Kepler"].n_transits


def test_pure_noise_gives_no_signal():
    """White noise, five realisations: nothing reaches the 7.1 threshold.

    Threshold: 7.1 (the Kepler pipeline's). A 1-year search evaluates ~10⁸ boxes; the largest
    white-noise box SNR over them is ≈ √(2 ln 10⁷) ≈ 5.7 (the boxes overlap, ~10⁷ are
    independent), so the refined maximum stays below 7.1 — as the Bonferroni bound in
    ``false_alarm_probability`` (≲ 10⁻³ at 7.1) says.
    """
    best = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        t, f = kepler_like(rng)
        result = search.run_transit_search(t, f, None, 0)
        assert result.signals == ()
        assert result.n_passes == 1 and result.n_boxes > 1e7
        # the strongest it would report with no threshold is well below 7.1
        loose = search.search_transits(t, f, None, 0, snr_threshold=0.0, max_signals=1)
        best.append(loose[0].snr if loose else 0.0)
    assert max(best) < 7.1


@pytest.mark.parametrize(
    ("p1", "snr1", "p2", "snr2", "searches"),
    [
        (5.718, 25.0, 17.93, 12.0, 2),  # a transit of the first is strong: search again
        (9.107, 14.0, 21.31, 11.0, 1),  # both weak per transit: the first search is reused
    ],
)
def test_two_planets_strongest_first_not_aliases(p1, snr1, p2, snr2, searches):
    rng = np.random.default_rng(11)
    t, f = kepler_like(rng)
    t1, t2 = KEPLER_START + 1.3, KEPLER_START + 6.1
    d1, d2 = 0.13, 0.19
    f -= box_dip(t, p1, t1, d1, depth_for_snr(t, p1, t1, d1, 1e-4, snr1))
    f -= box_dip(t, p2, t2, d2, depth_for_snr(t, p2, t2, d2, 1e-4, snr2))
    result = search.run_transit_search(t, f, None, 0, max_signals=3)
    signals = result.signals
    assert len(signals) >= 2
    assert signals[0].period == pytest.approx(p1, rel=1e-3)
    assert signals[1].period == pytest.approx(p2, rel=1e-3)
    assert signals[0].snr > signals[1].snr
    assert signals[1].harmonic_of is None
    assert phase_offset(signals[1].t0, t2, p2) < 0.3 * d2
    # a third, if any, is weak
    assert all(s.snr < 9 for s in signals[2:])
    one_search = search.run_transit_search(t, f, None, 0, max_signals=1).n_boxes
    assert result.n_boxes == searches * one_search


def test_input_validation_and_determinism():
    rng = np.random.default_rng(5)
    t, f = kepler_like(rng, days=120.0)
    period, t0, duration = 6.1, KEPLER_START + 2.0, 0.12
    f -= box_dip(t, period, t0, duration, depth_for_snr(t, period, t0, duration, 1e-4, 15.0))
    clean = search.search_transits(t, f, None, 0, max_signals=1)
    # NaN and inf points are dropped, the order of points does not matter
    t_bad, f_bad = t.copy(), f.copy()
    f_bad[::50] = np.nan
    t_bad[7::97] = np.inf
    order = rng.permutation(t.size)
    dirty = search.search_transits(t_bad[order], f_bad[order], None, 0, max_signals=1)
    assert dirty and dirty[0].period == pytest.approx(period, rel=1e-3)
    again = search.search_transits(t, f, None, 0, max_signals=1)
    assert again == clean  # deterministic, field for field
    # too little data: empty, never an exception
    assert search.search_transits(t[:5], f[:5], None, 0) == []
    assert search.search_transits([], [], None, 0) == []
    assert search.search_transits(t[:400], f[:400], None, 0, min_period=50.0) == []
    assert search.find_single_transits(t[:5], f[:5], None, 0) == []
    assert search.single_transit_periods([]).allowed_periods == ()
    nan = np.full(t.size, np.nan)
    assert search.search_transits(t, nan, None, 0) == []
    assert math.isnan(search.box_fit(t, nan, None, period, t0, duration).depth)


# --------------------------------------------------------------------------- single transits


def _segments_with_single_transits(rng, starts, period, t0, duration, depth, noise=2e-4):
    t = np.concatenate([s + CADENCE * np.arange(int(27.0 / CADENCE)) for s in starts])
    f = 1 + noise * rng.standard_normal(t.size)
    f -= box_dip(t, period, t0, duration, depth)
    return t, f


def test_single_transits_three_segments_determine_the_period():
    rng = np.random.default_rng(3)
    starts = [2458700.0, 2459400.0, 2460200.0]
    period, t0, duration, depth = 100.3, 2458710.0, 0.3, 1e-3
    t, f = _segments_with_single_transits(rng, starts, period, t0, duration, depth)
    f[1234] -= 3e-3  # a lone outlier is not a transit
    mission = np.full(t.size, 2, np.int8)
    events = search.find_single_transits(t, f, None, mission)
    assert len(events) == 3
    for event, k in zip(events, (0, 7, 15), strict=True):
        assert event.t0 == pytest.approx(t0 + k * period, abs=0.02)
        assert event.depth == pytest.approx(depth, rel=0.2) and event.snr > 10
        assert event.duration == pytest.approx(duration, rel=0.3) and event.mission == "TESS"
    solution = search.single_transit_periods(events, observed_time=t, min_period=1.0)
    assert solution.n_events == 3
    assert solution.period == pytest.approx(period, abs=max(4 * solution.period_err, 2e-3))
    assert solution.allowed_periods[0] == solution.period
    # the explicit segments of the series give the same events
    series = StarSeries(np.arange(t.size), t, f, np.full(t.size, np.nan), mission, CADENCE)
    by_slices = search.find_single_transits(t, f, None, mission, segments=segment_slices(series))
    assert [e.t0 for e in by_slices] == pytest.approx([e.t0 for e in events])


def test_single_transits_two_events_allow_the_truth_and_respect_coverage():
    rng = np.random.default_rng(4)
    starts = [2458700.0, 2459400.0]
    period, t0, duration, depth = 100.3, 2458710.0, 0.3, 1e-3
    t, f = _segments_with_single_transits(rng, starts, period, t0, duration, depth)
    events = search.find_single_transits(t, f, None, 2)
    assert len(events) == 2
    solution = search.single_transit_periods(events, observed_time=t, min_period=5.0)
    assert math.isnan(solution.period)
    allowed = np.array(solution.allowed_periods)
    assert np.all(np.diff(allowed) < 0) and allowed.min() >= 5.0
    assert np.min(np.abs(allowed - period)) < 0.01
    # periods that would put a transit inside the observed 27-day segments are excluded
    assert allowed.max() == pytest.approx(702.1, abs=0.1)
    assert np.all(allowed > 13.0)
    unconstrained = search.single_transit_periods(events, min_period=5.0)
    assert len(unconstrained.allowed_periods) > len(allowed)
    # a periodic signal's transits are not single transits
    signal = search.TransitSignal(
        period, 0.0, t0, duration, depth, 0.0, 50.0, 10.0, 0.0, 2, 20, ("TESS",), 1.0
    )
    assert search.find_single_transits(t, f, None, 2, signals=[signal]) == []


# --------------------------------------------------------------------------- real data


def _on_grid(path: Path, mission: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One file averaged onto the cube's grid, median-normalised, running-median detrended."""
    from starskope_dask.read import read_light_curve

    lc = read_light_curve(str(path))
    good = lc.good & np.isfinite(lc.flux)
    t, f = lc.time[good], lc.flux[good] / np.median(lc.flux[good])
    step = np.floor((t - 2454833.0) / CADENCE).astype(np.int64)
    steps, which = np.unique(step, return_inverse=True)
    flux = np.bincount(which, f) / np.bincount(which)
    time = 2454833.0 + (steps + 0.5) * CADENCE
    series = pd.Series(flux, index=pd.to_datetime(time - 2454833.0, unit="D"))
    trend = series.rolling("24h", center=True).median().to_numpy()
    return time, flux / trend, np.full(time.size, mission, np.int8)


def test_hat_p_7_period_from_kepler_and_tess(real_data: Path):
    files = [(real_data / HAT_P_7_KEPLER, 0)] + [(real_data / n, 2) for n in HAT_P_7_TESS]
    missing = [str(p) for p, _ in files if not p.exists()]
    if missing:
        pytest.skip(f"HAT-P-7 files absent: {missing}")
    parts = [_on_grid(path, mission) for path, mission in files]
    t, f, mission = (np.concatenate(column) for column in zip(*parts, strict=True))
    signals = search.search_transits(t, f, None, mission, min_period=1.0, max_period=10.0)
    assert signals
    hat_p_7_b = signals[0]
    assert hat_p_7_b.period == pytest.approx(2.2047354, rel=1e-4)
    assert hat_p_7_b.missions_used == ("Kepler", "TESS")
    assert hat_p_7_b.depth == pytest.approx(0.0067, rel=0.25)  # ≈ (Rp/R⋆)² = 0.0779²
    assert 3.0 < hat_p_7_b.duration * 24 < 4.5  # T14 ≈ 4.0 h
    assert hat_p_7_b.snr > 100
    assert all(s.harmonic_of == 0 or s.snr < hat_p_7_b.snr / 10 for s in signals[1:])
    assert len(glob.glob(str(real_data / "tess" / "*0000000424865156*"))) == 2
