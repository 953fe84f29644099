"""The simulated archive: MAST format, real layout, truth recovered, deterministic."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.timeseries import BoxLeastSquares

from starskope_dask.discover import parse_product_key
from starskope_dask.errors import SimulationError
from starskope_dask.read import read_light_curve
from starskope_dask.simulate import SimulationConfig, simulate_archive


def _products(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "truth/products.parquet")


def test_files_read_by_lightkurve_astropy_and_our_reader(sim_archive: Path) -> None:
    warnings.simplefilter("ignore")
    import lightkurve as lk

    products = _products(sim_archive)
    truth = pd.read_parquet(sim_archive / "truth/stars.parquet").set_index("index")
    assert set(products["mission"]) == {"Kepler", "K2", "TESS"}
    for row in products.groupby("mission").head(2).itertuples():
        path = sim_archive / row.key
        theirs = lk.read(str(path))
        ours = read_light_curve(str(path))
        assert ours.mission == row.mission
        star = truth.loc[row.star]
        expected_id = {"Kepler": star.kic, "K2": star.epic, "TESS": star.tic}[row.mission]
        assert {"Kepler": ours.ids.kic, "K2": ours.ids.epic, "TESS": ours.ids.tic}[
            row.mission
        ] == expected_id
        assert abs(ours.ra - star.ra) < 1e-6 and abs(ours.dec - star.dec) < 1e-6
        assert theirs.meta["MISSION" if row.mission != "TESS" else "TELESCOP"] in (
            "Kepler",
            "K2",
            "TESS",
        )
        offset = 2457000 if row.mission == "TESS" else 2454833
        keep = ((ours.quality & ours.provenance.quality_bitmask) == 0) & np.isfinite(ours.time)
        np.testing.assert_allclose(ours.time[keep], theirs.time.value + offset, atol=1e-7, rtol=0)
        with fits.open(path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "LIGHTCURVE", "APERTURE"]
            assert hdul[1].header["TIMESYS"] == "TDB"
        # the key follows the public layout and names the same star
        facts = parse_product_key(row.key)
        assert facts is not None and facts["segment"] == ours.segment


def test_bls_recovers_a_simulated_planet(tmp_path: Path) -> None:
    config = SimulationConfig(
        n_stars=40,
        seed=5,
        missions=("kepler",),
        planet_fraction=1.0,
        eb_fraction=0.0,
        max_segments=3,
    )
    simulate_archive(str(tmp_path), config, processes=2)
    truth = pd.read_parquet(tmp_path / "truth/stars.parquet")
    star = truth.sort_values("expected_snr").iloc[-4]  # strong, not the strongest
    assert star.expected_snr > 20
    products = _products(tmp_path)
    time, flux = [], []
    for key in products[products["star"] == star["index"]]["key"]:
        lc = read_light_curve(str(tmp_path / key)).good_only()
        time.append(lc.time)
        flux.append(lc.flux / np.median(lc.flux))
    t, f = np.concatenate(time), np.concatenate(flux)
    periods = np.exp(np.linspace(np.log(0.7), np.log(13), 20000))
    result = BoxLeastSquares(t, f).power(periods, star.duration_hours / 24 * 0.8)
    best = periods[np.argmax(result.power)]
    ratios = best / star.period
    assert min(abs(ratios - k) for k in (0.5, 1.0, 2.0)) < 0.01, (best, star.period)


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    config = SimulationConfig(n_stars=6, seed=42, segment_days=5)

    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.fits"))
        }

    simulate_archive(str(tmp_path / "a"), config, processes=1)
    simulate_archive(str(tmp_path / "b"), config, processes=2)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert len(digest(tmp_path / "a")) >= 6
    simulate_archive(str(tmp_path / "c"), SimulationConfig(n_stars=6, seed=43, segment_days=5))
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_multi_mission_stars_share_coordinates(sim_archive: Path) -> None:
    truth = pd.read_parquet(sim_archive / "truth/stars.parquet")
    multi = truth[truth["missions"].str.contains(",")]
    assert len(multi) >= 1
    products = _products(sim_archive)
    for star in multi["index"]:
        rows = products[products["star"] == star]
        positions = {
            (read_light_curve(str(sim_archive / k)).ra, read_light_curve(str(sim_archive / k)).dec)
            for k in rows["key"]
        }
        assert len(positions) == 1


def test_bad_parameters() -> None:
    with pytest.raises(SimulationError, match="missions"):
        SimulationConfig(missions=("hubble",))
    with pytest.raises(SimulationError, match="stars"):
        SimulationConfig(n_stars=0)
