"""Stellar properties: the TIC through a fake MAST backend (cached, offline), catalogue tables,
bad catalogues, and the simulator's catalogue. Nothing here reaches the network."""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from starskope_dask.errors import ArchiveError, CatalogError, CatalogNotFoundError, ConfigError
from starskope_dask.features.stellar import (
    STELLAR_COLUMNS,
    default_catalog_url,
    read_catalog,
    stellar_properties,
)
from starskope_dask.mast import MastClient, MastSettings
from starskope_dask.simulate import RHO_SUN, SimulationConfig, simulate_archive

ARCSEC = 1 / 3600

# A small TIC: TIC rows with KIC cross-IDs where the star is in the Kepler field.
TIC = [
    {
        "ID": "101",
        "KIC": None,
        "ra": 10.0,
        "dec": 5.0,
        "Teff": 5800.0,
        "logg": 4.44,
        "rad": 1.0,
        "mass": 1.0,
        "rho": 1.0,
        "Tmag": 10.1,
        "contratio": 0.01,
    },
    {
        "ID": "102",
        "KIC": None,
        "ra": 11.0,
        "dec": 5.0,
        "Teff": 4500.0,
        "logg": 4.6,
        "rad": 0.7,
        "mass": 0.7,
        "rho": None,
        "Tmag": 11.2,
        "contratio": 0.0,
    },
    {
        "ID": "103",
        "KIC": None,
        "ra": 12.0,
        "dec": 5.0,
        "Teff": None,
        "logg": None,
        "rad": None,
        "mass": None,
        "rho": None,
        "Tmag": 12.3,
        "contratio": None,
    },
    {
        "ID": "201",
        "KIC": "5000001",
        "ra": 290.0,
        "dec": 44.0,
        "Teff": 6100.0,
        "logg": 4.3,
        "rad": 1.3,
        "mass": 1.2,
        "rho": 0.55,
        "Tmag": 12.0,
        "contratio": 0.05,
    },
    {
        "ID": "202",
        "KIC": "5000002",
        "ra": 291.0,
        "dec": 44.0,
        "Teff": 5000.0,
        "logg": 4.5,
        "rad": 0.8,
        "mass": 0.8,
        "rho": 1.56,
        "Tmag": 13.0,
        "contratio": 0.02,
    },
    {
        "ID": "301",
        "KIC": None,
        "ra": 57.0,
        "dec": 14.0,
        "Teff": 5500.0,
        "logg": 4.4,
        "rad": 0.9,
        "mass": 0.9,
        "rho": 1.2,
        "Tmag": 11.5,
        "contratio": 0.1,
    },
]


def star_table() -> pd.DataFrame:
    """Cube-like stars: 3 by TIC, 2 Kepler-only by KIC, 1 K2-only (EPIC, position), 1 lost."""
    rows = [
        (0, -1, -1, 101, 10.0, 5.0),
        (1, -1, -1, 102, 11.0, 5.0),
        (2, -1, -1, 103, 12.0, 5.0),
        (3, 5000001, -1, -1, 290.0, 44.0),
        (4, 5000002, -1, -1, 291.0, 44.0),
        (5, -1, 211000005, -1, 57.0 + 0.5 * ARCSEC, 14.0),
        (6, -1, 211000006, -1, 80.0, -20.0),
    ]
    return pd.DataFrame(rows, columns=["star", "kic", "epic", "tic", "ra", "dec"])


class FakeTic:
    """A MAST backend holding :data:`TIC`; records every call that reaches it."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failures = failures
        self.lock = threading.Lock()

    def _enter(self, kind: str, params: Any) -> None:
        with self.lock:
            self.calls.append((kind, params))
            if self.failures:
                self.failures -= 1
                raise ConnectionError("503 Service Unavailable")

    def tic_rows(self, column: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        self._enter(column, list(ids))
        wanted = {str(i) for i in ids}
        return [dict(r) for r in TIC if str(r[column]) in wanted]

    def tic_cone(self, ra: float, dec: float, radius_arcsec: float) -> list[dict[str, Any]]:
        self._enter("cone", (ra, dec, radius_arcsec))
        out = []
        for row in TIC:
            d = math.hypot((row["ra"] - ra) * math.cos(math.radians(dec)), row["dec"] - dec)
            if d * 3600 <= radius_arcsec:
                out.append({**row, "dstArcSec": d * 3600})
        return out

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"discovery call {name} made by stellar_properties")


def client(tmp_path: Path, backend: Any, **settings: Any) -> MastClient:
    options = {"cache_dir": tmp_path / "cache", "query_batch": 2, "retries": 0, **settings}
    return MastClient(MastSettings(**options), backend, sleep=lambda _: None)


# ---------------------------------------------------------------------------- MAST


def test_mast_batched_by_tic_then_kic_then_cones_and_cached(tmp_path: Path) -> None:
    backend = FakeTic()
    frame = stellar_properties(star_table(), source="mast", mast=client(tmp_path, backend))
    kinds = [k for k, _ in backend.calls]
    assert kinds.count("ID") == 2  # 3 TIC IDs, 2 a call
    assert sorted(p for k, p in backend.calls if k == "ID") == [[101, 102], [103]]
    assert [p for k, p in backend.calls if k == "KIC"] == [[5000001, 5000002]]
    assert kinds.count("cone") == 2  # EPIC-only stars: the TIC has no EPIC column
    assert list(frame.index) == list(range(7)) and frame.index.name == "star"
    assert list(frame.columns[: len(STELLAR_COLUMNS)]) == list(STELLAR_COLUMNS)
    assert frame["stellar_source"].tolist() == [
        "tic",
        "tic",
        "tic",
        "kic",
        "kic",
        "position",
        "missing",
    ]
    assert frame["stellar_tic"].tolist() == [101, 102, 103, 201, 202, 301, -1]
    assert frame.loc[0, "teff"] == 5800.0 and frame.loc[3, "radius"] == 1.3
    assert frame.loc[1, "rho"] == pytest.approx(0.7 / 0.7**3)  # derived from mass and radius
    assert np.isnan(frame.loc[2, "teff"]) and frame.loc[2, "tmag"] == 12.3
    assert frame.loc[5, "contratio"] == 0.1
    assert frame.loc[6, ["teff", "tmag"]].isna().all() and "not in" in frame.loc[6, "stellar_note"]
    assert all(frame[c].dtype == np.float64 for c in STELLAR_COLUMNS)

    # a second run with a new client is answered from the cache, also offline
    again = stellar_properties(
        star_table(), source="mast", mast=client(tmp_path, backend, offline=True)
    )
    assert len(backend.calls) == 5
    pd.testing.assert_frame_equal(frame, again)


def test_mast_offline_without_the_answers(tmp_path: Path) -> None:
    backend = FakeTic()
    offline = client(tmp_path, backend, offline=True)
    with pytest.raises(ArchiveError, match=r"TIC rows of 2 stars by TIC ID.*offline"):
        stellar_properties(star_table(), source="mast", mast=offline)
    frame = stellar_properties(star_table(), source="mast", mast=offline, on_error="nan")
    assert backend.calls == []
    assert set(frame["stellar_source"]) == {"error"}
    assert frame[list(STELLAR_COLUMNS)].isna().all().all()
    assert "not in the MAST cache" in frame.loc[6, "stellar_note"]  # its cone too


def test_mast_failure_raises_naming_the_call_or_gives_nan(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"TIC rows of .* by TIC ID.*503"):
        stellar_properties(star_table(), source="mast", mast=client(tmp_path, FakeTic(99)))
    backend = FakeTic(failures=99)
    frame = stellar_properties(
        star_table(), source="mast", mast=client(tmp_path, backend, concurrency=1), on_error="nan"
    )
    assert len(backend.calls) == 1  # MAST failing after its retries: nothing more asked of it
    assert set(frame["stellar_source"]) == {"error"}
    assert frame["stellar_note"].str.contains("503").all()


# --------------------------------------------------------------------- catalogue tables


def catalog_frame() -> pd.DataFrame:
    frame = pd.DataFrame(TIC)
    frame["EPIC"] = pd.array([None, None, None, None, None, None], dtype="Int64")
    frame["KIC"] = pd.to_numeric(frame["KIC"]).astype("Int64")
    frame["ID"] = frame["ID"].astype("int64")
    extra = pd.DataFrame(
        [
            # an EPIC row, and a row of another star 1" from star 6 (IDs contradict it)
            {"ID": 401, "EPIC": 211000006, "ra": 80.5, "dec": -20.0, "Teff": 3900.0},
            {"ID": 402, "EPIC": 299999999, "ra": 12.0 + ARCSEC, "dec": 5.0, "Teff": 3000.0},
            # a TIC duplicate of 101 flagged by the TIC, listed first: the unflagged one wins
        ]
    )
    dup = pd.DataFrame([{**TIC[0], "ID": 101, "Teff": 1.0, "disposition": "DUPLICATE"}])
    return pd.concat([dup, frame, extra], ignore_index=True)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_catalogue_table_joins_by_tic_kic_epic_position(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tic.{suffix}"
    table = catalog_frame()
    table.to_parquet(path) if suffix == "parquet" else table.to_csv(path, index=False)
    stars = star_table()
    # star 2 by position only: 402 lies on it but is another EPIC star, so 103 (1" off) it is
    stars.loc[2, ["tic", "epic", "ra"]] = [-1, 211000002, 12.0 + ARCSEC]
    stars.loc[6, "ra"] = 80.5
    frame = stellar_properties(stars, source=f"file://{path}")
    assert frame["stellar_source"].tolist() == [
        "tic",
        "tic",
        "position",
        "kic",
        "kic",
        "position",
        "epic",
    ]
    assert frame["stellar_tic"].tolist() == [101, 102, 103, 201, 202, 301, 401]
    assert frame.loc[0, "teff"] == 5800.0  # not the flagged duplicate's
    assert frame.loc[6, "teff"] == 3900.0 and np.isnan(frame.loc[6, "radius"])
    assert frame.attrs["stellar_source"] == f"file://{path}"


def test_catalogue_column_names_are_matched_loosely(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv.gz"
    pd.DataFrame({"TIC": ["TIC 101", "TIC 102"], "TEFF": [5800, 4500], "Rad": [1.0, -1.0]}).to_csv(
        path, index=False
    )
    frame = stellar_properties(star_table().head(3), source=str(path))
    assert frame["stellar_source"].tolist() == ["tic", "tic", "missing"]
    assert frame["teff"].tolist()[:2] == [5800.0, 4500.0]
    assert np.isnan(frame.loc[1, "radius"])  # a negative radius is no measurement


def test_bad_catalogues_are_typed_errors_naming_the_url(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(CatalogNotFoundError, match=r"nowhere\.parquet.*no such file") as caught:
        read_catalog(str(missing))
    assert isinstance(caught.value, FileNotFoundError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(CatalogError, match=r"garbage\.parquet: cannot be read as Parquet"):
        read_catalog(str(garbage))
    no_ids = tmp_path / "no_ids.csv"
    pd.DataFrame({"name": ["a"], "Teff": [5000]}).to_csv(no_ids, index=False)
    with pytest.raises(CatalogError, match=r"no_ids\.csv: has no ID column.*name, Teff"):
        read_catalog(str(no_ids))
    no_props = tmp_path / "no_props.csv"
    pd.DataFrame({"ID": [1], "colour": [0.3]}).to_csv(no_props, index=False)
    with pytest.raises(CatalogError, match="none of the property columns"):
        read_catalog(str(no_props))
    with pytest.raises(CatalogError, match="ftp"):
        read_catalog("ftp://example.org/tic.csv")
    frame = stellar_properties(star_table(), source=str(no_ids), on_error="nan")
    assert set(frame["stellar_source"]) == {"error"}
    assert frame["stellar_note"].str.contains("no ID column").all()


def test_catalogue_on_a_local_s3_server(tmp_path: Path, s3: Any) -> None:
    import fsspec

    buffer = catalog_frame().to_parquet()
    fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))
    fs.pipe_file("stpubdata/stellar-test/catalog/tic.parquet", buffer)
    url = default_catalog_url("s3://stpubdata/stellar-test/")
    assert url == "s3://stpubdata/stellar-test/catalog/tic.parquet"
    frame = stellar_properties(star_table(), source=url, storage_options=s3.storage_options())
    assert frame["stellar_tic"].tolist()[:5] == [101, 102, 103, 201, 202]
    with pytest.raises(CatalogNotFoundError, match=r"s3://stpubdata/none\.parquet"):
        read_catalog("s3://stpubdata/none.parquet", s3.storage_options())


def test_none_and_bad_arguments() -> None:
    frame = stellar_properties(star_table(), source="none")
    assert set(frame["stellar_source"]) == {"none"}
    assert frame[list(STELLAR_COLUMNS)].isna().all().all()
    assert (frame["stellar_tic"] == -1).all()
    with pytest.raises(ConfigError, match="lacks the columns epic"):
        stellar_properties(star_table().drop(columns="epic"), source="none")
    with pytest.raises(ConfigError, match="on_error"):
        stellar_properties(star_table(), source="none", on_error="ignore")  # type: ignore[arg-type]
    empty = stellar_properties(star_table().head(0), source="none")
    assert empty.empty and list(empty.columns[:7]) == list(STELLAR_COLUMNS)


# ------------------------------------------------------------------------ the simulator


def test_simulator_writes_a_matching_catalogue(tmp_path: Path) -> None:
    config = SimulationConfig(n_stars=9, seed=3, segment_days=0.1, max_segments=1)
    result = simulate_archive(str(tmp_path / "a"), config)
    assert result.catalog_url == default_catalog_url(str(tmp_path / "a"))
    catalog = pd.read_parquet(result.catalog_url)
    truth = pd.read_parquet(tmp_path / "a/truth/stars.parquet")
    assert catalog["ID"].is_unique and len(catalog) == len(truth) == 9
    for column, tic_name in (("kic", "KIC"), ("epic", "EPIC")):
        pd.testing.assert_series_equal(
            catalog[tic_name], truth[column].astype("Int64"), check_names=False
        )
    seen = truth["tic"].notna()
    assert (catalog["ID"][seen] == truth["tic"][seen]).all()
    assert np.allclose(catalog[["ra", "dec"]], truth[["ra", "dec"]], rtol=0, atol=0)
    assert catalog["Teff"].between(3500, 8000).all() and catalog["logg"].between(3.8, 4.8).all()
    assert catalog["rad"].between(0.6, 2).all() and catalog["mass"].between(0.6, 1.4).all()
    assert catalog["contratio"].between(0, 0.02).all()
    assert np.allclose(catalog["Tmag"], truth["mag"], atol=5e-4)
    # the density the transit durations were made with: a/Rs = (G rho P^2 / 3 pi)^(1/3)
    transits = truth[truth["period"].notna()]
    assert len(transits) >= 1
    a, period = transits["a_over_rs"], transits["period"] * 86400
    rho = 3 * math.pi * a**3 / (6.674e-8 * period**2) / RHO_SUN
    assert np.allclose(catalog["rho"][transits.index], rho, rtol=1e-4)
    assert np.allclose(catalog["rho"], catalog["mass"] / catalog["rad"] ** 3, rtol=1e-3)

    # the demo path: every star matched, through the IDs the cube holds
    stars = truth.rename(columns={"index": "star"})[["star", "kic", "epic", "tic", "ra", "dec"]]
    props = stellar_properties(stars.fillna(-1), source=result.catalog_url)
    homes = truth["home"].map({"kepler": "kic", "k2": "epic", "tess": "tic"})
    expected = np.where(seen, "tic", homes)
    assert props["stellar_source"].tolist() == list(expected)
    assert np.allclose(props["rho"], catalog["rho"])

    again = simulate_archive(str(tmp_path / "b"), config, processes=2)
    assert Path(again.catalog_url).read_bytes() == Path(result.catalog_url).read_bytes()


def test_astroquery_backend_asks_the_tic_and_keeps_its_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from astropy.table import MaskedColumn, Table
    from astroquery.mast import Catalogs

    from starskope_dask.mast import AstroqueryBackend

    table = Table(
        {
            "ID": ["101", "201"],  # the TIC answers IDs as strings
            "KIC": MaskedColumn(["", "5000001"], mask=[True, False]),
            "Teff": MaskedColumn([5800.0, 0.0], mask=[False, True]),
            "Tmag": [10.1, 12.0],
            "Vmag": [10.5, 12.4],
        }
    )
    asked: list[tuple[str, dict[str, Any]]] = []

    def criteria(**kwargs: Any) -> Table:
        asked.append(("criteria", kwargs))
        return table

    def region(coordinates: Any, **kwargs: Any) -> Table:
        asked.append(("region", {"ra": coordinates.ra.deg, **kwargs}))
        return table

    monkeypatch.setattr(Catalogs, "query_criteria", criteria)
    monkeypatch.setattr(Catalogs, "query_region", region)
    rows = AstroqueryBackend().tic_rows("KIC", [5000001, 5000002])
    assert asked[0] == ("criteria", {"catalog": "TIC", "KIC": ["5000001", "5000002"]})
    assert rows == [
        {"ID": "101", "KIC": None, "Tmag": 10.1, "Teff": 5800.0},
        {"ID": "201", "KIC": "5000001", "Tmag": 12.0, "Teff": None},
    ]
    AstroqueryBackend().tic_cone(57.0, 14.0, 2.0)
    assert asked[1][1]["catalog"] == "TIC" and asked[1][1]["radius"].to_value("arcsec") == 2.0
    frame = read_catalog_rows(rows)
    assert frame["ID"].tolist() == [101, 201] and frame["KIC"].tolist() == [-1, 5000001]


def read_catalog_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    from starskope_dask.features.stellar import normalise_catalog

    return normalise_catalog(pd.DataFrame(rows), "test")
