"""Thin I/O edge: URLs (local, ``file://``, ``s3://``, ``http(s)://``) to bytes.

Every function here maps the transport's exceptions onto the project's hierarchy
(:class:`~starskope_dask.errors.ProductNotFoundError`, :class:`~starskope_dask.errors.FetchError`)
so callers see one kind of error, naming the URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import logging
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import fsspec
import unlzw3

from starskope_dask.config import StorageConfig
from starskope_dask.errors import (
    CorruptProductError,
    FetchError,
    ProductError,
    ProductNotFoundError,
)

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
COMPRESS_MAGIC = b"\x1f\x9d"


def url_protocol(url: str) -> str:
    """Return ``"file"``, ``"s3"``, ``"http"`` or ``"https"`` for a URL or local path."""
    scheme = urlparse(url).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] == ":\\"):
        return "file"
    return scheme


def local_path(url: str) -> Path:
    """Return the filesystem path of a local URL (plain path or ``file://``)."""
    return Path(url[len("file://") :]) if url.startswith("file://") else Path(url)


def filesystem(
    protocol: str, storage_options: Mapping[str, Any] | None = None
) -> fsspec.AbstractFileSystem:
    """Return an fsspec filesystem for ``protocol``.

    For ``s3`` the options default to anonymous access with the endpoint from
    ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (see :class:`StorageConfig`).
    """
    if protocol == "s3":
        options = dict(
            StorageConfig().storage_options() if storage_options is None else storage_options
        )
        return fsspec.filesystem("s3", **options)
    return fsspec.filesystem(protocol, **dict(storage_options or {}))


def decompress(url: str, data: bytes) -> bytes:
    """Undo gzip (``.gz``) or Unix compress (``.Z``) compression, recognised by magic bytes.

    Raises
    ------
    CorruptProductError
        If the compressed stream is damaged.
    """
    try:
        if data[:2] == GZIP_MAGIC:
            return gzip.decompress(data)
        if data[:2] == COMPRESS_MAGIC:
            return bytes(unlzw3.unlzw(data))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise CorruptProductError(
            url, f"compressed stream is damaged: {exc}", "download the file again"
        ) from exc
    return data


def _translate(url: str, exc: BaseException) -> ProductError:
    if isinstance(exc, ProductError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ProductNotFoundError(url, "no such object or file", "check the URL or manifest")
    if isinstance(exc, PermissionError):
        return FetchError(
            url, f"access denied ({exc})", "check credentials or use anonymous access (anon=True)"
        )
    return FetchError(
        url,
        f"could not fetch: {type(exc).__name__}: {exc}",
        "check the endpoint (AWS_ENDPOINT_URL_S3) and the network; the run can be resumed",
    )


def anonymous_http_url(url: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """The plain HTTP(S) address of an ``s3://`` object read anonymously, else ``None``.

    Anonymous GETs need no signature, so they skip botocore entirely: a plain HTTP GET
    (aiohttp through fsspec) costs about half the client CPU of an s3fs GET (measured by
    ``jobs/bench_ingest.py``). The endpoint is the one s3fs would use
    (``client_kwargs.endpoint_url`` or ``AWS_ENDPOINT_URL_S3``), path-style; without one,
    AWS's regional virtual-host address.
    """
    if url_protocol(url) != "s3":
        return None
    options = dict(
        StorageConfig().storage_options() if storage_options is None else storage_options
    )
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


def _split(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, str, Mapping[str, Any] | None]:
    """Protocol, fsspec path and options to read ``url`` with (anonymous S3 as HTTP)."""
    protocol = url_protocol(url)
    if protocol == "file":
        return protocol, str(local_path(url)), None
    if protocol == "s3":
        http_url = anonymous_http_url(url, storage_options)
        if http_url is not None:
            return url_protocol(http_url), http_url, None
        return protocol, url[len("s3://") :], storage_options
    return protocol, url, storage_options


def fetch_bytes(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    start: int | None = None,
    end: int | None = None,
) -> bytes:
    """Fetch an object (or the byte range ``[start, end)``) and return its raw bytes.

    Parameters
    ----------
    url : str
        Local path, ``file://``, ``s3://`` or ``http(s)://`` URL.
    storage_options : mapping, optional
        fsspec options for the URL's protocol.
    start, end : int, optional
        Byte range to read.

    Returns
    -------
    bytes

    Raises
    ------
    ProductNotFoundError, FetchError
    """
    protocol, path, options = _split(url, storage_options)
    try:
        if protocol == "file":
            with open(path, "rb") as fh:
                if start:
                    fh.seek(start)
                return fh.read() if end is None else fh.read(end - (start or 0))
        fs = filesystem(protocol, options)
        data: bytes = fs.cat_file(path, start=start, end=end)
        return data
    except Exception as exc:
        raise _translate(url, exc) from exc


def iter_fetched(
    urls: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 32,
) -> Iterator[tuple[int, bytes | ProductError]]:
    """Fetch many whole objects with ``concurrency`` requests always in flight, yielding
    ``(index into urls, bytes or error)`` as each object arrives (completion order).

    A sliding window, not batches: a slow object holds up nothing but itself, and a new
    request goes out as soon as the caller takes a result, so the network stays busy while
    the caller works. At most ``concurrency`` objects are in flight or waiting to be taken.
    Remote URLs go out as coroutines of the (asynchronous) fsspec filesystem on fsspec's I/O
    loop; local files, and filesystems without an asynchronous interface, are read one at a
    time, in order.
    """
    targets = [_split(url, storage_options) for url in urls]
    by_protocol: dict[str, list[int]] = {}
    for index, (protocol, _, _) in enumerate(targets):
        by_protocol.setdefault(protocol, []).append(index)
    for protocol, indices in by_protocol.items():
        fs: fsspec.AbstractFileSystem | None = None
        if protocol != "file":
            try:
                fs = filesystem(protocol, targets[indices[0]][2])
            except Exception as exc:  # the filesystem itself failed: every URL fails
                for index in indices:
                    yield index, _translate(urls[index], exc)
                continue
        if fs is not None and getattr(fs, "async_impl", False):
            yield from _window(fs, urls, targets, indices, max(1, concurrency))
            continue
        for index in indices:
            try:
                yield index, fetch_bytes(urls[index], storage_options)
            except ProductError as exc:
                yield index, exc


def _window(
    fs: Any,
    urls: Sequence[str],
    targets: Sequence[tuple[str, str, Any]],
    indices: Sequence[int],
    concurrency: int,
) -> Iterator[tuple[int, bytes | ProductError]]:
    """Sliding window of ``fs._cat_file`` coroutines on the filesystem's event loop."""
    waiting = iter(indices)
    in_flight: dict[concurrent.futures.Future[bytes], int] = {}

    def submit() -> bool:
        index = next(waiting, None)
        if index is None:
            return False
        coroutine = fs._cat_file(targets[index][1])
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
                    yield index, _translate(urls[index], error)
                submit()
    finally:  # the caller stopped early: drop what is still in flight
        for future in in_flight:
            future.cancel()
