"""Thin I/O edge: URLs (local, ``file://``, ``s3://``, ``http(s)://``) to bytes.

Every function here maps the transport's exceptions onto the project's hierarchy
(:class:`~starskope_dask.errors.ProductNotFoundError`, :class:`~starskope_dask.errors.FetchError`)
so callers see one kind of error, naming the URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import fsspec

from starskope_dask.config import StorageConfig
from starskope_dask.errors import (
    CorruptProductError,
    FetchError,
    ProductError,
    ProductNotFoundError,
    StoreError,
    UnsupportedSchemeError,
    one_line,
)

logger = logging.getLogger(__name__)

SUPPORTED_PROTOCOLS = ("file", "s3", "http", "https")

#: What the ``storage_options`` arguments of this module accept: a :class:`StorageConfig`
#: (options for each URL's own protocol, timeouts and retries: what the pipeline passes), a
#: mapping of fsspec options for the URL's protocol, or ``None`` (the defaults).
SourceOptions = StorageConfig | Mapping[str, Any] | None

GZIP_MAGIC = b"\x1f\x8b"
COMPRESS_MAGIC = b"\x1f\x9d"


def url_protocol(url: str) -> str:
    """Return ``"file"``, ``"s3"``, ``"http"`` or ``"https"`` for a URL or local path."""
    scheme = urlparse(url).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] == ":\\"):
        return "file"
    return scheme


def check_protocol(url: str) -> str:
    """The URL's protocol, or :class:`UnsupportedSchemeError` for one starskope cannot read.

    Checked before any filesystem is made: ``ftp://``, ``gs://`` and the like would otherwise
    surface as an fsspec import error naming no URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedSchemeError(str(url), "not a URL (empty or not a string)")
    protocol = url_protocol(url)
    if protocol not in SUPPORTED_PROTOCOLS:
        raise UnsupportedSchemeError(
            url,
            f"unsupported scheme {protocol + '://'!r}",
            "use a local path, file://, s3:// or http(s)://",
        )
    return protocol


def writable_folder(path: Path, what: str, hint: str) -> Path:
    """Make ``path`` (and its parents) a folder this process can write into, or raise.

    Parameters
    ----------
    path : Path
        The output folder.
    what : str
        What goes there, for the message ("the simulated archive").
    hint : str
        What the user can do ("choose another --out").

    Raises
    ------
    StoreError
        If ``path`` is a file, lies under one, cannot be made or is not writable.
    """
    problem = ""
    if path.exists() and not path.is_dir():
        problem = "it is a file, not a folder"
    else:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"{type(exc).__name__}: {exc.strerror or exc}"
        else:
            if not os.access(path, os.W_OK | os.X_OK):
                problem = "the folder is not writable"
                hint += " or fix its permissions"
    if problem:
        raise StoreError(f"cannot write {what} to {path}: {problem}; {hint}")
    return path


def writable_protocol(url: str) -> str:
    """``"file"`` or ``"s3"``: the protocol of a URL starskope can write (a store, a
    manifest, a simulated archive), or :class:`UnsupportedSchemeError`.
    """
    protocol = check_protocol(url)
    if protocol not in ("file", "s3"):
        raise UnsupportedSchemeError(
            url, f"cannot be written over {protocol}://", "write to a local path or s3://"
        )
    return protocol


def _storage(storage_options: SourceOptions) -> StorageConfig:
    return storage_options if isinstance(storage_options, StorageConfig) else StorageConfig()


def options_for(protocol: str, storage_options: SourceOptions) -> dict[str, Any]:
    """Fsspec options for ``protocol``: from a :class:`StorageConfig` for that protocol,
    a mapping as given, or the defaults (with timeouts) when ``None``.
    """
    if storage_options is None or isinstance(storage_options, StorageConfig):
        return _storage(storage_options).options_for(protocol)
    return dict(storage_options)


def local_path(url: str) -> Path:
    """Return the filesystem path of a local URL (plain path or ``file://``)."""
    return Path(url[len("file://") :]) if url.startswith("file://") else Path(url)


def filesystem(protocol: str, storage_options: SourceOptions = None) -> fsspec.AbstractFileSystem:
    """Return an fsspec filesystem for ``protocol``.

    For ``s3`` the options default to anonymous access with the endpoint from
    ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``; S3 and HTTP get the connect and read
    timeouts of :class:`StorageConfig`.

    Raises
    ------
    UnsupportedSchemeError
        For a protocol starskope does not read.
    """
    if protocol not in SUPPORTED_PROTOCOLS:
        raise UnsupportedSchemeError(f"{protocol}://", f"unsupported scheme {protocol + '://'!r}")
    return fsspec.filesystem(protocol, **options_for(protocol, storage_options))


#: Most bytes a compressed product inflates by between two checks of the size limit.
_INFLATE_STEP = 1 << 20
#: Compressed bytes handed to zlib at a time (bounds the copy it makes of a member's tail).
_DEFLATE_STEP = 1 << 16
_FITS_BLOCK = 2880
_FITS_SIGNATURE = b"SIMPLE  ="


class _Inflated:
    """Decompressed bytes as they come out of a decoder, checked on the way.

    The FITS signature is checked as soon as the first 2880-byte block is out (a ``.gz``
    of anything else is refused without inflating the rest), and the size before each
    piece is kept, so at most ``limit`` bytes are ever held.
    """

    def __init__(self, url: str, limit: int | None) -> None:
        self.url = url
        self.limit = limit
        self.out = bytearray()
        self.checked = False

    def room(self) -> int:
        """Bytes the next piece may hold.

        One past the limit (that byte proves a bomb), and no further than the first block
        while the signature is unchecked.
        """
        room = _INFLATE_STEP
        if not self.checked:
            room = max(1, _FITS_BLOCK - len(self.out))
        if self.limit is not None:
            room = max(1, min(room, self.limit + 1 - len(self.out)))
        return room

    def too_large(self) -> CorruptProductError:
        return CorruptProductError(
            self.url,
            f"inflates past read.max_product_bytes ({self.limit} bytes)",
            "a decompression bomb, or far larger than any light curve; raise "
            "read.max_product_bytes only if it really is a light curve",
        )

    def add(self, piece: bytes) -> None:
        if self.limit is not None and len(self.out) + len(piece) > self.limit:
            raise self.too_large()
        self.out += piece
        if not self.checked and len(self.out) >= _FITS_BLOCK:
            self.check_signature()

    def check_signature(self) -> None:
        self.checked = True
        if len(self.out) < _FITS_BLOCK or not self.out.startswith(_FITS_SIGNATURE):
            raise CorruptProductError(
                self.url,
                "decompressed, it is not a FITS file: no SIMPLE card at the start of its "
                "first 2880-byte block",
                "check that the URL points at a FITS light-curve product",
            )

    def result(self) -> bytes:
        if not self.checked:
            self.check_signature()
        return bytes(self.out)


def _gunzip(data: bytes, sink: _Inflated) -> None:
    """Inflate every gzip member of ``data`` into ``sink``, a bounded piece at a time.

    Members may follow one another (multi-member gzip, as ``cat a.gz b.gz``) with zero
    padding between and after them, as :func:`gzip.decompress` allows; zlib checks each
    member's CRC and length. Anything else after a member is damage.
    """
    view = memoryview(data)
    position = 0  # first compressed byte not yet handed to zlib
    while True:
        inflater = zlib.decompressobj(wbits=31)  # 16 + 15: a gzip wrapper, 32 KiB window
        pending: bytes | memoryview = b""
        produced = 1
        while not inflater.eof:
            if not pending:
                if position < len(view):
                    pending = view[position : position + _DEFLATE_STEP]
                    position += len(pending)
                elif not produced:  # no input left, and zlib had nothing more to give
                    raise ValueError("the compressed stream is cut short")
            piece = inflater.decompress(pending, sink.room())
            produced = len(piece)
            sink.add(piece)
            pending = inflater.unconsumed_tail
        position -= len(inflater.unused_data)
        while position < len(view):  # skip zero padding, a bounded slice at a time
            chunk = data[position : position + _DEFLATE_STEP]
            stripped = chunk.lstrip(b"\0")
            position += len(chunk) - len(stripped)
            if stripped:
                break
        if position >= len(view):
            return
        if data[position : position + 2] != GZIP_MAGIC:
            raise ValueError("the bytes after the end of the gzip stream are not another member")


def _unlzw(data: bytes, sink: _Inflated) -> None:
    """Decode Unix ``compress`` (``.Z``, LZW) into ``sink``, checking the size at every code.

    unlzw3 decodes the whole stream into a list of Python ints (8 bytes a byte) before
    returning, and LZW's expansion has no useful bound (a 130 kB ``.Z`` holds 2 GB of
    zeros), so neither it nor a limit on the input's size can stop a bomb. This is the same
    decoder (Mark Adler's ``unlzw``, which unlzw3 and gzip follow, block mode, 9 to 16-bit
    codes, the group-of-8 padding at each code-size change), written to stream: a table
    entry is kept as ``(start, length)`` of a string already in the output, so each code
    costs one slice copy, and the output never exceeds the limit.
    """
    size = len(data)
    if size < 3:
        raise ValueError("the .Z header is cut short")
    flags = data[2]
    max_bits = flags & 0x1F
    if flags & 0x60 or not 9 <= max_bits <= 16:
        raise ValueError("the .Z header's flags are invalid")
    max_bits = max(max_bits, 10)  # as in compress: 9 means 10
    block_mode = bool(flags & 0x80)
    if size == 3:
        return  # an empty stream (result() then says it is not FITS)
    if size == 4:
        raise ValueError("the stream ends in the middle of a code")
    out = sink.out
    limit = sink.limit if sink.limit is not None else 1 << 62
    starts = [0] * 65536  # entry e: out[starts[e] : starts[e] + lengths[e]]
    lengths = [0] * 65536
    bits, mask, end = 9, 0x1FF, 256 if block_mode else 255
    buf = data[3] | data[4] << 8
    prev = buf & mask
    buf >>= bits
    left = 16 - bits
    if prev > 255:
        raise ValueError("the first code is not a literal")
    out.append(prev)
    prev_start, prev_length = 0, 1
    mark, position = 3, 5
    checked = sink.checked
    while position < size:
        if end >= mask and bits < max_bits:  # table full at this size: one more bit
            rem = (position - mark) % bits
            if rem:
                rem = bits - rem
                if rem >= size - position:
                    break
                position += rem
            buf = left = 0
            mark = position
            bits += 1
            mask = mask << 1 | 1
        buf |= data[position] << left
        position += 1
        left += 8
        if left < bits:
            if position == size:
                raise ValueError("the stream ends in the middle of a code")
            buf |= data[position] << left
            position += 1
            left += 8
        code = buf & mask
        buf >>= bits
        left -= bits
        if code == 256 and block_mode:  # CLEAR: padding, then an empty table of 9-bit codes
            rem = (position - mark) % bits
            if rem:
                rem = bits - rem
                if rem > size - position:
                    break
                position += rem
            buf = left = 0
            mark = position
            bits, mask, end = 9, 0x1FF, 255
            continue
        start = len(out)
        if code > end:  # the entry being made: the previous string and its first byte
            if code != end + 1 or prev > end:
                raise ValueError("the stream holds an invalid code")
            length = prev_length + 1
            if start + length > limit:
                raise sink.too_large()
            out += out[prev_start : prev_start + prev_length]
            out.append(out[prev_start])
        elif code < 256:
            length = 1
            if start + 1 > limit:
                raise sink.too_large()
            out.append(code)
        else:
            length = lengths[code]
            if start + length > limit:
                raise sink.too_large()
            first = starts[code]
            out += out[first : first + length]
        if end < mask:  # the previous string and this one's first byte, which follows it
            end += 1
            starts[end] = prev_start
            lengths[end] = prev_length + 1
        prev, prev_start, prev_length = code, start, length
        if not checked and len(out) >= _FITS_BLOCK:
            sink.check_signature()
            checked = True


def decompress(url: str, data: bytes, max_bytes: int | None = None) -> bytes:
    """Undo gzip (``.gz``) or Unix compress (``.Z``) compression, recognised by magic bytes.

    Both are decoded as streams, never more than ``max_bytes`` held: a decompression bomb
    (a 14 MB ``.gz`` of zeros inflates to 3 GB) is refused as soon as its output passes the
    limit, and content that is not FITS as soon as its first 2880-byte block is out.
    Multi-member gzip files (and zero padding after a member) read as one stream. Bytes
    that are not compressed are returned as they are.

    Parameters
    ----------
    url : str
        The product, named in errors.
    data : bytes
        The bytes as fetched.
    max_bytes : int, optional
        Most bytes the product may inflate to (``read.max_product_bytes``); ``None``: no
        limit.

    Returns
    -------
    bytes
        The decompressed file.

    Raises
    ------
    CorruptProductError
        If the compressed stream is damaged or cut short, inflates past ``max_bytes``, or
        does not hold a FITS file.
    """
    if data[:2] == GZIP_MAGIC:
        decoder = _gunzip
    elif data[:2] == COMPRESS_MAGIC:
        decoder = _unlzw
    else:
        return data
    sink = _Inflated(url, max_bytes)
    try:
        decoder(data, sink)
    except (zlib.error, ValueError) as exc:
        # zlib's and our messages name the damage (never the data).
        raise CorruptProductError(
            url, f"compressed stream is damaged: {exc}", "download the file again"
        ) from exc
    return sink.result()


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed read is worth trying again: timeouts, refused or reset connections,
    HTTP 5xx and 429 -- not a missing object, a denied one or a bad file.
    """
    if isinstance(exc, FetchError):
        return not exc.problem.startswith("access denied")
    if isinstance(exc, ProductError | FileNotFoundError | PermissionError):
        return False
    status = _status(exc)
    if status is not None:
        return status >= 500 or status == 429
    return isinstance(exc, OSError | asyncio.TimeoutError | TimeoutError) or (
        type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "aiobotocore", "urllib3")
    )


def _translate(url: str, exc: BaseException, storage: StorageConfig | None = None) -> ProductError:
    if isinstance(exc, ProductError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ProductNotFoundError(url, "no such object or file", "check the URL or manifest")
    status = _status(exc)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return FetchError(
            url,
            f"access denied ({type(exc).__name__})",
            "check credentials or use anonymous access (storage.anon: true)",
        )
    storage = storage or StorageConfig()
    if (
        isinstance(exc, asyncio.TimeoutError | TimeoutError)
        or "timeout" in type(exc).__name__.lower()
    ):
        problem = (
            f"no answer in time ({type(exc).__name__}; limits: storage.connect_timeout_s="
            f"{storage.connect_timeout_s:g} s, storage.read_timeout_s={storage.read_timeout_s:g} s"
            f", {storage.retries} retries)"
        )
    else:
        problem = f"could not fetch: {type(exc).__name__}: {one_line(exc, 300)}"
        if status is not None:
            problem = f"could not fetch: HTTP {status}"
    return FetchError(
        url,
        problem,
        "check the endpoint (AWS_ENDPOINT_URL_S3) and the network; a rerun retries it",
    )


def retry_wait(url: str, exc: BaseException, attempt: int, storage: StorageConfig) -> float:
    """Seconds to wait before trying ``url`` again after try ``attempt`` (1, 2, ...) failed
    with ``exc``: exponential backoff with up to 50 % jitter. Re-raises ``exc`` when it is
    not transient or the retries are spent.
    """
    if attempt > storage.retries or not is_transient(exc):
        raise exc
    logger.info("%s: %s; retry %d of %d", url, type(exc).__name__, attempt, storage.retries)
    base: float = storage.retry_backoff_s * 2 ** (attempt - 1)
    return base * (1 + 0.5 * random.random())


def anonymous_http_url(url: str, storage_options: SourceOptions = None) -> str | None:
    """The plain HTTP(S) address of an ``s3://`` object read anonymously, else ``None``.

    Anonymous GETs need no signature, so they skip botocore entirely: a plain HTTP GET
    (aiohttp through fsspec) costs about half the client CPU of an s3fs GET (measured by
    ``jobs/bench_ingest.py``). The endpoint is the one s3fs would use
    (``client_kwargs.endpoint_url`` or ``AWS_ENDPOINT_URL_S3``), path-style; without one,
    AWS's regional virtual-host address.
    """
    if url_protocol(url) != "s3":
        return None
    options = options_for("s3", storage_options)
    signed = ("key", "secret", "token", "profile", "session")
    if not options.get("anon") or any(options.get(name) for name in signed):
        return None
    client_kwargs = options.get("client_kwargs") or {}
    endpoint = client_kwargs.get("endpoint_url") or options.get("endpoint_url")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        return None
    if endpoint:
        return f"{str(endpoint).rstrip('/')}/{bucket}/{quote(key)}"
    region = client_kwargs.get("region_name") or "us-east-1"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{quote(key)}"


def _split(url: str, storage_options: SourceOptions = None) -> tuple[str, str, dict[str, Any]]:
    """Protocol, fsspec path and options to read ``url`` with (anonymous S3 as HTTP).

    Raises
    ------
    UnsupportedSchemeError
    """
    protocol = check_protocol(url)
    if protocol == "file":
        return protocol, str(local_path(url)), {}
    if protocol == "s3":
        http_url = anonymous_http_url(url, storage_options)
        if http_url is not None:
            http = url_protocol(http_url)
            return http, http_url, _storage(storage_options).options_for(http)
        return protocol, url[len("s3://") :], options_for("s3", storage_options)
    return protocol, url, options_for(protocol, storage_options)


def _too_large(url: str, size: int | str, limit: int) -> CorruptProductError:
    return CorruptProductError(
        url,
        f"larger than read.max_product_bytes ({size} > {limit} bytes)",
        "raise read.max_product_bytes if this really is a light curve",
    )


async def _http_get(fs: Any, url: str, limit: int | None) -> bytes:
    """GET ``url`` on an fsspec HTTP filesystem's session, streaming, stopping at ``limit``."""
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), **fs.kwargs) as response:
        if response.status == 404:
            raise FileNotFoundError(url)
        response.raise_for_status()
        length = response.headers.get("Content-Length")
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(url, length, limit)
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if limit is None or (length is not None and length.isdigit() and encoding == "identity"):
            # The size is known and within the limit: one read into one buffer (the common
            # case; a compressed transfer encoding could inflate, so it is streamed instead).
            data: bytes = await response.read()
            if limit is not None and len(data) > limit:
                raise _too_large(url, len(data), limit)
            return data
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(1 << 20):
            total += len(chunk)
            if limit is not None and total > limit:
                raise _too_large(url, f"over {total}", limit)
            chunks.append(chunk)
        return b"".join(chunks)


async def _fetch_async(
    fs: Any, protocol: str, url: str, path: str, storage: StorageConfig, limit: int | None
) -> bytes:
    """One object, with retries of transient failures (exponential backoff) on the loop."""
    attempt = 0
    while True:
        try:
            if protocol in ("http", "https"):
                return await _http_get(fs, path, limit)
            data: bytes = await fs._cat_file(path)
            if limit is not None and len(data) > limit:
                raise _too_large(url, len(data), limit)
            return data
        except Exception as exc:
            attempt += 1
            await asyncio.sleep(retry_wait(url, exc, attempt, storage))


def fetch_bytes(
    url: str,
    storage_options: SourceOptions = None,
    *,
    start: int | None = None,
    end: int | None = None,
    max_bytes: int | None = None,
) -> bytes:
    """Fetch an object (or the byte range ``[start, end)``) and return its raw bytes.

    Transient failures (timeouts, refused connections, HTTP 5xx) are retried with
    exponential backoff, as :class:`StorageConfig` says.

    Parameters
    ----------
    url : str
        Local path, ``file://``, ``s3://`` or ``http(s)://`` URL.
    storage_options : StorageConfig or mapping, optional
        Options for the URL's protocol (a :class:`StorageConfig` covers every protocol).
    start, end : int, optional
        Byte range to read.
    max_bytes : int, optional
        Refuse (:class:`CorruptProductError`) an object larger than this, before holding it
        whole where the transport allows (local files, HTTP).

    Returns
    -------
    bytes

    Raises
    ------
    ProductNotFoundError, FetchError, CorruptProductError, UnsupportedSchemeError
    """
    storage = _storage(storage_options)
    try:
        protocol, path, options = _split(url, storage_options)
        if protocol == "file":
            with open(path, "rb") as fh:
                if max_bytes is not None and start is None and end is None:
                    size = os.fstat(fh.fileno()).st_size
                    if size > max_bytes:
                        raise _too_large(url, size, max_bytes)
                if start:
                    fh.seek(start)
                return fh.read() if end is None else fh.read(end - (start or 0))
        fs = fsspec.filesystem(protocol, **options)
        if start is None and end is None and getattr(fs, "async_impl", False):
            coroutine = _fetch_async(fs, protocol, url, path, storage, max_bytes)
            return asyncio.run_coroutine_threadsafe(coroutine, fs.loop).result()
        attempt = 0
        while True:
            try:
                data: bytes = fs.cat_file(path, start=start, end=end)
                return data
            except Exception as exc:
                attempt += 1
                time.sleep(retry_wait(url, exc, attempt, storage))
    except Exception as exc:
        raise _translate(url, exc, storage) from exc


def iter_fetched(
    urls: Sequence[str],
    storage_options: SourceOptions = None,
    *,
    concurrency: int = 32,
    max_bytes: int | None = None,
) -> Iterator[tuple[int, bytes | ProductError]]:
    """Fetch many whole objects with ``concurrency`` requests always in flight, yielding
    ``(index into urls, bytes or error)`` as each object arrives (completion order).

    A sliding window, not batches: a slow object holds up nothing but itself, and a new
    request goes out as soon as the caller takes a result, so the network stays busy while
    the caller works. At most ``concurrency`` objects are in flight or waiting to be taken.
    Remote URLs go out as coroutines of the (asynchronous) fsspec filesystem on fsspec's I/O
    loop, each retried on transient failures; local files, and filesystems without an
    asynchronous interface, are read one at a time, in order. Objects over ``max_bytes`` fail
    with :class:`CorruptProductError`.
    """
    storage = _storage(storage_options)
    by_protocol: dict[str, list[int]] = {}
    targets: dict[int, tuple[str, str, dict[str, Any]]] = {}
    for index, url in enumerate(urls):
        try:
            targets[index] = _split(url, storage_options)
        except ProductError as exc:
            yield index, exc
            continue
        by_protocol.setdefault(targets[index][0], []).append(index)
    for protocol, indices in by_protocol.items():
        fs: fsspec.AbstractFileSystem | None = None
        if protocol != "file":
            try:
                fs = fsspec.filesystem(protocol, **targets[indices[0]][2])
            except Exception as exc:  # the filesystem itself failed: every URL fails
                for index in indices:
                    yield index, _translate(urls[index], exc, storage)
                continue
        if fs is not None and getattr(fs, "async_impl", False):
            yield from _window(fs, urls, targets, indices, max(1, concurrency), storage, max_bytes)
            continue
        for index in indices:
            try:
                yield index, fetch_bytes(urls[index], storage_options, max_bytes=max_bytes)
            except ProductError as exc:
                yield index, exc


def _window(
    fs: Any,
    urls: Sequence[str],
    targets: Mapping[int, tuple[str, str, Any]],
    indices: Sequence[int],
    concurrency: int,
    storage: StorageConfig,
    max_bytes: int | None,
) -> Iterator[tuple[int, bytes | ProductError]]:
    """Sliding window of fetch coroutines on the filesystem's event loop."""
    waiting = iter(indices)
    in_flight: dict[concurrent.futures.Future[bytes], int] = {}

    def submit() -> bool:
        index = next(waiting, None)
        if index is None:
            return False
        protocol, path, _ = targets[index]
        coroutine = _fetch_async(fs, protocol, urls[index], path, storage, max_bytes)
        in_flight[asyncio.run_coroutine_threadsafe(coroutine, fs.loop)] = index
        return True

    try:
        while len(in_flight) < concurrency and submit():
            pass
        while in_flight:
            done, _ = concurrent.futures.wait(
                in_flight, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                index = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    yield index, future.result()
                else:
                    yield index, _translate(urls[index], error, storage)
                submit()
    finally:  # the caller stopped early: drop what is still in flight
        for future in in_flight:
            future.cancel()
