"""The ``read`` stage: one product URL to one :class:`~starskope_dask.records.LightCurve`.

Headers are parsed by :mod:`astropy.io.fits` (``Header.fromstring``); the binary table is
viewed in place with a NumPy structured dtype built from its ``TFORMn`` keywords, so only
the columns a light curve needs are converted. That path costs a fraction of opening the
file with ``astropy.io.fits.open`` or fitsio's header parser (see ``jobs/bench_read.py``),
and works the same on bytes fetched from S3 or HTTP as on local files.

Every failure is a :class:`~starskope_dask.errors.ProductError` naming the URL: corrupt or
truncated files raise :class:`~starskope_dask.errors.CorruptProductError`, valid FITS that is
not a light curve raises :class:`~starskope_dask.errors.UnsupportedProductError` listing the
columns it saw.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from starskope_dask.config import ReadConfig
from starskope_dask.errors import CorruptProductError, ProductError, UnsupportedProductError
from starskope_dask.fetch import decompress, fetch_bytes
from starskope_dask.records import LightCurve, Provenance, StarIds

logger = logging.getLogger(__name__)

BLOCK = 2880
CARD = 80

# Reference epochs of the missions' time columns (BKJD and BTJD).
MISSION_BJDREF = {"Kepler": 2454833.0, "K2": 2454833.0, "TESS": 2457000.0}

# Quality bitmasks with lightkurve's meanings (lightkurve.utils.*QualityFlags).
KEPLER_BITMASKS = {"none": 0, "default": 1130799, "hard": 1664431, "hardest": 2096639}
TESS_BITMASKS = {"none": 0, "default": 17087, "hard": 24319, "hardest": 65535}

_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])")
_TFORM_DTYPE = {
    "L": "i1",
    "B": "u1",
    "I": ">i2",
    "J": ">i4",
    "K": ">i8",
    "E": ">f4",
    "D": ">f8",
    "C": ">c8",
    "M": ">c16",
}


# --------------------------------------------------------------------------- time (pure)


def to_bjd_tdb(
    time: npt.ArrayLike, bjdrefi: float, bjdreff: float = 0.0
) -> npt.NDArray[np.float64]:
    """Convert a mission TIME column to BJD_TDB days: ``TIME + BJDREFI + BJDREFF``.

    The fractional reference is added to the small numbers first, which keeps float64
    precision (about 40 µs at BJD 2.46e6).
    """
    return float(bjdrefi) + (np.asarray(time, dtype=np.float64) + float(bjdreff))


def from_bjd_tdb(
    bjd: npt.ArrayLike, bjdrefi: float, bjdreff: float = 0.0
) -> npt.NDArray[np.float64]:
    """Invert :func:`to_bjd_tdb`: BJD_TDB days to days since ``BJDREFI + BJDREFF``."""
    return (np.asarray(bjd, dtype=np.float64) - float(bjdrefi)) - float(bjdreff)


def quality_bitmask_value(mission: str, bitmask: str | int) -> int:
    """Return the integer bitmask for a mission and a preset name or integer.

    Parameters
    ----------
    mission : str
        ``Kepler``, ``K2`` or ``TESS``.
    bitmask : str or int
        ``none``, ``default``, ``hard``, ``hardest`` (lightkurve's meanings) or an integer.
    """
    if isinstance(bitmask, int | np.integer):
        return int(bitmask)
    table = TESS_BITMASKS if mission == "TESS" else KEPLER_BITMASKS
    try:
        return table[bitmask]
    except KeyError:
        raise UnsupportedProductError(
            f"quality_bitmask={bitmask!r}", "unknown quality bitmask", f"use one of {list(table)}"
        ) from None


def good_cadences(
    time: npt.NDArray[np.float64],
    flux: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int32],
    bitmask: int,
) -> npt.NDArray[np.bool_]:
    """Cadences with finite time and flux and none of ``bitmask``'s flags set."""
    return np.isfinite(time) & np.isfinite(flux) & ((quality & bitmask) == 0)


# ------------------------------------------------------------------ FITS headers (pure)

_INTEGER = re.compile(r"^[+-]?\d+$")
_CONTINUED = "&"


class FitsHeader(Mapping[str, Any]):
    """A FITS header's keyword values, parsed from its 80-character cards on demand.

    One pass indexes the valued cards by keyword (the first occurrence wins, as in
    astropy); a value is parsed only when it is asked for. Strings, integers, floats
    (``E`` or ``D`` exponents) and logicals are parsed here; anything else (complex
    values, ``HIERARCH`` and ``CONTINUE`` long strings) is handed to astropy, so the
    values always agree with :class:`astropy.io.fits.Header`.

    Parameters
    ----------
    text : str
        The header's cards, up to and including ``END``.
    """

    __slots__ = ("_astropy", "_parsed", "_text", "_where")

    def __init__(self, text: str) -> None:
        self._text = text
        self._where: dict[str, int] = {}
        self._parsed: dict[str, Any] = {}
        self._astropy: fits.Header | None = None
        for start in range(0, len(text), CARD):
            if text[start + 8 : start + 10] == "= ":
                keyword = text[start : start + 8].rstrip()
                self._where.setdefault(keyword, start)
            elif text.startswith("HIERARCH", start):
                self._where.setdefault(text[start : start + 8], -1)

    def _parse(self, keyword: str, start: int) -> Any:
        if start < 0:
            return self._astropy_value(keyword)
        field = self._text[start + 10 : start + CARD].strip()
        if field.startswith("'"):
            end = 1
            while True:
                end = field.find("'", end)
                if end < 0:
                    raise ValueError(f"unterminated string in card {keyword}")
                if field.startswith("''", end):
                    end += 2
                    continue
                break
            value = field[1:end].replace("''", "'").rstrip()
            if value.endswith(_CONTINUED):
                return self._astropy_value(keyword)
            return value
        field = field.split("/", 1)[0].strip()
        if not field:
            return None
        if field == "T":
            return True
        if field == "F":
            return False
        if _INTEGER.match(field):
            return int(field)
        try:
            return float(field.replace("D", "E"))
        except ValueError:
            return self._astropy_value(keyword)

    def _astropy_value(self, keyword: str) -> Any:
        return self.to_astropy().get(keyword)

    def __getitem__(self, keyword: str) -> Any:
        try:
            return self._parsed[keyword]
        except KeyError:
            pass
        name = keyword.upper()
        try:
            start = self._where[name]
        except KeyError:
            if name.startswith("HIERARCH") and "HIERARCH" in self._where:
                value = self._astropy_value(name.removeprefix("HIERARCH").strip())
                if value is not None:
                    return value
            raise KeyError(keyword) from None
        value = self._parse(name, start)
        self._parsed[keyword] = value
        return value

    def get(self, keyword: str, default: Any = None) -> Any:
        """The keyword's value, or ``default`` when the header lacks it."""
        if keyword in self._parsed:
            return self._parsed[keyword]
        if keyword.upper() not in self._where and "HIERARCH" not in self._where:
            return default  # no exception raised and caught for the common miss
        try:
            return self[keyword]
        except KeyError:
            return default

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def to_astropy(self) -> fits.Header:
        """The same header as an :class:`astropy.io.fits.Header`."""
        if self._astropy is None:
            self._astropy = fits.Header.fromstring(self._text)
        return self._astropy


# ------------------------------------------------------------------ FITS layout (pure)


@dataclasses.dataclass(frozen=True)
class Hdu:
    """One HDU of a FITS file: its header and where its data lies in the file's bytes."""

    index: int
    header: FitsHeader
    data_offset: int
    data_size: int

    @property
    def is_table(self) -> bool:
        """True for a binary table extension."""
        return str(self.header.get("XTENSION", "")).strip().upper() == "BINTABLE"

    @property
    def name(self) -> str:
        """The EXTNAME, or ``HDU<n>``."""
        return str(self.header.get("EXTNAME", "") or f"HDU{self.index}")

    @functools.cached_property
    def columns(self) -> dict[str, _Column]:
        """Binary-table columns by upper-case name (parsed once)."""
        return table_columns(self)


def _data_size(header: FitsHeader) -> int:
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    size = 1
    for axis in range(1, naxis + 1):
        size *= int(header.get(f"NAXIS{axis}", 0))
    bitpix = abs(int(header.get("BITPIX", 8)))
    pcount = int(header.get("PCOUNT", 0))
    gcount = int(header.get("GCOUNT", 1))
    return bitpix // 8 * gcount * (pcount + size)


def fits_layout(url: str, data: bytes | memoryview) -> list[Hdu]:
    """Walk a FITS file's HDUs: parse each header, locate each data unit.

    Parameters
    ----------
    url : str
        Name used in error messages.
    data : bytes
        The file's bytes.

    Raises
    ------
    CorruptProductError
        If the bytes are not FITS, a header is damaged, or data is cut short.
    """
    view = memoryview(data)
    total = len(view)
    if total < BLOCK or bytes(view[:9]) != b"SIMPLE  =":
        start = bytes(view[:16])
        raise CorruptProductError(
            url,
            f"not a FITS file ({total} bytes, starts with {start!r})",
            "check that the URL points at a FITS light-curve product",
        )
    hdus: list[Hdu] = []
    offset = 0
    while offset < total:
        end_card = -1
        block_start = offset
        while end_card < 0:
            if block_start + BLOCK > total:
                raise CorruptProductError(
                    url,
                    f"header of HDU {len(hdus)} is truncated at byte {total}",
                    "the file is cut short; download it again",
                )
            block = bytes(view[block_start : block_start + BLOCK])
            found = block.find(b"END     ")
            while found >= 0 and found % CARD:
                found = block.find(b"END     ", found + 1)
            if found >= 0:
                end_card = block_start + found
            block_start += BLOCK
        try:
            header = FitsHeader(bytes(view[offset : end_card + CARD]).decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptProductError(
                url, f"header of HDU {len(hdus)} is damaged: {exc}", "download it again"
            ) from exc
        if hdus and "XTENSION" not in header:
            # Bytes after the last HDU that are not an extension: padding or junk; stop here.
            break
        try:
            size = _data_size(header)
        except (TypeError, ValueError) as exc:
            raise CorruptProductError(
                url, f"header of HDU {len(hdus)} has invalid NAXIS/BITPIX: {exc}"
            ) from exc
        data_offset = block_start
        if data_offset + size > total:
            raise CorruptProductError(
                url,
                f"file is truncated: HDU {len(hdus)} ({header.get('EXTNAME', 'PRIMARY')}) needs "
                f"{data_offset + size} bytes, the file has {total}",
                "download it again",
            )
        hdus.append(Hdu(len(hdus), header, data_offset, size))
        offset = data_offset + -(-size // BLOCK) * BLOCK
    return hdus


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    offset: int
    dtype: np.dtype[Any]
    repeat: int
    scale: float
    zero: float
    null: int | None


def table_columns(hdu: Hdu) -> dict[str, _Column]:
    """Columns of a binary table HDU by upper-case name, with their byte layout."""
    header = hdu.header
    columns: dict[str, _Column] = {}
    offset = 0
    for number in range(1, int(header.get("TFIELDS", 0)) + 1):
        tform = str(header.get(f"TFORM{number}", ""))
        match = _TFORM.match(tform)
        if match is None:
            raise CorruptProductError("", f"column {number} has an invalid TFORM {tform!r}")
        repeat = int(match.group(1) or 1)
        code = match.group(2)
        if code == "A":
            dtype, width = np.dtype(f"S{max(repeat, 1)}"), repeat
        elif code == "X":
            dtype, width = np.dtype("u1"), -(-repeat // 8)
            repeat = width
        elif code in ("P", "Q"):
            dtype, width = np.dtype(">i4" if code == "P" else ">i8"), 2 * (4 if code == "P" else 8)
            repeat = 2
        else:
            dtype = np.dtype(_TFORM_DTYPE[code])
            width = dtype.itemsize * repeat
        name = str(header.get(f"TTYPE{number}", f"COL{number}")).strip()
        null = header.get(f"TNULL{number}")
        columns[name.upper()] = _Column(
            name=name,
            offset=offset,
            dtype=dtype,
            repeat=repeat if code != "A" else 1,
            scale=float(header.get(f"TSCAL{number}", 1.0)),
            zero=float(header.get(f"TZERO{number}", 0.0)),
            null=int(null) if isinstance(null, int) else None,
        )
        offset += width
    return columns


def read_columns(
    url: str,
    data: bytes | memoryview,
    hdu: Hdu,
    names: list[str],
    dtypes: Mapping[str, npt.DTypeLike] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Read the named columns of a binary table as native-endian arrays (scaled, nulls NaN).

    Only the named columns are converted; the rest of the table is never touched. A column
    named in ``dtypes`` without scaling or nulls is converted straight to that type (one
    copy out of the table's rows).
    """
    columns = hdu.columns
    row_bytes = int(hdu.header.get("NAXIS1", 0))
    nrows = int(hdu.header.get("NAXIS2", 0))
    wanted = [columns[name.upper()] for name in names]
    dtype = np.dtype(
        {
            "names": [c.name for c in wanted],
            "formats": [c.dtype if c.repeat == 1 else (c.dtype, (c.repeat,)) for c in wanted],
            "offsets": [c.offset for c in wanted],
            "itemsize": row_bytes,
        }
    )
    try:
        rows = np.ndarray((nrows,), dtype=dtype, buffer=data, offset=hdu.data_offset)
    except (TypeError, ValueError) as exc:
        raise CorruptProductError(url, f"table {hdu.name} cannot be decoded: {exc}") from exc
    out: dict[str, npt.NDArray[Any]] = {}
    for column, name in zip(wanted, names, strict=True):
        values = rows[column.name]
        plain = column.scale == 1.0 and column.zero == 0.0 and column.null is None
        if dtypes is not None and name in dtypes and plain:
            out[name] = values.astype(dtypes[name])
            continue
        native = values.astype(values.dtype.newbyteorder("="), copy=True)
        if column.dtype.kind in "iu":
            if column.scale != 1.0 or column.zero != 0.0 or column.null is not None:
                as_float = native.astype(np.float64)
                if column.null is not None:
                    as_float[native == column.null] = np.nan
                native = as_float * column.scale + column.zero
        elif column.scale != 1.0 or column.zero != 0.0:
            native = native * column.scale + column.zero
        out[name] = native
    return out


# --------------------------------------------------------------- product identification


def _keyword(headers: tuple[FitsHeader, ...], *names: str) -> Any:
    for header in headers:
        for name in names:
            value = header.get(name)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                return value.strip() if isinstance(value, str) else value
    return None


def identify_mission(url: str, headers: tuple[FitsHeader, ...]) -> str:
    """Tell Kepler, K2 and TESS apart (K2 files say ``TELESCOP = 'Kepler'``)."""
    mission = str(_keyword(headers, "MISSION") or "").upper()
    telescope = str(_keyword(headers, "TELESCOP") or "").upper()
    if mission == "K2" or (telescope == "KEPLER" and _keyword(headers, "CAMPAIGN") is not None):
        return "K2"
    if mission == "KEPLER" or telescope == "KEPLER":
        return "Kepler"
    if mission == "TESS" or telescope == "TESS":
        return "TESS"
    raise UnsupportedProductError(
        url,
        "cannot tell the mission: no MISSION or TELESCOP keyword names Kepler, K2 or TESS",
        "only Kepler, K2 and TESS products are supported",
    )


_OBJECT_ID = re.compile(r"^\s*(KIC|EPIC|TIC)?\s*(\d+)\s*$", re.IGNORECASE)


def identify_star(mission: str, headers: tuple[FitsHeader, ...]) -> StarIds:
    """Catalogue IDs from KEPLERID/TICID, falling back to the OBJECT name."""
    object_name = str(_keyword(headers, "OBJECT") or "")
    kic = epic = tic = None
    number = _keyword(headers, "TICID" if mission == "TESS" else "KEPLERID")
    match = _OBJECT_ID.match(object_name)
    if number is None and match is not None:
        number = int(match.group(2))
    if isinstance(number, int | np.integer | str) and str(number).strip().isdigit():
        value = int(number)
        if mission == "TESS":
            tic = value
        elif mission == "K2":
            epic = value
        else:
            kic = value
    if object_name.isdigit():
        prefix = {"TESS": "TIC", "K2": "EPIC", "Kepler": "KIC"}[mission]
        object_name = f"{prefix} {object_name}"
    return StarIds(kic=kic, epic=epic, tic=tic, object_name=object_name)


def _segment(headers: tuple[FitsHeader, ...]) -> int:
    value = _keyword(headers, "QUARTER", "CAMPAIGN", "SECTOR")
    try:
        return int(value) if value is not None else -1
    except (TypeError, ValueError):
        return -1


def _float_keyword(headers: tuple[FitsHeader, ...], *names: str) -> float:
    value = _keyword(headers, *names)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Which table and columns hold the light curve, and what kind of product it is."""

    hdu: Hdu
    time: str
    flux: str
    flux_err: str | None
    quality: str | None
    kind: str


def _hlsp_name(url: str) -> str | None:
    name = PurePosixPath(url.split("?")[0]).name.lower()
    if name.startswith("hlsp_"):
        parts = name.split("_")
        if len(parts) > 1:
            return parts[1]
    return None


def plan_columns(url: str, hdus: list[Hdu], config: ReadConfig) -> _Plan:
    """Choose the light-curve table and its time, flux, error and quality columns.

    Raises
    ------
    UnsupportedProductError
        For target pixel files, co-trending basis vectors, images, and tables with no
        recognisable flux column (the message lists the columns seen).
    """
    tables = [h for h in hdus if h.is_table]
    if not tables:
        hdu_names = ", ".join(f"{h.name} ({h.header.get('XTENSION', 'IMAGE')})" for h in hdus)
        raise UnsupportedProductError(
            url, f"no binary table in the file (HDUs: {hdu_names})", "it is not a light curve"
        )
    seen: list[str] = []
    if config.column_map is not None:
        wanted = {k: v.upper() for k, v in config.column_map.items()}
        for hdu in tables:
            columns = hdu.columns
            if wanted["time"] in columns and wanted["flux"] in columns:
                return _Plan(
                    hdu,
                    columns[wanted["time"]].name,
                    columns[wanted["flux"]].name,
                    columns[wanted["flux_err"]].name if wanted.get("flux_err") in columns else None,
                    columns[wanted["quality"]].name if wanted.get("quality") in columns else None,
                    "custom",
                )
            seen.extend(c.name for c in columns.values())
        raise UnsupportedProductError(
            url,
            f"column_map {dict(config.column_map)} does not match the table; columns seen: {seen}",
        )
    k2sc_ext = "PDC" if config.flux == "pdcsap" else "SAP"
    ordered = sorted(tables, key=lambda h: h.name.upper() != k2sc_ext)
    for hdu in ordered:
        columns = hdu.columns
        names = set(columns)
        seen.extend(c.name for c in columns.values())

        def col(name: str, _columns: dict[str, _Column] = columns) -> str | None:
            found = _columns.get(name)
            return found.name if found is not None else None

        if any(n.startswith("VECTOR_") for n in names):
            raise UnsupportedProductError(
                url, "co-trending basis vector (CBV) file, not a light curve"
            )
        if "TIME" not in names:
            continue
        quality = col("QUALITY") or col("SAP_QUALITY")
        if "RAW_CNTS" in names or ("FLUX" in names and columns["FLUX"].repeat > 1):
            raise UnsupportedProductError(
                url,
                f"target pixel file (table {hdu.name} holds pixel images), not a light curve",
                "make a light curve from it first, e.g. with lightkurve's to_lightcurve()",
            )
        if "PDCSAP_FLUX" in names and "SAP_FLUX" in names:
            flux = "PDCSAP_FLUX" if config.flux == "pdcsap" else "SAP_FLUX"
            return _Plan(
                hdu, col("TIME") or "", col(flux) or "", col(flux + "_ERR"), quality, "pipeline"
            )
        if {"FLUX", "ERROR", "QUALITY"} <= names and hdu.name.upper() in ("PDC", "SAP"):
            return _Plan(hdu, col("TIME") or "", col("FLUX") or "", col("ERROR"), quality, "k2sc")
        if "CORR_FLUX" in names and "RAW_FLUX" in names:
            flux = "CORR_FLUX" if config.flux == "pdcsap" else "RAW_FLUX"
            return _Plan(
                hdu, col("TIME") or "", col(flux) or "", col("FLUX_ERR"), quality, "eleanor"
            )
        if "FLUX" in names:
            return _Plan(
                hdu, col("TIME") or "", col("FLUX") or "", col("FLUX_ERR"), quality, "generic"
            )
    raise UnsupportedProductError(
        url,
        f"no table with a TIME and a known flux column; columns seen: {sorted(set(seen))}",
        "pass a column_map, e.g. {time: TIME, flux: MY_FLUX, flux_err: MY_ERR, quality: QUALITY}",
    )


def _product_type(url: str, mission: str, plan_kind: str, cadence: float, creator: str) -> str:
    hlsp = _hlsp_name(url)
    if plan_kind == "custom":
        return "custom"
    if hlsp == "tess-spoc":
        return "tess-spoc-ffi"
    if hlsp is not None:
        return f"hlsp-{hlsp}"
    if plan_kind == "eleanor":
        return "hlsp-eleanor"
    if plan_kind == "k2sc":
        return "hlsp-k2sc"
    if creator.lower().startswith("lightkurve"):
        return "lightkurve"
    if mission == "TESS":
        if cadence < 0.0005:
            return "tess-spoc-20s"
        return "tess-spoc-2min" if cadence < 0.002 else "tess-spoc-ffi"
    prefix = "kepler" if mission == "Kepler" else "k2"
    return f"{prefix}-sc" if cadence < 0.005 else f"{prefix}-lc"


def _time_reference(
    url: str, mission: str, headers: tuple[FitsHeader, ...]
) -> tuple[float, float, str]:
    timesys = str(_keyword(headers, "TIMESYS") or "TDB").upper()
    if timesys != "TDB":
        raise UnsupportedProductError(
            url, f"TIMESYS is {timesys!r}; only barycentric TDB times are supported"
        )
    bjdrefi = _keyword(headers, "BJDREFI")
    bjdreff = _keyword(headers, "BJDREFF")
    if bjdrefi is None and bjdreff is None:
        bjdref = _keyword(headers, "BJDREF")
        if bjdref is not None:
            return float(bjdref), 0.0, "header"
        logger.debug("%s: no BJDREFI/BJDREFF; using the %s reference epoch", url, mission)
        return MISSION_BJDREF[mission], 0.0, "mission-default"
    return float(bjdrefi or 0.0), float(bjdreff or 0.0), "header"


# ------------------------------------------------------------------------ parse & read


def _as_int32(values: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    if values.dtype == np.int32:
        return values
    return np.nan_to_num(values).astype(np.int32)


def parse_light_curve(url: str, data: bytes, config: ReadConfig | None = None) -> LightCurve:
    """Parse a product's (decompressed) bytes into a light curve.

    Parameters
    ----------
    url : str
        The product's URL (for provenance and error messages).
    data : bytes
        The whole FITS file.
    config : ReadConfig, optional
        Flux kind, quality bitmask, column mapping.

    Returns
    -------
    LightCurve

    Raises
    ------
    CorruptProductError, UnsupportedProductError
    """
    config = config or ReadConfig()
    try:
        hdus = fits_layout(url, data)
        plan = plan_columns(url, hdus, config)
        headers = (hdus[0].header, plan.hdu.header)
        mission = identify_mission(url, headers)
        names = [plan.time, plan.flux]
        names += [n for n in (plan.flux_err, plan.quality) if n is not None]
        wanted: dict[str, npt.DTypeLike] = {
            n: np.float64 for n in (plan.flux, plan.flux_err) if n is not None
        }
        if plan.quality is not None and plan.hdu.columns[plan.quality.upper()].dtype.kind in "iu":
            wanted[plan.quality] = np.int32
        columns = read_columns(url, data, plan.hdu, names, wanted)
        raw_time = columns[plan.time]
        if raw_time.ndim == 2 and raw_time.shape[1] == 2:
            # astropy-serialised Time column (jd1, jd2), as lightkurve writes it.
            jdref = _float_keyword((plan.hdu.header,), "JDREF")
            time = raw_time[:, 0] + (raw_time[:, 1] + (0.0 if math.isnan(jdref) else jdref))
            time_reference = "astropy-serialized"
        else:
            bjdrefi, bjdreff, time_reference = _time_reference(url, mission, headers)
            time = to_bjd_tdb(raw_time.reshape(-1), bjdrefi, bjdreff)
        flux = np.asarray(columns[plan.flux], dtype=np.float64).reshape(-1)
        flux_err = (
            np.asarray(columns[plan.flux_err], dtype=np.float64).reshape(-1)
            if plan.flux_err is not None
            else np.full(flux.shape, np.nan)
        )
        quality = (
            _as_int32(columns[plan.quality]).reshape(-1)
            if plan.quality is not None
            else np.zeros(flux.shape, np.int32)
        )
        bitmask = quality_bitmask_value(mission, config.quality_bitmask)
        cadence = _float_keyword(headers[::-1], "TIMEDEL")
        if math.isnan(cadence):
            finite = np.diff(time[np.isfinite(time)])
            cadence = float(np.median(finite)) if finite.size else math.nan
        creator = str(_keyword(headers, "CREATOR") or _keyword(headers, "ORIGIN") or "")
        release = _keyword(headers, "DATA_REL")
        return LightCurve(
            mission=mission,
            ids=identify_star(mission, headers),
            ra=_float_keyword(headers, "RA_OBJ"),
            dec=_float_keyword(headers, "DEC_OBJ"),
            segment=_segment(headers),
            cadence_days=cadence,
            time=time,
            flux=flux,
            flux_err=flux_err,
            quality=quality,
            good=good_cadences(time, flux, quality, bitmask),
            provenance=Provenance(
                url=url,
                product_type=_product_type(url, mission, plan.kind, cadence, creator),
                data_release=int(release) if isinstance(release, int) else None,
                flux_column=plan.flux,
                quality_bitmask=bitmask,
                time_reference=time_reference,
                creator=creator,
            ),
        )
    except ProductError as exc:
        if not exc.url:
            raise type(exc)(url, exc.problem, exc.hint) from exc
        raise
    except (ValueError, TypeError, KeyError, IndexError, OSError) as exc:
        raise CorruptProductError(
            url, f"cannot decode the light curve: {type(exc).__name__}: {exc}"
        ) from exc


def read_light_curve(
    url: str,
    *,
    flux: str = "pdcsap",
    quality_bitmask: str | int = "default",
    column_map: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    config: ReadConfig | None = None,
) -> LightCurve:
    """Read one light-curve product from any supported URL.

    Parameters
    ----------
    url : str
        Local path, ``file://``, ``s3://`` (anonymous unless ``storage_options`` say otherwise;
        endpoint from ``AWS_ENDPOINT_URL_S3``) or ``http(s)://``; ``.gz`` and ``.Z`` files are
        decompressed.
    flux : {"pdcsap", "sap"}
        Which flux of pipeline products.
    quality_bitmask : str or int
        ``none``, ``default``, ``hard``, ``hardest`` or an integer.
    column_map : mapping, optional
        Column names for other products: keys ``time``, ``flux``, ``flux_err``, ``quality``.
    storage_options : mapping, optional
        fsspec options for remote URLs.
    config : ReadConfig, optional
        Replaces ``flux``, ``quality_bitmask`` and ``column_map`` when given.

    Returns
    -------
    LightCurve

    Raises
    ------
    ProductNotFoundError, FetchError, CorruptProductError, UnsupportedProductError

    Examples
    --------
    >>> lc = read_light_curve("s3://stpubdata/kepler/public/lightcurves/0106/010666592/"
    ...                       "kplr010666592-2009131110544_slc.fits")  # doctest: +SKIP
    >>> lc.mission, lc.ids.kic, lc.time_range  # doctest: +SKIP
    ('Kepler', 10666592, (2454953.53, 2454963.25))
    """
    if config is None:
        config = ReadConfig(flux=flux, quality_bitmask=quality_bitmask, column_map=column_map)  # type: ignore[arg-type]
    data = decompress(url, fetch_bytes(url, storage_options))
    return parse_light_curve(url, data, config)
