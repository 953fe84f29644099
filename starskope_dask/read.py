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

Hostile input (a crafted or damaged file) is met where each value is read: every structural
keyword (``BITPIX``, ``NAXIS``, ``NAXISn``, ``PCOUNT``, ``GCOUNT``, ``TFIELDS``, ``TFORMn``)
is checked for type and range, and against the file's size, before it is used, so the HDU
walk always moves forward and costs O(file size); a decompression bomb stops at
``read.max_product_bytes`` (:func:`~starskope_dask.fetch.decompress`). Error messages never
quote the file's bytes: they name keywords, and numbers, and names from the file only
shortened and reduced to safe characters (:func:`_safe`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from starskope_dask.config import ReadConfig
from starskope_dask.errors import CorruptProductError, ProductError, UnsupportedProductError
from starskope_dask.fetch import SourceOptions, decompress, fetch_bytes
from starskope_dask.hlsp import HlspFormat, file_facts, recognise
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
# A FITS real (fixed or free format; ``D`` or ``E`` exponent), as astropy accepts it: no
# ``NAN``, ``INF`` or ``1_0``, which Python's ``float`` would take.
_REAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")
_CONTINUED = "&"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


class _BadCardError(ValueError):
    """A header card whose value cannot be parsed (its message names only the keyword)."""


def _safe(text: object, limit: int = 24) -> str:
    """A name from a file (EXTNAME, TTYPE, keyword), fit to appear in a message.

    Only letters, digits and ``_.+-`` are kept (anything else becomes ``?``) and it is cut
    to ``limit`` characters: a crafted 68-character EXTNAME can neither inject text into
    logs and stored failure tables nor swell them.
    """
    name = _UNSAFE.sub("?", str(text).strip())
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _printable(text: str, limit: int = 80) -> str:
    """A string value from a file, kept as data (OBJECT, CREATOR): printable ASCII only."""
    if not (text.isascii() and text.isprintable()):
        text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text[:limit]


def _describe(value: Any) -> str:
    """What a header value is, in a few words: short numbers as such, never a string's text."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "a logical (T/F)"
    if isinstance(value, int):
        if abs(value) < 10**12:
            return str(value)
        return f"{'a negative' if value < 0 else 'an'} integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "not a finite number"
        return f"the floating-point number {value:.6g}"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__} value"


class FitsHeader(Mapping[str, Any]):
    """A FITS header's keyword values, parsed from its 80-character cards on demand.

    One pass indexes the valued cards by keyword (the first occurrence wins, as in
    astropy); a value is parsed only when it is asked for. Strings, integers, floats
    (``E`` or ``D`` exponents) and logicals are parsed here; anything else (complex
    values, ``HIERARCH`` and ``CONTINUE`` long strings) is handed to astropy, so the
    values always agree with :class:`astropy.io.fits.Header`.

    A value that neither parses (an unterminated string, ``NAN``, text where a number
    belongs) raises a :class:`ValueError` naming the keyword, never quoting the card.

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
                    raise _BadCardError(f"card {_safe(keyword)} holds an unterminated string")
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
        if _REAL.match(field):
            try:
                return float(field.replace("D", "E"))
            except ValueError:
                pass  # a lower-case "d" exponent: astropy's
        return self._astropy_value(keyword)

    def _astropy_value(self, keyword: str) -> Any:
        try:
            return self.to_astropy().get(keyword)
        except Exception as exc:  # astropy's parser on crafted text: VerifyError and others
            raise _BadCardError(
                f"card {_safe(keyword)} holds a value that is not valid FITS"
            ) from exc

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

    @property
    def text(self) -> str:
        """The header's cards as text (what :mod:`starskope_dask.hlsp` searches)."""
        return self._text

    def to_astropy(self) -> fits.Header:
        """The same header as an :class:`astropy.io.fits.Header`."""
        if self._astropy is None:
            self._astropy = fits.Header.fromstring(self._text)
        return self._astropy


# ------------------------------------------------------------------ FITS layout (pure)

_BITPIX = (8, 16, 32, 64, -32, -64)
_DAMAGED = "the file is damaged or crafted; download it again from the archive"
_TRUNCATED = "the file is cut short or its header is damaged; download it again"


@dataclasses.dataclass(frozen=True)
class Hdu:
    """One HDU of a FITS file: its header and where its data lies in the file's bytes.

    ``axes`` holds the header's ``NAXIS1``, ``NAXIS2``, ... as :func:`fits_layout` checked
    them (non-negative integers, none longer than the file).
    """

    index: int
    header: FitsHeader
    data_offset: int
    data_size: int
    axes: tuple[int, ...] = ()

    @property
    def is_table(self) -> bool:
        """True for a binary table extension."""
        return str(self.header.get("XTENSION", "")).strip().upper() == "BINTABLE"

    @property
    def name(self) -> str:
        """The EXTNAME, or ``HDU<n>``."""
        return str(self.header.get("EXTNAME", "") or f"HDU{self.index}")

    @property
    def label(self) -> str:
        """``HDU <n> (<EXTNAME>)`` for messages, the name made safe (:func:`_safe`)."""
        try:
            name = self.header.get("EXTNAME") or ("PRIMARY" if self.index == 0 else "")
        except ValueError:
            name = "?"
        return f"HDU {self.index} ({_safe(name)})" if name else f"HDU {self.index}"

    @functools.cached_property
    def columns(self) -> dict[str, _Column]:
        """Binary-table columns by upper-case name (parsed once)."""
        return table_columns(self)


def _size_text(size: int) -> str:
    return str(size) if size < 10**15 else "more than 10**15"


class _Structure:
    """Reads one header's structural keywords, each checked before it is used."""

    def __init__(self, url: str, index: int, header: FitsHeader) -> None:
        self.url = url
        self.header = header
        self.where = f"header of HDU {index}"

    def damaged(self, problem: str) -> CorruptProductError:
        return CorruptProductError(self.url, f"{self.where} is damaged: {problem}", _DAMAGED)

    def value(self, keyword: str, default: Any) -> Any:
        try:
            return self.header.get(keyword, default)
        except ValueError as exc:
            raise self.damaged(str(exc)) from exc

    def integer(self, keyword: str, default: int, low: int, high: int, rule: str = "") -> int:
        """The keyword's value: an integer (not a logical) in ``low..high``."""
        value = self.value(keyword, default)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        rule = rule or f"an integer in {low}..{high}"
        raise self.damaged(f"{keyword} is {_describe(value)}; it must be {rule}")


def _structure(url: str, index: int, header: FitsHeader, total: int) -> tuple[tuple[int, ...], int]:
    """Check an HDU's structural keywords; return its axes and its data unit's size.

    Every value is an integer (not a float, string or logical) in range, and no count can
    exceed the file's size in bytes (``total``): no axis, parameter or group count can be
    longer than the bytes that would hold it. The data-unit size is then exact.
    """
    check = _Structure(url, index, header)
    bitpix = check.value("BITPIX", 8)
    if not isinstance(bitpix, int) or isinstance(bitpix, bool) or bitpix not in _BITPIX:
        raise check.damaged(f"BITPIX is {_describe(bitpix)}; it must be one of {_BITPIX}")
    naxis = check.integer("NAXIS", 0, 0, 999)
    longest = f"an integer in 0..{total} (no axis is longer than the file)"
    axes = tuple(check.integer(f"NAXIS{n}", 0, 0, total, longest) for n in range(1, naxis + 1))
    if str(check.value("XTENSION", "")).strip().upper() == "BINTABLE":
        gcount = check.value("GCOUNT", 1)
        if bitpix != 8 or naxis != 2 or gcount != 1 or isinstance(gcount, bool):
            raise check.damaged(
                "a binary table has BITPIX = 8, NAXIS = 2 and GCOUNT = 1, not BITPIX = "
                f"{bitpix}, NAXIS = {naxis}, GCOUNT = {_describe(gcount)}"
            )
    if naxis == 0:
        return axes, 0
    pcount = check.integer("PCOUNT", 0, 0, total, f"an integer in 0..{total} (the file's size)")
    gcount = check.integer("GCOUNT", 1, 0, total, f"an integer in 0..{total} (the file's size)")
    counted = axes[1:] if axes[0] == 0 and check.value("GROUPS", False) is True else axes
    elements = 0 if 0 in counted else math.prod(counted)
    return axes, abs(bitpix) // 8 * gcount * (pcount + elements)


def fits_layout(url: str, data: bytes | memoryview) -> list[Hdu]:
    """Walk a FITS file's HDUs: parse each header, locate each data unit.

    Every structural keyword is checked before it is used (:func:`_structure`), each
    data unit must lie inside the file, and each binary table's columns must fit its rows
    (:func:`table_columns`, parsed here once), so the walk only moves forward: it costs
    O(file size) whatever the headers say.

    Parameters
    ----------
    url : str
        Name used in error messages.
    data : bytes
        The file's bytes.

    Raises
    ------
    CorruptProductError
        If the bytes are not FITS, a header is damaged or crafted, or data is cut short.
        The message never quotes the file's bytes.
    """
    view = memoryview(data)
    total = len(view)
    if bytes(view[:9]) != b"SIMPLE  =":
        raise CorruptProductError(
            url,
            f"not a FITS file: no SIMPLE card at the start of its first 2880-byte block "
            f"({total} bytes)",
            "check that the URL points at a FITS light-curve product",
        )
    if total < BLOCK:
        raise CorruptProductError(
            url, f"file is truncated: {total} bytes, less than one 2880-byte FITS block", _TRUNCATED
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
        except UnicodeDecodeError as exc:
            raise CorruptProductError(
                url,
                f"header of HDU {len(hdus)} is damaged: byte {offset + exc.start} is not ASCII "
                "text",
                "download it again",
            ) from exc
        if hdus and "XTENSION" not in header:
            # Bytes after the last HDU that are not an extension: padding or junk; stop here.
            break
        axes, size = _structure(url, len(hdus), header, total)
        data_offset = block_start
        if data_offset + size > total:
            hdu = Hdu(len(hdus), header, data_offset, size, axes)
            raise CorruptProductError(
                url,
                f"file is truncated: {hdu.label} needs {_size_text(data_offset + size)} bytes, "
                f"the file has {total}",
                _TRUNCATED,
            )
        hdu = Hdu(len(hdus), header, data_offset, size, axes)
        if hdu.is_table:  # its columns must fit its rows (NAXIS1): checked now, kept
            try:
                hdu.__dict__["columns"] = table_columns(hdu)
            except ProductError as exc:
                raise type(exc)(url, exc.problem, exc.hint) from exc
        hdus.append(hdu)
        offset = data_offset + -(-size // BLOCK) * BLOCK  # always > offset: size >= 0
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
    code: str = "D"


def _number(check: _Structure, keyword: str, default: float) -> float:
    value = check.value(keyword, default)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise check.damaged(f"{keyword} is {_describe(value)}; it must be a finite number")


def _null(value: Any, dtype: np.dtype[Any]) -> int | None:
    """The TNULLn of an integer column, or None where no value of the column can equal it."""
    if dtype.kind not in "iu" or isinstance(value, bool) or not isinstance(value, int):
        return None
    info = np.iinfo(dtype)
    return value if info.min <= value <= info.max else None


def table_columns(hdu: Hdu) -> dict[str, _Column]:
    """Columns of a binary table HDU by upper-case name, with their byte layout.

    ``TFIELDS`` must be an integer in 0..999, each ``TFORMn`` a binary-table format, the
    columns together no wider than a row (``NAXIS1``), each ``TSCALn``/``TZEROn`` a finite
    number, and no two columns may share a name (compared without case; astropy refuses
    such a table too).

    Raises
    ------
    CorruptProductError
        For a table that breaks any of these (the message names the keyword; the URL is
        filled in by :func:`parse_light_curve`).
    """
    header = hdu.header
    check = _Structure("", hdu.index, header)
    check.where = f"table {hdu.label}"
    row_bytes = hdu.axes[0] if hdu.axes else int(header.get("NAXIS1", 0))
    columns: dict[str, _Column] = {}
    numbers: dict[str, int] = {}
    offset = 0
    for number in range(1, check.integer("TFIELDS", 0, 0, 999) + 1):
        keyword = f"TFORM{number}"
        tform = check.value(keyword, None)
        match = _TFORM.match(tform) if isinstance(tform, str) else None
        if match is None:
            kind = "not a binary-table format" if isinstance(tform, str) else _describe(tform)
            raise check.damaged(f"{keyword} is {kind}; it must be a format such as '1D' or '8A'")
        repeat = int(match.group(1)) if match.group(1) else 1
        code = match.group(2)
        if code == "X":
            width = -(-repeat // 8)
        elif code in ("P", "Q"):
            width = 8 if code == "P" else 16
        elif code == "A":
            width = repeat
        else:
            width = np.dtype(_TFORM_DTYPE[code]).itemsize * repeat
        if offset + width > row_bytes:
            if width > row_bytes:
                problem = f"{keyword} repeats {_describe(repeat)} times, more than a row holds"
            else:
                problem = f"{keyword} makes the columns {offset + width} bytes wide, past a row"
            raise check.damaged(f"{problem} (NAXIS1 = {row_bytes} bytes)")
        dtype: np.dtype[Any]
        if width == 0:  # a column of no bytes (0D, 0A) holds no values
            dtype, repeat = np.dtype("u1"), 0
        elif code == "A":
            dtype, repeat = np.dtype(f"S{repeat}"), 1
        elif code == "X":
            dtype, repeat = np.dtype("u1"), width
        elif code in ("P", "Q"):  # a variable-length array's (count, heap offset)
            dtype, repeat = np.dtype(">i4" if code == "P" else ">i8"), 2
        else:
            dtype = np.dtype(_TFORM_DTYPE[code])
        raw_name = check.value(f"TTYPE{number}", None)
        name = (raw_name.strip() if isinstance(raw_name, str) else "") or f"COL{number}"
        key = name.upper()
        if key in numbers:
            raise check.damaged(
                f"duplicate column name {_safe(name, 32)} (columns {numbers[key]} and {number})"
            )
        numbers[key] = number
        columns[key] = _Column(
            name=name,
            offset=offset,
            dtype=dtype,
            repeat=repeat,
            scale=_number(check, f"TSCAL{number}", 1.0),
            zero=_number(check, f"TZERO{number}", 0.0),
            null=_null(check.value(f"TNULL{number}", None), dtype),
            code=code,
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
    if len(hdu.axes) == 2:  # checked by fits_layout: the rows lie inside the file
        row_bytes, nrows = hdu.axes
    else:
        row_bytes, nrows = int(hdu.header.get("NAXIS1", 0)), int(hdu.header.get("NAXIS2", 0))
    wanted = [columns[name.upper()] for name in names]
    unique = list({c.name: c for c in wanted}.values())
    dtype = np.dtype(
        {
            "names": [c.name for c in unique],
            "formats": [c.dtype if c.repeat == 1 else (c.dtype, (c.repeat,)) for c in unique],
            "offsets": [c.offset for c in unique],
            "itemsize": row_bytes,
        }
    )
    try:
        rows = np.ndarray((nrows,), dtype=dtype, buffer=data, offset=hdu.data_offset)
    except (TypeError, ValueError) as exc:
        raise CorruptProductError(
            url, f"table {hdu.label} cannot be decoded ({type(exc).__name__})", _DAMAGED
        ) from exc
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

#: Each mission's catalogue, the keyword holding its ID, and the bound every ID lies below:
#: KIC IDs have at most 9 digits (``kplr%09d``), EPIC IDs 9 (``ktwo%09d``, bound 10**10 for
#: margin), TIC IDs 10 (TIC 8 ends near 2.1e9; bound 10**11). All fit int64 with room.
CATALOGUE_IDS = {
    "Kepler": ("KIC", "KEPLERID", 10**9),
    "K2": ("EPIC", "KEPLERID", 10**10),
    "TESS": ("TIC", "TICID", 10**11),
}


def _catalogue_id(source: str, catalogue: str, bound: int, value: Any) -> int:
    """A catalogue ID as the header states it.

    Else :class:`CorruptProductError` saying what kind of impossible value it is (never
    quoting it).
    """
    number: int | None = None
    kind = _describe(value)
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if math.isfinite(value) and value == math.floor(value):
            number = int(value)
            kind = "a floating-point number"
        elif math.isfinite(value):
            kind = "a floating-point number that is not a whole number"
    elif isinstance(value, str):
        kind = "a string that is not a whole number"
        if value.isascii() and value.isdigit():
            number = int(value)
            kind = "a number"
    if number is not None:
        if 0 < number < bound:
            return number
        if number < 0:
            kind = f"negative ({kind})" if not isinstance(value, int) else "a negative integer"
        elif number == 0:
            kind = "zero"
        else:
            kind = f"{'an integer' if isinstance(value, int) else kind} of {_power(bound)} or more"
    raise CorruptProductError(
        "",
        f"{source} is {kind}; a {catalogue} ID is a whole number in 1..{_power(bound)} - 1",
        "the header is damaged or crafted; download the file again from the archive",
    )


def _power(bound: int) -> str:
    return f"10**{len(str(bound)) - 1}"


def identify_star(mission: str, headers: tuple[FitsHeader, ...]) -> StarIds:
    """Catalogue IDs from KEPLERID/TICID, falling back to the OBJECT name.

    The mission's ID keyword (``KEPLERID`` for Kepler and K2, ``TICID`` for TESS) is used
    when present, else a number in ``OBJECT`` (``"TIC 25155310"``, or bare digits) whose
    catalogue prefix, if any, is the mission's own (a TESS file's ``"KIC 123"`` is not a
    TIC ID). The ID must be a whole number (an integer, an integral float or a string of
    digits) in ``1 .. bound - 1`` with the bounds of :data:`CATALOGUE_IDS`.

    Raises
    ------
    CorruptProductError
        For an impossible ID: negative, zero, a logical, a fraction, text, or past the
        catalogue's bound. The message names the keyword and the kind of value, never the
        value's text (the URL is filled in by :func:`parse_light_curve`).
    """
    catalogue, keyword, bound = CATALOGUE_IDS[mission]
    object_name = _printable(str(_keyword(headers, "OBJECT") or ""))
    number = _keyword(headers, keyword)
    source = keyword
    if number is None:
        match = _OBJECT_ID.match(object_name)
        if match is not None and (match.group(1) or catalogue).upper() == catalogue:
            number, source = match.group(2), "the ID in OBJECT"
    value = None if number is None else _catalogue_id(source, catalogue, bound, number)
    if object_name.isdigit():
        object_name = f"{catalogue} {object_name}"
    return StarIds(
        kic=value if catalogue == "KIC" else None,
        epic=value if catalogue == "EPIC" else None,
        tic=value if catalogue == "TIC" else None,
        object_name=object_name,
    )


def _finite(value: Any) -> bool:
    """A real number (not a logical, not text) that is finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _segment(url: str, headers: tuple[FitsHeader, ...]) -> int:
    """Quarter, campaign or sector: an integer in 0..9999, else -1 (unknown, warned)."""
    value = _keyword(headers, "QUARTER", "CAMPAIGN", "SECTOR")
    if value is None:
        return -1
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9999:
        return value
    logger.warning(
        "%s: QUARTER/CAMPAIGN/SECTOR is %s, not an integer in 0..9999; segment unknown (-1)",
        url,
        _describe(value),
    )
    return -1


def _float_keyword(headers: tuple[FitsHeader, ...], *names: str) -> float:
    """The first of ``names`` present, as a float; NaN if absent, unparsable or not a number."""
    try:
        value = _keyword(headers, *names)
    except ValueError:
        return math.nan
    return float(value) if _finite(value) else math.nan


def _position(url: str, headers: tuple[FitsHeader, ...], keyword: str, bound: float) -> float:
    """``RA_OBJ`` (``bound`` 360) or ``DEC_OBJ`` (90) in degrees, NaN when impossible.

    Policy: a position that is absent is NaN; one that is present but impossible (text, a
    logical, unparsable, not finite, outside 0..360 for RA or -90..90 for Dec) is NaN with
    a warning. Either way the light curve stays usable and the star is matched by its
    catalogue ID only.
    """
    try:
        value = _keyword(headers, keyword)
    except ValueError:
        value = "unparsable"
    if value is None:
        return math.nan
    low = 0.0 if bound == 360 else -bound
    if _finite(value) and low <= value <= bound:
        return float(value)
    kind = "unparsable" if value == "unparsable" else _describe(value)
    logger.warning(
        "%s: %s is %s, not a position in %g..%g degrees; using NaN (the star is matched by "
        "its catalogue ID only)",
        url,
        keyword,
        kind,
        low,
        bound,
    )
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
    hlsp: HlspFormat | None = None
    raw_flux: str | None = None  # the flux whose error ``flux_err`` is (eleanor-lite)


def _hlsp_name(url: str) -> str | None:
    name = PurePosixPath(url.split("?")[0]).name.lower()
    if name.startswith("hlsp_"):
        parts = name.split("_")
        if len(parts) > 1:
            return parts[1]
    return None


def _listed(names: Iterable[str], limit: int = 40, made_safe: bool = False) -> str:
    """Names from a file for a message: each made safe (:func:`_safe`), at most ``limit``."""
    safe = list(names) if made_safe else [_safe(n, 32) for n in names]
    more = f" and {len(safe) - limit} more" if len(safe) > limit else ""
    return "[" + ", ".join(safe[:limit]) + "]" + more


def _hlsp_plan(url: str, tables: list[Hdu], fmt: HlspFormat, config: ReadConfig) -> _Plan:
    """The columns of a registered HLSP (:mod:`starskope_dask.hlsp`).

    The format's table (its EXTNAME, else the first table holding its time column), its
    time column, the flux ``read.flux`` names (``pdcsap``: the format's default, ``sap``: its
    raw flux) and that flux's error and quality columns. A ``read.column_map`` names other
    columns of the same table; what it leaves out comes from the format, so the product
    keeps its time reference, quality masks and identity.

    Raises
    ------
    UnsupportedProductError
        When the table or a column the format (or the column_map) names is missing (the
        message lists the columns seen).
    """
    mapping = {k: v.upper() for k, v in (config.column_map or {}).items()}
    time_key = mapping.get("time", fmt.time.upper())
    table = next((h for h in tables if fmt.extension and h.name.upper() == fmt.extension), None)
    if table is None or time_key not in table.columns:
        table = next((h for h in tables if time_key in h.columns), None)
    if table is None:
        seen = sorted({c.name for h in tables for c in h.columns.values()})
        raise UnsupportedProductError(
            url,
            f"{fmt.title} product without its time column {_safe(time_key, 32)}; columns "
            f"seen: {_listed(seen)}",
            "the file is not the product its name or header says; pass a column_map",
        )
    columns = table.columns

    def name(column: str | None) -> str | None:
        found = columns.get(column.upper()) if column else None
        return found.name if found is not None else None

    flux_key = mapping.get("flux", fmt.flux_column(config.flux).upper())
    flux = name(flux_key)
    if flux is None:
        offered = [c for c in fmt.fluxes if c.upper() in columns]
        example_time = _safe(columns[time_key].name, 32)
        example_flux = _safe(offered[0], 32) if offered else "X"
        raise UnsupportedProductError(
            url,
            f"{fmt.title} product without the flux column {_safe(flux_key, 32)} in table "
            f"{table.label}; its flux columns here: {_listed(offered)}; columns seen: "
            f"{_listed(c.name for c in columns.values())}",
            f"choose a flux with read.column_map, e.g. {{time: {example_time}, flux: "
            f"{example_flux}}}",
        )
    if "flux_err" in mapping:
        flux_err = name(mapping["flux_err"])
    else:
        flux_err = next((n for n in map(name, fmt.error_columns(flux)) if n is not None), None)
    if "quality" in mapping:
        quality = name(mapping["quality"])
    else:
        quality = name(fmt.quality_column(flux)) if fmt.quality_kind != "none" else None
    raw = None
    if fmt.error_of_raw and flux_err is not None and "flux_err" not in mapping:
        raw = name(fmt.raw_flux) if flux.upper() != fmt.raw_flux.upper() else None
    return _Plan(table, columns[time_key].name, flux, flux_err, quality, fmt.name, fmt, raw)


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
        hdu_names = _listed(
            (f"{_safe(h.name)} ({_safe(h.header.get('XTENSION', 'IMAGE'))})" for h in hdus),
            made_safe=True,
        )
        raise UnsupportedProductError(
            url, f"no binary table in the file (HDUs: {hdu_names})", "it is not a light curve"
        )
    fmt = recognise(
        url,
        hdus[0].header,
        hdus[0].header.text,
        [(h.name.upper(), set(h.columns)) for h in tables],
    )
    if fmt is not None and fmt.reader == "table":
        return _hlsp_plan(url, tables, fmt, config)
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
            f"column_map {dict(config.column_map)} does not match the table; columns seen: "
            f"{_listed(seen)}",
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
                f"target pixel file (table {_safe(hdu.name)} holds pixel images), "
                "not a light curve",
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
        f"no table with a TIME and a known flux column; columns seen: {_listed(sorted(set(seen)))}",
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


#: FITS time scales (``TIMESYS``) a message may name; any other value is not quoted.
_TIME_SCALES = ("TDB", "TT", "TAI", "UTC", "UT1", "TCG", "TCB", "TDT", "ET", "GPS", "LOCAL")


def _reference(headers: tuple[FitsHeader, ...], keyword: str) -> float | None:
    """A reference-epoch keyword (days): None if absent, else a finite number."""
    value = _keyword(headers, keyword)
    if value is None:
        return None
    if _finite(value):
        return float(value)
    raise CorruptProductError(
        "",
        f"{keyword} is {_describe(value)}; a reference epoch is a finite number of days",
        "the header is damaged or crafted; download the file again from the archive",
    )


def _time_reference(
    url: str, mission: str, headers: tuple[FitsHeader, ...]
) -> tuple[float, float, str]:
    _check_time_system(url, headers)
    bjdrefi = _reference(headers, "BJDREFI")
    bjdreff = _reference(headers, "BJDREFF")
    if bjdrefi is None and bjdreff is None:
        bjdref = _reference(headers, "BJDREF")
        if bjdref is not None:
            return bjdref, 0.0, "header"
        logger.debug("%s: no BJDREFI/BJDREFF; using the %s reference epoch", url, mission)
        return MISSION_BJDREF[mission], 0.0, "mission-default"
    return bjdrefi or 0.0, bjdreff or 0.0, "header"


def _check_time_system(url: str, headers: tuple[FitsHeader, ...]) -> None:
    timesys = str(_keyword(headers, "TIMESYS") or "TDB").upper()
    if timesys != "TDB":
        scale = timesys if timesys in _TIME_SCALES else "not a known time scale"
        raise UnsupportedProductError(
            url, f"TIMESYS is {scale}; only barycentric TDB times are supported"
        )


_TUNIT_EPOCH = re.compile(r"^\s*BJD\s*-\s*(\d{7}(?:\.\d+)?)\s*$", re.IGNORECASE)


def _hlsp_time_reference(
    url: str, fmt: HlspFormat, hdu: Hdu, time: str, headers: tuple[FitsHeader, ...]
) -> tuple[float, float, str]:
    """``(integer days, fraction, how)`` that make a registered HLSP's time BJD_TDB.

    ``how`` is ``header`` when the file states the epoch (BJDREFI/BJDREFF, or the time
    column's TUNIT), ``format`` when the format's published offset is used.
    """
    _check_time_system(url, headers)
    offset = fmt.time_offset
    if fmt.time_reference == "header":
        bjdrefi = _reference(headers, "BJDREFI")
        bjdreff = _reference(headers, "BJDREFF")
        if bjdrefi is not None or bjdreff is not None:
            return bjdrefi or 0.0, bjdreff or 0.0, "header"
        bjdref = _reference(headers, "BJDREF")
        if bjdref is not None:
            return bjdref, 0.0, "header"
    elif fmt.time_reference == "tunit":
        number = list(hdu.columns).index(time.upper()) + 1
        unit = hdu.header.get(f"TUNIT{number}")
        found = _TUNIT_EPOCH.match(unit) if isinstance(unit, str) else None
        if found is not None:
            return float(found.group(1)), 0.0, "header"
    whole = math.floor(offset)
    return float(whole), offset - whole, "format"


def _hlsp_ids(fmt: HlspFormat, url: str, headers: tuple[FitsHeader, ...]) -> StarIds:
    """A registered HLSP's star: its catalogue ID from the header, else the file name,
    else ``OBJECT``; a Gaia-named product (CDIPS, TGLC) keeps its Gaia ID as the name.

    Raises
    ------
    CorruptProductError
        For an impossible ID in the header (as :func:`identify_star`).
    """
    catalogue, _, bound = CATALOGUE_IDS[fmt.mission]
    object_name = _printable(str(_keyword(headers, "OBJECT") or ""))
    value: int | None = None
    for keyword in fmt.id_keywords:
        stated = _keyword(headers, keyword)
        if stated is not None:
            value = _catalogue_id(keyword, catalogue, bound, stated)
            break
    facts = file_facts(url)
    number, gaia = facts["number"], facts["gaia"]
    if gaia is None and fmt.gaia_pattern and object_name.isdigit():
        gaia = int(object_name)  # a Gaia-named product's OBJECT is its Gaia ID
    if value is None and isinstance(number, int) and 0 < number < bound:
        value = number
    if value is None:
        match = _OBJECT_ID.match(object_name)
        named = match is not None and (match.group(1) or catalogue).upper() == catalogue
        if match is not None and named and not (gaia is not None and match.group(1) is None):
            value = _catalogue_id("the ID in OBJECT", catalogue, bound, match.group(2))
    if gaia is not None and (not object_name or object_name == str(gaia)):
        object_name = f"Gaia {fmt.gaia_release} {gaia}"
    elif not object_name or object_name.isdigit():
        object_name = f"{catalogue} {value}" if value is not None else object_name
    return StarIds(
        kic=value if catalogue == "KIC" else None,
        epic=value if catalogue == "EPIC" else None,
        tic=value if catalogue == "TIC" else None,
        object_name=object_name,
    )


def _hlsp_segment(fmt: HlspFormat, url: str, headers: tuple[FitsHeader, ...]) -> int:
    """Campaign or sector from the header, else the file name; -1 when neither says."""
    segment = _segment(url, headers)
    if segment < 0:
        named = file_facts(url)["segment"]
        segment = named if isinstance(named, int) else -1
    return segment


def _letter_flags(values: npt.NDArray[Any], good: tuple[str, ...]) -> npt.NDArray[np.int32]:
    """One-letter quality flags (CDIPS ``IRQn``) as words: 0 for a good letter, else 1."""
    letters = np.char.strip(np.char.upper(values.astype("S1")))
    ok = np.isin(letters, np.array([g.encode() for g in good]))
    return np.where(ok, 0, 1).astype(np.int32)


def _parse_hlsp(
    url: str, data: bytes, hdus: list[Hdu], plan: _Plan, config: ReadConfig
) -> LightCurve:
    """A registered HLSP's light curve, read as its :class:`~starskope_dask.hlsp.HlspFormat`
    describes (every value checked as in :func:`parse_light_curve`).
    """
    fmt = plan.hlsp
    assert fmt is not None  # parse_light_curve calls it with an HLSP plan only
    headers = (hdus[0].header, plan.hdu.header)
    _check_column(url, plan.hdu, plan.time, "time")
    _check_column(url, plan.hdu, plan.flux, "flux")
    names = [plan.time, plan.flux]
    for name, role in ((plan.flux_err, "flux error"), (plan.raw_flux, "raw flux")):
        if name is not None:
            _check_column(url, plan.hdu, name, role)
            names.append(name)
    letters = False
    wanted: dict[str, npt.DTypeLike] = {
        n: np.float64 for n in (plan.flux, plan.flux_err, plan.raw_flux) if n is not None
    }
    if plan.quality is not None:
        column = plan.hdu.columns[plan.quality.upper()]
        letters = fmt.quality_kind == "letters" and column.code == "A"
        if not letters:
            _check_column(url, plan.hdu, plan.quality, "quality")
            if column.dtype.kind in "iu" and column.dtype.itemsize <= 4:
                wanted[plan.quality] = np.int32
        names.append(plan.quality)
    columns = read_columns(url, data, plan.hdu, names, wanted)
    bjdrefi, bjdreff, time_reference = _hlsp_time_reference(url, fmt, plan.hdu, plan.time, headers)
    time = _plausible_times(url, to_bjd_tdb(columns[plan.time].reshape(-1), bjdrefi, bjdreff))
    flux = np.asarray(columns[plan.flux], dtype=np.float64).reshape(-1)
    if plan.flux_err is None:
        flux_err = np.full(flux.shape, np.nan)
    else:
        flux_err = np.asarray(columns[plan.flux_err], dtype=np.float64).reshape(-1)
        if plan.raw_flux is not None:  # the error of the raw flux, scaled to this flux
            raw = np.asarray(columns[plan.raw_flux], dtype=np.float64).reshape(-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                flux_err = flux * flux_err / raw
    if plan.quality is None:
        quality = np.zeros(flux.shape, np.int32)
    elif letters:
        quality = _letter_flags(columns[plan.quality].reshape(-1), fmt.good_letters)
    else:
        quality = _quality_flags(url, columns[plan.quality]).reshape(-1)
    preset = config.quality_bitmask
    bitmask = int(preset) if not isinstance(preset, str) else fmt.bitmask(preset)
    return _light_curve(
        url,
        headers,
        mission=fmt.mission,
        ids=_hlsp_ids(fmt, url, headers),
        segment=_hlsp_segment(fmt, url, headers),
        arrays=(time, flux, flux_err, quality),
        bitmask=bitmask,
        flux_column=plan.flux,
        time_reference=time_reference,
        product_type=lambda cadence, creator: fmt.name,
    )


def _light_curve(
    url: str,
    headers: tuple[FitsHeader, ...],
    *,
    mission: str,
    ids: StarIds,
    segment: int,
    arrays: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
    bitmask: int,
    flux_column: str,
    time_reference: str,
    product_type: Callable[[float, str], str],
) -> LightCurve:
    """The light-curve record of parsed columns (time, flux, flux_err, quality), with the
    cadence, the creator, the good cadences and the provenance every product gets alike;
    ``product_type(cadence, creator)`` names the product.
    """
    time, flux, flux_err, quality = arrays
    cadence = _cadence(headers, time)
    creator = _printable(str(_keyword(headers, "CREATOR") or _keyword(headers, "ORIGIN") or ""))
    return LightCurve(
        mission=mission,
        ids=ids,
        ra=_position(url, headers, "RA_OBJ", 360.0),
        dec=_position(url, headers, "DEC_OBJ", 90.0),
        segment=segment,
        cadence_days=cadence,
        time=time,
        flux=flux,
        flux_err=flux_err,
        quality=quality,
        good=good_cadences(time, flux, quality, bitmask),
        provenance=Provenance(
            url=url,
            product_type=product_type(cadence, creator),
            data_release=_data_release(headers),
            flux_column=flux_column,
            quality_bitmask=bitmask,
            time_reference=time_reference,
            creator=creator,
        ),
    )


# ------------------------------------------------------------------------ parse & read

#: BJD_TDB days a light curve's times may take (years 1858 to 2405): a finite time outside
#: it cannot come from Kepler, K2 or TESS and becomes NaN (a cadence with no time).
BJD_RANGE = (2_400_000.0, 2_600_000.0)
#: Longest cadence (days) a ``TIMEDEL`` may state; past it, or not a positive finite
#: number, the cadence is derived from the times.
MAX_CADENCE_DAYS = 100.0
#: Quality flag word given to a cadence whose QUALITY value is no 32-bit word (NaN,
#: infinite, fractional, out of range): every bit set, so every non-zero bitmask drops it.
IMPOSSIBLE_QUALITY = -1


def _quality_flags(url: str, values: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """QUALITY values as int32 bit words, never wrapped silently.

    Policy: QUALITY is a bit field, so a value that is a 32-bit word (an integer in
    ``-2**31 .. 2**32 - 1``, as signed or unsigned 32-bit columns hold) keeps its 32 bits;
    anything else (NaN, infinite, fractional, an integer beyond 32 bits) cannot be one and
    becomes :data:`IMPOSSIBLE_QUALITY` (all bits set: flagged by every non-zero bitmask),
    with a warning that counts them.
    """
    if values.dtype == np.int32:
        return values
    if values.dtype.kind in "iub" and values.dtype.itemsize <= 2:
        return values.astype(np.int32)
    if values.dtype.kind in "iu":
        valid = (values >= -(2**31)) & (values <= 2**32 - 1)
        words = np.where(valid, values, IMPOSSIBLE_QUALITY).astype(np.int64)
    else:
        numbers = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            valid = (numbers >= -(2.0**31)) & (numbers <= 2.0**32 - 1) & (numbers % 1 == 0)
        words = np.where(valid, numbers, IMPOSSIBLE_QUALITY).astype(np.int64)
    bad = int(valid.size - np.count_nonzero(valid))
    if bad:
        logger.warning(
            "%s: %d QUALITY values are not 32-bit flag words (NaN, infinite, fractional or out "
            "of range); they are flagged as bad (quality %d)",
            url,
            bad,
            IMPOSSIBLE_QUALITY,
        )
    return (words & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _check_column(url: str, hdu: Hdu, name: str, role: str, pairs: bool = False) -> _Column:
    """The column a light curve reads as ``role``, checked.

    It must hold real numbers, one a row (or a pair for an astropy-serialised time, when
    ``pairs``).
    """
    column = hdu.columns[name.upper()]
    problem = ""
    if column.code in ("P", "Q"):
        problem = "is a variable-length array"
    elif column.dtype.kind not in "iuf":
        problem = "holds text" if column.dtype.kind == "S" else "does not hold real numbers"
    elif column.repeat != 1 and not (pairs and column.repeat == 2):
        problem = f"holds {column.repeat} values a row"
    if problem:
        raise UnsupportedProductError(
            url,
            f"column {_safe(column.name, 32)} ({role}) of table {hdu.label} {problem}; a light "
            "curve has one number a row",
            "pass a column_map naming other columns",
        )
    return column


def _plausible_times(url: str, time: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``time`` with every value outside :data:`BJD_RANGE` (infinite included) made NaN."""
    low, high = BJD_RANGE
    inside = (time >= low) & (time <= high)
    if inside.all():
        return time
    absurd = int(np.count_nonzero(~inside & ~np.isnan(time)))
    if absurd:
        logger.warning(
            "%s: %d times lie outside BJD_TDB %.0f..%.0f (or are infinite); they are NaN, "
            "cadences with no time",
            url,
            absurd,
            low,
            high,
        )
        time = np.where(inside, time, np.nan)
    return time


def _cadence(headers: tuple[FitsHeader, ...], time: npt.NDArray[np.float64]) -> float:
    """The cadence in days.

    ``TIMEDEL`` when it is a positive finite number of at most :data:`MAX_CADENCE_DAYS`;
    else the median positive step between finite times; else NaN.
    """
    cadence = _float_keyword(headers[::-1], "TIMEDEL")
    if 0 < cadence <= MAX_CADENCE_DAYS:
        return cadence
    steps = np.diff(time[np.isfinite(time)])
    steps = steps[steps > 0]
    cadence = float(np.median(steps)) if steps.size else math.nan
    return cadence if 0 < cadence <= MAX_CADENCE_DAYS else math.nan


def _data_release(headers: tuple[FitsHeader, ...]) -> int | None:
    release = _keyword(headers, "DATA_REL")
    if isinstance(release, int) and not isinstance(release, bool) and 0 <= release <= 10**6:
        return release
    return None


def parse_light_curve(url: str, data: bytes, config: ReadConfig | None = None) -> LightCurve:
    """Parse a product's (decompressed) bytes into a light curve.

    Every value is checked where it is read, with these policies for a crafted or damaged
    file:

    - structure (``BITPIX``, ``NAXISn``, ``TFORMn``, duplicate column names, ...):
      :class:`CorruptProductError` (:func:`fits_layout`, :func:`table_columns`);
    - catalogue IDs that are impossible: :class:`CorruptProductError`
      (:func:`identify_star`);
    - ``RA_OBJ``/``DEC_OBJ`` that are impossible: NaN with a warning, the light curve stays
      usable and the star is matched by its ID only;
    - QUALITY values that are no 32-bit word: flagged (all bits set), with a warning;
    - times outside :data:`BJD_RANGE` or infinite: NaN (so never good), with a warning;
    - ``TIMEDEL`` not a positive finite number of days: derived from the times;
    - a segment or ``DATA_REL`` that is impossible: unknown (-1, None).

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
        Naming the URL; the message never quotes the file's bytes.
    """
    config = config or ReadConfig()
    try:
        hdus = fits_layout(url, data)
        plan = plan_columns(url, hdus, config)
        if plan.hlsp is not None:
            return _parse_hlsp(url, data, hdus, plan, config)
        headers = (hdus[0].header, plan.hdu.header)
        mission = identify_mission(url, headers)
        time_column = _check_column(url, plan.hdu, plan.time, "time", pairs=True)
        _check_column(url, plan.hdu, plan.flux, "flux")
        names = [plan.time, plan.flux]
        for name, role in ((plan.flux_err, "flux error"), (plan.quality, "quality")):
            if name is not None:
                _check_column(url, plan.hdu, name, role)
                names.append(name)
        wanted: dict[str, npt.DTypeLike] = {
            n: np.float64 for n in (plan.flux, plan.flux_err) if n is not None
        }
        if plan.quality is not None:
            quality_column = plan.hdu.columns[plan.quality.upper()]
            if quality_column.dtype.kind in "iu" and quality_column.dtype.itemsize <= 4:
                wanted[plan.quality] = np.int32  # exact (B, I, J): no value can wrap
        columns = read_columns(url, data, plan.hdu, names, wanted)
        raw_time = columns[plan.time]
        if time_column.repeat == 2:
            # astropy-serialised Time column (jd1, jd2), as lightkurve writes it.
            jdref = _float_keyword((plan.hdu.header,), "JDREF")
            time = raw_time[:, 0] + (raw_time[:, 1] + (0.0 if math.isnan(jdref) else jdref))
            time_reference = "astropy-serialized"
        else:
            bjdrefi, bjdreff, time_reference = _time_reference(url, mission, headers)
            time = to_bjd_tdb(raw_time.reshape(-1), bjdrefi, bjdreff)
        time = _plausible_times(url, np.asarray(time, dtype=np.float64))
        flux = np.asarray(columns[plan.flux], dtype=np.float64).reshape(-1)
        flux_err = (
            np.asarray(columns[plan.flux_err], dtype=np.float64).reshape(-1)
            if plan.flux_err is not None
            else np.full(flux.shape, np.nan)
        )
        quality = (
            _quality_flags(url, columns[plan.quality]).reshape(-1)
            if plan.quality is not None
            else np.zeros(flux.shape, np.int32)
        )
        bitmask = quality_bitmask_value(mission, config.quality_bitmask)
        return _light_curve(
            url,
            headers,
            mission=mission,
            ids=identify_star(mission, headers),
            segment=_segment(url, headers),
            arrays=(time, flux, flux_err, quality),
            bitmask=bitmask,
            flux_column=plan.flux,
            time_reference=time_reference,
            product_type=lambda cadence, creator: _product_type(
                url, mission, plan.kind, cadence, creator
            ),
        )
    except ProductError as exc:
        if not exc.url:
            raise type(exc)(url, exc.problem, exc.hint) from exc
        raise
    except _BadCardError as exc:  # its message names the keyword, never the card's text
        raise CorruptProductError(url, f"header is damaged: {exc}", _DAMAGED) from exc
    except (ValueError, TypeError, KeyError, IndexError, OSError, ArithmeticError) as exc:
        # Not a check of ours: say what failed, not the exception's text (which may quote
        # the file); the detail goes to the debug log.
        logger.debug("%s: cannot decode the light curve", url, exc_info=True)
        raise CorruptProductError(
            url, f"cannot decode the light curve ({type(exc).__name__})", _DAMAGED
        ) from exc


def read_light_curve(
    url: str,
    *,
    flux: str = "pdcsap",
    quality_bitmask: str | int = "default",
    column_map: Mapping[str, str] | None = None,
    storage_options: SourceOptions = None,
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
    storage_options : StorageConfig or mapping, optional
        Options for remote URLs: a :class:`~starskope_dask.config.StorageConfig` (timeouts,
        retries, each protocol's options) or fsspec options for the URL's protocol.
    config : ReadConfig, optional
        Replaces ``flux``, ``quality_bitmask`` and ``column_map`` when given. Its
        ``max_product_bytes`` bounds the download and what a ``.gz``/``.Z`` inflates to (a
        decompression bomb is refused as corrupt, never held whole).

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
    limit = config.max_product_bytes
    data = decompress(url, fetch_bytes(url, storage_options, max_bytes=limit), max_bytes=limit)
    return parse_light_curve(url, data, config)
