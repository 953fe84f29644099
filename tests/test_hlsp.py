"""HLSP light curves as first-class products: one test per format, lightkurve the oracle.

``../shared/data/real`` holds real files of four HLSPs only (K2SC, the TESS data alerts,
eleanor, and no others), so the other formats are built here, at test time, to their
published descriptions (each builder says where that description comes from), and read
twice: by starskope's reader and, where lightkurve has a reader of the format, by
lightkurve. Time (BJD_TDB), flux and the good cadences must be identical.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from starskope_dask import hlsp
from starskope_dask.cli import main
from starskope_dask.discover import discover, discover_mast, parse_target, product_type_of
from starskope_dask.errors import CorruptProductError, ProductError, UnsupportedProductError
from starskope_dask.hlsp import FORMATS
from starskope_dask.mast import MastClient, MastSettings
from starskope_dask.read import parse_light_curve, read_light_curve
from starskope_dask.records import LightCurve

N = 64
RNG = np.random.default_rng(13)


def _times(start: float, step: float = 0.0208333) -> np.ndarray:
    time = start + step * np.arange(N)
    time[7] = np.nan  # a cadence with no time (lightkurve drops it)
    return time


def _flux(level: float = 1000.0) -> np.ndarray:
    flux = level + RNG.normal(0, 1, N)
    flux[11] = np.nan  # a cadence with no flux
    return flux


FLAGGED = (3, 13, 17, 21, 25)


def _flags(*bits: int) -> np.ndarray:
    """Quality words: cadence ``FLAGGED[k]`` carries the k-th of ``bits`` (7 has no time,
    11 no flux)."""
    quality = np.zeros(N, dtype=np.int32)
    for k, bit in enumerate(bits):
        quality[FLAGGED[k]] = bit
    return quality


def _write(path: Path, primary: Mapping[str, Any], *tables: fits.BinTableHDU) -> Path:
    header = fits.Header()
    for key, value in primary.items():
        header[key] = value
    fits.HDUList([fits.PrimaryHDU(header=header), *tables]).writeto(path, overwrite=True)
    return path


def _table(
    columns: Sequence[tuple[str, str, np.ndarray]],
    name: str = "LIGHTCURVE",
    header: Mapping[str, Any] | None = None,
) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format=f, array=a) for n, f, a in columns], name=name
    )
    for key, value in (header or {}).items():
        hdu.header[key] = value
    return hdu


TESS_PRIMARY = {"TELESCOP": "TESS", "RA_OBJ": 100.5, "DEC_OBJ": -20.25}
K2_PRIMARY = {"TELESCOP": "Kepler", "MISSION": "K2", "RA_OBJ": 55.967295, "DEC_OBJ": 24.841616}
K2_REF = {"BJDREFI": 2454833, "BJDREFF": 0.0, "TIMESYS": "TDB"}
TESS_REF = {"BJDREFI": 2457000, "BJDREFF": 0.0, "TIMESYS": "TDB"}


# --------------------------------------------------------------------------- builders
# Each returns the file written; comments say where its layout is described.


def build_k2sff(folder: Path) -> Path:
    # lightkurve io/k2sff.py and detect.py (EXTNAME BESTAPER, TTYPE4 ARCLENGTH, flux fcor,
    # time bkjd); MAST K2SFF README: T = BJD - BJDREFI - BJDREFF, FRAW/FCOR, MOVING flags
    # thruster firings; 20 further aperture tables CIRC_APERn / PRF_APERn.
    moving = np.zeros(N, dtype=np.int16)
    moving[[20, 21]] = 1
    columns = [
        ("T", "D", _times(2000.25)),
        ("FRAW", "D", _flux(1.0)),
        ("FCOR", "D", _flux(1.0)),
        ("ARCLENGTH", "D", RNG.normal(0, 1, N)),
        ("MOVING", "I", moving),
        ("CADENCENO", "J", np.arange(N) + 100000),
    ]
    primary = {**K2_PRIMARY, "OBJECT": "EPIC 211117077", "KEPLERID": 211117077, "CAMPAIGN": 4}
    return _write(
        folder / "hlsp_k2sff_k2_lightcurve_211117077-c04_kepler_v1_llc.fits",
        primary,
        _table(columns, "BESTAPER", K2_REF),
        _table(columns, "CIRC_APER0", K2_REF),
    )


def build_everest(folder: Path) -> Path:
    # EVEREST everest/fits.py (table "LC ARRAYS": CADN, FLUX, FRAW, FRAW_ERR, QUALITY, TIME
    # in BJD - 2454833, FCOR; EVEREST's flag bits 23-27 added to the Kepler QUALITY);
    # lightkurve io/everest.py and detect.py ("EVEREST" in the primary COMMENT cards).
    quality = _flags(1, 2**17, 2**22, 2**24)  # default, hard-only, EVEREST bad, outlier
    columns = [
        ("CADN", "D", np.arange(N) + 1000.0),
        ("FLUX", "D", _flux()),
        ("FRAW", "D", _flux()),
        ("FRAW_ERR", "D", np.full(N, 2.5)),
        ("QUALITY", "J", quality),
        ("TIME", "D", _times(2062.5)),
        ("FCOR", "D", _flux()),
    ]
    path = folder / "hlsp_everest_k2_llc_211117077-c04_kepler_v2.0_lc.fits"
    _write(
        path,
        {**K2_PRIMARY, "OBJECT": "EPIC 211117077", "KEPLERID": 211117077, "CAMPAIGN": 4},
        _table(columns, "LC ARRAYS", K2_REF),
    )
    with fits.open(path, mode="update") as hdul:
        for text in ("************************", "*     EVEREST INFO     *"):
            hdul[0].header.add_comment(text)
    return path


def build_k2varcat(folder: Path) -> Path:
    # MAST K2VARCAT description (MASTDataDelivery doc_hlsp_k2varcat.md): table 1 has TIME,
    # APTFLUX (extracted) and DETFLUX (detrended); the epoch is in TUNIT1 ('BJD - 2454833');
    # the EPIC ID and campaign are in the file name.
    table = _table(
        [("TIME", "D", _times(2300.1)), ("APTFLUX", "D", _flux()), ("DETFLUX", "D", _flux(1.0))],
        "LIGHTCURVE",
    )
    table.header["TUNIT1"] = "BJD - 2454833"
    return _write(
        folder / "hlsp_k2varcat_k2_lightcurve_202059697-c00_kepler_v2_llc.fits",
        {"TELESCOP": "Kepler"},
        table,
    )


def build_qlp(folder: Path, sector: int = 14) -> Path:
    # lightkurve io/qlp.py and detect.py (ORIGIN 'MIT/QLP'; sap_flux; kspsap_flux_err
    # (sectors 1-55) or det_flux_err (56+); TESS flags plus QLP's low-precision bit).
    late = sector >= 56
    quality = _flags(1, 1024, 2**12 if not late else 2**30, 2**15)
    detrended = "DET" if late else "KSPSAP"
    columns = [
        ("TIME", "D", _times(1683.35)),
        ("CADENCENO", "J", np.arange(N)),
        ("SAP_FLUX", "E", _flux(1.0).astype(np.float32)),
        (f"{detrended}_FLUX", "E", _flux(1.0).astype(np.float32)),
        (f"{detrended}_FLUX_ERR", "E", np.full(N, 0.001, dtype=np.float32)),
        ("QUALITY", "J", quality),
        ("SAP_BKG", "E", np.zeros(N, dtype=np.float32)),
    ]
    primary = {
        **TESS_PRIMARY,
        "ORIGIN": "MIT/QLP",
        "OBJECT": "TIC 424865156",
        "TICID": 424865156,
        "SECTOR": sector,
    }
    return _write(
        folder / f"hlsp_qlp_tess_ffi_s{sector:04d}-0000000424865156_tess_v01_llc.fits",
        primary,
        _table(columns, "LIGHTCURVE", TESS_REF),
    )


def build_tasoc(folder: Path) -> Path:
    # lightkurve io/tasoc.py and detect.py (ORIGIN 'TASOC/Aarhus'; flux_corr, btjd);
    # TASOC photometry/quality.py: QUALITY holds CorrectorQualityFlags (1, 2, 4, ...).
    columns = [
        ("TIME", "D", _times(1325.3)),
        ("CADENCENO", "J", np.arange(N)),
        ("FLUX_RAW", "D", _flux()),
        ("FLUX_RAW_ERR", "D", np.full(N, 3.0)),
        ("FLUX_BKG", "D", np.zeros(N)),
        ("FLUX_CORR", "D", _flux(0.0)),
        ("FLUX_CORR_ERR", "D", np.full(N, 40.0)),
        ("QUALITY", "J", _flags(1, 4)),
        ("PIXEL_QUALITY", "J", np.zeros(N, dtype=np.int32)),
    ]
    primary = {
        **TESS_PRIMARY,
        "ORIGIN": "TASOC/Aarhus",
        "OBJECT": "TIC 25155310",
        "TICID": 25155310,
        "SECTOR": 1,
    }
    return _write(
        folder
        / "hlsp_tasoc_tess_ffi_tic00000000025155310-s0001-cam1-ccd1-c1800_tess_v05_cbv-lc.fits",
        primary,
        _table(columns, "LIGHTCURVE", TESS_REF),
    )


def build_pathos(folder: Path) -> Path:
    # lightkurve io/pathos.py and detect.py (PSF_FLUX_RAW, PSF_FLUX_COR, APn_FLUX_RAW/COR,
    # SKY_LOCAL; DQUALITY with the TESS flags; btjd).
    columns: list[tuple[str, str, np.ndarray]] = [
        ("TIME", "D", _times(1325.3)),
        ("PSF_FLUX_RAW", "D", _flux()),
        ("PSF_FLUX_COR", "D", _flux()),
    ]
    for n in (1, 2, 3, 4):
        columns += [(f"AP{n}_FLUX_RAW", "D", _flux()), (f"AP{n}_FLUX_COR", "D", _flux())]
    columns += [("SKY_LOCAL", "D", np.zeros(N)), ("DQUALITY", "J", _flags(32, 2048, 2**14))]
    primary = {**TESS_PRIMARY, "OBJECT": "TIC 25155310", "TICID": 25155310, "SECTOR": 1}
    return _write(
        folder / "hlsp_pathos_tess_lightcurve_tic-0000000025155310-s001_tess_v1_llc.fits",
        primary,
        _table(columns, "LIGHTCURVE", TESS_REF),
    )


GAIA_DR2 = 5318059532750974720


def build_cdips(folder: Path) -> Path:
    # lightkurve io/cdips.py and detect.py ('cdips' in ORIGIN; tmid_bjd, IFLn/IFEn, IRMn/
    # IREn, TFAn, PCAn, IRQn = 'G' for good); CDIPS README: TMID_BJD is BJD_TDB; the file
    # is named by the Gaia DR2 source ID, the header holds the TIC ID.
    quality = np.array(["G"] * N)
    quality[[4, 9]] = "X"
    columns: list[tuple[str, str, np.ndarray]] = [
        ("TMID_UTC", "D", _times(2458491.0) - 0.0001),
        ("TMID_BJD", "D", _times(2458491.0)),
    ]
    for n in (1, 2, 3):
        columns += [
            (f"IFL{n}", "D", _flux(5000.0)),
            (f"IFE{n}", "D", np.full(N, 5.0)),
            (f"IRM{n}", "D", np.full(N, 12.0)),
            (f"IRE{n}", "D", np.full(N, 0.001)),
            (f"IRQ{n}", "1A", quality),
            (f"TFA{n}", "D", np.full(N, 12.0)),
            (f"PCA{n}", "D", np.full(N, 12.0)),
        ]
    primary = {
        **TESS_PRIMARY,
        "ORIGIN": "Luke Bouma; CDIPS pipeline",
        "OBJECT": str(GAIA_DR2),
        "TICID": 93270923,
        "SECTOR": 8,
    }
    return _write(
        folder / f"hlsp_cdips_tess_ffi_gaiatwo{GAIA_DR2:022d}-0008-cam3-ccd4_tess_v01_llc.fits",
        primary,
        _table(columns, "LIGHTCURVE", {"TIMESYS": "TDB"}),
    )


GAIA_DR3 = 4624742688944261376


def build_tglc(folder: Path) -> Path:
    # lightkurve io/tglc.py and detect.py (ORIGIN 'UCSB/TGLC'; lower-case columns time,
    # psf_flux, aperture_flux, cal_psf_flux, cal_aper_flux, background, cadence_num,
    # TESS_flags, TGLC_flags; btjd; no errors); named by the Gaia DR3 ID, TICID in the header.
    columns = [
        ("time", "D", _times(1325.3)),
        ("psf_flux", "E", _flux().astype(np.float32)),
        ("aperture_flux", "E", _flux().astype(np.float32)),
        ("cal_psf_flux", "E", _flux(1.0).astype(np.float32)),
        ("cal_aper_flux", "E", _flux(1.0).astype(np.float32)),
        ("background", "E", np.zeros(N, dtype=np.float32)),
        ("cadence_num", "J", np.arange(N)),
        ("TESS_flags", "J", _flags(8, 64, 2**13)),
        ("TGLC_flags", "J", _flags(0, 0, 0, 1)),
    ]
    primary = {
        **TESS_PRIMARY,
        "ORIGIN": "UCSB/TGLC",
        "OBJECT": str(GAIA_DR3),
        "TICID": 140898436,
        "SECTOR": 1,
    }
    return _write(
        folder / f"hlsp_tglc_tess_ffi_gaiaid-{GAIA_DR3}-s0001-cam4-ccd2_tess_v1_llc.fits",
        primary,
        _table(columns, "LIGHTCURVE"),
    )


def build_gsfc_eleanor_lite(folder: Path) -> Path:
    # lightkurve io/eleanor.py and detect.py (LITE and PCORIGIN in the primary header; TIC_ID,
    # TVERSION, GITHUB; FLUX_ERR belongs to RAW_FLUX; bits 17 and 18 beyond SPOC's 16).
    columns = [
        ("TIME", "D", _times(1325.3)),
        ("BARYCORR", "D", np.zeros(N)),
        ("RAW_FLUX", "D", _flux(1200.0)),
        ("CORR_FLUX", "D", _flux(1000.0)),
        ("PCA_FLUX", "D", _flux()),
        ("PSF_FLUX", "D", _flux()),
        ("FLUX_ERR", "D", np.full(N, 6.0)),
        ("FLUX_BKG", "D", np.zeros(N)),
        ("QUALITY", "J", _flags(4, 4096, 2**17)),
        ("FFIINDEX", "J", np.arange(N)),
        ("X_CENTROID", "D", np.zeros(N)),
        ("Y_CENTROID", "D", np.zeros(N)),
    ]
    primary = {
        **TESS_PRIMARY,
        "TIC_ID": 25155310,
        "SECTOR": 1,
        "CAMERA": 1,
        "CCD": 1,
        "LITE": True,
        "PCORIGIN": "gsfc",
        "TVERSION": "1.0",
        "GITHUB": "https://github.com/afeinstein20/eleanor",
    }
    return _write(
        folder / "hlsp_gsfc-eleanor-lite_tess_ffi_s0001-0000000025155310_tess_v1.0_lc.fits",
        primary,
        _table(columns, "LIGHTCURVE"),
    )


def build_kepseismic(folder: Path) -> Path:
    # lightkurve io/kepseismic.py and detect.py (ORIGIN 'CEA & SSI'; time, flux, flux_err;
    # time_format mjd): one gap-filled light curve of the whole mission, in ppm.
    columns = [
        ("TIME", "D", _times(54953.0)),
        ("FLUX", "D", RNG.normal(0, 50, N)),
        ("FLUX_ERR", "D", np.full(N, 50.0)),
    ]
    primary = {"TELESCOP": "Kepler", "ORIGIN": "CEA & SSI", "KEPLERID": 1292147, "OBJECT": ""}
    return _write(
        folder / "hlsp_kepseismic_kepler_phot_kplr001292147-20d_kepler_v1_cor-filt-inp.fits",
        primary,
        _table(columns, "LIGHTCURVE"),
    )


def build_diamante(folder: Path) -> Path:
    # MAST DIAMANTE page and the chronos package's reader (BTJD + 2457000; LCn_APa flux,
    # ELCn_APa error, FLAG_APa; multi-sector): no column table is published.
    columns: list[tuple[str, str, np.ndarray]] = [("BTJD", "D", _times(1410.0, 0.0208333 * 30))]
    for n in (1, 2):
        for a in (1, 2):
            columns += [(f"LC{n}_AP{a}", "D", _flux(1.0)), (f"ELC{n}_AP{a}", "D", np.full(N, 1e-3))]
    columns += [("FLAG_AP1", "J", _flags(1)), ("FLAG_AP2", "J", _flags(0, 2))]
    return _write(
        folder / "hlsp_diamante_tess_lightcurve_tic-0000000036734222_tess_v1_llc.fits",
        {"TELESCOP": "TESS", "TICID": 36734222, "OBJECT": "TIC 36734222"},
        _table(columns, "LIGHTCURVE"),
    )


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "hlsp-k2sff": build_k2sff,
    "hlsp-everest": build_everest,
    "hlsp-k2varcat": build_k2varcat,
    "hlsp-qlp": build_qlp,
    "hlsp-tasoc": build_tasoc,
    "hlsp-pathos": build_pathos,
    "hlsp-cdips": build_cdips,
    "hlsp-tglc": build_tglc,
    "hlsp-gsfc-eleanor-lite": build_gsfc_eleanor_lite,
    "hlsp-kepseismic": build_kepseismic,
    "hlsp-diamante": build_diamante,
}

#: Real files of the products read by the pipeline path (``reader="builtin"``).
REAL = {
    "hlsp-k2sc": "hlsp/hlsp_k2sc_k2_llc_211117077-c04_kepler_v2_lc.fits",
    "hlsp-tess-data-alerts": "hlsp/hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits",
}

#: What each format's file says of its star: mission, (catalogue, ID), segment.
IDENTITY = {
    "hlsp-k2sff": ("K2", ("epic", 211117077), 4),
    "hlsp-everest": ("K2", ("epic", 211117077), 4),
    "hlsp-k2varcat": ("K2", ("epic", 202059697), 0),
    "hlsp-qlp": ("TESS", ("tic", 424865156), 14),
    "hlsp-tasoc": ("TESS", ("tic", 25155310), 1),
    "hlsp-pathos": ("TESS", ("tic", 25155310), 1),
    "hlsp-cdips": ("TESS", ("tic", 93270923), 8),
    "hlsp-tglc": ("TESS", ("tic", 140898436), 1),
    "hlsp-gsfc-eleanor-lite": ("TESS", ("tic", 25155310), 1),
    "hlsp-kepseismic": ("Kepler", ("kic", 1292147), -1),
    "hlsp-diamante": ("TESS", ("tic", 36734222), -1),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hlsp")
    return {name: build(folder) for name, build in BUILDERS.items()}


def _lightkurve(path: Path, fmt: str, **kwargs: Any) -> Any:
    warnings.simplefilter("ignore")
    import lightkurve as lk

    reader = getattr(lk.io, fmt)
    return getattr(reader, f"read_{fmt}_lightcurve")(str(path), **kwargs)


#: What lightkurve's ``time.value`` must be offset by to give BJD_TDB (CDIPS: lightkurve
#: labels TMID_BJD "btjd" but keeps its value, the full BJD_TDB).
LK_OFFSET = {
    "k2sff": 2454833.0,
    "everest": 2454833.0,
    "qlp": 2457000.0,
    "tasoc": 2457000.0,
    "pathos": 2457000.0,
    "cdips": 0.0,
    "tglc": 2457000.0,
    "eleanor": 2457000.0,
    "kepseismic": 2400000.5,
}


def assert_same_as_lightkurve(ours: LightCurve, theirs: Any, offset: float) -> None:
    """lightkurve keeps the cadences with a time and, where it masks, no flag of the mask:
    those must be ours, with the same BJD_TDB, flux (and error), and our good cadences
    must be those of them with a flux."""
    kept = np.isfinite(ours.time) & ((ours.quality & ours.provenance.quality_bitmask) == 0)
    assert int(kept.sum()) == len(theirs)
    np.testing.assert_allclose(ours.time[kept], theirs.time.value + offset, rtol=0, atol=1e-7)
    their_flux = np.asarray(theirs.flux.value, dtype=np.float64)
    np.testing.assert_array_equal(ours.flux[kept], their_flux)
    np.testing.assert_array_equal(ours.good[kept], np.isfinite(their_flux))
    assert not ours.good[~kept].any()
    their_err = np.asarray(theirs.flux_err.value, dtype=np.float64)
    np.testing.assert_allclose(ours.flux_err[kept], their_err, rtol=1e-12, equal_nan=True)


# ------------------------------------------------------------------ the registry itself


def test_every_format_is_named_the_same_by_discovery_and_the_reader(
    built: dict[str, Path], real_data: Path, tmp_path: Path
) -> None:
    names = [f.name for f in FORMATS]
    assert len(set(names)) == len(names) and len({f.token for f in FORMATS}) == len(names)
    files = {name: path for name, path in built.items()}
    files |= {name: real_data / path for name, path in REAL.items()}
    spoc = tmp_path / "hlsp_tess-spoc_tess_phot_0000000025155310-s0001_tess_v1_lc.fits"
    spoc.write_bytes(
        (real_data / "tess/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits").read_bytes()
    )
    files["tess-spoc-ffi"] = spoc
    eleanor = tmp_path / "hlsp_eleanor_tess_ffi_tic261136679_s01_tess_v0.2.8_lc.fits"
    eleanor.write_bytes(
        (real_data / "edge/test-lc-tess-pimen_s1_eleanor_lite-100-cadences.fits").read_bytes()
    )
    files["hlsp-eleanor"] = eleanor
    assert set(files) == set(names), "every registered format has a file in this test"
    for fmt in FORMATS:
        path = files[fmt.name]
        assert product_type_of(path.name) == fmt.name, path.name
        assert product_type_of(f"s3://stpubdata/mast/hlsp/x/{path.name}") == fmt.name
        lc = read_light_curve(str(path))
        assert lc.provenance.product_type == fmt.name, path.name
        assert lc.mission == fmt.mission
        assert hlsp.matches(fmt.name, ["hlsp"]) and hlsp.matches(fmt.name, [fmt.name])
    # the product's other files are not light curves; an unregistered HLSP keeps its token
    assert (
        product_type_of("hlsp_diamante_tess_lightcurve_tic-0000000036734222_tess_v1_dv.pdf") is None
    )
    assert (
        product_type_of("hlsp_eleanor_tess_ffi_postcard-s0005-3-3-cal-1686-1132_tess_v2_pc.fits")
        is None
    )
    assert product_type_of("hlsp_k2gap_k2_lightcurve_201121245-c01_kepler_v1_llc.fits") == (
        "hlsp-k2gap"
    )
    assert hlsp.matches("tess-spoc-ffi", ["hlsp-tess-spoc"])


def test_the_readme_table_lists_every_format() -> None:
    table = hlsp.readme_table()
    for fmt in FORMATS:
        assert f"`{fmt.name}`" in table and fmt.title in table


# --------------------------------------------------------------- per format, lightkurve


@pytest.mark.parametrize(
    ("name", "fmt", "kwargs"),
    [
        ("hlsp-k2sff", "k2sff", {}),
        ("hlsp-everest", "everest", {}),
        ("hlsp-qlp", "qlp", {}),
        ("hlsp-tasoc", "tasoc", {}),
        ("hlsp-pathos", "pathos", {}),
        ("hlsp-cdips", "cdips", {"flux_column": "IFL1", "include_inst_errs": True}),
        ("hlsp-tglc", "tglc", {}),
        ("hlsp-gsfc-eleanor-lite", "eleanor", {}),
        ("hlsp-kepseismic", "kepseismic", {}),
    ],
)
def test_default_read_equals_lightkurve(
    built: dict[str, Path], name: str, fmt: str, kwargs: dict[str, Any]
) -> None:
    ours = read_light_curve(str(built[name]))
    theirs = _lightkurve(built[name], fmt, **kwargs)
    assert_same_as_lightkurve(ours, theirs, LK_OFFSET[fmt])
    assert 2_400_000 < ours.time_range[0] < ours.time_range[1] < 2_600_000
    mission, (catalogue, number), segment = IDENTITY[name]
    assert (ours.mission, getattr(ours.ids, catalogue), ours.segment) == (mission, number, segment)
    assert ours.provenance.flux_column.upper() == hlsp.BY_NAME[name].flux


@pytest.mark.parametrize(
    ("name", "fmt", "presets"),
    [
        ("hlsp-qlp", "qlp", ("hard", "hardest")),
        ("hlsp-pathos", "pathos", ("hard", "hardest")),
        ("hlsp-tglc", "tglc", ("hard", "hardest")),
        ("hlsp-gsfc-eleanor-lite", "eleanor", ("hard", "hardest")),
        ("hlsp-everest", "everest", ("hard",)),
    ],
)
def test_hard_masks_equal_lightkurve_where_it_has_them(
    built: dict[str, Path], name: str, fmt: str, presets: tuple[str, ...]
) -> None:
    for preset in presets:
        ours = read_light_curve(str(built[name]), quality_bitmask=preset)
        theirs = _lightkurve(built[name], fmt, quality_bitmask=preset)
        assert_same_as_lightkurve(ours, theirs, LK_OFFSET[fmt])


def test_qlp_from_sector_56_uses_det_flux_err_and_bit_31(tmp_path: Path) -> None:
    path = build_qlp(tmp_path, sector=60)
    for preset in ("default", "hard", "hardest"):
        ours = read_light_curve(str(path), quality_bitmask=preset)
        assert_same_as_lightkurve(ours, _lightkurve(path, "qlp", quality_bitmask=preset), 2457000)
    assert not read_light_curve(str(path), quality_bitmask="hard").good[17]  # bit 31
    assert read_light_curve(str(path)).good[17]


def test_masks_beyond_lightkurve_drop_the_producers_flags(built: dict[str, Path]) -> None:
    """Where lightkurve applies no mask (K2SFF, TASOC) or only the mission's (EVEREST),
    'hard'/'hardest' add the producer's own flags."""
    k2sff = read_light_curve(str(built["hlsp-k2sff"]), quality_bitmask="hard")
    assert not k2sff.good[[20, 21]].any() and k2sff.quality[20] == 1
    assert read_light_curve(str(built["hlsp-k2sff"])).good[[20, 21]].all()
    tasoc = read_light_curve(str(built["hlsp-tasoc"]), quality_bitmask="hard")
    assert not tasoc.good[3] and tasoc.good[13]  # FlaggedBadData dropped, SigmaClip kept
    assert read_light_curve(str(built["hlsp-tasoc"])).good[[3, 13]].all()
    assert not read_light_curve(str(built["hlsp-tasoc"]), quality_bitmask="hardest").good[13]
    everest = read_light_curve(str(built["hlsp-everest"]), quality_bitmask="hardest")
    assert not everest.good[[17, 21]].any()  # EVEREST's own bits
    assert read_light_curve(str(built["hlsp-everest"]), quality_bitmask="hard").good[[17, 21]].all()


def test_selectable_fluxes(built: dict[str, Path]) -> None:
    sap = read_light_curve(str(built["hlsp-k2sff"]), flux="sap")
    with fits.open(built["hlsp-k2sff"]) as hdul:
        np.testing.assert_array_equal(sap.flux, hdul["BESTAPER"].data["FRAW"])
    assert sap.provenance.product_type == "hlsp-k2sff" and sap.provenance.flux_column == "FRAW"
    # any other column of the product, keeping its time reference, masks and identity
    pca = read_light_curve(
        str(built["hlsp-cdips"]), column_map={"time": "TMID_BJD", "flux": "IRM2"}
    )
    theirs = _lightkurve(built["hlsp-cdips"], "cdips", flux_column="IRM2", include_inst_errs=True)
    assert_same_as_lightkurve(pca, theirs, 0.0)
    assert pca.provenance.product_type == "hlsp-cdips" and pca.ids.tic == 93270923
    qlp = read_light_curve(
        str(built["hlsp-qlp"]), column_map={"time": "TIME", "flux": "KSPSAP_FLUX"}
    )
    assert_same_as_lightkurve(
        qlp, _lightkurve(built["hlsp-qlp"], "qlp", flux_column="kspsap_flux"), 2457000
    )
    lite = read_light_curve(str(built["hlsp-gsfc-eleanor-lite"]), flux="sap")
    assert_same_as_lightkurve(
        lite,
        _lightkurve(built["hlsp-gsfc-eleanor-lite"], "eleanor", flux_column="RAW_FLUX"),
        2457000,
    )
    with pytest.raises(UnsupportedProductError, match=r"K2SFF.*NOPE.*FCOR"):
        read_light_curve(str(built["hlsp-k2sff"]), column_map={"time": "T", "flux": "NOPE"})


def test_formats_lightkurve_does_not_read_against_their_descriptions(
    built: dict[str, Path],
) -> None:
    varcat = read_light_curve(str(built["hlsp-k2varcat"]))
    with fits.open(built["hlsp-k2varcat"]) as hdul:
        table = hdul[1].data
        np.testing.assert_array_equal(varcat.time, table["TIME"] + 2454833.0)
        np.testing.assert_array_equal(varcat.flux, table["DETFLUX"])
    assert varcat.provenance.time_reference == "header"  # the epoch of TUNIT1
    assert (varcat.ids.epic, varcat.segment, varcat.ids.label) == (202059697, 0, "EPIC 202059697")
    np.testing.assert_array_equal(varcat.good, np.isfinite(varcat.time) & np.isfinite(varcat.flux))
    diamante = read_light_curve(str(built["hlsp-diamante"]))
    with fits.open(built["hlsp-diamante"]) as hdul:
        table = hdul[1].data
        np.testing.assert_array_equal(diamante.time, table["BTJD"] + 2457000.0)
        np.testing.assert_array_equal(diamante.flux, table["LC1_AP2"])
        np.testing.assert_array_equal(diamante.flux_err, table["ELC1_AP2"])
        flagged = table["FLAG_AP2"] != 0
    np.testing.assert_array_equal(
        diamante.good, ~flagged & np.isfinite(diamante.time) & np.isfinite(diamante.flux)
    )
    assert diamante.segment == -1 and diamante.ids.tic == 36734222


def test_gaia_named_products_keep_the_gaia_id_and_the_tic_cross_id(
    built: dict[str, Path], tmp_path: Path
) -> None:
    cdips = read_light_curve(str(built["hlsp-cdips"]))
    assert (cdips.ids.label, cdips.ids.tic) == (f"Gaia DR2 {GAIA_DR2}", 93270923)
    tglc = read_light_curve(str(built["hlsp-tglc"]))
    assert (tglc.ids.label, tglc.ids.tic) == (f"Gaia DR3 {GAIA_DR3}", 140898436)
    # no TIC cross-ID in the file: the star is its Gaia ID alone
    with fits.open(built["hlsp-tglc"]) as hdul:
        del hdul[0].header["TICID"]
        bare = tmp_path / built["hlsp-tglc"].name
        hdul.writeto(bare)
    alone = read_light_curve(str(bare))
    assert (alone.ids.tic, alone.ids.label, alone.segment) == (None, f"Gaia DR3 {GAIA_DR3}", 1)


def test_recognised_by_header_when_renamed(built: dict[str, Path], tmp_path: Path) -> None:
    """A file fetched through MAST's download URL has no hlsp_ name: the header decides."""
    for name in ("hlsp-k2sff", "hlsp-everest", "hlsp-qlp", "hlsp-tasoc", "hlsp-pathos",
                 "hlsp-cdips", "hlsp-tglc", "hlsp-kepseismic", "hlsp-diamante",
                 "hlsp-k2varcat"):  # fmt: skip
        data = built[name].read_bytes()
        lc = parse_light_curve("https://mast.stsci.edu/api/v0.1/Download/file?uri=x", data)
        assert lc.provenance.product_type == name


# ------------------------------------------------------------------------- inspect


def test_inspect_prints_mission_ids_segment_and_bjd_range(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", *map(str, built.values())]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(built)
    for line, (name, path) in zip(lines, built.items(), strict=True):
        mission, (catalogue, number), segment = IDENTITY[name]
        assert line.startswith(f"{path}: {mission} ")
        assert f"{catalogue.upper()}={number}" in line and f"segment={segment}" in line
        assert f" {name} " in line and "BJD_TDB 24" in line
    assert main(["inspect", "--json", str(built["hlsp-tglc"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["object"] == f"Gaia DR3 {GAIA_DR3}" and summary["tic"] == 140898436


# ------------------------------------------------------------------ hostile HLSP files


def test_damaged_hlsp_files_give_typed_errors(built: dict[str, Path], tmp_path: Path) -> None:
    for name in ("hlsp-k2sff", "hlsp-cdips", "hlsp-tglc"):
        data = built[name].read_bytes()
        for cut in (100, 2880, 2880 * 2 + 500, len(data) - 3000):
            with pytest.raises(ProductError) as info:
                parse_light_curve(f"cut-{name}.fits", data[:cut])
            assert f"cut-{name}.fits" in str(info.value)
    # a crafted ID: typed, never quoted
    with fits.open(built["hlsp-qlp"]) as hdul:
        hdul[0].header["TICID"] = -5
        crafted = tmp_path / built["hlsp-qlp"].name
        hdul.writeto(crafted)
    with pytest.raises(CorruptProductError, match="TICID is a negative integer"):
        read_light_curve(str(crafted))
    # a text column where the flux should be
    with fits.open(built["hlsp-k2sff"]) as hdul:
        table = hdul[1].data
        columns = [(c.name, c.format, table[c.name]) for c in hdul[1].columns if c.name != "FCOR"]
        columns.append(("FCOR", "8A", np.array(["x"] * N)))
        text = _write(
            tmp_path / ("text-" + built["hlsp-k2sff"].name),
            dict(hdul[0].header),
            _table(columns, "BESTAPER", K2_REF),
        )
    with pytest.raises(UnsupportedProductError, match=r"FCOR \(flux\) of table .* holds text"):
        read_light_curve(str(text))


# -------------------------------------------------------------- discovery by catalogue ID


class HlspMast:
    """Answers like MAST for HLSP observations named as the teams name them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(("observations", dict(criteria)))
        if criteria["obs_collection"] != "HLSP":
            return []
        records = {
            "EPIC 211117077": ("K2SFF", 1),
            "211117077": ("EVEREST", 2),
            "424865156": ("QLP", 3),
            "TIC 424865156": ("TGLC", 4),
        }
        return [
            {
                "obsid": str(obsid),
                "obs_collection": "HLSP",
                "target_name": name,
                "provenance_name": provenance,
                "s_ra": 1.0,
                "s_dec": 2.0,
            }
            for name, (provenance, obsid) in records.items()
            if name in criteria["target_name"]
        ]

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        self.calls.append(("products", list(obsids)))
        names = {
            "1": "hlsp_k2sff_k2_lightcurve_211117077-c04_kepler_v1_llc.fits",
            "2": "hlsp_everest_k2_llc_211117077-c04_kepler_v2.0_lc.fits",
            "3": "hlsp_qlp_tess_ffi_s0014-0000000424865156_tess_v01_llc.fits",
            "4": f"hlsp_tglc_tess_ffi_gaiaid-{GAIA_DR3}-s0014-cam1-ccd1_tess_v1_llc.fits",
        }
        rows = []
        for obsid in obsids:
            name = names[obsid]
            rows.append({"obsID": obsid, "parent_obsid": obsid, "productFilename": name,
                         "dataURI": f"mast:HLSP/x/{name}", "size": 99})  # fmt: skip
            rows.append({"obsID": obsid, "parent_obsid": obsid, "size": 9,
                         "productFilename": name.replace(".fits", ".png"),
                         "dataURI": "mast:HLSP/x/plot.png"})  # fmt: skip
        return rows

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        self.calls.append(("paths", list(data_uris)))
        return [f"mast/hlsp/{uri.rsplit('/', 1)[-1]}" for uri in data_uris]

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"MAST was asked {name}")


class NoNetwork:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"MAST was called ({name}) although the answer is recorded")


def test_hlsps_are_discovered_by_catalogue_id_and_replayed_offline(tmp_path: Path) -> None:
    backend = HlspMast()
    client = MastClient(MastSettings(cache_dir=tmp_path), backend)  # type: ignore[arg-type]
    targets = ["EPIC 211117077", "TIC 424865156"]
    frame, warnings_ = discover(targets, via="auto", products=["hlsp"], mast=client)
    asked = [c[1] for c in backend.calls if c[0] == "observations"]
    assert {a["obs_collection"] for a in asked} == {"HLSP"}  # the mission collections are not asked
    assert "EPIC 211117077" in asked[0]["target_name"] + asked[-1]["target_name"]
    assert sorted(frame["product_type"]) == ["hlsp-everest", "hlsp-k2sff", "hlsp-qlp", "hlsp-tglc"]
    assert set(frame["target"]) == set(targets) and not warnings_
    row = frame.set_index("product_type").loc["hlsp-tglc"]
    assert (row["tic"], row["segment"], row["mission"]) == (424865156, 14, "TESS")
    assert frame.set_index("product_type").loc["hlsp-k2sff", "epic"] == 211117077
    assert frame["s3_uri"].str.startswith("s3://stpubdata/mast/hlsp/").all()
    # one product only, by its registered name; the recorded answers replay offline
    offline = MastClient(MastSettings(cache_dir=tmp_path, offline=True), NoNetwork())  # type: ignore[arg-type]
    again, _ = discover(targets, via="auto", products=["hlsp"], mast=offline)
    pd.testing.assert_frame_equal(frame, again)
    only, _ = discover(targets, via="mast", products=["hlsp-k2sff", "hlsp-tglc"], mast=client)
    assert sorted(only["product_type"]) == ["hlsp-k2sff", "hlsp-tglc"]
    ids = [parse_target(t) for t in targets]
    by_mast, _ = discover_mast(ids, offline, products=["hlsp"])
    pd.testing.assert_frame_equal(frame, by_mast)


def test_mission_products_only_never_bring_hlsps(tmp_path: Path) -> None:
    """An HLSP reaches a manifest, and so the cube (in its mission's slot), only when the
    user asks for it: the default products are the missions' own."""
    backend = HlspMast()
    client = MastClient(MastSettings(cache_dir=tmp_path), backend)  # type: ignore[arg-type]
    frame, _ = discover(["EPIC 211117077"], via="mast", mast=client)
    assert frame.empty
    assert {c[1]["obs_collection"] for c in backend.calls if c[0] == "observations"} == {"K2"}


def test_an_hlsp_in_the_manifest_reaches_its_missions_slot(built: dict[str, Path]) -> None:
    """The read pass of ingest (as a worker runs it) takes an HLSP like any product: its
    facts name its mission, whose slot of the cube its flux fills."""
    from starskope_dask.config import GridConfig, ReadConfig
    from starskope_dask.pipeline import _read_and_grid

    urls = [str(built[name]) for name in ("hlsp-k2sff", "hlsp-qlp", "hlsp-kepseismic")]
    results = dict(_read_and_grid(urls, None, ReadConfig(), GridConfig(), 2))
    for url, mission in zip(urls, ("K2", "TESS", "Kepler"), strict=True):
        result = results[url]
        assert not isinstance(result, ProductError), result
        facts, gridded, _ = result
        assert facts["mission"] == mission and gridded.index.size > 0
