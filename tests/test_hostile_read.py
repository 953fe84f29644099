"""The reader on hostile input: crafted headers, decompression bombs, impossible values.

Every hostile file is generated here, at test time, from a real product (nothing binary is
committed). Each must give a light curve or a typed :class:`ProductError` naming the file,
in bounded time and memory, and no error may quote the file's bytes.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import re
import shutil
import subprocess
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starskope_dask.config import ReadConfig
from starskope_dask.errors import CorruptProductError, ProductError, UnsupportedProductError
from starskope_dask.fetch import decompress
from starskope_dask.read import fits_layout, parse_light_curve, read_light_curve
from starskope_dask.records import LightCurve

from .hostile import card, card_offsets, gzip_bomb, headers, rewritten, with_card, without_card

TESS_SMALL = "edge/test-lc-tess-pimen-100-cadences.fits"
KEPLER_SMALL = "kepler/kplr005899262-2009131105131_llc.fits"
MiB = 2**20


# ----------------------------------------------------------------------------- helpers


@functools.cache
def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def assert_safe_error(info: pytest.ExceptionInfo[ProductError], url: str, *absent: str) -> None:
    """The error names the file and quotes none of ``absent`` (crafted file content)."""
    message = str(info.value)
    assert info.value.url == url and url in message
    for text in absent:
        assert text not in message.replace(url, ""), (text, message)
    assert message.isprintable() and len(message) < 1500, message


@pytest.fixture(scope="module")
def tess(real_data: Path) -> bytes:
    return _bytes(real_data / TESS_SMALL)


@pytest.fixture(scope="module")
def kepler(real_data: Path) -> bytes:
    return _bytes(real_data / KEPLER_SMALL)


# ------------------------------------------------------------ 1. structural header values

HUGE = "-1180591620717411303424"

STRUCTURAL = [
    (1, "NAXIS1", HUGE),
    (1, "NAXIS1", "-100"),
    (1, "NAXIS2", "-1"),
    (1, "NAXIS2", "99999999999999999999999999"),
    (1, "NAXIS1", "8"),  # narrower than its columns
    (1, "NAXIS1", "0"),
    (1, "NAXIS1", "'100'"),
    (1, "NAXIS1", "100.0"),
    (1, "NAXIS2", "T"),
    (1, "NAXIS", "-2"),
    (1, "NAXIS", "1000"),
    (1, "NAXIS", "'2'"),
    (0, "NAXIS", "2.5"),
    (1, "BITPIX", "7"),
    (1, "BITPIX", "-8"),
    (1, "BITPIX", "16"),  # a binary table is always BITPIX = 8
    (1, "BITPIX", "'8'"),
    (0, "BITPIX", "F"),
    (1, "PCOUNT", "-28800"),
    (1, "PCOUNT", "123456789012345678901234567890"),
    (1, "PCOUNT", "1.0E3"),
    (1, "GCOUNT", "-1"),
    (1, "GCOUNT", "'1'"),
    (1, "TFIELDS", "1000"),
    (1, "TFIELDS", "-3"),
    (1, "TFIELDS", "20.0"),
    (1, "TFIELDS", "'20'"),
    (1, "TFORM1", "'99999999999999999999D'"),
    (1, "TFORM1", "'2D'"),  # the columns no longer fit in a row
    (1, "TFORM1", "'WHAT'"),
    (1, "TFORM1", "42"),
    (2, "NAXIS1", HUGE),
    (2, "NAXIS2", "-7"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("hdu", "keyword", "value"), STRUCTURAL)
def test_crafted_structural_values_are_refused_in_bounded_time(
    tess: bytes, hdu: int, keyword: str, value: str
) -> None:
    data = with_card(tess, hdu, keyword, value)
    start = time.perf_counter()
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("crafted.fits", data)
    assert time.perf_counter() - start < 1.0
    assert_safe_error(info, "crafted.fits", HUGE.lstrip("-"), "99999999999999999999")
    # A TFORM that widens the columns past the row is found at the row, NAXIS1.
    assert (keyword if value != "'2D'" else "NAXIS1") in str(info.value)


@pytest.mark.timeout(20)
def test_negative_naxis1_in_the_last_hdu_cannot_walk_backwards(tess: bytes) -> None:
    # The APERTURE image is the last HDU: a walk that trusts its NAXIS1 steps back into
    # the file and loops for ever.
    data = with_card(tess, 2, "NAXIS1", "-100000")
    with pytest.raises(CorruptProductError, match="NAXIS1"):
        fits_layout("crafted.fits", data)


@pytest.mark.timeout(30)
def test_layout_walk_is_linear_in_the_file_size() -> None:
    # 10 000 empty image extensions (28.8 MB) and a 20 MB header with no END card.
    extension = card("XTENSION", "'IMAGE   '") + card("BITPIX", "8") + card("NAXIS", "0")
    extension += card("PCOUNT", "0") + card("GCOUNT", "1") + b"END".ljust(80)
    primary = (card("SIMPLE", "T") + card("BITPIX", "8") + card("NAXIS", "0")).ljust(
        2800
    ) + b"END".ljust(80)
    many = primary + extension.ljust(2880) * 10_000
    start = time.perf_counter()
    assert len(fits_layout("many.fits", many)) == 10_001
    endless = primary + card("COMMENT", "x") * (20 * MiB // 80)
    with pytest.raises(CorruptProductError, match="truncated"):
        fits_layout("endless.fits", endless)
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------------ 2. decompression bombs


def _peak(function: object) -> tuple[int, float, BaseException | None]:
    """Peak traced memory (bytes), seconds and the exception raised by ``function()``."""
    tracemalloc.start()
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        function()  # type: ignore[operator]
    except BaseException as exc:  # handed back to the test
        error = exc
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, seconds, error


@pytest.mark.timeout(60)
def test_gzip_bomb_stops_at_max_product_bytes(real_data: Path, tmp_path: Path) -> None:
    head = _bytes(real_data / TESS_SMALL)[:20160]  # real primary and table headers
    bomb = gzip_bomb(tmp_path / "bomb.fits.gz", head, 256 * MiB)
    assert bomb.stat().st_size < 2 * MiB
    config = ReadConfig(max_product_bytes=8 * MiB)
    peak, seconds, error = _peak(lambda: read_light_curve(str(bomb), config=config))
    assert isinstance(error, CorruptProductError), error
    assert error.url == str(bomb) and "bomb.fits.gz" in str(error)
    assert f"inflates past read.max_product_bytes ({8 * MiB} bytes)" in str(error)
    assert peak < 40 * MiB, peak  # the limit, one copy of it and one chunk
    assert seconds < 5


@pytest.mark.timeout(60)
def test_multi_member_gzip_bomb(real_data: Path) -> None:
    head = gzip.compress(_bytes(real_data / TESS_SMALL)[:20160])
    zeros = gzip.compress(bytes(16 * MiB), compresslevel=9)
    bomb = head + zeros * 64  # 1 GiB of zeros in 64 members
    peak, seconds, error = _peak(lambda: decompress("multi.fits.gz", bomb, max_bytes=4 * MiB))
    assert isinstance(error, CorruptProductError) and "multi.fits.gz" in str(error), error
    assert "inflates past read.max_product_bytes" in str(error)
    assert peak < 24 * MiB and seconds < 5


def test_multi_member_gzip_and_zero_padding_read_like_one(real_data: Path) -> None:
    data = _bytes(real_data / TESS_SMALL)
    members = gzip.compress(data[:1000]) + gzip.compress(data[1000:30000])
    members += gzip.compress(b"") + gzip.compress(data[30000:]) + bytes(512)
    assert decompress("m.fits.gz", members, max_bytes=len(data)) == data
    with pytest.raises(CorruptProductError, match="max_product_bytes"):
        decompress("m.fits.gz", members, max_bytes=len(data) - 1)


@pytest.mark.timeout(60)
def test_gzip_that_is_not_fits_stops_after_the_first_block(tmp_path: Path) -> None:
    passwd = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin\n"
    path = tmp_path / "passwd.fits.gz"
    with gzip.open(path, "wb") as fh:
        for _ in range(64 * MiB // len(passwd)):
            fh.write(passwd)
    data = path.read_bytes()
    peak, _, error = _peak(lambda: decompress(str(path), data, max_bytes=512 * MiB))
    assert isinstance(error, CorruptProductError), error
    assert "not a FITS file" in str(error) and "root" not in str(error).replace(str(path), "")
    assert peak < 4 * MiB + len(data), peak  # the input, and not much more
    with pytest.raises(CorruptProductError) as info:
        read_light_curve(str(path))
    assert_safe_error(info, str(path), "root", "daemon", "bash")


def test_damaged_and_cut_gzip_streams(real_data: Path) -> None:
    data = gzip.compress(_bytes(real_data / TESS_SMALL))
    for broken in (
        data[: len(data) // 2],  # cut short
        data[:-8],  # no trailer
        data[:-8] + b"\0\0\0\0" + data[-4:],  # wrong CRC
        data + b"not gzip at all",  # trailing junk
        data[:10] + bytes(200) + data[210:],  # damaged deflate data
    ):
        with pytest.raises(CorruptProductError) as info:
            decompress("x.fits.gz", broken, max_bytes=64 * MiB)
        assert_safe_error(info, "x.fits.gz", "not gzip at all")
    with pytest.raises(CorruptProductError, match="not a FITS file"):
        decompress("tiny.fits.gz", gzip.compress(b"SIMPLE  =" * 10), max_bytes=None)


def _lzw_compress(data: bytes, max_bits: int = 16, then_zeros: int = 0) -> bytes:
    """Unix ``compress`` (.Z, LZW, block mode) of ``data``; then, after a CLEAR code, a run
    of ``then_zeros`` zero bytes coded directly (0, 257, 258, ...: code c stands for
    c - 255 zeros), the way a real compressor codes a long run."""
    out = bytearray(b"\x1f\x9d" + bytes([0x80 | max_bits]))
    state = {"acc": 0, "nbits": 0, "bits": 9, "codes": 0, "next": 257}

    def put(code: int) -> None:
        if state["next"] > (1 << state["bits"]) and state["bits"] < max_bits:
            pad_codes = -state["codes"] % 8
            state["nbits"] += pad_codes * state["bits"]
            state["bits"] += 1
            state["codes"] = 0
        state["acc"] |= code << state["nbits"]
        state["nbits"] += state["bits"]
        state["codes"] += 1
        while state["nbits"] >= 8:
            out.append(state["acc"] & 0xFF)
            state["acc"] >>= 8
            state["nbits"] -= 8

    def add_entry() -> None:
        if state["next"] < (1 << max_bits):
            state["next"] += 1

    table = {bytes([i]): i for i in range(256)}
    word = b""
    for byte in data:
        longer = word + bytes([byte])
        if longer in table:
            word = longer
            continue
        put(table[word])
        if state["next"] < (1 << max_bits):
            table[longer] = state["next"]
        add_entry()
        word = bytes([byte])
    if word:
        put(table[word])
    if then_zeros:
        put(256)  # CLEAR: pad the group of 8 codes, back to 9 bits
        state["nbits"] += -state["codes"] % 8 * state["bits"]
        state.update(bits=9, codes=0, next=257)
        put(0)
        add_entry()
        written, code = 1, 257
        while written < then_zeros:
            put(code)
            written += code - 255
            add_entry()
            code = min(code + 1, (1 << max_bits) - 1)
    if state["nbits"]:
        out.append(state["acc"] & 0xFF)
    return bytes(out)


def test_unix_compress_round_trip_and_reference(real_data: Path, tmp_path: Path) -> None:
    import unlzw3

    data = _bytes(real_data / TESS_SMALL)
    for source in (data, data[:5000] + bytes(30000) + data[5000:]):
        packed = _lzw_compress(source)
        assert bytes(unlzw3.unlzw(packed)) == source  # the test's compressor is right
        assert decompress("x.fits.Z", packed, max_bytes=len(source)) == source
        with pytest.raises(CorruptProductError, match="max_product_bytes"):
            decompress("x.fits.Z", packed, max_bytes=len(source) - 1)
    small = _lzw_compress(data[:20160], max_bits=12, then_zeros=200_000)
    assert bytes(unlzw3.unlzw(small)) == decompress("x.fits.Z", small)
    if shutil.which("gzip"):  # gzip -d reads .Z too: a second, independent decoder
        reference = subprocess.run(
            ["gzip", "-dc"], input=small, capture_output=True, check=True
        ).stdout
        assert reference == decompress("x.fits.Z", small)
    z = tmp_path / "x.fits.Z"
    z.write_bytes(_lzw_compress(data))
    np.testing.assert_array_equal(read_light_curve(str(z)).flux, parse_light_curve("x", data).flux)


@pytest.mark.timeout(60)
def test_unix_compress_bomb_stops_at_max_bytes(real_data: Path) -> None:
    bomb = _lzw_compress(_bytes(real_data / TESS_SMALL)[:20160], then_zeros=2**31)
    assert len(bomb) < 200_000
    peak, seconds, error = _peak(lambda: decompress("bomb.fits.Z", bomb, max_bytes=8 * MiB))
    assert isinstance(error, CorruptProductError) and "bomb.fits.Z" in str(error), error
    assert f"inflates past read.max_product_bytes ({8 * MiB} bytes)" in str(error)
    assert peak < 40 * MiB and seconds < 10
    not_fits = _lzw_compress(b"root:x:0:0:root:/root:/bin/bash\n" * 200)
    with pytest.raises(CorruptProductError, match="not a FITS file") as info:
        decompress("p.fits.Z", not_fits, max_bytes=8 * MiB)
    assert_safe_error(info, "p.fits.Z", "root")
    for broken in (bomb[:4], bomb[:3] + b"\xff" * 50, b"\x1f\x9d\x70" + bomb[3:100]):
        with pytest.raises(CorruptProductError):
            decompress("broken.fits.Z", broken, max_bytes=8 * MiB)


def test_read_light_curve_passes_max_product_bytes_to_fetch(
    real_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "big.fits"
    path.write_bytes(_bytes(real_data / TESS_SMALL))
    with pytest.raises(CorruptProductError, match="max_product_bytes"):
        read_light_curve(str(path), config=ReadConfig(max_product_bytes=2880))


# --------------------------------------------------- 3. values validated where they are read


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("DEC_OBJ", "-500"),
        ("DEC_OBJ", "90.0001"),
        ("RA_OBJ", "1E30"),
        ("RA_OBJ", "-10.0"),
        ("RA_OBJ", "'284.1'"),
        ("RA_OBJ", "NAN"),
        ("DEC_OBJ", "1E400"),
        ("DEC_OBJ", "T"),
    ],
)
def test_impossible_position_becomes_nan_with_a_warning(
    tess: bytes, keyword: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = with_card(tess, 0, keyword, value)
    with caplog.at_level(logging.WARNING, logger="starskope_dask.read"):
        lc = parse_light_curve("pos.fits", data)
    assert math.isnan(lc.ra if keyword == "RA_OBJ" else lc.dec)
    other = lc.dec if keyword == "RA_OBJ" else lc.ra
    assert math.isfinite(other)
    assert lc.ids.tic == 261136679 and lc.n_good > 0  # still usable, matched by ID
    assert any(keyword in r.getMessage() and "pos.fits" in r.getMessage() for r in caplog.records)


def test_good_positions_are_kept(tess: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="starskope_dask.read"):
        lc = parse_light_curve("ok.fits", with_card(tess, 0, "DEC_OBJ", "-90.0"))
    assert lc.dec == -90.0 and not caplog.records


@pytest.mark.parametrize(
    ("file", "keyword", "value", "kind"),
    [
        ("tess", "TICID", "-5", "negative"),
        ("tess", "TICID", "0", "zero"),
        ("tess", "TICID", "1E20", "floating-point"),
        ("tess", "TICID", "261136679.5", "floating-point"),
        ("tess", "TICID", "T", "logical"),
        ("tess", "TICID", "100000000000", "10**11"),
        ("tess", "TICID", "'twelve'", "string"),
        ("tess", "TICID", "99999999999999999999999999999999", "10**11"),
        ("kepler", "KEPLERID", "1000000000", "10**9"),
        ("kepler", "KEPLERID", "-5899262", "negative"),
        ("kepler", "KEPLERID", "'5899262; DROP TABLE'", "string"),
    ],
)
def test_impossible_catalogue_ids_are_refused(
    tess: bytes, kepler: bytes, file: str, keyword: str, value: str, kind: str
) -> None:
    data = with_card(tess if file == "tess" else kepler, 0, keyword, value)
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("ids.fits", data)
    assert keyword in str(info.value) and kind in str(info.value)
    assert_safe_error(info, "ids.fits", "twelve", "DROP", "99999999999")


def test_catalogue_ids_from_object(tess: bytes, kepler: bytes) -> None:
    def object_only(data: bytes, keyword: str, value: str) -> bytes:
        data = without_card(without_card(data, 0, keyword), 1, keyword)
        return with_card(data, 0, "OBJECT", value)

    assert parse_light_curve("o.fits", object_only(tess, "TICID", "'TIC 261136679'")).ids.tic == (
        261136679
    )
    for bad in ("'TIC 0'", "'TIC 123456789012345'"):
        with pytest.raises(CorruptProductError, match="OBJECT") as info:
            parse_light_curve("o.fits", object_only(tess, "TICID", bad))
        assert_safe_error(info, "o.fits", "123456789012345")
    # An OBJECT naming another catalogue is not taken for this mission's ID.
    lc = parse_light_curve("o.fits", object_only(kepler, "KEPLERID", "'TIC 25155310'"))
    assert lc.ids.kic is None and lc.ids.tic is None
    # An integral floating-point ID is an ID.
    lc = parse_light_curve("f.fits", with_card(tess, 0, "TICID", "261136679.0"))
    assert lc.ids.tic == 261136679


def _with_quality(data: bytes, values: np.ndarray, fmt: str) -> bytes:
    def edit(hdul: fits.HDUList) -> fits.HDUList:
        table = hdul[1]
        columns = [
            fits.Column(name="QUALITY", format=fmt, array=values) if c.name == "QUALITY" else c
            for c in table.columns
        ]
        new = fits.BinTableHDU.from_columns(columns, header=table.header)
        return fits.HDUList([hdul[0], new, *hdul[2:]])

    return rewritten(data, edit)


@pytest.mark.parametrize("fmt", ["D", "E", "K"])
def test_quality_values_that_do_not_fit_int32_are_flagged_not_wrapped(
    tess: bytes, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = [1e20, np.nan, 3, -np.inf, 2**40 + 1, 2**31 + 512]
    if fmt == "K":
        first = [2**63 - 1, 2**62, 3, -(2**40), 2**40 + 1, 2**31 + 512]
    values = np.zeros(100, dtype=np.int64 if fmt == "K" else np.float64)
    values[:6] = first
    data = _with_quality(tess, values, fmt)
    with caplog.at_level(logging.WARNING, logger="starskope_dask.read"):
        lc = parse_light_curve("q.fits", data)
    assert lc.quality.dtype == np.int32
    assert list(lc.quality[:4]) == [-1, -1, 3, -1]
    assert lc.quality[4] == -1
    assert lc.quality[5] == np.uint32(2**31 + 512).view(np.int32)  # a 32-bit word: bits kept
    assert not lc.good[:6].any() and lc.good[6:].sum() > 50
    assert any("QUALITY" in r.getMessage() for r in caplog.records)


def test_float_quality_fractions_are_flagged(tess: bytes) -> None:
    values = np.zeros(100)
    values[0] = 0.5
    lc = parse_light_curve("q.fits", _with_quality(tess, values, "D"))
    assert lc.quality[0] == -1 and lc.quality[1] == 0


@pytest.mark.parametrize("value", ["-0.00138", "0", "0.0", "NAN", "1E400", "'2 min'", "T"])
def test_impossible_timedel_is_derived_from_the_times(tess: bytes, value: str) -> None:
    lc = parse_light_curve("dt.fits", with_card(tess, 1, "TIMEDEL", value))
    assert lc.cadence_days == pytest.approx(2 / 1440, rel=1e-3)
    assert lc.provenance.product_type == "tess-spoc-2min"


def test_infinite_and_absurd_times_are_not_good(tess: bytes) -> None:
    def edit(hdul: fits.HDUList) -> None:
        hdul[1].data["TIME"][:5] = [np.inf, -np.inf, 1e300, -1e300, 1e9]

    lc = parse_light_curve("t.fits", rewritten(without_card(tess, 1, "TIMEDEL"), edit))
    assert not lc.good[:5].any() and lc.good[5:].all()
    start, stop = lc.time_range
    assert 2458325 < start < stop < 2458326
    assert math.isfinite(lc.cadence_days) and lc.cadence_days == pytest.approx(2 / 1440, 1e-3)


def test_all_times_absurd_leaves_no_cadence(tess: bytes) -> None:
    def edit(hdul: fits.HDUList) -> None:
        hdul[1].data["TIME"][:] = np.linspace(1e300, 1.7e308, 100)

    lc = parse_light_curve("t.fits", rewritten(without_card(tess, 1, "TIMEDEL"), edit))
    assert lc.n_good == 0 and math.isnan(lc.cadence_days)
    assert all(math.isnan(t) for t in lc.time_range)


@pytest.mark.parametrize(
    ("hdu", "keyword", "value"),
    [(1, "BJDREFI", "'2457000'"), (1, "BJDREFF", "1E400"), (1, "BJDREFI", "T")],
)
def test_impossible_time_reference_is_refused(
    tess: bytes, hdu: int, keyword: str, value: str
) -> None:
    with pytest.raises(CorruptProductError, match=keyword) as info:
        parse_light_curve("ref.fits", with_card(tess, hdu, keyword, value))
    assert_safe_error(info, "ref.fits", "2457000")


@pytest.mark.parametrize("value", ["1E400", "-3", "99999999999999999999", "'one'", "T"])
def test_impossible_segment_is_unknown(tess: bytes, value: str) -> None:
    lc = parse_light_curve("seg.fits", with_card(tess, 0, "SECTOR", value))
    assert lc.segment == -1


@pytest.mark.parametrize("value", ["T", "-4", "1E400", "99999999999999999999"])
def test_impossible_data_release_is_unknown(tess: bytes, value: str) -> None:
    lc = parse_light_curve("rel.fits", with_card(tess, 0, "DATA_REL", value))
    assert lc.provenance.data_release is None


@pytest.mark.parametrize(
    ("keyword", "value"), [("TSCAL8", "'x'"), ("TZERO8", "1E400"), ("TZERO1", "NAN")]
)
def test_impossible_column_scaling_is_refused(tess: bytes, keyword: str, value: str) -> None:
    with pytest.raises(CorruptProductError, match=keyword):
        parse_light_curve("scale.fits", with_card(tess, 1, keyword, value))


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("TFORM1", "'3D'"), ("TFORM8", "'A4'"), ("TFORM1", "'0D'"), ("TFORM10", "'4A'")],
)
def test_columns_of_the_wrong_shape_or_kind_are_refused(
    tess: bytes, keyword: str, value: str
) -> None:
    # TIME with three values a row (wider than the row), TIME with none, text flux and
    # text quality flags.
    data = with_card(tess, 1, keyword, value)
    with pytest.raises(ProductError) as info:
        parse_light_curve("shape.fits", data)
    assert isinstance(info.value, CorruptProductError | UnsupportedProductError)
    assert_safe_error(info, "shape.fits")


# -------------------------------------------------------------- 4. duplicate column names


def test_duplicate_column_names_are_refused(tess: bytes) -> None:
    data = with_card(tess, 1, "TTYPE12", "'PDCSAP_FLUX'")
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("dupe.fits", data)
    assert "duplicate column name PDCSAP_FLUX (columns 8 and 12)" in str(info.value)
    lower = with_card(tess, 1, "TTYPE12", "'pdcsap_flux'")
    with pytest.raises(CorruptProductError, match="duplicate column name"):
        parse_light_curve("dupe.fits", lower)


# ---------------------------------------------------------- 5. no file content in errors


def test_foreign_file_content_is_never_quoted(tmp_path: Path) -> None:
    path = tmp_path / "passwd.fits"
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 100)
    with pytest.raises(CorruptProductError) as info:
        read_light_curve(str(path))
    assert_safe_error(info, str(path), "root", "bash", "b'")
    assert "no SIMPLE card" in str(info.value)
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("short.fits", b"root:x:0:0")
    assert_safe_error(info, "short.fits", "root")


def test_crafted_names_are_shortened_and_sanitised(tess: bytes) -> None:
    # A 68-character EXTNAME in a truncated file, a non-ASCII byte in a header, a crafted
    # TTYPE and TFORM, and a crafted keyword name with an unterminated string.
    long_name = "'" + "<script>alert(1)</script>" + "X" * 40 + "'"
    cut = with_card(tess, 1, "EXTNAME", long_name)[:25000]
    with pytest.raises(CorruptProductError, match="truncated") as info:
        parse_light_curve("cut.fits", cut)
    assert_safe_error(info, "cut.fits", "X" * 40, "<script>")
    offset = card_offsets(tess, 1)["EXTNAME"]
    binary = tess[: offset + 20] + b"\xff\xfe" + tess[offset + 22 :]
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("bin.fits", binary)
    assert_safe_error(info, "bin.fits", "0xff", "\\xff")
    no_flux = tess
    for number in (4, 8, 20):
        no_flux = with_card(no_flux, 1, f"TTYPE{number}", f"'{chr(64 + number) * 60}'")
    with pytest.raises(UnsupportedProductError, match="columns seen") as info:
        parse_light_curve("names.fits", no_flux)
    assert_safe_error(info, "names.fits", "D" * 40, "H" * 40)
    with pytest.raises(CorruptProductError) as info:
        parse_light_curve("tform.fits", with_card(tess, 1, "TFORM3", "'Q$(reboot)'"))
    assert_safe_error(info, "tform.fits", "reboot")
    crafted = with_card(tess, 1, "TIMESYS", "'UTC; rm -rf /'")
    with pytest.raises(UnsupportedProductError, match="TIMESYS") as info:
        parse_light_curve("sys.fits", crafted)
    assert_safe_error(info, "sys.fits", "rm -rf")
    unterminated = with_card(tess, 0, "TICID", "'261136679")
    with pytest.raises(CorruptProductError, match="TICID") as info:
        parse_light_curve("quote.fits", unterminated)
    assert_safe_error(info, "quote.fits", "261136679")


def test_object_and_creator_are_printable(tess: bytes) -> None:
    cards = card_offsets(tess, 0)  # astropy cannot open the file once it holds these
    data = bytearray(tess)
    for keyword, value in (("OBJECT", "'TIC 261136679\x1b[2J'"), ("CREATOR", "'evil\x07\x1b]0;'")):
        data[cards[keyword] : cards[keyword] + 80] = card(keyword, value)
    data = bytes(data)
    lc = parse_light_curve("p.fits", data)
    assert lc.ids.object_name.isprintable() and lc.provenance.creator.isprintable()
    assert lc.ids.tic == 261136679


# ---------------------------------------------------------------------------- 6. fuzzing

_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|TFORM\d+|TTYPE\d+|TSCAL\d+|"
    r"TZERO\d+|TNULL\d+|TDIM\d+|EXTNAME|TICID|KEPLERID|OBJECT|RA_OBJ|DEC_OBJ|TIMEDEL|BJDREF\w*|"
    r"SECTOR|QUARTER|CAMPAIGN|TIMESYS|TELESCOP|MISSION|DATA_REL|JDREF|GROUPS|CREATOR)$"
)

_VALUE_TEXT = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        ["0", "-1", "1", "2", "8", "999", "1000", str(2**31), str(2**63), str(-(2**63)), HUGE]
    ),
    st.floats(allow_nan=False, width=64).map(lambda x: repr(x).upper().replace("INF", "1E400")),
    st.sampled_from(["NAN", "INF", "-INF", "1E400", "1D10", "T", "F", "", "'", "''", "(1, 2)"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
        lambda s: "'" + s.replace("'", "''") + "'"
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    st.sampled_from(["'1P(100)'", "'1QD(9)'", "'0A'", "'9999X'", "'PD'", "'2K'", "'-3D'"]),
)


@functools.cache
def _fuzz_cards(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(byte offset, keyword)`` of every valued card of the real file, and of those the
    reader's structure and identification depend on."""
    data = _bytes(path)
    every: list[tuple[int, str]] = []
    for index in range(len(headers(data))):
        cards = card_offsets(data, index)
        every += [(offset, k) for k, offset in cards.items() if k not in ("END", "")]
    return every, [c for c in every if _STRUCTURAL.match(c[1])]


def _check_outcome(url: str, data: bytes) -> None:
    try:
        lc = parse_light_curve(url, data)
    except ProductError as exc:
        assert exc.url == url and url in str(exc)
        assert str(exc).isprintable() and len(str(exc)) < 1500
        return
    assert isinstance(lc, LightCurve)
    n = len(lc.time)
    assert lc.flux.shape == lc.flux_err.shape == lc.quality.shape == lc.good.shape == (n,)
    assert lc.quality.dtype == np.int32 and lc.time.dtype == np.float64
    assert math.isnan(lc.ra) or 0 <= lc.ra <= 360
    assert math.isnan(lc.dec) or -90 <= lc.dec <= 90
    assert math.isnan(lc.cadence_days) or 0 < lc.cadence_days < math.inf
    finite = lc.time[np.isfinite(lc.time)]
    assert ((finite > 2e6) & (finite < 3e6)).all()
    for value in (lc.ids.kic, lc.ids.epic, lc.ids.tic):
        assert value is None or 0 < value < 10**11


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", [TESS_SMALL, KEPLER_SMALL])
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(draw=st.data())
def test_fuzzed_headers_and_bytes_give_a_light_curve_or_a_typed_error(
    real_data: Path, name: str, draw: st.DataObject
) -> None:
    path = real_data / name
    data = _bytes(path)
    every, structural = _fuzz_cards(path)
    mutations = draw.draw(st.integers(min_value=1, max_value=4), label="mutations")
    for _ in range(mutations):
        kind = draw.draw(st.sampled_from(["structural", "card", "flip", "cut"]), label="kind")
        if kind in ("structural", "card"):
            offset, keyword = draw.draw(
                st.sampled_from(structural if kind == "structural" else every), label="card"
            )
            new_card = card(keyword, draw.draw(_VALUE_TEXT, label="value"))
            data = data[:offset] + new_card + data[offset + 80 :]
        elif kind == "flip":
            where = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
            byte = draw.draw(st.integers(min_value=0, max_value=255))
            data = data[:where] + bytes([byte]) + data[where + 1 :]
        else:
            data = data[: draw.draw(st.integers(min_value=0, max_value=len(data)))]
        if len(data) < 2880 * 3:
            break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_outcome("fuzz.fits", data)


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None)
@given(
    where=st.integers(min_value=0, max_value=10**6),
    byte=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=10**6),
)
def test_fuzzed_gzip_streams(real_data: Path, where: int, byte: int, cut: int) -> None:
    packed = bytearray(gzip.compress(_bytes(real_data / TESS_SMALL)))
    packed[where % len(packed)] = byte
    packed = packed[: max(2, cut % (len(packed) + 50))]
    try:
        data = decompress("fz.fits.gz", bytes(packed), max_bytes=MiB)
    except ProductError as exc:
        assert exc.url == "fz.fits.gz"
        return
    _check_outcome("fz.fits.gz", data)
