"""The reader on real Kepler, K2 and TESS files: local, S3, HTTP, compressed; edge cases."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from starskope_dask.errors import (
    CorruptProductError,
    ProductError,
    ProductNotFoundError,
    UnsupportedProductError,
)
from starskope_dask.read import (
    KEPLER_BITMASKS,
    TESS_BITMASKS,
    FitsHeader,
    fits_layout,
    from_bjd_tdb,
    parse_light_curve,
    read_light_curve,
    to_bjd_tdb,
)

from .conftest import HAT_P_7_KEPLER, HAT_P_7_TESS

PRODUCTS = [
    "kepler/kplr002556081-2009166043257_llc.fits",
    "kepler/kplr010424789-2012179063303_llc.fits",
    HAT_P_7_KEPLER,
    "k2/ktwo211117077-c04_llc.fits",
    "tess/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
    *HAT_P_7_TESS,
    "hlsp/hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits",
]


def _expected(path: Path, flux: str = "PDCSAP_FLUX") -> dict[str, object]:
    with fits.open(path) as hdul:
        header0, header1, table = hdul[0].header, hdul[1].header, hdul[1].data
        return {
            "time": table["TIME"] + header1["BJDREFI"] + header1["BJDREFF"],
            "flux": np.asarray(table[flux], dtype=float),
            "quality": np.asarray(table["QUALITY" if "QUALITY" in table.names else "SAP_QUALITY"]),
            "tstart": header1["TSTART"] + header1["BJDREFI"],
            "tstop": header1["TSTOP"] + header1["BJDREFI"],
            "ra": header0["RA_OBJ"],
            "dec": header0["DEC_OBJ"],
        }


@pytest.mark.parametrize("name", PRODUCTS)
def test_values_match_astropy(real_data: Path, name: str) -> None:
    lc = read_light_curve(str(real_data / name))
    expected = _expected(real_data / name)
    np.testing.assert_array_equal(lc.time, expected["time"])
    np.testing.assert_array_equal(lc.flux, expected["flux"])
    np.testing.assert_array_equal(lc.quality, expected["quality"])
    start, stop = lc.time_range
    assert expected["tstart"] - 0.01 <= start <= stop <= expected["tstop"] + 0.01
    assert lc.time.dtype == np.float64


def test_missions_ids_and_segments(real_data: Path) -> None:
    kepler = read_light_curve(str(real_data / HAT_P_7_KEPLER))
    assert (kepler.mission, kepler.ids.kic, kepler.segment) == ("Kepler", 10666592, 0)
    assert kepler.provenance.product_type == "kepler-sc"
    k2 = read_light_curve(str(real_data / "k2/ktwo211117077-c04_llc.fits"))
    assert (k2.mission, k2.ids.epic, k2.ids.kic, k2.segment) == ("K2", 211117077, None, 4)
    tess = read_light_curve(str(real_data / HAT_P_7_TESS[0]))
    assert (tess.mission, tess.ids.tic, tess.segment) == ("TESS", 424865156, 14)
    assert tess.provenance.product_type == "tess-spoc-2min"
    assert tess.provenance.data_release is not None


def test_hat_p_7_same_star_across_missions(real_data: Path) -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    kepler = read_light_curve(str(real_data / HAT_P_7_KEPLER))
    for name in HAT_P_7_TESS:
        tess = read_light_curve(str(real_data / name))
        separation = SkyCoord(kepler.ra * u.deg, kepler.dec * u.deg).separation(
            SkyCoord(tess.ra * u.deg, tess.dec * u.deg)
        )
        assert separation < 1 * u.arcsec
    assert (
        kepler.time_range[1]
        < 2455000
        < read_light_curve(str(real_data / HAT_P_7_TESS[0])).time_range[0]
    )


@pytest.mark.parametrize("preset", ["none", "default", "hard", "hardest"])
def test_quality_masks_drop_exactly_the_flagged_cadences(real_data: Path, preset: str) -> None:
    for name, table in ((HAT_P_7_KEPLER, KEPLER_BITMASKS), (HAT_P_7_TESS[1], TESS_BITMASKS)):
        lc = read_light_curve(str(real_data / name), quality_bitmask=preset)
        flagged = (lc.quality & table[preset]) != 0
        finite = np.isfinite(lc.time) & np.isfinite(lc.flux)
        np.testing.assert_array_equal(lc.good, ~flagged & finite)
        assert lc.good_only().n_good == lc.n_good == len(lc.good_only())


def test_quality_mask_matches_lightkurve(real_data: Path) -> None:
    warnings.simplefilter("ignore")
    import lightkurve as lk

    for name in (HAT_P_7_KEPLER, HAT_P_7_TESS[0], "k2/ktwo211117077-c04_llc.fits"):
        theirs = lk.read(str(real_data / name), quality_bitmask="default")
        ours = read_light_curve(str(real_data / name))
        keep = ((ours.quality & ours.provenance.quality_bitmask) == 0) & np.isfinite(ours.time)
        offset = 2457000 if ours.mission == "TESS" else 2454833
        np.testing.assert_allclose(ours.time[keep], theirs.time.value + offset, atol=1e-7, rtol=0)


def test_sap_flux_selectable(real_data: Path) -> None:
    lc = read_light_curve(str(real_data / PRODUCTS[0]), flux="sap")
    np.testing.assert_array_equal(lc.flux, _expected(real_data / PRODUCTS[0], "SAP_FLUX")["flux"])
    assert lc.provenance.flux_column == "SAP_FLUX"


def test_hlsp_k2sc_and_eleanor(real_data: Path) -> None:
    k2sc = read_light_curve(
        str(real_data / "hlsp/hlsp_k2sc_k2_llc_211117077-c04_kepler_v2_lc.fits")
    )
    assert (k2sc.mission, k2sc.ids.epic, k2sc.provenance.product_type) == (
        "K2",
        211117077,
        "hlsp-k2sc",
    )
    with fits.open(real_data / "hlsp/hlsp_k2sc_k2_llc_211117077-c04_kepler_v2_lc.fits") as hdul:
        np.testing.assert_array_equal(k2sc.flux, hdul["PDC"].data["flux"])
    eleanor = read_light_curve(
        str(real_data / "edge/test-lc-tess-pimen_s1_eleanor_lite-100-cadences.fits")
    )
    assert eleanor.mission == "TESS" and eleanor.provenance.product_type == "hlsp-eleanor"
    assert 2458325 < eleanor.time_range[0] < 2458326


def test_lightkurve_written_files(real_data: Path) -> None:
    snippet = read_light_curve(str(real_data / "edge/HAT-P-11_Kepler_Q0_snippet.fits"))
    assert snippet.ids.kic == 10748390 and snippet.provenance.time_reference == "astropy-serialized"
    assert 2454953 < snippet.time_range[0] < 2454954
    custom = read_light_curve(str(real_data / "edge/test_K2_interact_generated_custom-lc.fits"))
    assert custom.mission == "K2" and custom.ids.epic == 201367065


def test_column_map_for_other_products(real_data: Path) -> None:
    lc = read_light_curve(
        str(real_data / PRODUCTS[0]),
        column_map={"time": "TIME", "flux": "SAP_BKG", "flux_err": "SAP_BKG_ERR"},
    )
    assert lc.provenance.product_type == "custom" and lc.provenance.flux_column == "SAP_BKG"
    with pytest.raises(UnsupportedProductError, match="columns seen"):
        read_light_curve(str(real_data / PRODUCTS[0]), column_map={"time": "TIME", "flux": "NOPE"})


EDGE_ERRORS = {
    "test-lc-tess-pimen-corrupted-at-header.fits": CorruptProductError,
    "test-lc-tess-pimen-corrupted-at-header2.fits": CorruptProductError,
    "test-lc-tess-pimen-corrupted.fits": CorruptProductError,
    "test-tpf-kplr-tabby-corrupted-at-header.fits": CorruptProductError,
    "kplr2011073133259-q08-d25_lcbv.fits": UnsupportedProductError,
    "ktwo-c15-d22_lcbv.fits": UnsupportedProductError,
    "tess2019085135100-s0010-2-4-0140-s_cbv.fits": UnsupportedProductError,
    "tess25155310-s01-first-cadences.fits.gz": UnsupportedProductError,
    "tess25155310-s01-first-cadences_no_pm.fits.gz": UnsupportedProductError,
    "tess25155310-s01-first-cadences_no_target_position.fits.gz": UnsupportedProductError,
    "ktwo201907706-c01-first-cadence.fits.gz": UnsupportedProductError,
    "test-tpf-kplr-tabby-first-cadence.fits": UnsupportedProductError,
}


def test_every_edge_file_reads_or_raises_a_typed_error(real_data: Path) -> None:
    for path in sorted((real_data / "edge").iterdir()):
        expected = EDGE_ERRORS.get(path.name)
        if expected is None:
            lc = read_light_curve(str(path))
            assert len(lc) > 0 and lc.mission in ("Kepler", "K2", "TESS")
            continue
        with pytest.raises(expected) as info:
            read_light_curve(str(path))
        assert path.name in str(info.value)
        assert info.value.url == str(path)


def test_truncated_file_says_so(real_data: Path) -> None:
    with pytest.raises(CorruptProductError, match="truncated"):
        read_light_curve(str(real_data / "edge/test-lc-tess-pimen-corrupted.fits"))


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ProductNotFoundError, match=r"no-such\.fits"):
        read_light_curve(str(tmp_path / "no-such.fits"))
    foreign = tmp_path / "notes.fits"
    foreign.write_text("hello, not a FITS file\n" * 200)
    with pytest.raises(CorruptProductError, match="not a FITS file"):
        read_light_curve(str(foreign))
    table = tmp_path / "table.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns(
                [fits.Column(name="WAVELENGTH", format="E", array=np.arange(3.0))]
            ),
        ]
    ).writeto(table)
    with pytest.raises(UnsupportedProductError, match="WAVELENGTH"):
        read_light_curve(str(table))


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=200_000))
def test_any_truncation_gives_a_typed_error(real_data: Path, cut: int) -> None:
    data = (real_data / PRODUCTS[0]).read_bytes()
    cut = cut % len(data)
    try:
        lc = parse_light_curve("cut.fits", data[:cut])
    except ProductError as exc:
        assert "cut.fits" in str(exc)
    else:  # only the trailing aperture image can be lost without harm
        assert len(lc) == 1639


# ------------------------------------------------------------------------- transports


def test_gzip_and_unix_compress(real_data: Path, tmp_path: Path) -> None:
    source = real_data / PRODUCTS[0]
    gz = tmp_path / (source.name + ".gz")
    gz.write_bytes(gzip.compress(source.read_bytes()))
    plain = read_light_curve(str(source))
    np.testing.assert_array_equal(read_light_curve(str(gz)).flux, plain.flux)
    if shutil.which("compress") is None:
        pytest.skip("Unix `compress` (Debian ncompress) is not installed; .ci/run installs it")
    z = tmp_path / source.name
    shutil.copy(source, z)
    subprocess.run(["compress", "-f", str(z)], check=True)
    np.testing.assert_array_equal(read_light_curve(f"file://{z}.Z").flux, plain.flux)


def test_s3_anonymous_reads_match_local(real_data: Path, s3: object) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))  # type: ignore[attr-defined]
    for name in (HAT_P_7_KEPLER, HAT_P_7_TESS[0]):
        fs.put_file(str(real_data / name), f"stpubdata/real/{name}")
        remote = read_light_curve(f"s3://stpubdata/real/{name}")  # endpoint from the environment
        local = read_light_curve(str(real_data / name))
        np.testing.assert_array_equal(remote.time, local.time)
        np.testing.assert_array_equal(remote.flux, local.flux)
        assert remote.provenance.url == f"s3://stpubdata/real/{name}"
    with pytest.raises(ProductNotFoundError, match=r"s3://stpubdata/real/missing\.fits"):
        read_light_curve("s3://stpubdata/real/missing.fits")


def test_anonymous_s3_reads_go_as_plain_http() -> None:
    from starskope_dask.fetch import anonymous_http_url

    key = "s3://stpubdata/k2/public/lightcurves/c4/211100000/17000/ktwo211117077-c04_llc.fits"
    assert anonymous_http_url(key, {"anon": True}) == (
        "https://stpubdata.s3.us-east-1.amazonaws.com/"
        "k2/public/lightcurves/c4/211100000/17000/ktwo211117077-c04_llc.fits"
    )
    local = {"anon": True, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000/"}}
    assert anonymous_http_url("s3://b/a b.fits", local) == "http://127.0.0.1:9000/b/a%20b.fits"
    assert anonymous_http_url(key, {"anon": False}) is None  # signed: through s3fs
    assert anonymous_http_url(key, {"anon": True, "key": "k", "secret": "s"}) is None
    assert anonymous_http_url("https://example.org/x.fits", {"anon": True}) is None


def test_seaweedfs_server_serves_the_same_light_curve(real_data: Path) -> None:
    import fsspec

    from starskope_dask.s3server import local_s3_server

    with local_s3_server("stpubdata", backend="seaweedfs", set_env=False) as server:
        writer = fsspec.filesystem("s3", **server.storage_options(anon=False))
        writer.put_file(
            str(real_data / HAT_P_7_TESS[0]), f"stpubdata/x/{Path(HAT_P_7_TESS[0]).name}"
        )
        remote = read_light_curve(
            f"s3://stpubdata/x/{Path(HAT_P_7_TESS[0]).name}",
            storage_options=server.storage_options(),
        )
    local = read_light_curve(str(real_data / HAT_P_7_TESS[0]))
    np.testing.assert_array_equal(remote.flux, local.flux)
    assert remote.ids.tic == 424865156


def test_http_reads(real_data: Path, http_root: str) -> None:
    lc = read_light_curve(f"{http_root}/{HAT_P_7_TESS[1]}")
    np.testing.assert_array_equal(lc.flux, read_light_curve(str(real_data / HAT_P_7_TESS[1])).flux)
    with pytest.raises(ProductError):
        read_light_curve(f"{http_root}/tess/nothing-here.fits")


# --------------------------------------------------------------------- time (property)


@given(
    time=st.floats(min_value=-1000, max_value=10000, allow_nan=False),
    bjdrefi=st.sampled_from([2454833, 2457000, 2400000]),
    bjdreff=st.floats(min_value=0, max_value=0.999, allow_nan=False),
)
def test_bjd_round_trip(time: float, bjdrefi: int, bjdreff: float) -> None:
    bjd = to_bjd_tdb(time, bjdrefi, bjdreff)
    assert abs(float(from_bjd_tdb(bjd, bjdrefi, bjdreff)) - time) < 1e-8  # < 1 ms
    assert abs(float(bjd) - (bjdrefi + bjdreff + time)) < 1e-8


def test_layout_of_a_real_file(real_data: Path) -> None:
    data = (real_data / HAT_P_7_KEPLER).read_bytes()
    hdus = fits_layout("x", data)
    assert [h.name for h in hdus] == ["PRIMARY", "LIGHTCURVE", "APERTURE"]
    assert hdus[1].header["NAXIS2"] == 14280


def _same_value(ours: object, theirs: object) -> bool:
    if isinstance(theirs, float) and isinstance(ours, float):
        return ours == theirs or bool(np.isnan(ours) and np.isnan(theirs))
    if theirs is None or type(theirs).__name__ == "Undefined":
        return ours is None
    return ours == theirs and type(ours) is type(theirs)


def test_header_values_agree_with_astropy_on_every_real_file(real_data: Path) -> None:
    files = sorted(p for p in real_data.rglob("*.fits") if "edge" not in p.parts)
    assert len(files) > 50
    checked = 0
    for path in files:
        data = path.read_bytes()
        for hdu in fits_layout(str(path), data):
            theirs = hdu.header.to_astropy()
            for card in theirs.cards:
                keyword = card.keyword
                if keyword in ("COMMENT", "HISTORY", "") or keyword in checked_dupes(theirs):
                    continue
                assert _same_value(hdu.header.get(keyword), theirs[keyword]), (path, keyword)
                checked += 1
    assert checked > 10_000


def checked_dupes(header: fits.Header) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for keyword in header:
        (dupes if keyword in seen else seen).add(keyword)
    return dupes


_KEYWORDS = st.from_regex(r"[A-Z][A-Z0-9_]{0,7}", fullmatch=True).filter(
    lambda k: k not in ("END", "COMMENT", "HISTORY", "CONTINUE", "SIMPLE", "HIERARCH")
)
_VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)


@given(cards=st.dictionaries(_KEYWORDS, _VALUES, min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_header_round_trip(cards: dict[str, object]) -> None:
    header = fits.Header()
    for keyword, value in cards.items():
        header[keyword] = value
    text = header.tostring()
    ours, theirs = FitsHeader(text), fits.Header.fromstring(text)
    for keyword, value in cards.items():
        # Floats: the card holds astropy's (shortest, <= 20 characters) rendering; strings:
        # compare with what was written (astropy's own parser misreads e.g. "'/").
        expected = theirs[keyword] if isinstance(value, float) else value
        if isinstance(value, str):
            expected = value.rstrip()
        assert _same_value(ours[keyword], expected), keyword
    assert set(ours) >= set(cards)
