"""Makers of hostile files for the tests, from real products (nothing binary is committed):
header cards set to crafted values, files rewritten through astropy, decompression bombs.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from astropy.io import fits

MiB = 2**20


def headers(data: bytes) -> list[tuple[int, int]]:
    """``(header start, data start)`` of each HDU, as astropy sees them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(data)) as hdul:
            return [
                (hdul.fileinfo(i)["hdrLoc"], hdul.fileinfo(i)["datLoc"]) for i in range(len(hdul))
            ]


def card_offsets(data: bytes, hdu: int) -> dict[str, int]:
    """Byte offset of each keyword's (first) card in HDU ``hdu``, and of ``END``."""
    start, stop = headers(data)[hdu]
    cards: dict[str, int] = {}
    for offset in range(start, stop, 80):
        keyword = data[offset : offset + 8].decode("ascii").rstrip()
        if keyword == "END":
            cards["END"] = offset
            break
        cards.setdefault(keyword, offset)
    return cards


def card(keyword: str, value: str) -> bytes:
    """One 80-character card with the raw value text ``value``."""
    return f"{keyword:<8}= {value:>20}".ljust(80)[:80].encode("ascii")


def with_card(data: bytes, hdu: int, keyword: str, value: str) -> bytes:
    """``data`` with ``keyword`` of HDU ``hdu`` set to the raw value text ``value``
    (added before END when absent)."""
    cards = card_offsets(data, hdu)
    out = bytearray(data)
    if keyword in cards:
        out[cards[keyword] : cards[keyword] + 80] = card(keyword, value)
        return bytes(out)
    end = cards["END"]
    assert (end + 80) % 2880, "no room for another card in this header"
    out[end : end + 80] = card(keyword, value)
    out[end + 80 : end + 160] = b"END".ljust(80)
    return bytes(out)


def without_card(data: bytes, hdu: int, keyword: str) -> bytes:
    """``data`` with the card of ``keyword`` in HDU ``hdu`` blanked."""
    offset = card_offsets(data, hdu)[keyword]
    return data[:offset] + b" " * 80 + data[offset + 80 :]


def rewritten(data: bytes, edit: Callable[[Any], Any]) -> bytes:
    """Let ``edit(hdul)`` change a real file through astropy, return the new bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(data)) as hdul:
            hdul = edit(hdul) or hdul
            buffer = io.BytesIO()
            hdul.writeto(buffer, output_verify="silentfix")
            return buffer.getvalue()


def gzip_bomb(path: Path, head: bytes, zeros: int, compresslevel: int = 9) -> Path:
    """``head`` then ``zeros`` zero bytes, streamed into gzip (never held in memory)."""
    chunk = bytes(MiB)
    with gzip.open(path, "wb", compresslevel=compresslevel) as fh:
        fh.write(head)
        for _ in range(zeros // MiB):
            fh.write(chunk)
    return path
