"""The ``download`` stage: copy a manifest's products to a folder or a bucket (a mirror).

Design
------
*Plan, then copy.* :func:`plan_download` is pure: it turns a manifest into
:class:`DownloadItem` s (source URL, destination, expected size), one per product. A
destination keeps the public archive's key layout, so that a mirror is itself an archive
(``starskope discover --archive DEST`` lists it): a mission light curve goes to its key in
``s3://stpubdata`` (``DEST/kepler/public/lightcurves/0106/010666592/kplr...fits``, from its
file name alone, whatever the source), another product to the key of its ``s3_uri`` in its
bucket, and a product with neither (an HTTPS-only HLSP) to ``DEST/<mission>/<file name>``,
with a hash of its URL added when two such names would collide. Rows that name the same
archive key are one product, copied once. A key that would climb out of ``DEST`` (``..``) is
refused.

*Copy.* :func:`download_manifest` fetches through :func:`starskope_dask.fetch.iter_fetched`
(a sliding window of ``concurrency`` requests, retries of transient failures) and hands each
product to a pool of writer threads; at most ``concurrency`` products wait to be written, so
memory is bounded by about twice the window, never by the manifest.

*Resumable, never torn.* A product whose destination exists with the manifest's size (or
exists at all, when the manifest has no size: only complete files ever get a final name) is
skipped. Local files are written to a hidden temporary name in the same folder
(``.NAME.part-PID-THREAD``), fsynced, checked against the expected size and only then
``os.replace`` d into place; a killed run leaves at most hidden temporary files, removed by the
next run that writes the same product (when the process that made them is gone). S3 objects
are written with one PUT, which is atomic (an ``s3://`` destination is listed once, for the
sizes). A product whose size differs from the manifest's is a failure, never a file with the
final name; a file already at a final name whose size differs from the manifest's (cut short
elsewhere) is copied again, and replaced only by a complete, checked copy.

*Failures.* A product that fails is a row of the failure table (URL, error type, message),
written to ``DEST/_download/failures.csv``; the run goes on with the others. A later run
without failures removes that file. Nothing else is ever deleted: the run writes only the
products' destinations, their temporary files and ``DEST/_download/``. ``DEST`` is checked
(a writable folder, or a bucket that takes a write) before anything is downloaded.

*Exclusive-access products.* A MAST token (``MAST_API_TOKEN``, read by the command line, as
astroquery's ``Observations.login`` does) is sent as ``Authorization: token ...`` to
``https://mast.stsci.edu`` only (aiohttp drops it on a redirect to another host). It never
enters a log record, an exception, the failure table, the summary or a curl script (which
references the ``$MAST_API_TOKEN`` variable); messages are scrubbed of it all the same.

*curl scripts.* :func:`write_curl_script` writes a MAST-style bash script, one ``curl`` line
per product, every URL and path quoted with :func:`shlex.quote`, so that a crafted manifest
(quotes, ``$(...)``, backticks, newlines in a URL) cannot inject commands.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from starskope_dask.config import StorageConfig
from starskope_dask.discover import (
    _rows,
    https_url,
    layout_key,
    read_manifest,
    validate_manifest,
)
from starskope_dask.errors import (
    ConfigError,
    CorruptProductError,
    ProductError,
    StarskopeError,
    StoreError,
    UnsupportedSchemeError,
    one_line,
)
from starskope_dask.fetch import (
    anonymous_http_url,
    filesystem,
    iter_fetched,
    local_path,
    url_protocol,
    writable_folder,
    writable_protocol,
)

logger = logging.getLogger(__name__)

#: Values of ``source``: the S3 URI when there is one (``auto``), only S3 URIs, only HTTPS.
SOURCES = ("auto", "s3", "https")
#: Hosts that get the MAST token (``Authorization: token ...``), over HTTPS only.
MAST_TOKEN_HOSTS = ("mast.stsci.edu",)
#: The folder of ``DEST`` that holds the download's own files (the failure table).
STATE_FOLDER = "_download"
FAILURES_NAME = "failures.csv"
#: Infix of a local temporary file: ``.NAME.part-PID-THREAD`` beside ``NAME``.
PART_INFIX = ".part-"
#: Most requests in flight at once.
MAX_CONCURRENCY = 1024
#: Most writer threads (S3 PUTs or local writes in flight).
MAX_WRITERS = 32
#: Failures listed one by one by :func:`failure_report`; the rest are counted.
MAX_FAILURES_SHOWN = 20
_PART = re.compile(r"\.part-(\d+)-\d+$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+\-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class DownloadItem:
    """One product to copy.

    Attributes
    ----------
    source : str
        The URL to read (``s3://``, ``http(s)://`` or a local path).
    dest : str
        Where it goes: a local path or an ``s3://`` URL below ``DEST``.
    key : str
        ``dest`` relative to ``DEST`` (``kepler/public/lightcurves/...``).
    size : int or None
        The size the manifest gives, checked before the product takes its final name.
    row : int
        The manifest row (counting from 0), for messages.
    """

    source: str
    dest: str
    key: str
    size: int | None
    row: int


@dataclasses.dataclass(frozen=True)
class DownloadSummary:
    """What a download did.

    Attributes
    ----------
    dest : str
        The destination folder or bucket prefix.
    n_products : int
        Products in the plan (rows naming the same product count once).
    n_downloaded : int
        Products copied by this run.
    n_skipped : int
        Products already complete at the destination.
    n_failed : int
        Products that failed (each a row of ``failures``).
    bytes : int
        Bytes written by this run.
    seconds : float
        Wall time of the run.
    failures : tuple of (url, error type, message)
        One per failed product, in plan order.
    failures_url : str
        The failure table written (``DEST/_download/failures.csv``), ``""`` when none failed.
    """

    dest: str
    n_products: int
    n_downloaded: int
    n_skipped: int
    n_failed: int
    bytes: int
    seconds: float
    failures: tuple[tuple[str, str, str], ...] = ()
    failures_url: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values; failures as ``url``, ``error_type``, ``message``."""
        out = dataclasses.asdict(self)
        out["failures"] = [
            {"url": url, "error_type": kind, "message": message}
            for url, kind, message in self.failures
        ]
        return out


# ---------------------------------------------------------------------------- planning


def check_source(source: str) -> str:
    """``source`` if it is one of :data:`SOURCES`, else :class:`ConfigError`."""
    if source not in SOURCES:
        raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    return source


def check_concurrency(concurrency: Any) -> int:
    """``concurrency`` as an int in ``[1, MAX_CONCURRENCY]``, else :class:`ConfigError`."""
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        raise ConfigError(
            f"--concurrency must be an integer in [1, {MAX_CONCURRENCY}], not {concurrency!r}"
        )
    return concurrency


def _texts(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame:
        return [""] * len(frame)
    return [v.strip() if isinstance(v, str) else "" for v in frame[column].astype(object)]


def _sizes(frame: pd.DataFrame, manifest: str) -> list[int | None]:
    if "size" not in frame:
        return [None] * len(frame)
    values = pd.to_numeric(frame["size"], errors="coerce")
    negative = (values.fillna(0) < 0).to_numpy(dtype=bool)
    bad = frame["size"].notna().to_numpy(dtype=bool) & (values.isna().to_numpy() | negative)
    if bad.any():
        raise ConfigError(
            f"manifest {manifest}: {_rows(pd.Series(bad))}: size is not a byte count >= 0; "
            "fix the manifest or make it again with `starskope discover`"
        )
    return [None if pd.isna(v) else int(v) for v in values]


def _chosen(s3_uri: str, https: str, source: str) -> str:
    """The URL a row is read from under ``source`` (``""``: none)."""
    if source == "s3":
        return s3_uri
    if source == "https":
        return https or https_url(s3_uri)
    return s3_uri or https


def url_file_name(url: str) -> str:
    """A product's file name from its URL: the last part of a ``uri=`` query (MAST's download
    API), else of the path, percent-decoded; ``""`` when there is none.
    """
    parsed = urlsplit(url) if "://" in url else None
    if parsed is not None and parsed.scheme in ("http", "https"):
        query = parse_qs(parsed.query).get("uri")
        text = query[0] if query else unquote(parsed.path)
    else:
        text = url
    return text.rstrip("/").rsplit("/", 1)[-1]


def _archive_key(s3_uri: str) -> str:
    """The key of an ``s3://bucket/key`` URI, ``""`` for anything else."""
    if url_protocol(s3_uri) != "s3":
        return ""
    return s3_uri[len("s3://") :].partition("/")[2]


def _clean_key(key: str) -> str | None:
    """``key`` with empty parts dropped, or ``None`` if it could leave ``DEST``, holds control
    characters or lands in ``DEST/_download/``.
    """
    parts = [p for p in key.split("/") if p]
    if (
        not parts
        or any(p in (".", "..") for p in parts)
        or _CONTROL.search(key)
        or parts[0] == STATE_FOLDER
    ):
        return None
    return "/".join(parts)


def _fallback_key(mission: str, url: str) -> str:
    name = _UNSAFE_NAME.sub("_", url_file_name(url)).lstrip(".") or "product"
    folder = mission.lower() if re.fullmatch(r"[A-Za-z0-9]+", mission) else "other"
    return f"{folder}/{name}"


def _with_hash(key: str, url: str) -> str:
    path = PurePosixPath(key)
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    suffixes = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return str(path.with_name(f"{stem}-{digest}{suffixes}"))


def join_dest(dest: str, key: str) -> str:
    """The destination of ``key`` below ``dest`` (a local path or an ``s3://`` URL)."""
    if url_protocol(dest) == "file":
        return str(local_path(dest) / key)
    return f"{dest.rstrip('/')}/{key}"


def _instance_metadata_url(url: str) -> bool:
    """Whether ``url`` points at a link-local or cloud instance-metadata address."""
    import ipaddress
    import urllib.parse

    if "://" not in url:
        return False
    host = (urllib.parse.urlsplit(url).hostname or "").strip("[]").lower()
    if host in ("metadata.google.internal", "metadata", "instance-data"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_link_local or address == ipaddress.ip_address("fd00:ec2::254")


def plan_download(
    frame: pd.DataFrame, dest: str, source: str = "auto", *, manifest: str = "manifest"
) -> list[DownloadItem]:
    """Plan the copy of a manifest's products below ``dest`` (pure: no I/O).

    Parameters
    ----------
    frame : DataFrame
        The manifest (as :func:`~starskope_dask.discover.read_manifest` gives it).
    dest : str
        Destination folder (local path, ``file://``) or ``s3://bucket[/prefix]``.
    source : {"auto", "s3", "https"}
        ``auto``: each row's ``s3_uri`` when it has one, else its ``https_url``; ``s3``: the
        ``s3_uri`` column only; ``https``: the ``https_url`` column (MAST's HTTPS URL, made
        from a public-bucket ``s3_uri`` where the column is empty).
    manifest : str
        The manifest's URL, for messages.

    Returns
    -------
    list of DownloadItem
        One per product, in manifest order; rows naming an archive key already planned are
        dropped (one product, copied once).

    Raises
    ------
    ConfigError
        For an unknown ``source``, a manifest :func:`validate_manifest` refuses, rows without
        a URL for ``source``, a negative size, or a key that would leave ``dest``; the message
        names the manifest and the rows.
    """
    check_source(source)
    frame = validate_manifest(frame, manifest)
    s3_uris = _texts(frame, "s3_uri")
    https = _texts(frame, "https_url")
    missions = _texts(frame, "mission")
    sizes = _sizes(frame, manifest)
    urls = [_chosen(a, b, source) for a, b in zip(s3_uris, https, strict=True)]
    fix = "fix the manifest or choose another --source"
    missing = pd.Series([not u for u in urls])
    if missing.any():
        column = {"s3": "s3_uri", "https": "https_url"}.get(source, "URL")
        raise ConfigError(
            f"manifest {manifest}: {_rows(missing)}: no {column} to read with --source "
            f"{source}; {fix}"
        )
    forbidden = pd.Series([_instance_metadata_url(u) for u in urls])
    if forbidden.any():
        raise ConfigError(
            f"manifest {manifest}: {_rows(forbidden)}: a link-local or cloud-metadata address "
            "(169.254.0.0/16, fe80::/10, fd00:ec2::254, metadata.google.internal) is no "
            f"product: a crafted manifest would copy the instance's credentials; {fix}"
        )
    keys: list[str | None] = []
    archive: list[bool] = []  # the key is an archive key: one product per key
    for s3_uri, http_url, url, mission in zip(s3_uris, https, urls, missions, strict=True):
        name = url_file_name(s3_uri or http_url)
        key = layout_key(name) if name else None
        key = key or _archive_key(s3_uri)
        archive.append(bool(key))
        keys.append(_clean_key(key) if key else _clean_key(_fallback_key(mission, url)))
    unsafe = pd.Series([k is None for k in keys])
    if unsafe.any():
        raise ConfigError(
            f"manifest {manifest}: {_rows(unsafe)}: the product's key or file name would land "
            f"outside {dest} ('..', control characters or {STATE_FOLDER}/); {fix}"
        )
    final = [str(k) for k in keys]
    counts: dict[str, set[str]] = {}
    for key, url in zip(final, urls, strict=True):
        counts.setdefault(key, set()).add(url)
    items: list[DownloadItem] = []
    seen: dict[str, int] = {}
    for row, (key, is_archive, url, size) in enumerate(
        zip(final, archive, urls, sizes, strict=True)
    ):
        if not is_archive and len(counts[key]) > 1:
            key = _with_hash(key, url)  # names that collide: each gets its URL's hash
        if key in seen:
            logger.warning(
                "manifest %s: row %d names the product of row %d (%s); it is copied once",
                manifest,
                row,
                seen[key],
                key,
            )
            continue
        seen[key] = row
        items.append(DownloadItem(url, join_dest(dest, key), key, size, row))
    return items


# ----------------------------------------------------------------------- the destination


def _dest_protocol(dest: str) -> str:
    try:
        return writable_protocol(dest)
    except UnsupportedSchemeError as exc:
        raise ConfigError(
            f"download destination {dest}: {exc.problem}; give a local folder or "
            "s3://BUCKET[/PREFIX]"
        ) from exc


def write_options(storage: StorageConfig) -> dict[str, Any]:
    """Fsspec options to write ``s3://`` destinations: the storage's, signed (writes need
    credentials from the standard AWS chain).
    """
    options = storage.storage_options()
    options["anon"] = False
    return options


def check_destination(dest: str, storage: StorageConfig | None = None) -> None:
    """Check, before anything is downloaded, that products can be written below ``dest``.

    A local ``dest`` is made if missing; an ``s3://`` one gets a probe object below
    ``_download/``, removed at once.

    Raises
    ------
    ConfigError
        For a scheme that cannot be written (``http(s)://``, ...).
    StoreError
        If ``dest`` is a file, lies below one, cannot be made, is not writable, or its bucket
        cannot be reached or written; the message names ``dest`` and what to do.
    """
    protocol = _dest_protocol(dest)
    if protocol == "file":
        writable_folder(local_path(dest), "the download", "choose another DEST")
        state = local_path(dest) / STATE_FOLDER
        if state.exists() and not state.is_dir():
            raise StoreError(
                f"cannot write the download to {dest}: {state} is a file, not a folder; "
                "move it aside or choose another DEST"
            )
        return
    fs = filesystem("s3", write_options(storage or StorageConfig()))
    root = dest[len("s3://") :].rstrip("/")
    hint = (
        "check the bucket exists, the endpoint (AWS_ENDPOINT_URL_S3) and the credentials "
        "(AWS_ACCESS_KEY_ID/...), or choose another DEST"
    )
    if not root:
        raise ConfigError(f"download destination {dest} names no bucket; give s3://BUCKET[/PREFIX]")
    probe = f"{root}/{STATE_FOLDER}/.write-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        if "/" in root and fs.isfile(root):
            raise StoreError(
                f"cannot write the download to {dest}: it is an object, not a prefix; "
                "choose another DEST"
            )
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except StarskopeError:
        raise
    except Exception as exc:
        raise StoreError(
            f"cannot write the download to {dest}: {type(exc).__name__}: "
            f"{one_line(exc, 300)}; {hint}"
        ) from exc


def _existing_sizes(dest: str, storage: StorageConfig) -> dict[str, int] | None:
    """Keys and sizes of the objects below an ``s3://`` ``dest`` (one listing); ``None`` for a
    local one (each file is looked at on its own).
    """
    if url_protocol(dest) == "file":
        return None
    fs = filesystem("s3", write_options(storage))
    root = dest[len("s3://") :].rstrip("/")
    try:
        fs.invalidate_cache(root)
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise StoreError(
            f"cannot list {dest}: {type(exc).__name__}: {one_line(exc, 300)}; check the endpoint "
            "(AWS_ENDPOINT_URL_S3) and the credentials"
        ) from exc
    return {
        path[len(root) + 1 :]: int(info.get("size") or 0)
        for path, info in found.items()
        if path.startswith(root + "/")
    }


def _complete(item: DownloadItem, existing: dict[str, int] | None) -> bool:
    """Whether ``item`` is already at its destination, whole."""
    if existing is not None:
        size = existing.get(item.key)
    else:
        try:
            stat = os.stat(item.dest)
        except OSError:
            return False
        size = stat.st_size if os.path.isfile(item.dest) else None
    if size is None:
        return False
    if item.size is not None and size != item.size:
        logger.warning(
            "%s holds %d bytes, the manifest says %d: copying it again", item.dest, size, item.size
        )
        return False
    return True


# ------------------------------------------------------------------------------ writing


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def remove_stale_parts(paths: Sequence[str]) -> int:
    """Remove the hidden temporary files that stopped runs left for the local ``paths``.

    Only files named as :func:`_write_local` names them (``.NAME.part-PID-THREAD`` beside a
    ``NAME`` of ``paths``) whose process is gone; each folder is listed once.

    Returns
    -------
    int
        The number of files removed.
    """
    by_folder: dict[str, set[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition(os.sep)
        by_folder.setdefault(folder or ".", set()).add(name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # not made yet
        for entry in entries:
            match = _PART.search(entry.name)
            if not (match and entry.name.startswith(".")):
                continue
            name = entry.name[1 : match.start()]
            pid = int(match.group(1))
            if name in names and pid != os.getpid() and not _alive(pid):
                logger.info("removing %s, left by a run that was stopped", entry.path)
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
                    removed += 1
    return removed


def _write_local(path: Path, data: bytes, expected: int | None) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, fsync it, check its size,
    and rename it into place; on any failure the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{PART_INFIX}{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            written = os.fstat(fh.fileno()).st_size
        if expected is not None and written != expected:
            raise OSError(f"wrote {written} bytes, expected {expected}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write(item: DownloadItem, data: bytes, fs: Any) -> int:
    """Write one product to its destination; the bytes written.

    Raises
    ------
    CorruptProductError
        If ``data`` is not of the manifest's size (nothing is written).
    StoreError
        If the destination cannot be written.
    """
    if item.size is not None and len(data) != item.size:
        raise CorruptProductError(
            item.source,
            f"{len(data)} bytes, the manifest says {item.size}",
            "the product changed or was cut short; run again, or `starskope discover` again "
            "for a fresh manifest",
        )
    try:
        if fs is None:
            _write_local(Path(item.dest), data, item.size)
        else:
            fs.pipe_file(item.dest, data)  # one PUT: the object appears whole or not at all
    except Exception as exc:
        raise StoreError(
            f"cannot write {item.dest}: {type(exc).__name__}: {one_line(exc, 300)}"
        ) from exc
    return len(data)


def _write_text(url: str, text: str, storage: StorageConfig) -> None:
    data = text.encode()
    if url_protocol(url) == "file":
        _write_local(local_path(url), data, len(data))
    else:
        filesystem("s3", write_options(storage)).pipe_file(url, data)


def _remove_failures(url: str, storage: StorageConfig) -> None:
    """Remove an earlier run's failure table (a file this module wrote), if there is one."""
    try:
        if url_protocol(url) == "file":
            local_path(url).unlink(missing_ok=True)
        else:
            fs = filesystem("s3", write_options(storage))
            if fs.exists(url):
                fs.rm_file(url)
    except Exception as exc:
        logger.warning("cannot remove %s: %s: %s", url, type(exc).__name__, one_line(exc, 300))


def failures_csv(failures: Sequence[tuple[str, str, str]]) -> str:
    """The failure table as CSV text: ``url``, ``error_type``, ``message``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["url", "error_type", "message"])
    writer.writerows(failures)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- the token


class _TokenStorage(StorageConfig):
    """A :class:`StorageConfig` whose HTTP requests carry ``Authorization: token ...``.

    Given only to the requests for the token's hosts. The token is kept outside the
    dataclass fields, so it is in no ``repr``, no comparison and no pickle.
    """

    _token: str

    def with_token(self, token: str) -> _TokenStorage:
        object.__setattr__(self, "_token", token)
        return self

    def http_options(self) -> dict[str, Any]:
        options = super().http_options()
        options["headers"] = {"Authorization": f"token {self._token}"}
        return options

    def __reduce__(self) -> Any:
        raise TypeError("a StorageConfig with a MAST token is not pickled")


def needs_token(url: str, hosts: Sequence[str] = MAST_TOKEN_HOSTS) -> bool:
    """Whether ``url`` goes to a host that gets the MAST token: HTTPS to one of ``hosts``
    (``host`` or ``host:port``), or plain HTTP to one of them on the loopback interface.
    """
    parsed = urlsplit(url)
    host = (parsed.hostname or "").lower()
    if host not in hosts and parsed.netloc.lower() not in hosts:
        return False
    return parsed.scheme == "https" or (parsed.scheme == "http" and host in _LOOPBACK)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


# ------------------------------------------------------------------------------ the copy


def download_manifest(
    manifest_url: str,
    dest: str,
    *,
    storage: StorageConfig,
    concurrency: int = 16,
    source: str = "auto",
    progress: bool = True,
    token: str | None = None,
    token_hosts: Sequence[str] = MAST_TOKEN_HOSTS,
) -> DownloadSummary:
    """Copy the products of a manifest below ``dest``: concurrent, resumable, never torn.

    Parameters
    ----------
    manifest_url : str
        The manifest (local path, ``file://``, ``s3://`` or ``http(s)://``).
    dest : str
        A local folder (made if missing) or ``s3://bucket[/prefix]``.
    storage : StorageConfig
        How to reach the sources (anonymous reads of the public bucket by default) and an
        ``s3://`` destination (signed writes, same endpoint).
    concurrency : int
        Requests in flight at once, in ``[1, MAX_CONCURRENCY]``.
    source : {"auto", "s3", "https"}
        Which URL of each row to read (:func:`plan_download`).
    progress : bool
        Show a progress bar (tqdm, on stderr).
    token : str, optional
        A MAST token for exclusive-access products, sent only to ``token_hosts``.
    token_hosts : sequence of str
        Hosts (``host`` or ``host:port``) that get the token (:func:`needs_token`).

    Returns
    -------
    DownloadSummary
        Counts, bytes, time and the failure table (also in ``DEST/_download/failures.csv``).

    Raises
    ------
    ConfigError
        For a bad ``source`` or ``concurrency``, or a manifest that cannot be used.
    StoreError
        If the manifest cannot be fetched, or ``dest`` cannot be written (checked before any
        download).
    """
    check_source(source)
    check_concurrency(concurrency)
    protocol = _dest_protocol(dest)
    started = time.monotonic()
    frame = read_manifest(manifest_url, storage)
    items = plan_download(frame, dest, source, manifest=manifest_url)
    del frame
    check_destination(dest, storage)
    existing = _existing_sizes(dest, storage)
    todo = [item for item in items if not _complete(item, existing)]
    n_skipped = len(items) - len(todo)
    logger.info(
        "download %s -> %s: %d products, %d already there",
        manifest_url,
        dest,
        len(items),
        n_skipped,
    )
    fs = None if protocol == "file" else filesystem("s3", write_options(storage))
    if fs is None:
        remove_stale_parts([item.dest for item in todo])
    failures: dict[int, tuple[str, str, str]] = {}
    written = 0
    n_downloaded = 0
    bar = _progress(len(items), n_skipped, progress)
    try:
        for index, outcome in _fetched(todo, storage, concurrency, token, token_hosts, fs):
            if isinstance(outcome, BaseException):
                item = todo[index]
                message = _redact(str(outcome), token).removeprefix(f"{item.source}: ")
                failures[index] = (item.source, type(outcome).__name__, message)
                logger.info("%s: %s: %s", item.source, type(outcome).__name__, message)
            else:
                written += outcome
                n_downloaded += 1
            bar.update(1)
            bar.set_postfix_str(f"{written / 1e6:.1f} MB, {len(failures)} failed", refresh=False)
    finally:
        bar.close()
    table = tuple(failures[i] for i in sorted(failures))
    failures_url = join_dest(dest, f"{STATE_FOLDER}/{FAILURES_NAME}")
    if table:
        try:
            _write_text(failures_url, failures_csv(table), storage)
        except Exception as exc:
            raise StoreError(
                f"cannot write the failure table {failures_url}: {type(exc).__name__}: "
                f"{one_line(exc, 300)}"
            ) from exc
    else:
        _remove_failures(failures_url, storage)
    summary = DownloadSummary(
        dest=dest,
        n_products=len(items),
        n_downloaded=n_downloaded,
        n_skipped=n_skipped,
        n_failed=len(table),
        bytes=written,
        seconds=time.monotonic() - started,
        failures=table,
        failures_url=failures_url if table else "",
    )
    logger.info(
        "download %s: %d copied, %d already there, %d failed, %d bytes in %.1f s",
        dest,
        summary.n_downloaded,
        summary.n_skipped,
        summary.n_failed,
        summary.bytes,
        summary.seconds,
    )
    return summary


def failure_report(summary: DownloadSummary, limit: int = MAX_FAILURES_SHOWN) -> list[str]:
    """Lines for a terminal: the first ``limit`` failures, a count of the rest, and where the
    failure table is; empty without failures.
    """
    if not summary.failures:
        return []
    lines = [
        f"  failed: {url}: {kind}: {' '.join(message.split())[:500]}"
        for url, kind, message in summary.failures[:limit]
    ]
    if len(summary.failures) > limit:
        lines.append(f"  ... and {len(summary.failures) - limit} more")
    lines.append(
        f"  {summary.n_failed} failed; the table: {summary.failures_url}; a rerun retries them"
    )
    return lines


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="download", unit="file")


def _fetched(
    todo: Sequence[DownloadItem],
    storage: StorageConfig,
    concurrency: int,
    token: str | None,
    token_hosts: Sequence[str],
    fs: Any,
) -> Iterator[tuple[int, int | BaseException]]:
    """``(index into todo, bytes written or error)`` for every item, as each is written.

    Fetches through :func:`iter_fetched` (the token's hosts in a window of their own) and
    writes in a thread pool; at most ``concurrency`` fetched products wait for a writer.
    """
    groups: list[tuple[list[int], StorageConfig]] = []
    if token:
        with_token = [i for i, item in enumerate(todo) if needs_token(item.source, token_hosts)]
        if with_token:
            authorized = _TokenStorage(**dataclasses.asdict(storage)).with_token(token)
            groups.append((with_token, authorized))
        chosen = set(with_token)
        groups.insert(0, ([i for i in range(len(todo)) if i not in chosen], storage))
    else:
        groups.append((list(range(len(todo))), storage))
    pending: dict[concurrent.futures.Future[int], int] = {}
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(concurrency, MAX_WRITERS), thread_name_prefix="starskope-download"
    ) as pool:

        def finished(block: bool) -> Iterator[tuple[int, int | BaseException]]:
            """The writes done; waits while ``concurrency`` are pending (all, with block)."""
            while pending:
                done = {f for f in pending if f.done()}
                if not done:
                    if not (block or len(pending) >= concurrency):
                        return
                    done, _ = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                for future in done:
                    index = pending.pop(future)
                    error = future.exception()
                    yield index, error if error is not None else future.result()

        try:
            for indices, options in groups:
                if not indices:
                    continue
                urls = [todo[i].source for i in indices]
                for position, data in iter_fetched(urls, options, concurrency=concurrency):
                    index = indices[position]
                    if isinstance(data, ProductError):
                        yield index, data
                        continue
                    pending[pool.submit(_write, todo[index], data, fs)] = index
                    del data
                    yield from finished(block=False)
            yield from finished(block=True)
        finally:
            for future in pending:
                future.cancel()


# ------------------------------------------------------------------------- curl scripts


def _curl_url(url: str, storage: StorageConfig | None) -> str:
    """A URL curl can fetch for a source URL: anonymous S3 objects over HTTP(S), local files
    as ``file://``; ``""`` when there is none (a signed S3 object).
    """
    protocol = url_protocol(url)
    if protocol in ("http", "https"):
        return url
    if protocol == "s3":
        return anonymous_http_url(url, storage) or ""
    if protocol == "file":
        return local_path(url).absolute().as_uri()
    return ""


def curl_line(url: str, path: str, token_var: bool) -> str:
    """One MAST-style ``curl`` command: follow redirects, fail on HTTP errors, make the
    folders, retry; ``url`` and ``path`` shell-quoted. With ``token_var``, the command sends
    ``Authorization: token $MAST_API_TOKEN`` when that variable is set when it runs (the
    variable is named, never its value).
    """
    auth = '${MAST_AUTH[@]+"${MAST_AUTH[@]}"} ' if token_var else ""
    return (
        f"curl {auth}--globoff -L -o {shlex.quote(path)} --fail --create-dirs --retry 3 "
        f"{shlex.quote(url)}"
    )


#: The script's preamble for token lines: the token goes into a header file only the user can
#: read (``printf`` is a shell builtin: the token is on no process's command line, where
#: ``ps`` would show it to every user of a shared login node), removed when the script ends.
CURL_TOKEN_PREAMBLE = (
    "MAST_AUTH=()",
    'if [ -n "${MAST_API_TOKEN:-}" ]; then',
    '    MAST_HEADER_FILE="$(umask 077 && mktemp)"',
    "    trap 'rm -f \"$MAST_HEADER_FILE\"' EXIT",
    '    printf \'Authorization: token %s\\n\' "$MAST_API_TOKEN" > "$MAST_HEADER_FILE"',
    '    MAST_AUTH=(-H "@$MAST_HEADER_FILE")',
    "fi",
)


def write_curl_script(
    frame: pd.DataFrame,
    dest_folder: str,
    path: str,
    source: str = "https",
    *,
    storage: StorageConfig | None = None,
    manifest: str = "manifest",
    token_hosts: Sequence[str] = MAST_TOKEN_HOSTS,
) -> int:
    """Write a MAST-style bash script that downloads a manifest's products with curl.

    The script has one ``curl`` line per product (:func:`curl_line`), writing to the same
    paths as :func:`download_manifest` would below ``dest_folder``. Lines for MAST's hosts
    read the token from ``$MAST_API_TOKEN`` when the script runs; no token is in the file.

    Parameters
    ----------
    frame : DataFrame
        The manifest.
    dest_folder : str
        The local folder the script downloads into (as written: a relative folder stays
        relative to where the script is run).
    path : str
        The script to write (local; made executable, replaced atomically).
    source : {"auto", "s3", "https"}
        Which URL of each row (:func:`plan_download`); ``s3://`` objects are fetched over
        their bucket's anonymous HTTP(S) address.
    storage : StorageConfig, optional
        For the S3 endpoint of ``s3://`` URLs.
    manifest : str
        The manifest's URL, for messages.
    token_hosts : sequence of str
        Hosts whose lines send the token.

    Returns
    -------
    int
        The number of ``curl`` lines.

    Raises
    ------
    ConfigError
        For a manifest that cannot be used, a destination that is not a local folder, or
        products curl cannot fetch (signed ``s3://`` objects).
    StoreError
        If the script cannot be written.
    """
    if url_protocol(dest_folder) != "file":
        raise ConfigError(
            f"--curl-script writes a script that downloads to a local folder; {dest_folder} "
            "is not one"
        )
    folder = str(local_path(dest_folder)).rstrip("/") or "/"
    items = plan_download(frame, folder, source, manifest=manifest)
    urls = [_curl_url(item.source, storage) for item in items]
    lacking = [i for i, url in enumerate(urls) if not url]
    if lacking:
        rows = ", ".join(str(items[i].row) for i in lacking[:5])
        more = f" (and {len(lacking) - 5} more)" if len(lacking) > 5 else ""
        raise ConfigError(
            f"manifest {manifest}: rows {rows}{more}: curl cannot fetch "
            f"{items[lacking[0]].source[:80]!r} (a signed S3 object); use --source https, or "
            "`starskope download` itself"
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    needs = [needs_token(url, token_hosts) for url in urls]
    lines = [
        "#!/bin/bash",
        "#",
        f"# Download {len(items)} products with curl (written by starskope {stamp}).",
        "# Run it with: bash THIS_FILE",
        "#",
        "# Exclusive-access products at MAST need a token (https://auth.mast.stsci.edu/token):",
        "#     export MAST_API_TOKEN=...",
        "# before running; this file holds no token, only the variable's name.",
        "#",
    ]
    if any(needs):
        lines += [*CURL_TOKEN_PREAMBLE, ""]
    lines += [
        curl_line(url, item.dest, token_var)
        for item, url, token_var in zip(items, urls, needs, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    out = local_path(path)
    if out.is_dir():
        raise StoreError(f"cannot write the curl script {path}: it is a folder; give a file name")
    try:
        _write_local(out.absolute(), text.encode(), None)
        os.chmod(out, 0o755)
    except OSError as exc:
        raise StoreError(
            f"cannot write the curl script {path}: {type(exc).__name__}: {one_line(exc, 300)}; "
            "choose another --curl-script"
        ) from exc
    logger.info("wrote %s: %d curl commands into %s", path, len(items), folder)
    return len(items)


__all__ = [
    "MAST_TOKEN_HOSTS",
    "SOURCES",
    "DownloadItem",
    "DownloadSummary",
    "check_destination",
    "curl_line",
    "download_manifest",
    "failure_report",
    "failures_csv",
    "needs_token",
    "plan_download",
    "remove_stale_parts",
    "write_curl_script",
]
