"""The features stage end to end: real stars (published periods), the simulated archive
(injected planets recovered, eclipsing binaries told apart), resume and incremental runs,
bad input. Ingest and features run on a LocalCluster of two worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from starskope_dask.config import load_features_config, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.errors import ConfigError, NotAStoreError, StoreError
from starskope_dask.features.layout import STATUS_OK, STATUS_TOO_LITTLE_DATA
from starskope_dask.features.pipeline import run_with_client
from starskope_dask.pipeline import run_with_client as ingest
from starskope_dask.store import FEATURES_FORMAT, claim_store

from .conftest import HAT_P_7_KEPLER, HAT_P_7_TESS, two_worker_client

#: Published periods (days) of the TESS planet hosts in the real data (README).
TESS_PLANETS = {
    25155310: 3.2888,  # WASP-126 b
    38846515: 2.8494,  # WASP-100 b
    149603524: 4.4119,  # WASP-62 b
    231663901: 1.4304,  # WASP-46 b
    231670397: 4.0873,  # WASP-73 b
    281459670: 3.1744,  # TOI-110
}
HAT_P_7_PERIOD = 2.2047354  # Kepler-2 b (Esteves et al. 2015: 2.204735417 d)
QUIET_TESS = 358108509
QUIET_KEPLER = (7660594, 8374877)
QUIET_K2 = ("ktwo211436265-c05_llc.fits", "ktwo211495446-c05_llc.fits")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with two_worker_client() as c:
        yield c


def _ingest_folder(files: list[Path], folder: Path, client: object, star_chunk: int = 4) -> str:
    """Link ``files`` into ``folder``, list it, ingest it; return the cube's path."""
    archive = folder / "archive"
    archive.mkdir(parents=True)
    for path in files:
        (archive / path.name).symlink_to(path)
    manifest = str(folder / "manifest.parquet")
    write_manifest(list_archive(str(archive)), manifest)
    store = str(folder / "cube.zarr")
    summary = ingest(
        load_ingest_config(manifest, store, star_chunk=star_chunk), client, progress=False
    )
    assert summary.n_failed == 0
    return store


@pytest.fixture(scope="module")
def real_features(
    real_data: Path, client: object, tmp_path_factory: pytest.TempPathFactory
) -> xr.Dataset:
    files = sorted((real_data / "tess").glob("*.fits"))
    files.append(real_data / HAT_P_7_KEPLER)
    for kic in QUIET_KEPLER:
        files.extend(sorted((real_data / "kepler").glob(f"kplr{kic:09d}-*_llc.fits")))
    files.extend(real_data / "k2" / name for name in QUIET_K2)
    folder = tmp_path_factory.mktemp("real-features")
    store = _ingest_folder(files, folder, client)
    out = str(folder / "features.zarr")
    config = load_features_config(store, out, stellar="none")
    summary = run_with_client(config, client, progress=False)
    assert summary.n_stars == len(TESS_PLANETS) + 1 + 1 + len(QUIET_KEPLER) + len(QUIET_K2)
    return xr.open_zarr(out, zarr_format=3)


def test_real_catalogue_labels_join_the_real_stars(
    real_features: xr.Dataset, real_data: Path
) -> None:
    """The NASA Exoplanet Archive tables label the detected signals of the real stars by ID and
    period: the six TESS hosts through the TOI table, HAT-P-7 (Kepler + TESS as one star)
    through the KOI table and, by its TIC, the TOI table; the quiet stars get no label.
    """
    from starskope_dask.train.dataset import load_examples
    from starskope_dask.train.labels import load_labels

    examples = load_examples(real_features)
    toi = load_labels(f"toi:{real_data / 'catalogs' / 'toi.csv'}", examples).table
    koi = load_labels(f"koi:{real_data / 'catalogs' / 'koi_cumulative.csv'}", examples).table
    planets = toi[toi["label"] == "planet"].merge(examples, on=["star", "signal"])
    for tic, period in TESS_PLANETS.items():
        mine = planets[planets["tic"] == tic]
        assert len(mine) == 1 and abs(mine["period"].iloc[0] / period - 1) < 1e-3, tic
    hat_p_7 = _row(real_features, "kic", 10666592)
    for table in (toi, koi):
        row = table[(table["star"] == hat_p_7) & (table["label"] == "planet")]
        assert len(row) == 1
    quiet = {_row(real_features, "tic", QUIET_TESS)} | {
        _row(real_features, "kic", kic) for kic in QUIET_KEPLER
    }
    assert not set(toi["star"]) & quiet and not set(koi["star"]) & quiet


def _row(features: xr.Dataset, catalogue: str, number: int) -> int:
    return int(np.flatnonzero(features[catalogue].values == number)[0])


def test_schema(real_features: xr.Dataset) -> None:
    ds = real_features
    for name in ("kic", "epic", "tic", "ra", "dec"):
        assert ds[name].dims == ("star",)
    for name in (
        "period",
        "t0",
        "duration",
        "depth",
        "snr",
        "n_transits",
        "missions_used",
        "odd_even_ratio",
        "secondary_depth",
    ):
        assert ds[name].dims == ("star", "signal")
    assert ds["global_view"].shape[1:] == (3, 2001)
    assert ds["local_view"].shape[1:] == (3, 201)
    assert ds["power_spectrum"].dims == ("star", "frequency")
    assert ds["spectrogram"].dims == ("star", "spectrogram_time", "spectrogram_band")
    assert ds.attrs["parameters_hash"] and json.loads(ds.attrs["parameters"])["max_signals"] == 3
    assert (ds["status"].values == STATUS_OK).all()


@pytest.mark.parametrize("tic", sorted(TESS_PLANETS))
def test_tess_planets_published_period(real_features: xr.Dataset, tic: int) -> None:
    row = _row(real_features, "tic", tic)
    period = float(real_features["period"].values[row, 0])
    expected = TESS_PLANETS[tic]
    assert abs(period - expected) / expected < 1e-3, (tic, period)
    assert float(real_features["snr"].values[row, 0]) > 10
    assert int(real_features["missions_used"].values[row, 0]) == 4  # TESS


def test_quiet_stars_have_no_signal(real_features: xr.Dataset) -> None:
    rows = [_row(real_features, "tic", QUIET_TESS)]
    rows += [_row(real_features, "kic", kic) for kic in QUIET_KEPLER]
    rows += [_row(real_features, "epic", int(name[4:13])) for name in QUIET_K2]
    false_alarms = {
        row: real_features["period"].values[row][np.isfinite(real_features["period"].values[row])]
        for row in rows
    }
    assert all(len(v) == 0 for v in false_alarms.values()), false_alarms


def test_hat_p_7_combined_kepler_and_tess(real_features: xr.Dataset, real_data: Path) -> None:
    from starskope_dask.read import read_light_curve

    row = _row(real_features, "kic", 10666592)
    assert int(real_features["tic"].values[row]) == 424865156
    period = float(real_features["period"].values[row, 0])
    t0 = float(real_features["t0"].values[row, 0])
    assert abs(period - HAT_P_7_PERIOD) / HAT_P_7_PERIOD < 1e-4, period
    assert int(real_features["missions_used"].values[row, 0]) == 1 | 4  # Kepler and TESS
    # the predicted TESS transits fall within 10 minutes of the observed ones: the offset of
    # each sector's transits (a box scan over ±30 min of the stacked transits), and of each
    # transit on its own
    for name in HAT_P_7_TESS:
        lc = read_light_curve(str(real_data / name)).good_only()
        time, flux = lc.time, lc.flux / np.nanmedian(lc.flux)
        n = np.round((time - t0) / period)
        predicted = np.unique(t0 + n * period)
        predicted = predicted[(predicted > time[0] + 0.2) & (predicted < time[-1] - 0.2)]
        shifts = np.linspace(-30, 30, 121) / 1440
        half = 0.06  # inner part of the 4-hour transit
        phase = (time - t0 + 0.5 * period) % period - 0.5 * period
        stacked = [np.nanmean(flux[np.abs(phase - s) < half]) for s in shifts]
        assert abs(shifts[int(np.argmin(stacked))] * 1440) < 10
        offsets = []
        for mid in predicted:
            depth = [np.nanmean(flux[np.abs(time - mid - s) < half]) for s in shifts]
            if np.isfinite(depth).all():
                offsets.append(shifts[int(np.argmin(depth))] * 1440)
        assert len(offsets) >= 6
        assert np.median(np.abs(offsets)) < 10, offsets


def test_views_of_a_real_planet(real_features: xr.Dataset) -> None:
    row = _row(real_features, "tic", 25155310)
    local = real_features["local_view"].values[row, 0]
    centre = local.size // 2
    assert local[centre - 3 : centre + 4].min() == pytest.approx(-1, abs=0.3)
    assert abs(np.nanmedian(local[:30])) < 0.1
    ratio = float(real_features["odd_even_ratio"].values[row, 0])
    assert 0.7 < ratio < 1.3


# ----------------------------------------------------------------- simulated archive


@pytest.fixture(scope="module")
def sim_run(
    sim_archive: Path, client: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("sim-features")
    manifest = str(folder / "manifest.parquet")
    write_manifest(list_archive(str(sim_archive)), manifest)
    store = str(folder / "cube.zarr")
    ingest(load_ingest_config(manifest, store, star_chunk=4), client, progress=False)
    out = str(folder / "features.zarr")
    run_with_client(
        load_features_config(store, out, stellar=str(sim_archive / "catalog" / "tic.parquet")),
        client,
        progress=False,
    )
    return store, out


def test_simulated_planets_recovered(sim_run: tuple[str, str], sim_archive: Path) -> None:
    """Every injected planet the data can show is found: its box SNR at the true ephemeris in
    the star's final detrended flux is ≥ 10 ⇒ the search reports its period within 0.1 %.
    (The simulator's expected SNR ignores pulsation residuals and red noise; the fraction
    recovered at expected SNR ≥ 12 over 300 stars is measured by jobs/sim_recovery.py.)"""
    from starskope_dask.config import FeaturesConfig
    from starskope_dask.features import search
    from starskope_dask.features.compute import analyse_star
    from starskope_dask.features.series import star_series
    from starskope_dask.store import open_cube

    store, out = sim_run
    features = xr.open_zarr(out, zarr_format=3)
    cube = open_cube(store)
    truth = pd.read_parquet(sim_archive / "truth" / "stars.parquet")
    planets = truth[truth["label"] == "planet"]
    detectable = found = 0
    for _, star in planets.iterrows():
        row = _sim_row(features, star)
        block = cube.isel(star=row)
        series = star_series(
            block["flux"].values, block["flux_err"].values, cube["time"].values,
            float(cube.attrs["grid_cadence_days"]),
        )  # fmt: skip
        analysis = analyse_star(series, FeaturesConfig(stellar="none"))
        keep = analysis.clean
        fit = search.box_fit(
            series.time[keep], analysis.detrended.flux[keep], series.flux_err[keep],
            star["period"], star["epoch"], star["duration_hours"] / 24,
        )  # fmt: skip
        if fit.snr >= 10 and fit.n_transits >= 2:
            detectable += 1
            periods = features["period"].values[row]
            found += bool(np.any(np.abs(periods / star["period"] - 1) < 1e-3))
    assert detectable >= 1
    assert found == detectable, (found, detectable)
    # stellar properties joined from the simulator's catalogue
    assert np.isfinite(features["teff"].values).all()


def _sim_row(features: xr.Dataset, star: pd.Series) -> int:
    for name in ("kic", "epic", "tic"):
        value = star[name]
        if pd.notna(value) and value:
            hits = np.flatnonzero(features[name].values == int(value))
            if hits.size:
                return int(hits[0])
    raise AssertionError(f"simulated star {star['index']} is not in the features")


def test_rerun_skips_and_subset(sim_run: tuple[str, str], client: object) -> None:
    store, out = sim_run
    again = run_with_client(
        load_features_config(store, out, stellar="none"), client, progress=False
    )
    # a different stellar source is a different parameter set: everything again
    assert again.n_chunks_computed > 0
    rerun = run_with_client(
        load_features_config(store, out, stellar="none"), client, progress=False
    )
    assert rerun.n_chunks_computed == 0 and rerun.n_chunks_skipped == again.n_chunks_computed


def test_star_selection_and_unknown_star(
    sim_run: tuple[str, str], client: object, tmp_path: Path
) -> None:
    store, _ = sim_run
    out = str(tmp_path / "some.zarr")
    summary = run_with_client(
        load_features_config(store, out, stars=("0", "5"), stellar="none"), client, progress=False
    )
    assert summary.n_stars_computed == 2
    ds = xr.open_zarr(out, zarr_format=3)
    computed = np.flatnonzero(ds["status"].values >= 0).tolist()
    assert computed == [0, 5]
    with pytest.raises(ConfigError, match=r"tic:1.*not in the cube"):
        run_with_client(
            load_features_config(store, out, stars=("tic:1",), stellar="none"),
            client,
            progress=False,
        )


def test_too_little_data_is_a_reason_not_a_crash(
    sim_run: tuple[str, str], client: object, tmp_path: Path
) -> None:
    store, _ = sim_run
    out = str(tmp_path / "strict.zarr")
    config = load_features_config(store, out, stellar="none", min_points=10**6, stars=("1",))
    summary = run_with_client(config, client, progress=False)
    assert summary.n_stars_without_features == 1
    assert "too little data" in summary.reasons[0]["reason"]
    ds = xr.open_zarr(out, zarr_format=3)
    assert int(ds["status"].values[1]) == STATUS_TOO_LITTLE_DATA
    assert np.isnan(ds["period"].values[1]).all()


def test_refuses_foreign_targets(sim_run: tuple[str, str], client: object, tmp_path: Path) -> None:
    store, out = sim_run
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(NotAStoreError, match="not empty"):
        run_with_client(
            load_features_config(store, str(foreign), stellar="none"), client, progress=False
        )
    assert (foreign / "chapter1.tex").read_text() == "precious"
    with pytest.raises(NotAStoreError, match="is a cube, not a features store"):
        claim_store(store, store_format=FEATURES_FORMAT)
    with pytest.raises(NotAStoreError, match="is a features store, not a cube"):
        claim_store(out)
    with pytest.raises(StoreError, match="no starskope cube"):
        run_with_client(
            load_features_config(str(tmp_path / "nothing"), str(tmp_path / "f"), stellar="none"),
            client,
            progress=False,
        )


# ----------------------------------------------------------------------------- CLI


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from starskope_dask.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_features_and_plot(
    sim_run: tuple[str, str],
    client: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _ = sim_run
    out = str(tmp_path / "cli.zarr")
    address = client.scheduler.address  # type: ignore[attr-defined]
    code, text, err = _cli(
        capsys, "features", store, "--out", out, "--stars", "0",
        "--stellar", "none", "--scheduler", address, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "1 computed" in text
    png = tmp_path / "star.png"
    code, text, err = _cli(capsys, "plot", out, "--star", "0", "--out", str(png))
    assert code == 0, err
    assert png.stat().st_size > 20_000 and text.strip() == str(png)
    # an unknown star, a bad value, a foreign target: one line each, documented exit codes
    code, _, err = _cli(capsys, "plot", out, "--star", "kic:1")
    assert code == 2 and "kic:1" in err and "not in the cube" in err
    monkeypatch.setenv("DASK_STARSKOPE__FEATURES__NPERSEG", "3")
    code, _, err = _cli(capsys, "features", store, "--out", out, "--scheduler", address)
    assert code == 2 and "DASK_STARSKOPE__FEATURES__NPERSEG" in err
    monkeypatch.delenv("DASK_STARSKOPE__FEATURES__NPERSEG")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("mine")
    code, _, err = _cli(capsys, "features", store, "--out", str(foreign), "--scheduler", address)
    assert code == 3 and "NotAStoreError" in err
    assert (foreign / "a.txt").read_text() == "mine"


def test_new_products_recompute_only_their_chunks(
    sim_archive: Path, client: object, tmp_path: Path
) -> None:
    from starskope_dask.store import read_chunk_records

    full = list_archive(str(sim_archive))
    # the first manifest lacks a star seen by TESS alone: the second adds a star to the cube
    truth = pd.read_parquet(sim_archive / "truth" / "stars.parquet")
    tess_only = truth.loc[truth["missions"] == "TESS", "tic"].max()
    later = (full["tic"] == tess_only).fillna(False).astype(bool)
    first = full[~later]
    m1, m2 = str(tmp_path / "m1.parquet"), str(tmp_path / "m2.parquet")
    write_manifest(first, m1)
    write_manifest(full, m2)
    store, out = str(tmp_path / "cube.zarr"), str(tmp_path / "features.zarr")
    ingest(load_ingest_config(m1, store, star_chunk=4), client, progress=False)
    config = load_features_config(store, out, stellar="none")
    run_with_client(config, client, progress=False)
    before = read_chunk_records(store)
    n_before = xr.open_zarr(store, zarr_format=3).sizes["star"]
    ingest(load_ingest_config(m2, store, star_chunk=4), client, progress=False)
    after = read_chunk_records(store)
    changed = {c for c in after if after[c]["products"] != before.get(c, {}).get("products")}
    assert 0 < len(changed) < len(after)
    two = run_with_client(config, client, progress=False)
    assert two.n_chunks_computed == len(changed)
    assert two.n_chunks_skipped == len(after) - len(changed)
    records = read_chunk_records(out)
    for chunk in changed:
        assert records[chunk]["products"] == after[chunk]["products"]
    # the features store follows the cube's star dim (it grows when the cube gains stars)
    features, cube = xr.open_zarr(out, zarr_format=3), xr.open_zarr(store, zarr_format=3)
    assert features.sizes["star"] == cube.sizes["star"] == n_before + 1
    np.testing.assert_array_equal(features["tic"].values, cube["tic"].values)


def test_user_ephemerides(
    sim_run: tuple[str, str], sim_archive: Path, client: object, tmp_path: Path
) -> None:
    store, _ = sim_run
    truth = pd.read_parquet(sim_archive / "truth" / "stars.parquet")
    planet = truth[(truth["label"] == "planet") & truth["tic"].notna()].iloc[0]
    table = tmp_path / "ephemerides.csv"
    pd.DataFrame(
        {
            "tic": [int(planet["tic"]), 1],  # the second names no star of the cube: a warning
            "period": [planet["period"], 3.0],
            "t0": [planet["epoch"], 2458000.0],
            "duration": [planet["duration_hours"] / 24, 0.1],
        }
    ).to_csv(table, index=False)
    out = str(tmp_path / "given.zarr")
    config = load_features_config(
        store, out, stellar="none", ephemerides=str(table), stars=(f"tic:{int(planet['tic'])}",)
    )
    run_with_client(config, client, progress=False)
    ds = xr.open_zarr(out, zarr_format=3)
    row = int(np.flatnonzero(ds["tic"].values == int(planet["tic"]))[0])
    assert float(ds["period"].values[row, 0]) == pytest.approx(planet["period"])
    assert int(ds["n_signals"].values[row]) == 1
    assert np.isfinite(ds["local_view"].values[row, 0]).any()
    # a table without the columns is a config error naming it
    bad = tmp_path / "bad.csv"
    bad.write_text("name,p\nx,1\n")
    with pytest.raises(ConfigError, match=r"bad\.csv.*star column"):
        run_with_client(
            load_features_config(
                store, str(tmp_path / "b.zarr"), stellar="none", ephemerides=str(bad)
            ),
            client,
            progress=False,
        )
