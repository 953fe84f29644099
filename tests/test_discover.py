"""Discovery, fully offline: recorded MAST answers, the real K2 cloud URIs, a local S3 server."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from starskope_dask.cli import main
from starskope_dask.discover import (
    discover,
    discover_mast,
    layout_key,
    parse_target,
    product_type_of,
    read_manifest,
)
from starskope_dask.errors import ArchiveError, ConfigError
from starskope_dask.mast import MastClient, MastSettings

RECORDINGS = Path(__file__).resolve().parent / "data" / "mast"
WITH_HLSP = ("kepler-lc", "kepler-sc", "k2-lc", "tess-spoc-2min", "hlsp")


class NoNetwork:
    """A backend that fails the test if anything reaches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"MAST was called ({name}) although the answer is recorded")


def replay(tmp_path: Path | None = None) -> MastClient:
    return MastClient(MastSettings(cache_dir=RECORDINGS, offline=True), NoNetwork())  # type: ignore[arg-type]


# ------------------------------------------------------------------------ pure parts


def test_layout_matches_the_real_k2_cloud_uris(real_data: Path) -> None:
    text = (real_data / "cloud-uris" / "k2_target_uris.txt").read_text()
    uris = [part.strip(" '\n[],") for part in text.split(",")]
    uris = [u for u in uris if u.startswith("s3://stpubdata/k2/")]
    assert len(uris) > 50
    for uri in uris:
        assert f"s3://stpubdata/{layout_key(uri)}" == uri
        assert product_type_of(uri) == "k2-lc"


def test_layout_of_kepler_and_tess_names() -> None:
    assert layout_key("kplr010666592-2009131110544_slc.fits") == (
        "kepler/public/lightcurves/0106/010666592/kplr010666592-2009131110544_slc.fits"
    )
    assert layout_key("tess2019198215352-s0014-0000000424865156-0150-s_lc.fits") == (
        "tess/public/tid/s0014/0000/0004/2486/5156/"
        "tess2019198215352-s0014-0000000424865156-0150-s_lc.fits"
    )
    assert layout_key("tess2019198215352-s0014-0000000424865156-0150-s_tp.fits") is None
    assert product_type_of("hlsp_k2sc_k2_llc_211117077-c04_kepler_v2_lc.fits") == "hlsp-k2sc"
    assert product_type_of("kplr010666592-2009166043257_lpd-targ.fits.gz") is None


def test_targets_parse() -> None:
    assert parse_target("KIC 10666592").mission == "Kepler"
    assert parse_target("epic 211117077").number == 211117077
    cone = parse_target("292.247, 47.97, 5")
    assert (cone.kind, cone.ra, cone.dec, cone.radius_arcsec) == ("cone", 292.247, 47.97, 5.0)
    assert parse_target("hosts:K2").mission == "K2"
    assert parse_target("HAT-P-7").kind == "name"
    with pytest.raises(ConfigError, match="RA must be"):
        parse_target("400,10")
    with pytest.raises(ConfigError, match="unknown product"):
        discover(["KIC 1"], products=["kepler-tpf"])


# ------------------------------------------------------------- MAST, replayed offline


def test_a_name_through_mast_replayed_offline() -> None:
    client = replay()
    frame, warnings = discover_mast([parse_target("HAT-P-7")], client)
    assert warnings == []
    assert client.calls == {}  # every answer came from the recordings
    assert list(frame["product_type"]) == [
        "kepler-sc",
        "kepler-lc",
        "kepler-lc",
        "tess-spoc-2min",
        "tess-spoc-2min",
    ]  # target pixel files, DV reports dropped; the repeated product listed once
    assert set(frame["kic"].dropna()) == {10666592} and set(frame["tic"].dropna()) == {424865156}
    assert (frame["target"] == "HAT-P-7").all() and (frame["source"] == "mast").all()
    assert frame["ra"].between(292.2, 292.3).all()
    first = frame.iloc[0]
    assert first["s3_uri"] == (
        "s3://stpubdata/kepler/public/lightcurves/0106/010666592/"
        "kplr010666592-2009131110544_slc.fits"
    )
    assert first["https_url"].startswith("https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:")
    assert int(first["size"]) == 1457280


def test_ids_in_one_batched_query_and_hlsps_by_position() -> None:
    client = replay()
    ids = [parse_target(t) for t in ("KIC 2556081", "EPIC 211117077", "TIC 25155310")]
    # mission products only here: HLSPs by catalogue ID are tested in test_hlsp.py (their
    # MAST answers are recorded there); this replay holds the mission collections' answers
    frame, warnings = discover_mast(ids, client, products=WITH_HLSP[:-1])
    assert warnings == []
    assert sorted(frame["target"].unique()) == ["EPIC 211117077", "KIC 2556081", "TIC 25155310"]
    assert len(frame) == 4
    cones = [parse_target("57.5,22.1,5"), parse_target("61.2,-69.1")]
    frame, _ = discover_mast(cones, client, products=WITH_HLSP)
    hlsp = frame[frame["product_type"].str.startswith("hlsp-")]
    assert sorted(hlsp["product_type"]) == ["hlsp-k2sc", "hlsp-tess-data-alerts"]
    assert set(hlsp["s3_uri"].str.slice(0, 25)) == {"s3://stpubdata/mast/hlsp/"}
    assert hlsp.set_index("product_type").loc["hlsp-k2sc", "epic"] == 211117077


def test_planet_hosts_from_the_exoplanet_archive() -> None:
    frame, warnings = discover_mast([parse_target("hosts:k2")], replay())
    assert warnings == []
    assert sorted(frame["epic"].dropna().astype(int)) == [201367065, 211117077]
    assert frame["target"].str.startswith("hosts:k2:EPIC ").all()


def test_an_unknown_target_warns_and_the_others_still_land() -> None:
    targets = [parse_target("HAT-P-7"), parse_target("Nowhere-Star-123")]
    frame, warnings = discover_mast(targets, replay())
    assert len(frame) == 5
    assert len(warnings) == 1 and "Nowhere-Star-123" in warnings[0]
    assert "offline" in warnings[0]


# --------------------------------------------------- MAST behaviour with a fake backend


class FakeMast:
    """Answers like MAST for ``n`` Kepler stars; can fail, and records concurrency."""

    def __init__(self, failures: int = 0, latency: float = 0.0) -> None:
        self.failures = failures
        self.latency = latency
        self.calls: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    def _enter(self, kind: str) -> None:
        with self.lock:
            self.calls.append(kind)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.latency)
        with self.lock:
            self.in_flight -= 1
            if self.failures:
                self.failures -= 1
                raise ConnectionError("503 Service Unavailable")

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._enter("observations")
        return [
            {
                "obsid": f"9{name[4:]}",
                "target_name": name,
                "obs_collection": "Kepler",
                "s_ra": 290.0,
                "s_dec": 45.0,
            }
            for name in criteria["target_name"]
        ]

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        self._enter("products")
        rows = []
        for obsid in obsids:
            name = f"kplr{obsid[1:]}-2009166043257_llc.fits"
            rows.append(
                {
                    "obsID": obsid,
                    "parent_obsid": obsid,
                    "productFilename": name,
                    "dataURI": f"mast:Kepler/url/missions/kepler/lightcurves/{name}",
                    "size": 10,
                }
            )
        return rows

    def resolve_name(self, name: str) -> list[float]:
        self._enter("resolve")
        raise LookupError(f"Could not resolve {name} to a sky position.")

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        raise AssertionError("mission products need no path lookup")

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        raise AssertionError("not asked")


def test_batched_bounded_and_cached(tmp_path: Path) -> None:
    backend = FakeMast(latency=0.02)
    settings = MastSettings(cache_dir=tmp_path, concurrency=3, query_batch=100, product_batch=50)
    client = MastClient(settings, backend)
    targets = [parse_target(f"KIC {1000000 + i}") for i in range(250)]
    frame, warnings = discover_mast(targets, client)
    assert warnings == [] and len(frame) == 250
    assert backend.calls.count("observations") == 3  # 250 IDs, 100 per query
    assert backend.calls.count("products") == 5  # 250 observations, 50 per product list
    assert backend.most_in_flight <= 3
    assert frame.loc[0, "target"] == "KIC 1000000"
    # a rerun is answered from the cache
    again = MastClient(MastSettings(cache_dir=tmp_path, offline=True), backend)
    frame2, _ = discover_mast(targets, again)
    pd.testing.assert_frame_equal(frame, frame2)
    assert len(backend.calls) == 8


def test_retries_with_backoff_then_a_clear_error(tmp_path: Path) -> None:
    slept: list[float] = []
    backend = FakeMast(failures=2)
    client = MastClient(
        MastSettings(cache_dir=tmp_path, retries=3, backoff_seconds=1.0),
        backend,
        sleep=slept.append,
    )
    frame, warnings = discover_mast([parse_target("KIC 42")], client)
    assert len(frame) == 1 and warnings == []
    assert len(slept) == 2 and 0.5 <= slept[0] <= 1.5 and 1.0 <= slept[1] <= 3.0
    failing = MastClient(
        MastSettings(cache_dir=tmp_path / "b", retries=1), FakeMast(failures=99), sleep=slept.append
    )
    with pytest.raises(ArchiveError, match=r"KIC 7.*failed 2 times.*503"):
        failing.query_criteria({"target_name": ["kplr000000007"]}, "KIC 7")


def test_an_unresolvable_name_is_a_warning_naming_it(tmp_path: Path) -> None:
    client = MastClient(MastSettings(cache_dir=tmp_path, retries=0), FakeMast())
    frame, warnings = discover_mast([parse_target("Not-A-Star"), parse_target("KIC 5")], client)
    assert len(frame) == 1
    assert any("Not-A-Star" in w and "resolve" in w for w in warnings)


# ------------------------------------------------------------ archive-native discovery


def test_archive_native_against_a_local_s3_server(sim_archive: Path, s3: object) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))  # type: ignore[attr-defined]
    for mission in ("kepler", "k2", "tess"):
        fs.put(str(sim_archive / mission), "stpubdata/", recursive=True)
    truth = pd.read_parquet(sim_archive / "truth" / "products.parquet")
    star = truth.groupby("star").filter(lambda g: g["mission"].nunique() > 1)["star"].iloc[0]
    mine = truth[truth["star"] == star]
    kepler_or_k2 = mine[mine["mission"] != "TESS"].iloc[0]
    home = (
        f"KIC {int(kepler_or_k2['kic'])}"
        if kepler_or_k2["mission"] == "Kepler"
        else f"EPIC {int(kepler_or_k2['epic'])}"
    )
    targets = [home, f"TIC {int(mine['tic'].iloc[0])}", "TIC 999999999", "HAT-P-7"]
    frame, warnings = discover(targets, via="archive", archive="s3://stpubdata")
    assert sorted(frame["s3_uri"]) == sorted("s3://stpubdata/" + mine["key"])
    assert set(frame["source"]) == {"archive-layout"}
    assert any("TIC 999999999" in w for w in warnings)
    assert any("HAT-P-7" in w and "MAST" in w for w in warnings)
    # bulk: a whole prefix
    sector = mine[mine["mission"] == "TESS"].iloc[0]
    prefix = f"s3://stpubdata/{sector['key'].split('/0000/')[0]}/"
    bulk, _ = discover(prefixes=[prefix])
    expected = truth[truth["key"].str.startswith(prefix[len("s3://stpubdata/") :])]
    assert len(bulk) == len(expected) > 0


def test_cli_discover_replayed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.parquet"
    args = ["discover", "HAT-P-7", "--via", "mast", "--offline", "--mast-cache", str(RECORDINGS)]
    assert main([*args, "-o", str(out)]) == 0
    manifest = read_manifest(str(out))
    assert len(manifest) == 5 and manifest["mission"].tolist()[-1] == "TESS"
    assert main([*args, "--mission", "tess", "-o", str(out)]) == 0
    assert read_manifest(str(out))["mission"].unique().tolist() == ["TESS"]
    assert main(["discover", "Nowhere-Star-123", "--offline", "--mast-cache", str(RECORDINGS),
                 "-o", str(out)]) == 3  # fmt: skip
    assert "Nowhere-Star-123" in capsys.readouterr().err


def test_astroquery_backend_through_astroquerys_mocked_request_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real astroquery code path, its HTTP layer patched the way astroquery's tests do."""
    import json
    import re

    import astroquery.mast as mast

    data = Path(mast.__file__).parent / "tests" / "data"
    if not (data / "advSearch.json").exists():
        pytest.skip("astroquery's recorded MAST answers are not installed with astroquery")
    from astroquery.utils.mocks import MockResponse

    files = {
        "Mast.Caom.Filtered": "advSearch.json",
        "Mast.Caom.Products": "products.json",
        "columnsconfig": "columnsconfig.json",
    }
    services: list[str] = []

    def post(self: object, method: str = "POST", url: str = "", data: str = "", **_: Any) -> Any:
        found = re.search(r"service%22%3A%20%22([\w\.]*)%22", data or "")
        service = "columnsconfig" if "columnsconfig" in url else (found.group(1) if found else "")
        services.append(service)
        return [MockResponse((data_dir / files[service]).read_bytes())]

    data_dir = data
    monkeypatch.setattr(mast.discovery_portal.PortalAPI, "_request", post)
    from starskope_dask.mast import AstroqueryBackend

    backend = AstroqueryBackend()
    observations = backend.query_criteria({"obs_collection": "Kepler", "target_name": ["x"]})
    products = backend.product_list([str(observations[0]["obsid"])])
    assert "Mast.Caom.Filtered" in services and "Mast.Caom.Products" in services
    assert observations and {"obsid", "s_ra", "s_dec", "target_name"} <= set(observations[0])
    assert products and {"productFilename", "dataURI", "size"} <= set(products[0])
    json.dumps([observations, products])  # plain Python values: cacheable as they are


def test_an_unreachable_bucket_is_a_warning_naming_the_targets() -> None:
    dead = {
        "anon": True,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
        "retries": 1,
    }
    frame, warnings = discover(["KIC 10666592"], storage_options=dead)
    assert frame.empty
    assert any("KIC 10666592" in w and "cannot list" in w for w in warnings), warnings


def test_a_network_failure_is_not_an_unknown_name_and_an_unwritable_cache_loses_nothing(
    tmp_path: Path,
) -> None:
    class Offline(FakeMast):
        def resolve_name(self, name: str) -> list[float]:
            raise ConnectionError("Failed to resolve 'mastresolver.stsci.edu'")

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    client = MastClient(
        MastSettings(cache_dir=not_a_folder, retries=1), Offline(), sleep=lambda _: None
    )
    frame, warnings = discover_mast([parse_target("HAT-P-7"), parse_target("KIC 5")], client)
    assert len(frame) == 1  # the uncacheable answer for KIC 5 is still used
    assert any("HAT-P-7" in w and "MAST failed 2 times" in w for w in warnings), warnings
