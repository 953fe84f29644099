"""TESS full-frame-image cutouts from the cloud: postage stamps read out of the FFI cubes with
ranged reads, fanned out with Dask, into a Zarr store of ``(star, time, y, x)`` stamps.

The cube format
---------------
MAST's FFI cubes (``s3://stpubdata/tess/public/mast/tess-sSSSS-C-D-cube.fits``: sector,
camera, CCD) are made by astrocut's ``CubeFactory``. Verified against astrocut's source and
documentation (``docs/astrocut/file_formats.rst``, "Cube Files"; ``astrocut/cube_factory.py``;
``astrocut/cube_cutout.py``; ``astrocut/tess_cube_cutout.py``) and tessgi's ``tesscube``
(``TESSCube.object_key``, which reads the same layout off the bucket):

* HDU 0: the first FFI's primary header with ``ORIGIN = 'STScI/MAST'``, ``SECTOR``,
  ``CAMERA``, ``CCD``, ``TSTART``/``DATE-OBS`` of the first FFI, ``TSTOP``/``DATE-END`` of
  the last; no data.
* HDU 1: an image, ``BITPIX = -32``, ``NAXIS = 4``: ``NAXIS1`` = 2 (science flux,
  uncertainty; 1 for TICA cubes, which have no uncertainty), ``NAXIS2`` = number of FFIs,
  ``NAXIS3`` = FFI columns, ``NAXIS4`` = FFI rows. In C order the data is
  ``[row][column][FFI][plane]``, big-endian float32, written "transposed for quicker
  cutouts": a stamp of rows ``y0..y1`` and columns ``x0..x1`` is ``y1 - y0`` contiguous runs
  of ``(x1 - x0) * n_ffi * n_planes * 4`` bytes, one ranged GET per row (astrocut does the
  same through ``astropy.io.fits`` sections over fsspec, one request per row).
* HDU 2: a binary table, one row per FFI, one column per keyword of the FFIs' image
  headers (floats ``D``, integers ``J``, strings ``A``; the column names are the keywords
  themselves: ``TSTART``, ``TSTOP``, ``DQUALITY``, ``BARYCORR``, ``CTYPE1``, ``CRVAL1``,
  ``CD1_1``, ``A_2_0``, ...) plus ``FFI_FILE``. Its header repeats each non-structural
  keyword with the FFI header's *comment* as the value (so ``TSTART`` there is a string):
  values are read from the columns only.

Times, quality and WCS are taken as astrocut's TESS cutouts take them
(``TessCubeCutout._build_tpf``): ``TIME = (TSTART + TSTOP) / 2`` in BTJD (``BJD_TDB -
2457000``: ``BJDREFI``/``BJDREFF``, ``TIMESYS = 'TDB'``), ``QUALITY = DQUALITY``, and the
WCS from the table's middle row (the next one with a ``DEC--TAN`` ``CTYPE2`` where it has
none; ``CubeCutout._parse_table_info``), a TAN-SIP WCS whose ``CRPIX`` is shifted by the
stamp's origin for the stamp (``TessCubeCutout._get_full_cutout_wcs``).

SPOC's FFI times are barycentric, but for one direction: the centre of the CCD (the FFI
headers' ``BARYCORR``, a table column here, is that correction; see tasoc/photometry#6 and
eleanor#46 on GitHub). At a CCD's corner (8.5 degrees from its centre) the true correction
differs by up to ~75 s (499 s times the change of direction), so each stamp's times are
moved to its target: ``t + delay(target) - delay(CCD centre)``, where ``delay`` is the
light-travel time from the geocentre to the solar-system barycentre along a direction
(:func:`barycentric_delay_days`: ERFA's ``epv00`` Earth ephemeris, what astropy's
``Time.light_travel_time`` uses, agreeing with it to 1e-13 s, with no Earth-orientation tables
to download). Using the geocentre for the spacecraft costs well under a second (TESS is at
most ~1.3 light-seconds from Earth, and only the difference of two directions enters).

Reads
-----
A cube is probed first (which stars does it hold?): one ``HEAD`` for its size, a ranged
GET of its first blocks (the two headers; more, each twice as long, if they do not fit),
the same for the table's header, one GET of the table's middle row (the WCS). A cube that
holds targets then costs one GET of its table (times, quality) and one GET per stamp row.
Every structural keyword is checked against the object's size before it is used
(:func:`starskope_dask.read._structure`), so a crafted header claiming a huge ``NAXIS`` is
refused, never allocated; headers longer than
:data:`MAX_HEADER_BYTES` and tables longer than ``max_table_bytes`` are refused too.
Anonymous ``s3://`` reads go out as plain HTTP range GETs (:func:`starskope_dask.fetch._split`),
with the retries of :class:`~starskope_dask.config.StorageConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from astropy.io import fits

from starskope_dask.config import StorageConfig, scheduler_address
from starskope_dask.errors import (
    ConfigError,
    CorruptProductError,
    FetchError,
    NotAStoreError,
    ProductError,
    StarskopeError,
    TargetNotFoundError,
    UnsupportedProductError,
    one_line,
)
from starskope_dask.fetch import _split, _translate, retry_wait, url_protocol
from starskope_dask.read import BLOCK, CARD, FitsHeader, Hdu, _safe, _structure, read_columns

logger = logging.getLogger(__name__)

#: Where the cubes lie below the archive root.
CUBE_PREFIX = "tess/public/mast/"
_CUBE_NAME = re.compile(r"(?:^|/)tess-s(\d{4})-([1-4])-([1-4])-cube\.fits$")
#: The marker of a cutout store (``_starskope/store.json``).
CUTOUT_FORMAT = "starskope-cutouts"
#: Top-level keys of a cutout store: the only ones a rerun removes.
CUTOUT_KEYS = (
    "zarr.json",
    "flux",
    "flux_err",
    "quality",
    "time",
    "star",
    "target",
    "tic",
    "ra",
    "dec",
    "sector",
    "camera",
    "ccd",
    "cube",
    "x0",
    "y0",
    "ccd_x",
    "ccd_y",
    "star_x",
    "star_y",
    "crval",
    "crpix",
    "cd",
    "wcs",
    "ok",
    "error",
    "world",
    "pixel",
)
STATE_DIR = "_starskope"
#: Most bytes one FITS header of a cube may take (real ones take a few blocks).
MAX_HEADER_BYTES = 1 << 20
#: Bytes first read of a cube's start and of its table's header (grown as needed).
FIRST_READ = 4 * BLOCK
#: Default largest table (bytes) a cube may have: real tables are a few MB.
DEFAULT_MAX_TABLE_BYTES = 256 << 20
#: Most bytes of stamps read in one batch of requests (memory bound of a cube's task).
STAMP_BATCH_BYTES = 64 << 20
#: Largest stamp side (pixels).
MAX_STAMP = 512
_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS"}
_NOT_A_CUBE = "check that the URL is a TESS FFI cube (tess/public/mast/tess-sSSSS-C-D-cube.fits)"


class TargetOffCubeError(TargetNotFoundError):
    """A target lies on none of the cubes looked at."""


class StampSizeError(ConfigError):
    """A stamp that cannot be cut: not a positive size, or larger than the CCD."""


# --------------------------------------------------------------------- names and times


def cube_key(sector: int, camera: int, ccd: int) -> str:
    """The bucket-relative key of a sector's cube: ``tess/public/mast/tess-s0001-1-1-cube.fits``."""
    return f"{CUBE_PREFIX}tess-s{sector:04d}-{camera}-{ccd}-cube.fits"


def parse_cube_key(key: str) -> tuple[int, int, int] | None:
    """``(sector, camera, ccd)`` of a cube's key or URL, ``None`` for anything else."""
    match = _CUBE_NAME.search(key)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


#: Light time of one astronomical unit (days): IAU 2012, ``au / c``.
AU_LIGHT_DAYS = 149_597_870_700.0 / 299_792_458.0 / 86400.0


def barycentric_delay_days(
    bjd_tdb: npt.ArrayLike, ra: float, dec: float
) -> npt.NDArray[np.float64]:
    """Light-travel time (days) from the geocentre to the solar-system barycentre along
    ``(ra, dec)`` at each time: the (Roemer) barycentric correction of that direction.

    The Earth's barycentric position comes from ERFA's ``epv00`` (the model astropy's
    built-in ephemeris uses; nothing to download, no Earth-orientation tables): the delay is
    ``r_earth . n / c``. The terms it leaves out (Shapiro delay, the Einstein delay between
    TT and TDB at the observer) are microseconds to milliseconds, and cancel in a difference
    of two directions.

    Parameters
    ----------
    bjd_tdb : array_like
        Julian dates (TDB).
    ra, dec : float
        Direction (degrees, ICRS).
    """
    import erfa

    jd = np.atleast_1d(np.asarray(bjd_tdb, dtype=np.float64))
    whole = np.floor(jd)
    _, barycentric = erfa.epv00(whole, jd - whole)
    position = np.asarray(barycentric["p"], dtype=np.float64).reshape(-1, 3)  # au, ICRS axes
    a, d = math.radians(ra), math.radians(dec)
    direction = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    return np.asarray(position @ direction * AU_LIGHT_DAYS, dtype=np.float64)


def _angular_distance_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> Any:
    ra1, dec1, ra2, dec2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    haversine = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(haversine, 0, 1))))


# ------------------------------------------------------------------ geometry (pure)


@dataclasses.dataclass(frozen=True)
class CubeGeometry:
    """Where a cube's parts lie in its object, as its headers say (checked against its size).

    Attributes
    ----------
    url : str
        The cube.
    size : int
        The object's size in bytes.
    n_rows, n_cols, n_times, n_planes : int
        ``NAXIS4``, ``NAXIS3``, ``NAXIS2``, ``NAXIS1`` of the image.
    data_offset : int
        Byte where the image data starts.
    table_offset : int
        Byte where the table HDU's header starts.
    sector, camera, ccd : int
        From the primary header (-1 where absent).
    """

    url: str
    size: int
    n_rows: int
    n_cols: int
    n_times: int
    n_planes: int
    data_offset: int
    table_offset: int
    sector: int = -1
    camera: int = -1
    ccd: int = -1

    @property
    def pixel_bytes(self) -> int:
        """Bytes of one pixel's time series (every FFI, every plane)."""
        return self.n_times * self.n_planes * 4

    @property
    def data_size(self) -> int:
        """Bytes of the image data."""
        return self.n_rows * self.n_cols * self.pixel_bytes


def _header_span(url: str, data: bytes, start: int, index: int) -> tuple[FitsHeader, int] | None:
    """The header starting at ``start`` of ``data`` and the byte after its last block, or
    ``None`` when ``data`` ends before its ``END`` card.

    Raises
    ------
    CorruptProductError
        No ``END`` card within :data:`MAX_HEADER_BYTES`, or a header that is not ASCII.
    """
    position = start
    while position + BLOCK <= len(data):
        block = data[position : position + BLOCK]
        found = block.find(b"END     ")
        while found >= 0 and found % CARD:
            found = block.find(b"END     ", found + 1)
        if found >= 0:
            try:
                text = data[start : position + found + CARD].decode("ascii")
            except UnicodeDecodeError as exc:
                raise CorruptProductError(
                    url,
                    f"header of HDU {index} is damaged: byte {start + exc.start} is not ASCII",
                    _NOT_A_CUBE,
                ) from exc
            return FitsHeader(text), position + BLOCK
        position += BLOCK
        if position - start >= MAX_HEADER_BYTES:
            raise CorruptProductError(
                url,
                f"header of HDU {index} has no END card in its first {MAX_HEADER_BYTES} bytes",
                "the file is damaged or crafted; " + _NOT_A_CUBE,
            )
    return None


def _value(url: str, header: FitsHeader, index: int, keyword: str, default: Any = None) -> Any:
    """A keyword's value; a card that does not parse is damage naming the keyword."""
    try:
        return header.get(keyword, default)
    except ValueError as exc:
        raise CorruptProductError(
            url, f"header of HDU {index} is damaged: {exc}", "the file is damaged or crafted"
        ) from exc


def _int_keyword(header: FitsHeader, keyword: str) -> int:
    try:
        value = header.get(keyword)
    except ValueError:
        return -1
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _truncated(url: str, what: str, needed: int, size: int) -> CorruptProductError:
    return CorruptProductError(
        url,
        f"cube is truncated: {what} needs {needed} bytes, the object has {size}",
        "the object is cut short or its header is damaged",
    )


def parse_cube_head(url: str, head: bytes, size: int) -> CubeGeometry | None:
    """The cube's geometry from the first bytes of its object (its two headers).

    Parameters
    ----------
    url : str
        The cube (named in errors).
    head : bytes
        The object's first bytes.
    size : int
        The object's full size: every axis and offset is checked against it.

    Returns
    -------
    CubeGeometry or None
        ``None`` when ``head`` ends before the image's header does (read more).

    Raises
    ------
    CorruptProductError
        Not FITS, a damaged or crafted header (an axis longer than the object), a cube cut
        short.
    UnsupportedProductError
        Valid FITS that is not an FFI cube (no 4-axis float32 image as HDU 1), or a TICA cube
        (one plane: no uncertainties).
    """
    if not head.startswith(b"SIMPLE  ="):
        raise CorruptProductError(
            url, f"not a FITS file: no SIMPLE card at the start ({size} bytes)", _NOT_A_CUBE
        )
    first = _header_span(url, head, 0, 0)
    if first is None:
        if len(head) >= size:
            raise _truncated(url, "the primary header", len(head) + BLOCK, size)
        return None
    primary, primary_end = first
    _, primary_data = _structure(url, 0, primary, size)
    image_start = primary_end + -(-primary_data // BLOCK) * BLOCK
    if image_start >= size:
        raise UnsupportedProductError(url, "has no image extension: not an FFI cube", _NOT_A_CUBE)
    second = _header_span(url, head, image_start, 1)
    if second is None:
        if len(head) >= size:
            raise _truncated(url, "the image header", len(head) + BLOCK, size)
        return None
    image, data_offset = second
    xtension = str(_value(url, image, 1, "XTENSION", "") or "").strip().upper()
    if xtension != "IMAGE":
        raise UnsupportedProductError(
            url, f"HDU 1 is {_safe(xtension) or 'not an extension'}, not an image: not an FFI cube"
        )
    axes, data_size = _structure(url, 1, image, size)
    bitpix = _value(url, image, 1, "BITPIX")
    if bitpix != -32 or len(axes) != 4:
        raise UnsupportedProductError(
            url,
            f"HDU 1 is not a float32 cube of 4 axes (BITPIX = {_safe(bitpix)}, NAXIS = "
            f"{len(axes)}): not an FFI cube",
            _NOT_A_CUBE,
        )
    n_planes, n_times, n_cols, n_rows = axes
    if n_planes == 1:
        raise UnsupportedProductError(
            url,
            "a one-plane cube (a TICA cube: no uncertainties) is not supported",
            "use the SPOC cubes, tess/public/mast/tess-sSSSS-C-D-cube.fits",
        )
    if n_planes != 2 or min(n_times, n_cols, n_rows) < 1:
        raise UnsupportedProductError(
            url,
            f"HDU 1 has axes {axes}; an FFI cube has NAXIS1 = 2 (flux, uncertainty) and at "
            "least one FFI, row and column",
            _NOT_A_CUBE,
        )
    scale, zero = _value(url, image, 1, "BSCALE", 1), _value(url, image, 1, "BZERO", 0)
    if scale not in (1, 1.0) or zero not in (0, 0.0):
        raise UnsupportedProductError(url, "the cube's image is scaled (BSCALE/BZERO)", _NOT_A_CUBE)
    if data_offset + data_size > size:
        raise _truncated(url, "the image data", data_offset + data_size, size)
    table_offset = data_offset + -(-data_size // BLOCK) * BLOCK
    if table_offset + BLOCK > size:
        raise _truncated(url, "the table after the image", table_offset + BLOCK, size)
    return CubeGeometry(
        url=url,
        size=size,
        n_rows=n_rows,
        n_cols=n_cols,
        n_times=n_times,
        n_planes=n_planes,
        data_offset=data_offset,
        table_offset=table_offset,
        sector=_int_keyword(primary, "SECTOR"),
        camera=_int_keyword(primary, "CAMERA"),
        ccd=_int_keyword(primary, "CCD"),
    )


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """The cube's table HDU: its header text, where its rows lie, how wide they are."""

    header_text: str
    data_offset: int
    row_bytes: int
    n_rows: int

    def hdu(self, n_rows: int | None = None) -> Hdu:
        """The table as a :class:`~starskope_dask.read.Hdu` over bytes that start at its
        first row (or at any row, for ``n_rows`` rows).
        """
        rows = self.n_rows if n_rows is None else n_rows
        return Hdu(
            2, FitsHeader(self.header_text), 0, self.row_bytes * rows, (self.row_bytes, rows)
        )


def parse_cube_table_header(
    geometry: CubeGeometry, data: bytes, max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES
) -> TableLayout | None:
    """The table's layout from bytes read at ``geometry.table_offset`` (``None``: read more).

    Raises
    ------
    CorruptProductError
        A damaged header, rows that do not fit the object, a table over ``max_table_bytes``.
    UnsupportedProductError
        No binary table, or one whose rows are not the cube's FFIs, or without TSTART/TSTOP.
    """
    url = geometry.url
    span = _header_span(url, data, 0, 2)
    if span is None:
        if geometry.table_offset + len(data) >= geometry.size:
            raise _truncated(
                url, "the table header", geometry.table_offset + len(data) + 1, geometry.size
            )
        return None
    header, end = span
    if str(_value(url, header, 2, "XTENSION", "") or "").strip().upper() != "BINTABLE":
        raise UnsupportedProductError(
            url, "HDU 2 is not a binary table: not an FFI cube", _NOT_A_CUBE
        )
    axes, table_size = _structure(url, 2, header, geometry.size)
    row_bytes, n_rows = axes
    if n_rows != geometry.n_times:
        raise UnsupportedProductError(
            url,
            f"the table has {n_rows} rows, the cube {geometry.n_times} FFIs: not an FFI cube",
            _NOT_A_CUBE,
        )
    if row_bytes * n_rows > max_table_bytes:
        raise CorruptProductError(
            url,
            f"its table is {row_bytes * n_rows} bytes, more than the limit ({max_table_bytes})",
            "the file is crafted, or raise max_table_bytes",
        )
    offset = geometry.table_offset + end
    if offset + table_size > geometry.size:
        raise _truncated(url, "the table", offset + table_size, geometry.size)
    layout = TableLayout(_text(header), offset, row_bytes, n_rows)
    hdu = layout.hdu()
    try:
        columns = hdu.columns
    except ProductError as exc:
        raise type(exc)(url, exc.problem, exc.hint) from exc
    missing = [name for name in ("TSTART", "TSTOP") if name not in columns]
    if missing:
        raise UnsupportedProductError(
            url, f"its table has no {' or '.join(missing)} column: not an FFI cube", _NOT_A_CUBE
        )
    return layout


def _text(header: FitsHeader) -> str:
    return str(header._text)


def wcs_header_from_row(url: str, layout: TableLayout, row: bytes) -> fits.Header:
    """A FITS header of one table row's keywords (the FFI's image header), for its WCS.

    Structural keywords, ``FFI_FILE``, names longer than 8 characters, vector columns and
    NaN values are left out (astrocut leaves out the NaN ones).
    """
    hdu = layout.hdu(1)
    columns = hdu.columns
    names = [
        key
        for key, column in columns.items()
        if key not in _STRUCTURAL
        and key != "FFI_FILE"
        and len(key) <= 8
        and column.repeat == 1
        and column.code in "BIJKEDA"
    ]
    values = read_columns(url, row, hdu, names)
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            value = values[name][0]
            if isinstance(value, bytes | np.bytes_):
                text = bytes(value).decode("ascii", "replace").strip()
                if text:
                    header[name] = text
            elif isinstance(value, np.integer):
                header[name] = int(value)
            elif isinstance(value, np.floating) and math.isfinite(float(value)):
                header[name] = float(value)
    return header


def _wcs(url: str, header: fits.Header) -> Any:
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, relax=True)
    except Exception as exc:
        raise CorruptProductError(
            url, f"the WCS of its table cannot be used ({type(exc).__name__}: {one_line(exc, 200)})"
        ) from exc
    if not wcs.has_celestial:
        raise UnsupportedProductError(url, "its table holds no celestial WCS", _NOT_A_CUBE)
    return wcs


def wcs_row_order(n_rows: int) -> list[int]:
    """Rows to look for a WCS in: the middle one first, then onwards, wrapping round."""
    middle = n_rows // 2
    return list(range(middle, n_rows)) + list(range(middle))


def _has_wcs(header: fits.Header) -> bool:
    return str(header.get("CTYPE2", "")).strip().upper().startswith("DEC--TAN")


def pixel_of(wcs: Any, ra: float, dec: float) -> tuple[float, float] | None:
    """The 0-based (column, row) of a sky position through a cube's WCS, or ``None`` where
    the WCS has no answer (the far side of the tangent plane, no convergence of SIP) or
    the answer does not map back to the position within 1 arcsec.
    """
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            x, y = (float(v) for v in wcs.all_world2pix([[ra, dec]], 0, quiet=True)[0])
            if not (math.isfinite(x) and math.isfinite(y)):
                return None
            back_ra, back_dec = (float(v) for v in wcs.all_pix2world([[x, y]], 0)[0])
    except Exception:
        return None
    if not _angular_distance_deg(ra, dec, back_ra, back_dec) < 1 / 3600:
        return None
    return x, y


def on_ccd(x: float, y: float, n_cols: int, n_rows: int) -> bool:
    """Whether pixel position ``(x, y)`` (0-based; pixel ``i`` spans ``i ± 0.5``) is on a CCD
    of ``n_cols`` x ``n_rows`` pixels.
    """
    return -0.5 <= x < n_cols - 0.5 and -0.5 <= y < n_rows - 0.5


@dataclasses.dataclass(frozen=True)
class Stamp:
    """A stamp's window on the CCD.

    Attributes
    ----------
    x0, y0 : int
        Its first column and row on the CCD (0-based).
    nx, ny : int
        Its columns and rows.
    star_x, star_y : float
        The target's position in the stamp (0-based pixels): the centre pixel's centre,
        ``(size - 1) / 2`` for odd sizes, give or take half a pixel, unless the stamp was moved
        to stay on the CCD.
    """

    x0: int
    y0: int
    nx: int
    ny: int
    star_x: float
    star_y: float

    @property
    def shifted(self) -> bool:
        """Whether the stamp was moved off centre to stay on the CCD."""
        return abs(self.star_x - (self.nx - 1) / 2) > 0.5 + 1e-9 or (
            abs(self.star_y - (self.ny - 1) / 2) > 0.5 + 1e-9
        )


def stamp_window(x: float, y: float, size: int, n_cols: int, n_rows: int) -> Stamp:
    """A ``size`` x ``size`` stamp centred on the pixel holding ``(x, y)``, moved inwards
    where it would cross the CCD's edge (its pixels are always real; the target's position
    in it is recorded).

    Raises
    ------
    StampSizeError
        For a size below 1 or above either side of the CCD.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise StampSizeError(f"the stamp size must be a positive number of pixels, not {size!r}")
    if size > n_cols or size > n_rows:
        raise StampSizeError(
            f"a stamp of {size} x {size} pixels is larger than the CCD ({n_cols} x {n_rows})"
        )
    half = (int(size) - 1) // 2
    x0 = min(max(math.floor(x + 0.5) - half, 0), n_cols - size)
    y0 = min(max(math.floor(y + 0.5) - half, 0), n_rows - size)
    return Stamp(x0, y0, int(size), int(size), x - x0, y - y0)


def stamp_ranges(geometry: CubeGeometry, stamp: Stamp) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` holding a stamp: one per row, rows that touch (a stamp as
    wide as the CCD) merged into one.
    """
    ranges: list[tuple[int, int]] = []
    width = stamp.nx * geometry.pixel_bytes
    for row in range(stamp.y0, stamp.y0 + stamp.ny):
        start = geometry.data_offset + (row * geometry.n_cols + stamp.x0) * geometry.pixel_bytes
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + width)
        else:
            ranges.append((start, start + width))
    return ranges


def decode_stamp(
    geometry: CubeGeometry, stamp: Stamp, chunks: Sequence[bytes]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The stamp's flux and uncertainty, each ``(time, y, x)`` native float32, from the bytes
    of :func:`stamp_ranges` (in order).
    """
    raw = np.frombuffer(b"".join(chunks), dtype=">f4").reshape(
        stamp.ny, stamp.nx, geometry.n_times, geometry.n_planes
    )
    flux = np.ascontiguousarray(raw[..., 0].transpose(2, 0, 1), dtype=np.float32)
    err = np.ascontiguousarray(raw[..., 1].transpose(2, 0, 1), dtype=np.float32)
    return flux, err


def stamp_wcs_header(cube_wcs_header: str, stamp: Stamp) -> str:
    """The stamp's WCS (the cube's, SIP included, with ``CRPIX`` moved by its origin) as a
    FITS header string.
    """
    header = fits.Header.fromstring(cube_wcs_header)
    header["CRPIX1"] = float(header["CRPIX1"]) - stamp.x0
    header["CRPIX2"] = float(header["CRPIX2"]) - stamp.y0
    header["NAXIS1"], header["NAXIS2"] = stamp.nx, stamp.ny
    return str(header.tostring())


def _gnomonic(
    ra: Any, dec: Any, ra0: float, dec0: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Standard coordinates (degrees) of ``(ra, dec)`` on the tangent plane at ``(ra0, dec0)``."""
    a, d, a0, d0 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra, dec, ra0, dec0))
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(xi), np.degrees(eta)


def local_linear_wcs(
    wcs: Any, x: float, y: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A linear TAN WCS of a stamp at pixel ``(x, y)`` (0-based): ``CRVAL`` (the sky position
    there), ``CRPIX`` (1-based) and the ``CD`` matrix (degrees per pixel), from the full WCS's
    local derivatives (central differences of one pixel).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = np.array([[x, y], [x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]])
        sky = wcs.all_pix2world(points, 0)
    ra0, dec0 = float(sky[0, 0]), float(sky[0, 1])
    xi, eta = _gnomonic(sky[:, 0], sky[:, 1], ra0, dec0)
    cd = np.array(
        [[(xi[1] - xi[2]) / 2, (xi[3] - xi[4]) / 2], [(eta[1] - eta[2]) / 2, (eta[3] - eta[4]) / 2]]
    )
    return np.array([ra0, dec0]), np.array([x + 1.0, y + 1.0]), cd


# ---------------------------------------------------------------------- ranged reads


class RangeReader:
    """Byte ranges of one object (local, ``s3://``, ``http(s)://``), counted and retried.

    Anonymous ``s3://`` reads go out as plain HTTP range GETs, as :mod:`starskope_dask.fetch`
    sends them. Transient failures are retried (:func:`starskope_dask.fetch.retry_wait`);
    every failure is a :class:`~starskope_dask.errors.ProductError` naming the URL.

    Attributes
    ----------
    bytes_read : int
        Bytes received so far.
    requests : int
        Range requests made so far (each try counted; the size query too).
    """

    def __init__(self, url: str, storage: StorageConfig | None = None) -> None:
        self.url = url
        self.storage = storage or StorageConfig()
        try:
            protocol, path, options = _split(url, self.storage)
            self.fs: fsspec.AbstractFileSystem = fsspec.filesystem(protocol, **options)
        except Exception as exc:
            raise _translate(url, exc, self.storage) from exc
        self.path = path
        self.bytes_read = 0
        self.requests = 0

    def _retried(self, call: Callable[[], Any]) -> Any:
        attempt = 0
        try:
            while True:
                try:
                    return call()
                except Exception as exc:
                    attempt += 1
                    time.sleep(retry_wait(self.url, exc, attempt, self.storage))
        except Exception as exc:
            raise _translate(self.url, exc, self.storage) from exc

    def size(self) -> int:
        """The object's size in bytes."""
        self.requests += 1
        info = self._retried(lambda: self.fs.info(self.path))
        size = info.get("size") if isinstance(info, Mapping) else None
        if not isinstance(size, int) or size < 0:
            raise FetchError(self.url, "the server did not say how large the object is")
        return size

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``[start, end)`` range (concurrent requests where the
        filesystem is asynchronous).

        Raises
        ------
        CorruptProductError
            If a range comes back short (the object is shorter than its headers say).
        ProductNotFoundError, FetchError
        """
        if not ranges:
            return []
        starts = [int(start) for start, _ in ranges]
        ends = [int(end) for _, end in ranges]
        self.requests += len(ranges)
        chunks = self._retried(
            lambda: self.fs.cat_ranges([self.path] * len(ranges), starts, ends, on_error="raise")
        )
        out = []
        for chunk, start, end in zip(chunks, starts, ends, strict=True):
            self.bytes_read += len(chunk)
            if len(chunk) != end - start:
                raise CorruptProductError(
                    self.url,
                    f"bytes {start}-{end} came back as {len(chunk)} bytes: the object is "
                    "shorter than its headers say, or the server ignored the range",
                    "the object is cut short",
                )
            out.append(bytes(chunk))
        return out

    def read_growing(self, start: int, parse: Callable[[bytes], Any], size: int) -> Any:
        """Read from ``start`` until ``parse(data)`` answers something other than ``None``:
        :data:`FIRST_READ` bytes, then the next bytes up to twice as many in all, and so on
        (each byte read once), up to :data:`MAX_HEADER_BYTES`.
        """
        data = b""
        length = FIRST_READ
        while True:
            end = min(size, start + length)
            data += self.read([(start + len(data), end)])[0]
            answer = parse(data)
            if answer is not None:
                return answer
            if end >= size or length >= MAX_HEADER_BYTES:
                raise CorruptProductError(
                    self.url,
                    f"no complete header in the {len(data)} bytes from byte {start}",
                    "the file is damaged or crafted; " + _NOT_A_CUBE,
                )
            length *= 2


# ---------------------------------------------------------------------- cube tasks


@dataclasses.dataclass(frozen=True)
class CubeProbe:
    """What a cube's probe found: its geometry, table layout and WCS (header text).

    ``bytes_read`` and ``requests`` count what the probe cost.
    """

    geometry: CubeGeometry
    table: TableLayout
    wcs_header: str
    wcs_row: int
    bytes_read: int
    requests: int

    def make_wcs(self) -> Any:
        """The cube's WCS (an :class:`astropy.wcs.WCS`)."""
        return _wcs(self.geometry.url, fits.Header.fromstring(self.wcs_header))


def probe_cube(
    url: str, storage: StorageConfig | None = None, max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES
) -> CubeProbe:
    """Read a cube's headers and the WCS of its table's middle row (a few blocks and one
    row): enough to say which positions it holds.

    Raises
    ------
    ProductError
        :class:`CorruptProductError`, :class:`UnsupportedProductError`,
        :class:`ProductNotFoundError` or :class:`FetchError`, naming the URL.
    """
    reader = RangeReader(url, storage)
    size = reader.size()
    geometry = reader.read_growing(0, lambda data: parse_cube_head(url, data, size), size)
    layout = reader.read_growing(
        geometry.table_offset,
        lambda data: parse_cube_table_header(geometry, data, max_table_bytes),
        size,
    )
    wcs_header: fits.Header | None = None
    order = wcs_row_order(layout.n_rows)
    row = order[0]
    first = layout.data_offset + row * layout.row_bytes
    candidate = wcs_header_from_row(
        url, layout, reader.read([(first, first + layout.row_bytes)])[0]
    )
    if _has_wcs(candidate):
        wcs_header = candidate
    else:  # the middle FFI has none: read the table and take the next one that has
        table = reader.read(
            [(layout.data_offset, layout.data_offset + layout.row_bytes * layout.n_rows)]
        )[0]
        for row in order[1:]:
            start = row * layout.row_bytes
            candidate = wcs_header_from_row(url, layout, table[start : start + layout.row_bytes])
            if _has_wcs(candidate):
                wcs_header = candidate
                break
    if wcs_header is None:
        raise UnsupportedProductError(
            url, "no row of its table holds a TAN WCS (CTYPE2 'DEC--TAN...')", _NOT_A_CUBE
        )
    _wcs(url, wcs_header)  # refuse an unusable WCS now, naming the cube
    return CubeProbe(
        geometry, layout, str(wcs_header.tostring()), row, reader.bytes_read, reader.requests
    )


@dataclasses.dataclass(frozen=True)
class CubeTimes:
    """A cube's FFI times and quality, from its table.

    Attributes
    ----------
    btjd : ndarray
        FFI mid-times, ``(TSTART + TSTOP) / 2``, in the table's reference (BTJD for SPOC),
        barycentric for the CCD's centre.
    bjdref : float
        ``BJDREFI + BJDREFF`` (2457000 when the table has neither).
    quality : ndarray
        ``DQUALITY`` (0 when the table has none).
    """

    btjd: npt.NDArray[np.float64]
    bjdref: float
    quality: npt.NDArray[np.int32]


def decode_cube_times(url: str, layout: TableLayout, table: bytes) -> CubeTimes:
    """Times and quality of every FFI from the bytes of the cube's table rows.

    Raises
    ------
    UnsupportedProductError
        For a table whose ``TIMESYS`` is not ``TDB`` (times that are not BJD_TDB).
    """
    hdu = layout.hdu()
    columns = hdu.columns
    names = ["TSTART", "TSTOP"] + [
        name for name in ("DQUALITY", "BJDREFI", "BJDREFF", "TIMESYS") if name in columns
    ]
    values = read_columns(url, table, hdu, names)
    if "TIMESYS" in values and len(values["TIMESYS"]):
        systems = {bytes(v).decode("ascii", "replace").strip().upper() for v in values["TIMESYS"]}
        systems.discard("")
        if systems - {"TDB"}:
            raise UnsupportedProductError(
                url,
                f"its FFI times are in {','.join(sorted(_safe(s) for s in systems))}, not TDB",
                "only BJD_TDB cubes (SPOC) are supported",
            )
    middle = layout.n_rows // 2
    bjdref = 2457000.0
    if "BJDREFI" in values:
        integer = float(values["BJDREFI"][middle])
        fraction = float(values["BJDREFF"][middle]) if "BJDREFF" in values else 0.0
        if math.isfinite(integer + fraction) and 2_400_000 <= integer + fraction <= 2_600_000:
            bjdref = integer + fraction
    else:
        logger.info("%s: no BJDREFI column; taking BTJD (BJD - 2457000)", url)
    btjd = 0.5 * (values["TSTART"].astype(np.float64) + values["TSTOP"].astype(np.float64))
    if "DQUALITY" in values:
        quality = np.nan_to_num(values["DQUALITY"].astype(np.float64), nan=0).astype(np.int32)
    else:
        quality = np.zeros(layout.n_rows, dtype=np.int32)
    return CubeTimes(btjd, bjdref, quality)


def centre_delay_days(times: CubeTimes, ra: float, dec: float) -> npt.NDArray[np.float64]:
    """The barycentric correction (days) along the CCD centre's direction ``(ra, dec)`` at
    each FFI (NaN where the FFI has no time).
    """
    bjd = times.btjd + times.bjdref
    finite = np.isfinite(bjd)
    out = np.full(bjd.shape, np.nan)
    if finite.any():
        out[finite] = barycentric_delay_days(bjd[finite], ra, dec)
    return out


def target_times(
    times: CubeTimes, ra: float, dec: float, centre_delay: npt.NDArray[np.float64] | None
) -> npt.NDArray[np.float64]:
    """BJD_TDB of a target's samples: the FFI mid-times, moved from the CCD centre's
    barycentric correction (``centre_delay``, :func:`centre_delay_days`) to the target's
    (``None``: the mid-times as they are).
    """
    bjd = times.btjd + times.bjdref
    if centre_delay is None:
        return bjd
    finite = np.isfinite(bjd)
    out = bjd.copy()
    if finite.any():
        out[finite] += barycentric_delay_days(bjd[finite], ra, dec) - centre_delay[finite]
    return out


@dataclasses.dataclass(frozen=True)
class StampJob:
    """One stamp to cut: its row in the store, its target and its window."""

    index: int
    target: str
    ra: float
    dec: float
    stamp: Stamp


@dataclasses.dataclass(frozen=True)
class CubeTask:
    """Every stamp of one cube: what a worker needs to cut and store them."""

    probe: CubeProbe
    jobs: tuple[StampJob, ...]
    store: str
    store_options: Mapping[str, Any]
    storage: StorageConfig
    n_times: int
    per_target_times: bool = True


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"error_type": type(exc).__name__, "problem": one_line(exc, 1000)}


def _batches(jobs: Sequence[StampJob], stamp_bytes: int) -> list[list[StampJob]]:
    per_batch = max(1, STAMP_BATCH_BYTES // max(1, stamp_bytes))
    return [list(jobs[i : i + per_batch]) for i in range(0, len(jobs), per_batch)]


def cut_cube(task: CubeTask) -> dict[str, Any]:
    """Cut and store every stamp of one cube: one GET of its table (times, quality), then
    the stamps' rows in batches of at most :data:`STAMP_BATCH_BYTES`, each stamp written to
    its own row of the store as soon as it is read.

    Failures are returned, never raised: one stamp's failure (a read that fails after its
    retries) leaves the others; a table that cannot be read fails them all.

    Returns
    -------
    dict
        ``cube``, ``table_bytes``, ``requests``, ``seconds`` and ``stamps``: per stamp its
        ``index``, ``ok``, ``bytes``, ``requests`` and, when it failed, ``error_type`` and
        ``problem``.
    """
    from starskope_dask.store import _zarr_open_group, store_io

    started = time.perf_counter()
    probe = task.probe
    geometry, layout = probe.geometry, probe.table
    url = geometry.url
    results: dict[int, dict[str, Any]] = {}
    table_bytes = 0
    reader: RangeReader | None = None
    try:
        reader = RangeReader(url, task.storage)
        end = layout.data_offset + layout.row_bytes * layout.n_rows
        table = reader.read([(layout.data_offset, end)])[0]
        table_bytes = reader.bytes_read
        times = decode_cube_times(url, layout, table)
        del table
        wcs = probe.make_wcs()
        centre_delay = None
        if task.per_target_times:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                middle = [[(geometry.n_cols - 1) / 2, (geometry.n_rows - 1) / 2]]
                sky = wcs.all_pix2world(middle, 0)
            centre_delay = centre_delay_days(times, float(sky[0][0]), float(sky[0][1]))
        with store_io(task.store, "write stamps to"):
            group = _zarr_open_group(task.store, task.store_options, "r+")
    except Exception as exc:
        if not isinstance(exc, StarskopeError):
            raise
        failure = _failure(exc)
        return {
            "cube": url,
            "table_bytes": table_bytes,
            "requests": reader.requests if reader is not None else 0,
            "seconds": round(time.perf_counter() - started, 3),
            "stamps": [
                {"index": job.index, "ok": False, "bytes": 0, "requests": 0, **failure}
                for job in task.jobs
            ],
        }
    n_store = task.n_times
    n_times = geometry.n_times
    stamp_bytes = max(
        (j.stamp.nx * j.stamp.ny * geometry.pixel_bytes for j in task.jobs), default=1
    )
    for batch in _batches(task.jobs, stamp_bytes):
        plans = [stamp_ranges(geometry, job.stamp) for job in batch]
        flat = [r for plan in plans for r in plan]
        try:
            chunks = reader.read(flat)
        except ProductError as exc:
            for job in batch:
                results[job.index] = {
                    "index": job.index,
                    "ok": False,
                    "bytes": 0,
                    "requests": 0,
                    **_failure(exc),
                }
            continue
        position = 0
        for job, plan in zip(batch, plans, strict=True):
            mine = chunks[position : position + len(plan)]
            position += len(plan)
            record: dict[str, Any] = {
                "index": job.index,
                "bytes": sum(len(c) for c in mine),
                "requests": len(plan),
            }
            try:
                flux, err = decode_stamp(geometry, job.stamp, mine)
                bjd = target_times(times, job.ra, job.dec, centre_delay)
                shape = (n_store, job.stamp.ny, job.stamp.nx)
                flux_row = np.full(shape, np.nan, dtype=np.float32)
                err_row = np.full(shape, np.nan, dtype=np.float32)
                flux_row[:n_times], err_row[:n_times] = flux, err
                time_row = np.full(n_store, np.nan)
                time_row[:n_times] = bjd
                quality_row = np.full(n_store, -1, dtype=np.int32)
                quality_row[:n_times] = times.quality
                with store_io(task.store, "write stamps to"):
                    group["flux"][job.index] = flux_row
                    group["flux_err"][job.index] = err_row
                    group["time"][job.index] = time_row
                    group["quality"][job.index] = quality_row
                record["ok"] = True
            except StarskopeError as exc:
                record.update(ok=False, **_failure(exc))
            results[job.index] = record
        del chunks
    return {
        "cube": url,
        "table_bytes": table_bytes,
        "requests": reader.requests,
        "seconds": round(time.perf_counter() - started, 3),
        "stamps": [results[job.index] for job in task.jobs],
    }


def probe_or_error(
    url: str, storage: StorageConfig, max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES
) -> CubeProbe | ProductError:
    """:func:`probe_cube`, its :class:`ProductError` returned instead of raised (for Dask)."""
    try:
        return probe_cube(url, storage, max_table_bytes)
    except ProductError as exc:
        return exc


# ------------------------------------------------------------------------- targets


@dataclasses.dataclass(frozen=True)
class ResolvedTarget:
    """A target and its position.

    Attributes
    ----------
    text : str
        As given (``TIC 123``, ``10.5,-20.25``).
    ra, dec : float
        ICRS degrees.
    tic : int
        Its TIC ID where known, else -1.
    """

    text: str
    ra: float
    dec: float
    tic: int = -1


def _catalogue(archive: str, storage: StorageConfig) -> pd.DataFrame | None:
    """The archive's stellar catalogue (``catalog/tic.parquet``, as the simulator writes
    it), or ``None`` when it has none.
    """
    import io

    from starskope_dask.fetch import fetch_bytes
    from starskope_dask.simulate import CATALOG_KEY

    url = f"{archive.rstrip('/')}/{CATALOG_KEY}"
    try:
        data = fetch_bytes(url, storage)
    except ProductError:
        return None
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        logger.warning("ignoring the catalogue %s: %s", url, one_line(exc, 200))
        return None


def resolve_targets(
    texts: Sequence[str],
    archive: str,
    storage: StorageConfig | None = None,
    mast: Any = None,
) -> tuple[list[ResolvedTarget], list[dict[str, Any]]]:
    """Positions of targets given as for ``starskope discover``: ``TIC n``, ``KIC n``,
    ``EPIC n`` (from the archive's ``catalog/tic.parquet`` where it has one, else the TIC at
    MAST), ``RA,DEC`` (degrees) or a name MAST resolves.

    Returns
    -------
    targets, failures
        The targets found, and a failure record for each one that was not.

    Raises
    ------
    ConfigError
        For a target that does not parse, or ``hosts:`` (not a position).
    """
    from starskope_dask.discover import parse_target

    storage = storage or StorageConfig()
    parsed = [parse_target(text) for text in texts]
    for target in parsed:
        if target.kind == "hosts":
            raise ConfigError(f"target {target.text!r}: cutout needs positions, not a host list")
    catalogue = _catalogue(archive, storage) if any(t.kind == "id" for t in parsed) else None
    client = mast

    def mast_client() -> Any:
        nonlocal client
        if client is None:
            from starskope_dask.mast import MastClient

            client = MastClient()
        return client

    out: list[ResolvedTarget] = []
    failures: list[dict[str, Any]] = []
    column = {"TESS": "ID", "Kepler": "KIC", "K2": "EPIC"}
    for target in parsed:
        try:
            if target.kind == "cone":
                assert target.ra is not None and target.dec is not None
                out.append(ResolvedTarget(target.text, target.ra, target.dec))
                continue
            if target.kind == "name":
                ra, dec = mast_client().resolve_name(target.text)
                out.append(ResolvedTarget(target.text, float(ra), float(dec)))
                continue
            name = column[str(target.mission)]
            rows: list[Mapping[str, Any]] = []
            if catalogue is not None and name in catalogue.columns:
                match = (catalogue[name] == target.number).fillna(False).astype(bool)
                rows = catalogue[match].to_dict("records")
            if not rows and name != "EPIC":
                rows = mast_client().tic_rows(
                    name, [int(target.number or 0)], f"target {target.text}"
                )
            if not rows:
                raise TargetNotFoundError(f"target {target.text!r} is in no stellar catalogue read")
            row = rows[0]
            tic = row.get("ID")
            out.append(
                ResolvedTarget(
                    target.text,
                    float(row["ra"]),
                    float(row["dec"]),
                    int(tic) if tic is not None and not pd.isna(tic) else -1,
                )
            )
        except StarskopeError as exc:
            if isinstance(exc, ConfigError):
                raise
            failures.append({"target": target.text, "cube": "", "sector": -1, **_failure(exc)})
    return out, failures


def list_cubes(
    archive: str, storage: StorageConfig | None = None, sectors: Iterable[int] = ()
) -> list[str]:
    """URLs of the FFI cubes under ``<archive>/tess/public/mast/`` (of ``sectors`` only,
    when given), sorted by sector, camera and CCD.

    Raises
    ------
    ArchiveError
        If the folder cannot be listed.
    """
    from starskope_dask.errors import ArchiveError
    from starskope_dask.fetch import filesystem, local_path

    storage = storage or StorageConfig()
    wanted = set(sectors)
    protocol = url_protocol(archive)
    if protocol == "file":
        fs = filesystem("file")
        root = str(local_path(archive)).rstrip("/")
        scheme = ""
    else:
        fs = filesystem(protocol, storage)
        root = archive.split("://", 1)[1].rstrip("/")
        scheme = f"{protocol}://"
    folder = f"{root}/{CUBE_PREFIX}".rstrip("/")
    try:
        names = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise ArchiveError(
            f"cannot list {scheme}{folder}: {type(exc).__name__}: {one_line(exc, 300)}; check "
            "--archive, the endpoint (AWS_ENDPOINT_URL_S3) and the network"
        ) from exc
    found = []
    for name in names:
        facts = parse_cube_key(str(name))
        if facts is not None and (not wanted or facts[0] in wanted):
            found.append((facts, f"{scheme}{str(name).rstrip('/')}"))
    return [url for _, url in sorted(found)]


# -------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class CutoutConfig:
    """What ``starskope cutout`` does.

    Attributes
    ----------
    targets : tuple of str
        As for discover: ``TIC n``, ``KIC n``, ``EPIC n``, ``RA,DEC``, names.
    store : str
        The Zarr store to write (local path or ``s3://``).
    sectors : tuple of int
        Sectors whose cubes are looked at (empty: every cube under the archive).
    size : int
        Stamp side in pixels.
    archive : str
        Bucket or folder holding ``tess/public/mast/``.
    storage : StorageConfig
        How to reach the archive (and the store).
    n_workers, threads_per_worker, memory_limit, scheduler_address
        The Dask cluster (:func:`starskope_dask.cluster.with_own_client`).
    max_table_bytes : int
        Largest cube table accepted.
    per_target_times : bool
        Move the FFI times from the CCD centre's barycentric correction to the target's.
    """

    targets: tuple[str, ...]
    store: str
    sectors: tuple[int, ...] = ()
    size: int = 11
    archive: str = "s3://stpubdata"
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int = "auto"
    scheduler_address: str | None = None
    max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES
    per_target_times: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.targets, str) or not self.targets:
            raise ConfigError("give at least one target (TIC n, RA,DEC, ...)")
        object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        for sector in self.sectors:
            if isinstance(sector, bool) or not isinstance(sector, int) or not 1 <= sector <= 999:
                raise ConfigError(f"--sectors: a sector is an integer in 1..999, not {sector!r}")
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 1 <= self.size <= MAX_STAMP
        ):
            raise ConfigError(
                f"--size: the stamp side must be in 1..{MAX_STAMP} pixels, not {self.size!r}"
            )
        if (
            isinstance(self.n_workers, bool)
            or not isinstance(self.n_workers, int)
            or self.n_workers < 1
        ):
            raise ConfigError(f"--workers must be at least 1, not {self.n_workers!r}")
        if not isinstance(self.max_table_bytes, int) or self.max_table_bytes < 1:
            raise ConfigError(
                f"max_table_bytes must be a positive integer, not {self.max_table_bytes!r}"
            )
        from starskope_dask.pipeline import check_store_url

        object.__setattr__(self, "store", check_store_url(self.store))

    @property
    def resolved_scheduler_address(self) -> str | None:
        """Scheduler address from the config or ``DASK_SCHEDULER_ADDRESS``."""
        return scheduler_address(self.scheduler_address)


def parse_sectors(text: str | None) -> tuple[int, ...]:
    """``"1,2,5-7"`` → ``(1, 2, 5, 6, 7)``; ``None`` or ``""`` → ``()``.

    Raises
    ------
    ConfigError
        For anything else.
    """
    if not text:
        return ()
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d{1,3})(?:-(\d{1,3}))?", part)
        if match is None:
            raise ConfigError(f"--sectors {text!r}: give sectors as 1,2 or 1-13, not {part!r}")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 1 <= first <= last <= 999:
            raise ConfigError(f"--sectors {text!r}: {part!r} is not a range of sectors in 1..999")
        out.extend(range(first, last + 1))
    return tuple(sorted(set(out)))


@dataclasses.dataclass(frozen=True)
class CutoutSummary:
    """What a cutout run did: stamps stored, failures, bytes read (probes of the cubes,
    their tables, the stamps) and requests.
    """

    store: str
    n_targets: int
    n_cubes: int
    n_stamps: int
    n_failed: int
    bytes_probe: int
    bytes_table: int
    bytes_stamps: int
    requests: int
    seconds: float
    failures: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def _claim(store: str, options: Mapping[str, Any]) -> None:
    """Check that ``store`` is empty or a cutout store, and mark it as one (nothing is
    written to, or removed from, anything else).
    """
    from starskope_dask.store import STORE_MARKER, _entries, _fs, read_json, store_io, write_bytes

    marker_url = f"{store}/{STATE_DIR}/{STORE_MARKER}"
    marker = read_json(marker_url, options)
    if marker is not None:
        if isinstance(marker, dict) and marker.get("format") == CUTOUT_FORMAT:
            return
        raise NotAStoreError(
            f"{store} is a starskope store of another kind (or was not written by starskope); "
            "nothing was written: give a new, empty location for the cutouts, e.g. cutouts.zarr"
        )
    if url_protocol(store) == "file":
        from pathlib import Path

        if Path(store).exists() and not Path(store).is_dir():
            raise NotAStoreError(f"store {store} is a file, not a folder; nothing was written")
    with store_io(store, "list"):
        fs, root = _fs(store, options)
        entries = _entries(fs, root)
    if entries:
        shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise NotAStoreError(
            f"store {store} is not empty and is not a starskope cutout store ({len(entries)} "
            f"entries: {shown}); nothing was written or deleted: give a new or empty location"
        )
    record = {"format": CUTOUT_FORMAT, "created": time.time()}
    write_bytes(marker_url, json.dumps(record).encode(), options)


def _map(
    client: Any, function: Callable[..., Any], items: Sequence[Any], label: str, progress: bool
) -> list[Any]:
    """``[function(item) ...]``, in this process (no client) or on the cluster (``client``
    may be a function that makes the client: it is called only when there is work).
    """
    if not items:
        return []
    if callable(client) and not hasattr(client, "map"):
        client = client()
    if client is None:
        return [function(item) for item in items]
    from distributed import as_completed

    futures = client.map(function, items, pure=False)
    order = {future.key: i for i, future in enumerate(futures)}
    out: list[Any] = [None] * len(items)
    iterator: Iterable[Any] = as_completed(futures)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(futures), desc=label)
    for future in iterator:
        out[order[future.key]] = future.result()
    return out


def _schema(
    store: str,
    options: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    n_times: int,
    size: int,
    attrs: Mapping[str, Any],
) -> None:
    import dask.array as da
    import xarray as xr

    from starskope_dask.store import write_schema

    n = len(rows)

    def column(name: str, dtype: Any) -> Any:
        return np.array([row[name] for row in rows], dtype=dtype)

    cube_shape = (n, n_times, size, size)
    dataset = xr.Dataset(
        {
            "flux": (
                ("star", "time", "y", "x"),
                da.full(cube_shape, np.nan, dtype=np.float32, chunks=cube_shape),
            ),
            "flux_err": (
                ("star", "time", "y", "x"),
                da.full(cube_shape, np.nan, dtype=np.float32, chunks=cube_shape),
            ),
            "quality": (
                ("star", "time"),
                da.full((n, n_times), -1, dtype=np.int32, chunks=(n, n_times)),
            ),
            "time": (
                ("star", "time"),
                da.full((n, n_times), np.nan, dtype=np.float64, chunks=(n, n_times)),
            ),
            "x0": ("star", column("x0", np.int32)),
            "y0": ("star", column("y0", np.int32)),
            "ccd_x": ("star", column("ccd_x", np.float64)),
            "ccd_y": ("star", column("ccd_y", np.float64)),
            "star_x": ("star", column("star_x", np.float64)),
            "star_y": ("star", column("star_y", np.float64)),
            "crval": (("star", "world"), np.array([row["crval"] for row in rows], np.float64)),
            "crpix": (("star", "pixel"), np.array([row["crpix"] for row in rows], np.float64)),
            "cd": (("star", "world", "pixel"), np.array([row["cd"] for row in rows], np.float64)),
            "wcs": ("star", column("wcs", object)),
            "ok": ("star", np.zeros(n, dtype=bool)),
            "error": ("star", np.array([""] * n, dtype=object)),
        },
        coords={
            "star": ("star", np.arange(n, dtype=np.int64)),
            "world": ("world", np.array(["ra", "dec"], dtype=object)),
            "pixel": ("pixel", np.array(["x", "y"], dtype=object)),
            "target": ("star", column("target", object)),
            "tic": ("star", column("tic", np.int64)),
            "ra": ("star", column("ra", np.float64)),
            "dec": ("star", column("dec", np.float64)),
            "sector": ("star", column("sector", np.int32)),
            "camera": ("star", column("camera", np.int32)),
            "ccd": ("star", column("ccd", np.int32)),
            "cube": ("star", column("cube", object)),
        },
        attrs=dict(attrs),
    )
    dataset["time"].attrs.update(units="d", long_name="BJD_TDB of each FFI's mid-time", scale="tdb")
    dataset["flux"].attrs.update(units="e-/s", long_name="calibrated FFI flux")
    dataset["flux_err"].attrs.update(units="e-/s", long_name="1-sigma uncertainty of flux")
    dataset["quality"].attrs.update(long_name="DQUALITY of each FFI; -1 past a cube's last FFI")
    dataset["x0"].attrs.update(long_name="stamp's first CCD column (0-based)")
    dataset["y0"].attrs.update(long_name="stamp's first CCD row (0-based)")
    dataset["star_x"].attrs.update(long_name="target's column in the stamp (0-based)")
    dataset["star_y"].attrs.update(long_name="target's row in the stamp (0-based)")
    dataset["crval"].attrs.update(
        long_name="linear TAN WCS of the stamp at the target: CRVAL (deg)"
    )
    dataset["crpix"].attrs.update(long_name="linear TAN WCS of the stamp: CRPIX (1-based)")
    dataset["cd"].attrs.update(long_name="linear TAN WCS of the stamp: CD matrix (deg/pixel)")
    dataset["wcs"].attrs.update(long_name="full WCS of the stamp (FITS header, TAN-SIP)")
    encoding: dict[str, Any] = {
        name: {"chunks": (1, n_times, size, size), "_FillValue": np.float32(np.nan)}
        for name in ("flux", "flux_err")
    }
    encoding["time"] = {"chunks": (1, n_times), "_FillValue": np.nan}
    encoding["quality"] = {"chunks": (1, n_times)}
    write_schema(store, dataset, encoding, CUTOUT_KEYS, options, "create the cutout store in")


def _assign(
    targets: Sequence[ResolvedTarget],
    probes: Sequence[CubeProbe],
    size: int,
    n_unreadable: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, list[StampJob]], list[dict[str, Any]]]:
    """Rows of the store, the stamp jobs of each cube, and the failures of targets on
    (or off) the cubes: the pure step between the probes and the cuts (``n_unreadable``:
    cubes that could not be read, named in the message of a target found on none).
    """
    rows: list[dict[str, Any]] = []
    jobs: dict[str, list[StampJob]] = {}
    failures: list[dict[str, Any]] = []
    wcses = [probe.make_wcs() for probe in probes]
    for target in targets:
        found = False
        for probe, wcs in zip(probes, wcses, strict=True):
            geometry = probe.geometry
            pixel = pixel_of(wcs, target.ra, target.dec)
            if pixel is None or not on_ccd(*pixel, geometry.n_cols, geometry.n_rows):
                continue
            found = True
            try:
                stamp = stamp_window(*pixel, size, geometry.n_cols, geometry.n_rows)
            except StampSizeError as exc:
                failures.append(
                    {
                        "target": target.text,
                        "cube": geometry.url,
                        "sector": geometry.sector,
                        "error_type": type(exc).__name__,
                        "problem": f"{geometry.url}: {exc}",
                    }
                )
                continue
            header = stamp_wcs_header(probe.wcs_header, stamp)
            crval, crpix, cd = local_linear_wcs(
                _wcs(geometry.url, fits.Header.fromstring(header)), stamp.star_x, stamp.star_y
            )
            index = len(rows)
            rows.append(
                {
                    "target": target.text,
                    "tic": target.tic,
                    "ra": target.ra,
                    "dec": target.dec,
                    "sector": geometry.sector,
                    "camera": geometry.camera,
                    "ccd": geometry.ccd,
                    "cube": geometry.url,
                    "x0": stamp.x0,
                    "y0": stamp.y0,
                    "ccd_x": pixel[0],
                    "ccd_y": pixel[1],
                    "star_x": stamp.star_x,
                    "star_y": stamp.star_y,
                    "crval": crval,
                    "crpix": crpix,
                    "cd": cd,
                    "wcs": header,
                    "n_times": geometry.n_times,
                }
            )
            jobs.setdefault(geometry.url, []).append(
                StampJob(index, target.text, target.ra, target.dec, stamp)
            )
        if not found:
            off = TargetOffCubeError(
                f"target {target.text!r} (RA {target.ra:.6f}, Dec {target.dec:.6f}) lies on "
                f"none of the {len(probes)} cubes read"
                + (f" ({n_unreadable} more could not be read)" if n_unreadable else "")
            )
            failures.append({"target": target.text, "cube": "", "sector": -1, **_failure(off)})
    return rows, jobs, failures


def run_cutouts(
    config: CutoutConfig, *, client: Any = None, progress: bool = False, mast: Any = None
) -> CutoutSummary:
    """Cut stamps of ``config.targets`` out of the archive's FFI cubes into ``config.store``.

    Steps: resolve the targets (:func:`resolve_targets`); list the cubes of the sectors
    (:func:`list_cubes`); probe each cube, one task per cube (:func:`probe_cube`: headers and
    WCS, a few kB); place each target on the cubes whose footprint holds it
    (:func:`pixel_of`, :func:`stamp_window`); write the store's schema; cut, one task per cube
    with all its stamps (:func:`cut_cube`), each worker writing its stamps' rows.

    The store holds one row (``star``) per stamp: a target observed in two sectors has two.
    Failures (a target in no catalogue or on no cube, a cube that cannot be read, a stamp
    larger than the CCD, a read that fails) are recorded and the run goes on; they are in the
    summary, in ``STORE/_starskope/failures.parquet`` and, for stamps, in the ``ok`` and
    ``error`` variables.

    Parameters
    ----------
    config : CutoutConfig
        What to cut.
    client : distributed.Client or callable, optional
        Where the tasks run (or a function that starts the client, called only when there
        is a cube to read); ``None`` runs them here, one after the other.
    progress : bool
        Progress bars.
    mast : MastClient, optional
        For targets the archive's catalogue does not hold.

    Raises
    ------
    ConfigError, NotAStoreError, StoreError, ArchiveError
    """
    from starskope_dask.pipeline import store_options_for
    from starskope_dask.store import consolidate, store_io, write_bytes, write_table

    started = time.perf_counter()
    options = store_options_for(config.storage) if url_protocol(config.store) == "s3" else {}
    _claim(config.store, options)
    targets, failures = resolve_targets(config.targets, config.archive, config.storage, mast)
    urls = list_cubes(config.archive, config.storage, config.sectors) if targets else []
    if targets and not urls:
        logger.warning("no FFI cube under %s/%s", config.archive.rstrip("/"), CUBE_PREFIX)
    answers = _map(
        client,
        _probe_task,
        [(url, config.storage, config.max_table_bytes) for url in urls],
        "probe cubes",
        progress,
    )
    probes: list[CubeProbe] = []
    for url, answer in zip(urls, answers, strict=True):
        if isinstance(answer, CubeProbe):
            probes.append(answer)
        else:
            parsed = parse_cube_key(url)
            failures.append(
                {
                    "target": "",
                    "cube": url,
                    "sector": parsed[0] if parsed else -1,
                    **_failure(answer),
                }
            )
    rows, jobs, placed = _assign(targets, probes, config.size, len(urls) - len(probes))
    failures += placed
    bytes_probe = sum(p.bytes_read for p in probes)
    requests = sum(p.requests for p in probes)
    bytes_table = bytes_stamps = n_stamps = 0
    if rows:
        n_times = max(int(row["n_times"]) for row in rows)
        attrs = {
            "title": "starskope_dask TESS FFI stamps",
            "format": CUTOUT_FORMAT,
            "archive": config.archive,
            "sectors": list(config.sectors),
            "stamp_size": config.size,
            "time_scale": "BJD_TDB days",
            "time_reference": "per target (FFI mid-times moved from the CCD centre's barycentric "
            "correction to the target's)"
            if config.per_target_times
            else "CCD centre (the cube's FFI mid-times)",
            "source": "TESS FFI cubes (astrocut CubeFactory format), ranged reads",
        }
        _schema(config.store, options, rows, n_times, config.size, attrs)
        tasks = [
            CubeTask(
                probe,
                tuple(jobs[probe.geometry.url]),
                config.store,
                options,
                config.storage,
                n_times,
                config.per_target_times,
            )
            for probe in probes
            if probe.geometry.url in jobs
        ]
        results = _map(client, cut_cube, tasks, "cut stamps", progress)
        ok = np.zeros(len(rows), dtype=bool)
        errors = np.array([""] * len(rows), dtype=object)
        for result in results:
            bytes_table += int(result["table_bytes"])
            requests += int(result["requests"])
            for stamp in result["stamps"]:
                index = int(stamp["index"])
                bytes_stamps += int(stamp["bytes"])
                if stamp["ok"]:
                    ok[index] = True
                    continue
                errors[index] = f"{stamp['error_type']}: {stamp['problem']}"
                row = rows[index]
                failures.append(
                    {
                        "target": row["target"],
                        "cube": row["cube"],
                        "sector": row["sector"],
                        "error_type": stamp["error_type"],
                        "problem": stamp["problem"],
                    }
                )
        n_stamps = int(ok.sum())
        from starskope_dask.store import _zarr_open_group

        with store_io(config.store, "record the stamps' state in"):
            group = _zarr_open_group(config.store, options, "r+")
            group["ok"][:] = ok
            group["error"][:] = errors
        consolidate(config.store, options)
    summary = CutoutSummary(
        store=config.store,
        n_targets=len(config.targets),
        n_cubes=len(probes),
        n_stamps=n_stamps,
        n_failed=len(failures),
        bytes_probe=bytes_probe,
        bytes_table=bytes_table,
        bytes_stamps=bytes_stamps,
        requests=requests,
        seconds=round(time.perf_counter() - started, 3),
        failures=tuple(failures),
    )
    columns = ["target", "cube", "sector", "error_type", "problem"]
    write_table(
        f"{config.store}/{STATE_DIR}/failures.parquet",
        pd.DataFrame(list(failures), columns=columns),
        options,
    )
    write_bytes(
        f"{config.store}/{STATE_DIR}/summary.json",
        json.dumps(summary.as_dict(), indent=1, default=str).encode(),
        options,
    )
    logger.info(
        "%d stamps of %d targets from %d cubes; %.2f MB read (%.2f MB of stamps) in %.1f s",
        n_stamps,
        len(config.targets),
        len(probes),
        (bytes_probe + bytes_table + bytes_stamps) / 1e6,
        bytes_stamps / 1e6,
        summary.seconds,
    )
    return summary


def _probe_task(args: tuple[str, StorageConfig, int]) -> CubeProbe | ProductError:
    return probe_or_error(*args)


def run(config: CutoutConfig, *, progress: bool = True) -> CutoutSummary:
    """:func:`run_cutouts` on a client of its own (a LocalCluster, or the configured
    scheduler), started only when there is a cube to read.
    """
    from starskope_dask.cluster import with_own_client

    return with_own_client(
        config, lambda get_client: run_cutouts(config, client=get_client, progress=progress)
    )


def open_cutouts(store: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """The stamps as an xarray Dataset (lazy).

    Raises
    ------
    StoreError
        If there is no cutout store at ``store``.
    """
    from starskope_dask.store import open_dataset

    return open_dataset(store, storage_options, "cutout store", "starskope cutout")
