"""The registry of high-level science products (HLSPs) read as light curves.

One frozen :class:`HlspFormat` per product says everything the reader and discovery need
to know about it: its name (the product type, as ``starskope discover --product`` and the
reader both spell it), how a file of it is recognised (the ``hlsp_<token>_...`` file name,
header keywords, the table's structure), which table holds the light curve, its time
column and the reference epoch that makes it BJD_TDB, its default and alternative flux
columns, its flux error, its quality column and how that maps onto the ``default``,
``hard`` and ``hardest`` masks, and where the star's identity is written.

:mod:`starskope_dask.read` consults the registry while planning a file's columns
(:func:`recognise`); :mod:`starskope_dask.discover` names products with it
(:func:`product_type_for_file`, :func:`file_facts`, :func:`matches`). The module holds
data and pure functions on names and header values only: nothing here reads bytes.

Where the descriptions come from (each format's ``source``): lightkurve's readers
(``lightkurve/io/<format>.py``, v2.x), which are also the oracle of the tests, and MAST's
own descriptions (the HLSP pages and the ``MASTDataDelivery`` documentation). Choices that
differ from lightkurve are stated in each format's ``notes``.

Quality masks: ``default`` is lightkurve's default for every format lightkurve reads, so
the good cadences are the same as lightkurve's; ``hard`` and ``hardest`` add the
producer's own flags that lightkurve does not apply (said in ``notes``). A format whose
flag is only good/bad drops flagged cadences under every mask but ``none``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence, Set
from typing import Any, Literal

#: Quality presets with lightkurve's meanings (``lightkurve.utils.*QualityFlags``).
KEPLER_MASKS = {"default": 1130799, "hard": 1664431, "hardest": 2096639}
TESS_MASKS = {"default": 17087, "hard": 24319, "hardest": 65535}
#: Every flag a 32-bit quality word can hold that a bitmask may name (``read.quality_bitmask``
#: is at most ``2**31 - 1``).
EVERY_FLAG = 2**31 - 1
#: EVEREST's own quality bits (``everest/config.py``: QUALITY_BAD=23, NAN=24, OUT=25,
#: REC=26, TRN=27, 1-based), set on top of the Kepler flags.
EVEREST_BITS = sum(2 ** (bit - 1) for bit in (23, 24, 25, 26, 27))
#: QLP's "low precision" flag: bit 13 (4096) in sectors 1-55, bit 31 (2**30) from sector 56.
QLP_LOW_PRECISION = 2**12 | 2**30
#: eleanor's two flags beyond the 16 of TESS SPOC (bits 18 and 19, 1-based).
ELEANOR_BITS = 2**17 | 2**18

TimeReference = Literal["header", "fixed", "tunit"]
QualityKind = Literal["bits", "letters", "none"]
Reader = Literal["table", "builtin"]


def _masks(default: int, hard: int, hardest: int) -> Mapping[str, int]:
    return {"none": 0, "default": default, "hard": hard, "hardest": hardest}


@dataclasses.dataclass(frozen=True)
class HlspFormat:
    """One light-curve HLSP: how to recognise a file of it and read its light curve.

    Attributes
    ----------
    name : str
        The product type, as discovery and the reader name it (``hlsp-k2sff``).
    title : str
        The product's own name (``K2SFF``).
    mission : str
        ``Kepler``, ``K2`` or ``TESS``: the mission whose data the product is made from.
    token : str
        The second field of the product's file names (``hlsp_<token>_...``).
    reader : {"table", "builtin"}
        ``table``: read from this description. ``builtin``: read by the reader's own
        pipeline-product path (the four products read before the registry existed), listed
        here so that names, discovery and the README agree.
    file_pattern : str
        Regular expression a file name of a *light curve* of the product matches (the
        product's other files, such as plots and validation reports, do not).
    origin : tuple of str
        Lower-case texts one of which the primary ``ORIGIN`` holds in a file of it.
    header_text : str
        Text the primary header holds (in any card, COMMENT included), or ``""``.
    signature : frozenset of str
        Column names that together identify the product's table, or empty.
    extension : str
        The EXTNAME of the light-curve table, or ``""`` (the first table with the time
        column).
    time : str
        The time column.
    time_reference : {"header", "fixed", "tunit"}
        ``header``: BJD_TDB = time + BJDREFI + BJDREFF of the header (``time_offset`` when
        the header has none); ``fixed``: time + ``time_offset``; ``tunit``: the offset
        written in the time column's unit (``TUNIT1 = 'BJD - 2454833'``), else
        ``time_offset``.
    time_offset : float
        Days added to the time column (see ``time_reference``).
    flux : str
        The default flux column (``read.flux = "pdcsap"``).
    raw_flux : str
        The flux column of ``read.flux = "sap"``.
    other_fluxes : tuple of str
        Further flux columns, chosen with ``read.column_map``.
    flux_errors : mapping
        Flux column to its error column(s), tried in order; a flux column not listed uses
        ``<FLUX>_ERR`` when the table has it.
    error_of_raw : bool
        The file's one error column (``FLUX_ERR``) belongs to ``raw_flux``: the error of any
        other flux is scaled by ``flux / raw_flux`` (as lightkurve does for eleanor).
    quality : str
        The quality column (``{ap}`` stands for the flux column's aperture digit), or ``""``.
    quality_kind : {"bits", "letters", "none"}
        ``bits``: flag words; ``letters``: one character a cadence, ``good_letters`` good
        (any other letter becomes flag 1).
    good_letters : tuple of str
        The letters of a good cadence, for ``letters``.
    masks : mapping
        The integer bitmask of each preset (``none``, ``default``, ``hard``, ``hardest``).
    id_keywords : tuple of str
        Header keywords holding the mission's catalogue ID (TIC, EPIC or KIC), in order.
    id_pattern : str
        Regular expression whose first group is the catalogue ID in the file name, or ``""``.
    gaia_pattern : str
        Regular expression whose first group is a Gaia source ID in the file name, or ``""``.
    gaia_release : str
        The Gaia release of ``gaia_pattern`` (``DR2``, ``DR3``).
    segment_pattern : str
        Regular expression whose first group is the campaign or sector in the file name, or
        ``""`` (a product of several segments: its segment is unknown, -1).
    lightkurve : str
        The ``format=`` of lightkurve's reader of the product, or ``""`` if it has none.
    source : str
        Where the description comes from.
    notes : str
        Choices made, and where they differ from lightkurve.
    """

    name: str
    title: str
    mission: str
    token: str
    reader: Reader = "table"
    file_pattern: str = r"[_-](llc|lc)\.fits(\.gz)?$"
    origin: tuple[str, ...] = ()
    header_text: str = ""
    signature: frozenset[str] = frozenset()
    extension: str = ""
    time: str = "TIME"
    time_reference: TimeReference = "header"
    time_offset: float = 2457000.0
    flux: str = ""
    raw_flux: str = ""
    other_fluxes: tuple[str, ...] = ()
    flux_errors: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    error_of_raw: bool = False
    quality: str = ""
    quality_kind: QualityKind = "bits"
    good_letters: tuple[str, ...] = ()
    masks: Mapping[str, int] = dataclasses.field(default_factory=lambda: _masks(0, 0, 0))
    id_keywords: tuple[str, ...] = ()
    id_pattern: str = ""
    gaia_pattern: str = ""
    gaia_release: str = ""
    segment_pattern: str = ""
    lightkurve: str = ""
    source: str = ""
    notes: str = ""

    @property
    def catalogue(self) -> str:
        """``KIC``, ``EPIC`` or ``TIC``: the catalogue of the mission's IDs."""
        return {"Kepler": "KIC", "K2": "EPIC", "TESS": "TIC"}[self.mission]

    @property
    def fluxes(self) -> tuple[str, ...]:
        """Every flux column the product offers, the default first."""
        return tuple(dict.fromkeys((self.flux, self.raw_flux, *self.other_fluxes)))

    def flux_column(self, kind: str) -> str:
        """The flux column of ``read.flux`` (``pdcsap``: the default, ``sap``: raw)."""
        return self.raw_flux if kind == "sap" else self.flux

    def error_columns(self, flux: str) -> tuple[str, ...]:
        """Candidate error columns of a flux column, in order of preference."""
        listed = self.flux_errors.get(flux.upper())
        return listed if listed is not None else (f"{flux.upper()}_ERR",)

    def quality_column(self, flux: str) -> str:
        """The quality column that goes with a flux column (``""``: none)."""
        if "{ap}" not in self.quality:
            return self.quality
        digit = flux[-1] if flux[-1:].isdigit() else "1"
        return self.quality.replace("{ap}", digit)

    def bitmask(self, preset: str) -> int:
        """The integer bitmask of a preset (``none``, ``default``, ``hard``, ``hardest``)."""
        return int(self.masks[preset])


def _errors(pairs: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return {flux: tuple(errors) for flux, errors in pairs.items()}


_K2_NAME = r"(\d{9})-c(\d{2,3})"
_CDIPS_APERTURES = (1, 2, 3)
_PATHOS_FLUXES = tuple(f"AP{n}_FLUX_{kind}" for n in (1, 2, 3, 4) for kind in ("COR", "RAW"))

FORMATS: tuple[HlspFormat, ...] = (
    HlspFormat(
        name="hlsp-k2sff",
        title="K2SFF",
        mission="K2",
        token="k2sff",
        signature=frozenset({"T", "FCOR", "FRAW", "ARCLENGTH", "MOVING"}),
        extension="BESTAPER",
        time="T",
        time_offset=2454833.0,
        flux="FCOR",
        raw_flux="FRAW",
        quality="MOVING",
        masks=_masks(0, 1, EVERY_FLAG),
        id_keywords=("KEPLERID",),
        id_pattern=_K2_NAME,
        segment_pattern=r"\d{9}-c(\d{2,3})",
        lightkurve="k2sff",
        source="lightkurve io/k2sff.py; MAST K2SFF README (MASTDataDelivery doc_hlsp_k2sff.md)",
        notes=(
            "Table BESTAPER (the best of 20 apertures; the others are CIRC_APERn, PRF_APERn). "
            "T is BJD - 2454833 (BJDREFI/BJDREFF of the table). MOVING = 1 flags a thruster "
            "firing: lightkurve applies no mask, nor does 'default'; 'hard' drops the "
            "thruster firings. No flux error."
        ),
    ),
    HlspFormat(
        name="hlsp-everest",
        title="EVEREST",
        mission="K2",
        token="everest",
        header_text="EVEREST",
        signature=frozenset({"CADN", "FLUX", "FRAW", "FRAW_ERR", "QUALITY", "TIME"}),
        time_offset=2454833.0,
        flux="FLUX",
        raw_flux="FRAW",
        other_fluxes=("FCOR",),
        flux_errors=_errors({"FLUX": (), "FCOR": (), "FRAW": ("FRAW_ERR",)}),
        quality="QUALITY",
        masks=_masks(
            KEPLER_MASKS["default"],
            KEPLER_MASKS["hard"],
            KEPLER_MASKS["hardest"] | EVEREST_BITS,
        ),
        id_keywords=("KEPLERID",),
        id_pattern=_K2_NAME,
        segment_pattern=r"\d{9}-c(\d{2,3})",
        lightkurve="everest",
        source="lightkurve io/everest.py; EVEREST's everest/fits.py and config.py",
        notes=(
            "FLUX is the PLD-detrended flux, FCOR it with the CBV correction, FRAW the raw "
            "SAP flux (error FRAW_ERR; the detrended fluxes have none, as in lightkurve). "
            "QUALITY holds the Kepler flags plus EVEREST's bits 23-27 (bad, NaN, outlier, "
            "recursive, transit): 'default' and 'hard' are lightkurve's Kepler masks, "
            "'hardest' adds EVEREST's bits (lightkurve's does not)."
        ),
    ),
    HlspFormat(
        name="hlsp-k2sc",
        title="K2SC",
        mission="K2",
        token="k2sc",
        reader="builtin",
        extension="PDC",
        time="TIME",
        time_offset=2454833.0,
        flux="FLUX",
        raw_flux="FLUX",
        quality="QUALITY",
        masks=_masks(*KEPLER_MASKS.values()),
        id_keywords=("KEPLERID",),
        id_pattern=_K2_NAME,
        segment_pattern=r"\d{9}-c(\d{2,3})",
        source="K2SC release README (tables PDC and SAP: time, flux, error, quality)",
        notes="Table PDC (read.flux = pdcsap) or SAP; lightkurve has no K2SC reader.",
    ),
    HlspFormat(
        name="hlsp-k2varcat",
        title="K2VARCAT",
        mission="K2",
        token="k2varcat",
        signature=frozenset({"TIME", "APTFLUX", "DETFLUX"}),
        time_reference="tunit",
        time_offset=2454833.0,
        flux="DETFLUX",
        raw_flux="APTFLUX",
        id_keywords=("KEPLERID",),
        id_pattern=_K2_NAME,
        segment_pattern=r"\d{9}-c(\d{2,3})",
        quality_kind="none",
        source="MAST K2VARCAT description (MASTDataDelivery doc_hlsp_k2varcat.md)",
        notes=(
            "TIME is BJD minus the epoch in TUNIT1 ('BJD - 2454833'). DETFLUX is detrended "
            "(thruster firings and systematics removed), APTFLUX extracted only. No quality "
            "column; errors <FLUX>_ERR where the file has them. lightkurve detects the "
            "format but has no reader."
        ),
    ),
    HlspFormat(
        name="hlsp-qlp",
        title="QLP",
        mission="TESS",
        token="qlp",
        origin=("mit/qlp",),
        flux="SAP_FLUX",
        raw_flux="SAP_FLUX",
        other_fluxes=(
            "KSPSAP_FLUX",
            "KSPSAP_FLUX_SML",
            "KSPSAP_FLUX_LAG",
            "DET_FLUX",
            "DET_FLUX_SML",
            "DET_FLUX_LAG",
            "SYS_RM_FLUX",
        ),
        flux_errors=_errors(
            {
                "SAP_FLUX": ("KSPSAP_FLUX_ERR", "DET_FLUX_ERR"),
                "KSPSAP_FLUX": ("KSPSAP_FLUX_ERR",),
                "DET_FLUX": ("DET_FLUX_ERR",),
                "SYS_RM_FLUX": ("DET_FLUX_ERR",),
            }
        ),
        quality="QUALITY",
        masks=_masks(
            TESS_MASKS["default"],
            TESS_MASKS["hard"] | QLP_LOW_PRECISION,
            TESS_MASKS["hardest"] | QLP_LOW_PRECISION,
        ),
        id_keywords=("TICID",),
        id_pattern=r"s\d{4}-(\d{16})",
        segment_pattern=r"_s(\d{4})-\d{16}",
        lightkurve="qlp",
        source="lightkurve io/qlp.py; QLP data product description (MAST)",
        notes=(
            "SAP_FLUX by default, as lightkurve (KSPSAP/DET fluxes are spline-detrended and "
            "remove stellar variability; choose them with column_map). Its error is "
            "KSPSAP_FLUX_ERR (sectors 1-55) or DET_FLUX_ERR (56+). 'hard'/'hardest' add QLP's "
            "low-precision flag (bit 13 in sectors 1-55, bit 31 from 56), as lightkurve."
        ),
    ),
    HlspFormat(
        name="hlsp-tasoc",
        title="TASOC",
        mission="TESS",
        token="tasoc",
        origin=("tasoc/aarhus",),
        file_pattern=r"[_-](llc|lc)\.fits(\.gz)?$",
        flux="FLUX_CORR",
        raw_flux="FLUX_RAW",
        other_fluxes=("FLUX_BKG",),
        quality="QUALITY",
        masks=_masks(0, 1 | 2, EVERY_FLAG),
        id_keywords=("TICID",),
        id_pattern=r"tic(\d+)",
        segment_pattern=r"-s(\d{2,4})-",
        lightkurve="tasoc",
        source="lightkurve io/tasoc.py; TASOC photometry/quality.py (CorrectorQualityFlags)",
        notes=(
            "QUALITY holds TASOC's corrector flags (1 FlaggedBadData, 2 ManualExclude, 4 "
            "SigmaClip, ...), not the TESS flags (those are PIXEL_QUALITY). lightkurve ignores "
            "them and so does 'default'; 'hard' is TASOC's own recommended mask (1|2)."
        ),
    ),
    HlspFormat(
        name="hlsp-pathos",
        title="PATHOS",
        mission="TESS",
        token="pathos",
        signature=frozenset(
            {"PSF_FLUX_RAW", "PSF_FLUX_COR", "AP4_FLUX_RAW", "AP4_FLUX_COR", "SKY_LOCAL"}
        ),
        flux="PSF_FLUX_COR",
        raw_flux="PSF_FLUX_RAW",
        other_fluxes=_PATHOS_FLUXES,
        quality="DQUALITY",
        masks=_masks(*TESS_MASKS.values()),
        id_keywords=("TICID",),
        id_pattern=r"tic-(\d+)",
        segment_pattern=r"-s(\d{3,4})_",
        lightkurve="pathos",
        source="lightkurve io/pathos.py",
        notes="PSF photometry (APn_FLUX_COR/RAW: aperture n = 1..4). No flux error.",
    ),
    HlspFormat(
        name="hlsp-cdips",
        title="CDIPS",
        mission="TESS",
        token="cdips",
        origin=("cdips",),
        time="TMID_BJD",
        time_reference="fixed",
        time_offset=0.0,
        flux="IFL1",
        raw_flux="IFL1",
        other_fluxes=(
            *(f"IFL{n}" for n in _CDIPS_APERTURES),
            *(f"{kind}{n}" for kind in ("IRM", "TFA", "PCA") for n in _CDIPS_APERTURES),
        ),
        flux_errors=_errors(
            {
                **{f"IFL{n}": (f"IFE{n}",) for n in _CDIPS_APERTURES},
                **{f"IRM{n}": (f"IRE{n}",) for n in _CDIPS_APERTURES},
                **{f"{k}{n}": () for k in ("TFA", "PCA") for n in _CDIPS_APERTURES},
            }
        ),
        quality="IRQ{ap}",
        quality_kind="letters",
        good_letters=("G", "0"),
        masks=_masks(1, 1, 1),
        id_keywords=("TICID",),
        gaia_pattern=r"gaiatwo(\d+)",
        gaia_release="DR2",
        segment_pattern=r"gaiatwo\d+-(\d{4})-",
        lightkurve="cdips",
        source="lightkurve io/cdips.py; CDIPS README (MAST hlsp_cdips_tess_ffi_all_tess_v01)",
        notes=(
            "TMID_BJD is the full BJD_TDB (no offset); lightkurve labels it BTJD, so its "
            "time.value equals TMID_BJD. Default flux IFL1 (instrumental flux, aperture 1; "
            "lightkurve 2.x defaults to IRM1, a magnitude, where its newer releases default "
            "to IFL1): IRMn, TFAn, PCAn are magnitudes, chosen with column_map. IRQn is 'G' "
            "(or '0') for a good cadence: any other is flagged under every mask but none."
        ),
    ),
    HlspFormat(
        name="hlsp-tglc",
        title="TGLC",
        mission="TESS",
        token="tglc",
        origin=("ucsb/tglc",),
        time="TIME",
        time_reference="fixed",
        time_offset=2457000.0,
        flux="CAL_PSF_FLUX",
        raw_flux="CAL_APER_FLUX",
        other_fluxes=("PSF_FLUX", "APERTURE_FLUX", "BACKGROUND"),
        flux_errors=_errors({}),
        quality="TESS_FLAGS",
        masks=_masks(*TESS_MASKS.values()),
        id_keywords=("TICID",),
        gaia_pattern=r"gaiaid-(\d+)",
        gaia_release="DR3",
        segment_pattern=r"-s(\d{4})-",
        lightkurve="tglc",
        source="lightkurve io/tglc.py; MAST TGLC HLSP page",
        notes=(
            "Columns are lower case (time, cal_psf_flux, ...); time is BTJD. Calibrated (and "
            "normalised) PSF flux by default, calibrated aperture flux for read.flux = sap. "
            "No flux error column. TESS_flags take the TESS masks; TGLC_flags are not "
            "applied (as lightkurve). Named by Gaia DR3 ID; the TIC ID from TICID."
        ),
    ),
    HlspFormat(
        name="hlsp-gsfc-eleanor-lite",
        title="GSFC-ELEANOR-LITE",
        mission="TESS",
        token="gsfc-eleanor-lite",
        flux="CORR_FLUX",
        raw_flux="RAW_FLUX",
        other_fluxes=("PCA_FLUX", "PSF_FLUX"),
        flux_errors=_errors(
            {name: ("FLUX_ERR",) for name in ("RAW_FLUX", "CORR_FLUX", "PCA_FLUX", "PSF_FLUX")}
        ),
        error_of_raw=True,
        quality="QUALITY",
        masks=_masks(
            TESS_MASKS["default"], TESS_MASKS["hard"], TESS_MASKS["hardest"] | ELEANOR_BITS
        ),
        id_keywords=("TIC_ID", "TICID"),
        id_pattern=r"s\d{4}-(\d{16})",
        segment_pattern=r"_s(\d{4})-\d{16}",
        lightkurve="eleanor",
        source="lightkurve io/eleanor.py; MAST GSFC-ELEANOR-LITE page",
        notes=(
            "Recognised by its file name (a renamed file reads as eleanor). FLUX_ERR is the "
            "error of RAW_FLUX: the error of another flux is FLUX_ERR * flux / RAW_FLUX, as "
            "lightkurve. 'hardest' adds eleanor's bits 18 and 19, as lightkurve."
        ),
    ),
    HlspFormat(
        name="hlsp-eleanor",
        title="eleanor",
        mission="TESS",
        token="eleanor",
        reader="builtin",
        flux="CORR_FLUX",
        raw_flux="RAW_FLUX",
        quality="QUALITY",
        masks=_masks(*TESS_MASKS.values()),
        id_keywords=("TICID",),
        id_pattern=r"tic(\d+)",
        segment_pattern=r"_s(\d{2,4})_",
        lightkurve="eleanor",
        source="lightkurve io/eleanor.py",
        notes=(
            "Read by the pipeline-product path (CORR_FLUX and RAW_FLUX columns), which takes "
            "the TIC ID from TICID or OBJECT (not eleanor's TIC_ID)."
        ),
    ),
    HlspFormat(
        name="tess-spoc-ffi",
        title="TESS-SPOC FFI",
        mission="TESS",
        token="tess-spoc",
        reader="builtin",
        flux="PDCSAP_FLUX",
        raw_flux="SAP_FLUX",
        quality="QUALITY",
        masks=_masks(*TESS_MASKS.values()),
        id_keywords=("TICID",),
        id_pattern=r"s\d{4}-(\d{16})",
        segment_pattern=r"_s(\d{4})-\d{16}",
        lightkurve="tess",
        source="TESS SPOC FFI light curves: the TESS pipeline format",
        notes="Read as a TESS pipeline light curve; discovery also accepts hlsp-tess-spoc.",
    ),
    HlspFormat(
        name="hlsp-kepseismic",
        title="KEPSEISMIC",
        mission="Kepler",
        token="kepseismic",
        origin=("cea & ssi",),
        file_pattern=r"_cor-filt-inp\.fits(\.gz)?$",
        time_reference="fixed",
        time_offset=2400000.5,
        flux="FLUX",
        raw_flux="FLUX",
        quality_kind="none",
        id_keywords=("KEPLERID",),
        id_pattern=r"kplr(\d{9})",
        lightkurve="kepseismic",
        source="lightkurve io/kepseismic.py",
        notes=(
            "One light curve of the whole mission (segment -1), gaps inpainted, in ppm. TIME "
            "is read as lightkurve reads it: days since MJD 0 (BJD - 2400000.5). No quality "
            "column."
        ),
    ),
    HlspFormat(
        name="hlsp-diamante",
        title="DIAMANTE",
        mission="TESS",
        token="diamante",
        signature=frozenset({"BTJD", "LC1_AP1", "LC1_AP2"}),
        time="BTJD",
        time_reference="fixed",
        time_offset=2457000.0,
        flux="LC1_AP2",
        raw_flux="LC2_AP2",
        other_fluxes=("LC1_AP1", "LC2_AP1"),
        flux_errors=_errors({f"LC{n}_AP{a}": (f"ELC{n}_AP{a}",) for n in (1, 2) for a in (1, 2)}),
        quality="FLAG_AP{ap}",
        masks=_masks(EVERY_FLAG, EVERY_FLAG, EVERY_FLAG),
        id_keywords=("TICID",),
        id_pattern=r"tic-(\d{16})",
        lightkurve="",
        source="MAST DIAMANTE page; the chronos package's reader (no column table published)",
        notes=(
            "Multi-sector light curves (segment -1). BTJD + 2457000. LCn_APa: n = 1 "
            "co-trended, 2 normalised; a = aperture radius 1 or 2 pixels (default 2). Any "
            "non-zero FLAG_APa drops the cadence (its bits are not published)."
        ),
    ),
    HlspFormat(
        name="hlsp-tess-data-alerts",
        title="TESS data alerts",
        mission="TESS",
        token="tess-data-alerts",
        reader="builtin",
        flux="PDCSAP_FLUX",
        raw_flux="SAP_FLUX",
        quality="QUALITY",
        masks=_masks(*TESS_MASKS.values()),
        id_keywords=("TICID",),
        id_pattern=r"phot_(\d{11})",
        segment_pattern=r"-s(\d{2,4})_",
        lightkurve="tess",
        source="TESS pipeline light-curve format",
        notes="Read as a TESS pipeline light curve.",
    ),
)

BY_NAME: Mapping[str, HlspFormat] = {f.name: f for f in FORMATS}
BY_TOKEN: Mapping[str, HlspFormat] = {f.token: f for f in FORMATS}
#: Other names discovery accepts for a product (``--product hlsp-tess-spoc``).
ALIASES: Mapping[str, str] = {"hlsp-tess-spoc": "tess-spoc-ffi"}
_GENERIC_LC = re.compile(r"(^|_)(llc|lc|fast-lc)[._]")


def file_token(name: str) -> str | None:
    """The ``<token>`` of an ``hlsp_<token>_...`` file name (any case), else None."""
    base = name.split("?", 1)[0].rsplit("/", 1)[-1].lower()
    if not base.startswith("hlsp_"):
        return None
    parts = base.split("_")
    return parts[1] if len(parts) > 1 and parts[1] else None


def format_of_file(name: str) -> HlspFormat | None:
    """The registered format a file name belongs to (by its token), else None."""
    token = file_token(name)
    return BY_TOKEN.get(token) if token is not None else None


def product_type_for_file(name: str) -> str | None:
    """The product type of an HLSP file name, or None when it is no light curve of one.

    A registered product's name when the file is one of its light curves; for an
    unregistered ``hlsp_<token>_...`` light curve (``_lc``/``_llc`` in the name),
    ``hlsp-<token>``.
    """
    base = name.split("?", 1)[0].rsplit("/", 1)[-1].lower()
    token = file_token(base)
    if token is None:
        return None
    known = BY_TOKEN.get(token)
    if known is not None:
        return known.name if re.search(known.file_pattern, base) else None
    return f"hlsp-{token}" if _GENERIC_LC.search(base) else None


def is_hlsp(product_type: str) -> bool:
    """True for a high-level science product type (what ``--product hlsp`` keeps)."""
    return product_type.startswith("hlsp-") or product_type in BY_NAME


def known_product(product: str) -> bool:
    """True for a product name discovery accepts: a registered name, alias or ``hlsp-*``."""
    return product in BY_NAME or product in ALIASES or product.startswith("hlsp-")


def matches(product_type: str | None, wanted: Sequence[str]) -> bool:
    """Whether a product type is one of ``wanted`` (``hlsp``: every HLSP; aliases)."""
    if product_type is None:
        return False
    for product in wanted:
        if product_type == ALIASES.get(product, product):
            return True
        if product == "hlsp" and is_hlsp(product_type):
            return True
    return False


def _first_group(pattern: str, text: str) -> str | None:
    if not pattern:
        return None
    found = re.search(pattern, text, re.IGNORECASE)
    return found.group(1) if found else None


def file_facts(name: str) -> dict[str, Any]:
    """What an HLSP file name says: mission, product type, catalogue ID, Gaia ID, segment.

    Keys: ``mission`` (``""`` if unknown), ``product_type``, ``catalogue`` and ``number``
    (the mission's catalogue ID, or None), ``gaia`` (a Gaia source ID, or None) and
    ``segment`` (None if the name has none).
    """
    base = name.split("?", 1)[0].rsplit("/", 1)[-1]
    fmt = format_of_file(base)
    facts: dict[str, Any] = {
        "mission": fmt.mission if fmt else "",
        "product_type": product_type_for_file(base),
        "catalogue": fmt.catalogue if fmt else None,
        "number": None,
        "gaia": None,
        "segment": None,
    }
    if fmt is None:
        return facts
    number = _first_group(fmt.id_pattern, base)
    facts["number"] = int(number) if number is not None and int(number) > 0 else None
    gaia = _first_group(fmt.gaia_pattern, base)
    facts["gaia"] = int(gaia) if gaia is not None and int(gaia) > 0 else None
    segment = _first_group(fmt.segment_pattern, base)
    facts["segment"] = int(segment) if segment is not None and int(segment) <= 9999 else None
    return facts


def recognise(
    name: str,
    primary: Mapping[str, Any],
    primary_text: str,
    tables: Sequence[tuple[str, Set[str]]],
) -> HlspFormat | None:
    """The registered format of a file, from its name, primary header and tables.

    The file name decides first (``hlsp_<token>_...``); else the primary ``ORIGIN``
    (QLP, TASOC, CDIPS, TGLC, KEPSEISMIC), a text in the primary header (EVEREST), or the
    table's structure (K2SFF, PATHOS, K2VARCAT, DIAMANTE), as lightkurve's
    ``detect_filetype`` does.

    Parameters
    ----------
    name : str
        The file name or URL.
    primary : mapping
        The primary header's values.
    primary_text : str
        The primary header's cards as text.
    tables : sequence of (str, set of str)
        Each binary table's EXTNAME (upper case) and column names (upper case).
    """
    by_name = format_of_file(name)
    if by_name is not None:
        return by_name
    origin = str(primary.get("ORIGIN") or "").strip().lower()
    for fmt in FORMATS:
        if fmt.reader != "table":
            continue
        if origin and any(text in origin for text in fmt.origin):
            return fmt
        if (
            fmt.header_text
            and fmt.header_text in primary_text
            and any(fmt.time in columns and fmt.flux in columns for _, columns in tables)
        ):
            return fmt
        if fmt.signature:
            for extname, columns in tables:
                if fmt.signature <= columns and (not fmt.extension or extname == fmt.extension):
                    return fmt
    return None


def readme_table() -> str:
    """The README's table of supported HLSP light curves (Markdown)."""
    lines = [
        "| product (`--product`) | format | mission | time column → BJD_TDB | default flux "
        "(`read.flux: sap`) | quality column: default / hard / hardest | star |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt in FORMATS:
        if fmt.time_reference == "header":
            time = f"`{fmt.time}` + BJDREFI + BJDREFF (else {fmt.time_offset:.10g})"
        elif fmt.time_reference == "tunit":
            time = f"`{fmt.time}` + the epoch in its TUNIT (else {fmt.time_offset:.10g})"
        elif fmt.time_offset:
            time = f"`{fmt.time}` + {fmt.time_offset:.10g}"
        else:
            time = f"`{fmt.time}` (full BJD_TDB)"
        flux = f"`{fmt.flux}`" + (f" (`{fmt.raw_flux}`)" if fmt.raw_flux != fmt.flux else "")
        if fmt.quality_kind == "none" or not fmt.quality:
            quality = "none"
        else:
            masks = " / ".join(
                "every flag" if fmt.bitmask(p) == EVERY_FLAG else str(fmt.bitmask(p))
                for p in ("default", "hard", "hardest")
            )
            kind = " (letters; G good)" if fmt.quality_kind == "letters" else ""
            quality = f"`{fmt.quality}`{kind}: {masks}"
        ids = ", ".join(f"`{k}`" for k in fmt.id_keywords) or "file name"
        if fmt.gaia_pattern:
            ids += f"; Gaia {fmt.gaia_release} ID from the file name (the star's name)"
        reader = "" if fmt.reader == "table" else " ¹"
        lines.append(
            f"| `{fmt.name}`{reader} | {fmt.title} | {fmt.mission} | {time} | {flux} | "
            f"{quality} | {fmt.catalogue} from {ids} |"
        )
    lines.append("")
    lines.append(
        "¹ read as a pipeline light curve (the reader's own path since before the registry)."
    )
    return "\n".join(lines)
