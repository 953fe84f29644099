"""The ``discover`` stage: targets to a manifest of products (cloud URIs).

Archive-native discovery needs no MAST call: catalogue IDs map onto the public key layout of
``s3://stpubdata`` (the star's prefix is listed), and whole prefixes (a K2 campaign, a TESS
sector) are listed in bulk. Object stores are reached with anonymous access by default and
the endpoint from ``AWS_ENDPOINT_URL_S3``, so the same call works against a local S3 server.

The manifest is Parquet, one row per product, columns ``MANIFEST_COLUMNS``, sorted by
mission, star IDs, segment and URI so that it is deterministic.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask import hlsp
from starskope_dask.config import DiscoverConfig, StorageConfig
from starskope_dask.errors import (
    ArchiveError,
    ConfigError,
    DiscoveryError,
    ProductError,
    ProductNotFoundError,
    StarskopeError,
    StoreError,
    TargetNotFoundError,
    UnsupportedSchemeError,
    one_line,
)
from starskope_dask.fetch import (
    SourceOptions,
    check_protocol,
    fetch_bytes,
    filesystem,
    local_path,
    url_protocol,
    writable_protocol,
)
from starskope_dask.mast import PLANET_HOST_TABLES, MastClient
from starskope_dask.records import MANIFEST_COLUMNS, MISSIONS

logger = logging.getLogger(__name__)

PUBLIC_ARCHIVE = "s3://stpubdata"
MAST_HTTPS = "https://archive.stsci.edu/missions"
MAST_DOWNLOAD = "https://mast.stsci.edu/api/v0.1/Download/file?uri="

_KEPLER_KEY = re.compile(r"kplr(\d{9})-(\d{13})_(llc|slc)\.fits(\.gz)?$")
_K2_KEY = re.compile(r"ktwo(\d{9})-c(\d{2,3})_(llc|slc)\.fits(\.gz)?$")
_TESS_KEY = re.compile(r"tess(\d{13})-s(\d{4})-(\d{16})-(\d{4})-([a-z])_(lc|fast-lc)\.fits(\.gz)?$")
_ID_PREFIX = {"Kepler": "KIC", "K2": "EPIC", "TESS": "TIC"}
SEGMENT_FOLDERS = {"K2": "k2/public/lightcurves/", "TESS": "tess/public/tid/"}
_ID_COLUMN = {"Kepler": "kic", "K2": "epic", "TESS": "tic"}
_KEPLER_QUARTER_OF_STAMP = {
    "2009131105131": 0,
    "2009131110544": 0,
    "2009166043257": 1,
    "2009259160929": 2,
    "2009350155506": 3,
    "2010078095331": 4,
    "2010174085026": 5,
    "2010265121752": 6,
    "2010355172524": 7,
    "2011073133259": 8,
    "2011177032512": 9,
    "2011271113734": 10,
    "2012004120508": 11,
    "2012088054726": 12,
    "2012179063303": 13,
    "2012277125453": 14,
    "2013011073258": 15,
    "2013098041711": 16,
    "2013131215648": 17,
}


def mission_id_name(mission: str, number: int) -> str:
    """``KIC n``, ``EPIC n`` or ``TIC n``."""
    return f"{_ID_PREFIX[mission]} {number}"


def _key_facts(
    mission: str, number: int, segment: int, cadence: str, product_type: str
) -> dict[str, Any]:
    facts: dict[str, Any] = dict.fromkeys(_ID_COLUMN.values())
    facts[_ID_COLUMN[mission]] = number
    facts.update(
        mission=mission,
        segment=segment,
        cadence=cadence,
        product_type=product_type,
        target=mission_id_name(mission, number),
    )
    return facts


def parse_product_key(uri: str) -> dict[str, Any] | None:
    """Mission, IDs, segment, cadence and product type from a product's key or file name.

    Returns ``None`` for keys that are not light-curve products (target pixel files, ...).
    """
    name = uri.rsplit("/", 1)[-1]
    if match := _KEPLER_KEY.search(name):
        short = match.group(3) == "slc"
        segment = _KEPLER_QUARTER_OF_STAMP.get(match.group(2), -1)
        cadence, kind = ("short", "kepler-sc") if short else ("long", "kepler-lc")
        return _key_facts("Kepler", int(match.group(1)), segment, cadence, kind)
    if match := _K2_KEY.search(name):
        short = match.group(3) == "slc"
        cadence, kind = ("short", "k2-sc") if short else ("long", "k2-lc")
        return _key_facts("K2", int(match.group(1)), int(match.group(2)), cadence, kind)
    if match := _TESS_KEY.search(name):
        fast = match.group(6) == "fast-lc"
        cadence, kind = ("20s", "tess-spoc-20s") if fast else ("2min", "tess-spoc-2min")
        return _key_facts("TESS", int(match.group(3)), int(match.group(2)), cadence, kind)
    return None


def star_folder(mission: str, number: int, segment_folder: str = "") -> str:
    """The bucket-relative folder of a star's products for one campaign or sector folder
    (``c4``, ``s0014``; Kepler folders are per star, not per quarter).
    """
    if mission == "Kepler":
        kic9 = f"{number:09d}"
        return f"kepler/public/lightcurves/{kic9[:4]}/{kic9}/"
    if mission == "K2":
        sub = f"{number // 100000 * 100000}/{number % 100000 // 1000 * 1000:05d}"
        return f"{SEGMENT_FOLDERS['K2']}{segment_folder}/{sub}/"
    tic16 = f"{number:016d}"
    tail = f"{tic16[0:4]}/{tic16[4:8]}/{tic16[8:12]}/{tic16[12:16]}/"
    return f"{SEGMENT_FOLDERS['TESS']}{segment_folder}/{tail}"


def layout_key(filename: str) -> str | None:
    """A mission product's key in the public bucket, from its file name alone.

    ``kplr010666592-2009131110544_slc.fits`` →
    ``kepler/public/lightcurves/0106/010666592/kplr010666592-2009131110544_slc.fits``;
    ``None`` for names that are not Kepler, K2 or TESS SPOC light curves.
    """
    name = filename.rsplit("/", 1)[-1]
    facts = parse_product_key(name)
    if facts is None:
        return None
    mission = facts["mission"]
    segment = f"c{facts['segment']}" if mission == "K2" else f"s{facts['segment']:04d}"
    return star_folder(mission, int(facts[_ID_COLUMN[mission]]), segment) + name


def product_type_of(filename: str) -> str | None:
    """``kepler-lc``, ``tess-spoc-2min``, ``hlsp-k2sc``, ... or ``None`` (not a light curve).

    HLSP file names are named by the registry (:mod:`starskope_dask.hlsp`), so that the
    name discovery gives a product is the product type the reader gives it.
    """
    name = filename.rsplit("/", 1)[-1].lower()
    facts = parse_product_key(name)
    if facts is not None:
        return str(facts["product_type"])
    return hlsp.product_type_for_file(name)


def https_url(s3_uri: str) -> str:
    """MAST's HTTPS download URL for a public-bucket URI (fallback without S3 access)."""
    if not s3_uri.startswith(PUBLIC_ARCHIVE + "/"):
        return ""
    key = s3_uri[len(PUBLIC_ARCHIVE) + 1 :]
    mission, _, rest = key.partition("/public/")
    name = rest.rsplit("/", 1)[-1]
    if mission == "tess":
        return f"{MAST_DOWNLOAD}mast:TESS/product/{name}"
    return f"{MAST_HTTPS}/{mission}/{rest}"


def manifest_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a manifest DataFrame with the standard columns, types and deterministic order."""
    frame = pd.DataFrame(list(rows))
    for column in MANIFEST_COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[list(MANIFEST_COLUMNS)]
    for column in ("kic", "epic", "tic", "segment", "size"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    for column in ("ra", "dec"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("mission", "target", "cadence", "product_type", "s3_uri", "https_url", "source"):
        frame[column] = frame[column].fillna("").astype(str)
    order = {m: i for i, m in enumerate(MISSIONS)}
    frame = frame.assign(_m=frame["mission"].map(order).fillna(9))
    frame = frame.sort_values(["_m", "kic", "epic", "tic", "segment", "s3_uri"], na_position="last")
    frame = frame.drop(columns="_m").drop_duplicates(subset=["s3_uri", "https_url"], keep="first")
    return frame.reset_index(drop=True)


def check_manifest_output(url: str) -> None:
    """Check, writing nothing, that a manifest can be written at ``url``.

    Local targets: ``url`` is not a folder, and its nearest existing folder is a writable
    folder (not a file). Remote (``s3://``) targets are checked when written.

    Raises
    ------
    ConfigError
        For a scheme a manifest cannot be written to (``http(s)://``, ``ftp://``, ...).
    StoreError
        For a local target that cannot be written.
    """
    protocol = _output_protocol(url)
    if protocol != "file":
        return
    path = local_path(url).absolute()
    if path.is_dir():
        raise StoreError(
            f"cannot write the manifest {url}: it is a folder; give a file name such as "
            f"{path / 'manifest.parquet'}"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(
            f"cannot write the manifest {url}: {folder} is a file, not a folder; choose "
            "another output path (-o)"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot write the manifest {url}: the folder {folder} is not writable; choose "
            "another output path (-o) or fix its permissions"
        )


def _output_protocol(url: str) -> str:
    try:
        return writable_protocol(url)
    except UnsupportedSchemeError as exc:
        raise ConfigError(f"manifest output {url}: {exc.problem}; {exc.hint}") from exc


def write_manifest(frame: pd.DataFrame, url: str, storage_options: SourceOptions = None) -> None:
    """Write a manifest as Parquet (local, atomically, or ``s3://``).

    Parameters
    ----------
    frame : DataFrame
        The manifest (:func:`manifest_frame`).
    url : str
        Local path, ``file://`` or ``s3://`` URL.
    storage_options : StorageConfig or mapping, optional
        Options for ``s3://`` targets.

    Raises
    ------
    ConfigError
        For a scheme a manifest cannot be written to.
    StoreError
        If the target cannot be written (a file where a folder should be, no permission, an
        unreachable S3 endpoint, ...); the message names ``url``.
    """
    protocol = _output_protocol(url)
    check_manifest_output(url)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    try:
        if protocol == "file":
            path = local_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                tmp.write_bytes(buffer.getvalue())
                os.replace(tmp, path)  # readers never see half a manifest
            finally:
                tmp.unlink(missing_ok=True)
        else:
            filesystem(protocol, storage_options).pipe_file(url, buffer.getvalue())
    except StarskopeError:
        raise
    except Exception as exc:
        hint = (
            "check that its folder can be made and written"
            if protocol == "file"
            else "check the bucket, the endpoint (AWS_ENDPOINT_URL_S3) and the credentials"
        )
        raise StoreError(
            f"cannot write the manifest {url}: {type(exc).__name__}: {one_line(exc, 300)}; {hint}"
        ) from exc


def read_manifest(url: str, storage_options: SourceOptions = None) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest` and validate it
    (:func:`validate_manifest`).

    A manifest is trusted input: the workers fetch every URL it names, so it can make them
    read any local file or any host they can reach (``s3://``, ``http(s)://``). Take
    manifests only from people and places you trust, as you would a script.

    Parameters
    ----------
    url : str
        Local path, ``file://``, ``s3://`` or ``http(s)://`` URL of the Parquet file.
    storage_options : StorageConfig or mapping, optional
        A :class:`~starskope_dask.config.StorageConfig` gives each protocol its own options
        (S3 credentials and endpoint, HTTP timeouts); a mapping is fsspec options for an
        ``s3://`` manifest (ignored for other protocols).

    Returns
    -------
    DataFrame
        The manifest, rows that repeat an earlier row's URL dropped (with a warning).

    Raises
    ------
    ConfigError
        If the manifest is missing, is not Parquet, or fails :func:`validate_manifest`.
    StoreError
        If it exists but cannot be fetched (permissions, a server that is down).
    """
    try:
        protocol = check_protocol(url)
    except UnsupportedSchemeError as exc:
        raise ConfigError(f"manifest {url}: {exc.problem}; {exc.hint}") from exc
    if protocol == "file" and local_path(url).is_dir():
        raise ConfigError(
            f"manifest {url} is a folder; give the Parquet file `starskope discover -o` wrote"
        )
    if not (storage_options is None or isinstance(storage_options, StorageConfig)):
        # a mapping is S3 options: never hand them to the HTTP filesystem
        storage_options = storage_options if protocol == "s3" else None
    try:
        data = fetch_bytes(url, storage_options)
    except ProductNotFoundError as exc:
        raise ConfigError(
            f"manifest {url} does not exist; make one with `starskope discover`"
        ) from exc
    except ProductError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        raise StoreError(f"cannot read the manifest {url}: {exc.problem}{hint}") from exc
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, TypeError, ...
        raise ConfigError(
            f"manifest {url} cannot be read as Parquet ({type(exc).__name__}: "
            f"{one_line(exc, 300)}); give the file `starskope discover -o` wrote"
        ) from exc
    return validate_manifest(frame, url)


#: The columns that give a manifest row its product URL (the first non-empty one is read).
MANIFEST_URL_COLUMNS = ("s3_uri", "https_url")
_SCHEME = r"^([A-Za-z][A-Za-z0-9+.\-]*):"


def _rows(mask: pd.Series, shown: int = 5) -> str:
    """``rows 3, 7, 9 (and 12 more)`` for the True positions of a boolean Series."""
    where = np.flatnonzero(mask.to_numpy(dtype=bool))
    text = ", ".join(str(i) for i in where[:shown])
    more = f" (and {len(where) - shown} more)" if len(where) > shown else ""
    return f"{'row' if len(where) == 1 else 'rows'} {text}{more}"


def _url_texts(
    frame: pd.DataFrame, column: str, problems: list[str]
) -> tuple[pd.Series, pd.Series]:
    """A URL column as strings ('' where empty), and where it holds something not a string."""
    if column not in frame:
        blank = pd.Series([""] * len(frame), dtype=object)
        return blank, pd.Series(np.zeros(len(frame), dtype=bool))
    values = frame[column].reset_index(drop=True).astype(object)
    missing = values.isna()
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        is_text = ~missing  # the usual case, decided without a look at each value
    else:
        is_text = values.map(lambda v: isinstance(v, str)).astype(bool)
    wrong = ~missing & ~is_text
    if wrong.any():
        first = values[wrong.to_numpy()].iloc[0]
        problems.append(
            f"{_rows(wrong)}: {column} is not a string (e.g. {type(first).__name__} "
            f"{str(first)[:40]!r})"
        )
    return values.where(is_text, "").astype(str), wrong


def _bad_schemes(text: pd.Series, filled: pd.Series, column: str, problems: list[str]) -> None:
    """Describe the URLs whose scheme :func:`check_protocol` refuses."""
    common = text.str.startswith(("s3://", "https://", "http://", "file://", "/"))
    filled = filled & ~common.astype(bool)  # the rest is rare: look closer
    if not filled.any():
        return
    schemes = text.where(filled, "").str.extract(_SCHEME, expand=False).str.lower()
    windows = text.str[1:3] == ":\\"  # C:\path is a local path
    for scheme in schemes[filled].dropna().unique():
        rows = filled & (schemes == scheme) & ~(windows if len(scheme) == 1 else False)
        if not rows.any():
            continue
        example = str(text[rows.to_numpy()].iloc[0])
        try:
            check_protocol(example)
        except UnsupportedSchemeError as exc:
            problems.append(f"{_rows(rows)}: {column} {example[:80]!r}: {exc.problem} ({exc.hint})")


def validate_manifest(frame: pd.DataFrame, url: str = "manifest") -> pd.DataFrame:
    """Check a manifest's schema before anything is fetched.

    Every row needs a product URL: ``s3_uri``, else ``https_url`` (a string, no surrounding
    spaces, a scheme starskope reads: a local path, ``file://``, ``s3://``, ``http(s)://``).
    Rows that repeat an earlier row's URL are dropped with a warning. Row numbers in messages
    count from 0.

    Parameters
    ----------
    frame : DataFrame
        The manifest as read.
    url : str
        Its URL, for messages.

    Returns
    -------
    DataFrame
        ``frame`` without repeated URLs (index reset).

    Raises
    ------
    ConfigError
        For a manifest with no URL column, no rows, or rows without a usable URL; the message
        names the manifest, the first rows and what is wrong with them.
    """
    fix = "fix the manifest or make it again with `starskope discover`"
    if not any(column in frame for column in MANIFEST_URL_COLUMNS):
        columns = list(frame)[:20]
        raise ConfigError(f"manifest {url} has no s3_uri or https_url column ({columns}); {fix}")
    if len(frame) == 0:
        raise ConfigError(f"manifest {url} holds no products (0 rows); nothing to ingest; {fix}")
    problems: list[str] = []
    texts: dict[str, pd.Series] = {}
    unusable = pd.Series(np.zeros(len(frame), dtype=bool))
    for column in MANIFEST_URL_COLUMNS:
        texts[column], wrong = _url_texts(frame, column, problems)
        unusable |= wrong
    stripped = {column: text.str.strip() for column, text in texts.items()}
    filled = {column: text != "" for column, text in stripped.items()}
    blank = ~filled["s3_uri"] & ~filled["https_url"] & ~unusable
    if blank.any():
        problems.append(f"{_rows(blank)}: no URL (s3_uri and https_url both empty)")
    for column, text in texts.items():
        padded = filled[column] & (text != stripped[column])
        if padded.any():
            example = str(text[padded.to_numpy()].iloc[0])
            problems.append(f"{_rows(padded)}: {column} {example[:80]!r} has spaces around it")
        _bad_schemes(text, filled[column], column, problems)
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise ConfigError(f"manifest {url} has unusable rows (counting from 0): {shown}; {fix}")
    chosen = texts["s3_uri"].where(filled["s3_uri"], texts["https_url"])
    repeated = chosen.duplicated(keep="first")
    if repeated.any():
        logger.warning(
            "manifest %s: %s repeat the URL of an earlier row; each product is read once",
            url,
            _rows(repeated),
        )
        frame = frame.loc[~repeated.to_numpy()]
    return frame.reset_index(drop=True)


def product_urls(frame: pd.DataFrame) -> list[str]:
    """The URL to read for each manifest row: the S3 URI, else the HTTPS URL ('' for none)."""
    columns = []
    for column in MANIFEST_URL_COLUMNS:
        if column in frame:
            values = frame[column].astype(object)
            columns.append([v if isinstance(v, str) and v.strip() else "" for v in values])
        else:
            columns.append([""] * len(frame))
    return [a or b for a, b in zip(*columns, strict=True)]


# ------------------------------------------------------------------- archive-native


def _strip(url: str) -> tuple[Any, str, str]:
    protocol = url_protocol(url)
    if protocol == "file":
        root = str(local_path(url)).rstrip("/")
        return filesystem("file"), root, ""
    return filesystem(protocol, None), url.split("://", 1)[1].rstrip("/"), f"{protocol}://"


def list_archive(prefix_url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """List every light-curve product under a prefix of the archive (bulk discovery).

    Parameters
    ----------
    prefix_url : str
        e.g. ``s3://stpubdata/k2/public/lightcurves/c3/`` or a local folder holding the layout.
    storage_options : mapping, optional
        fsspec options (anonymous and ``AWS_ENDPOINT_URL_S3`` by default).

    Raises
    ------
    ArchiveError
        If the prefix cannot be listed.
    TargetNotFoundError
        If it holds no light-curve product.
    """
    protocol = url_protocol(prefix_url)
    fs = filesystem(protocol, storage_options) if protocol != "file" else filesystem("file")
    root = str(local_path(prefix_url)) if protocol == "file" else prefix_url.split("://", 1)[1]
    scheme = "" if protocol == "file" else f"{protocol}://"
    try:
        found = fs.find(root.rstrip("/"), detail=True)
    except FileNotFoundError as exc:
        raise TargetNotFoundError(f"nothing at {prefix_url}; check the prefix") from exc
    except Exception as exc:
        raise ArchiveError(
            f"cannot list {prefix_url}: {type(exc).__name__}: {exc}; check the endpoint "
            "(AWS_ENDPOINT_URL_S3) and the network"
        ) from exc
    rows = []
    for path, info in sorted(found.items()):
        facts = parse_product_key(path)
        if facts is None:
            continue
        uri = f"{scheme}{path}"
        rows.append(
            {
                **facts,
                "s3_uri": uri,
                "https_url": https_url(uri),
                "size": info.get("size"),
                "source": "archive-listing",
            }
        )
    if not rows:
        raise TargetNotFoundError(f"no light-curve products under {prefix_url}")
    return manifest_frame(rows)


def star_directories(mission: str, catalogue_id: int, segments: Sequence[str]) -> list[str]:
    """Bucket-relative folders that hold a star's products in the public layout.

    Kepler: one folder per star. K2 and TESS: one per campaign or sector folder in
    ``segments`` (``c4``, ``s0014``, ...): K2 folders hold a thousand EPIC IDs' files, TESS
    folders one TIC's, so a K2 folder listed once serves every requested star in it.
    """
    if mission == "Kepler":
        return [star_folder(mission, catalogue_id)]
    return [star_folder(mission, catalogue_id, segment) for segment in segments]


def discover_ids(
    ids: Sequence[tuple[str, int]],
    archive: str = PUBLIC_ARCHIVE,
    storage_options: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 32,
) -> tuple[pd.DataFrame, list[str]]:
    """Archive-native discovery: the products of catalogue IDs, from the key layout alone.

    The campaign and sector folders are listed once; then every folder that can hold a
    requested star's products is listed once (``concurrency`` listings in flight), however
    many requested stars share it. No MAST call.

    Parameters
    ----------
    ids : sequence of (mission, id)
        e.g. ``[("Kepler", 10666592), ("TESS", 424865156)]``.
    archive : str
        Bucket URL (or local folder) holding the public layout.
    storage_options : mapping, optional
        fsspec options.
    concurrency : int
        Listings in flight at once.

    Returns
    -------
    manifest : DataFrame
    warnings : list of str
        One message per ID with no products (the others still land in the manifest).
    """
    protocol = url_protocol(archive)
    fs = filesystem(protocol, storage_options) if protocol != "file" else filesystem("file")
    scheme = "" if protocol == "file" else f"{protocol}://"
    root = (str(local_path(archive)) if protocol == "file" else archive.split("://", 1)[1]).rstrip(
        "/"
    )
    messages: list[str] = []

    def listing(folder: str) -> tuple[str, list[str], str | None]:
        try:
            return folder, list(fs.ls(f"{root}/{folder}", detail=False)), None
        except FileNotFoundError:
            return folder, [], None
        except Exception as exc:
            return folder, [], f"cannot list {scheme}{root}/{folder}: {type(exc).__name__}: {exc}"

    segments: dict[str, list[str]] = {}
    for mission, folder in SEGMENT_FOLDERS.items():
        if any(m == mission for m, _ in ids):
            _, entries, error = listing(folder)
            if error:
                messages.append(error)
            segments[mission] = sorted(
                name
                for name in (e.rstrip("/").rsplit("/", 1)[-1] for e in entries)
                if re.fullmatch(r"[cs]\d+", name)
            )
    folders: dict[str, list[tuple[str, int]]] = {}
    for mission, number in dict.fromkeys(ids):
        for folder in star_directories(mission, number, segments.get(mission, [])):
            folders.setdefault(folder, []).append((mission, number))
    found: dict[tuple[str, int], list[str]] = {item: [] for item in ids}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for folder, entries, error in pool.map(listing, sorted(folders)):
            if error:
                names = [mission_id_name(m, n) for m, n in folders[folder]]
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                messages.append(f"{', '.join(names[:3])}{more}: {error}")
                continue
            wanted = dict.fromkeys(folders[folder])
            for entry in entries:
                facts = parse_product_key(entry)
                if facts is None:
                    continue
                key = (
                    facts["mission"],
                    facts[{"Kepler": "kic", "K2": "epic", "TESS": "tic"}[facts["mission"]]],
                )
                if key in wanted:
                    found[key].append(entry)
    rows = []
    for (mission, number), paths in found.items():
        if not paths:
            messages.append(
                f"{mission_id_name(mission, number)}: no light-curve products in {archive}"
            )
        for path in sorted(paths):
            uri = f"{scheme}{path}"
            rows.append(
                {
                    **(parse_product_key(path) or {}),
                    "s3_uri": uri,
                    "https_url": https_url(uri),
                    "source": "archive-layout",
                }
            )
    for message in messages:
        logger.info("%s", message)
    return manifest_frame(rows), messages


_ID_TARGET = re.compile(r"^\s*(KIC|EPIC|TIC)\s*(\d+)\s*$", re.IGNORECASE)


def parse_id_target(target: str) -> tuple[str, int] | None:
    """``"KIC 10666592"`` → ``("Kepler", 10666592)``; ``None`` for other targets."""
    match = _ID_TARGET.match(target)
    if match is None:
        return None
    mission = {prefix: m for m, prefix in _ID_PREFIX.items()}[match.group(1).upper()]
    return mission, int(match.group(2))


def check_mission_names(missions: Sequence[str]) -> tuple[str, ...]:
    """Normalise mission names given on the command line (``kepler`` → ``Kepler``)."""
    canonical = {m.lower(): m for m in MISSIONS}
    out = []
    for mission in missions:
        if mission.lower() not in canonical:
            raise ConfigError(f"unknown mission {mission!r}; use kepler, k2 or tess")
        out.append(canonical[mission.lower()])
    return tuple(out)


# ------------------------------------------------------------------------------- targets


@dataclasses.dataclass(frozen=True)
class Target:
    """One thing a user asks for.

    Attributes
    ----------
    text : str
        As given (it names the target in warnings and in the manifest's ``target`` column).
    kind : str
        ``id`` (KIC/EPIC/TIC n), ``cone`` (ra,dec[,radius]), ``hosts`` (confirmed planet
        hosts of a mission) or ``name`` (resolved by MAST).
    mission : str or None
        For ``id`` and ``hosts``.
    number : int or None
        Catalogue ID for ``id``.
    ra, dec, radius_arcsec : float or None
        For ``cone``.
    """

    text: str
    kind: str
    mission: str | None = None
    number: int | None = None
    ra: float | None = None
    dec: float | None = None
    radius_arcsec: float | None = None


_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_CONE = re.compile(rf"^\s*{_NUMBER}\s*,\s*{_NUMBER}\s*(?:,\s*{_NUMBER})?\s*$")
_LOOKS_LIKE_CONE = re.compile(r"^\s*[-+.\d][^,]*,")
_HOSTS = re.compile(r"^\s*(?:planet-)?hosts\s*:\s*(kepler|k2|tess)\s*$", re.IGNORECASE)
#: Largest cone search radius (arcsec): one degree.
MAX_CONE_RADIUS_ARCSEC = 3600.0


def check_cone_radius(radius_arcsec: Any, what: str = "--radius") -> float:
    """A cone search radius in ``(0, MAX_CONE_RADIUS_ARCSEC]`` arcsec, as a float.

    Raises
    ------
    ConfigError
        For anything else (zero, negative, NaN, infinite, too large, not a number).
    """
    try:
        radius = float(radius_arcsec)
    except (TypeError, ValueError):
        radius = math.nan
    if isinstance(radius_arcsec, bool) or not 0 < radius <= MAX_CONE_RADIUS_ARCSEC:
        raise ConfigError(
            f"{what}: the search radius must be in (0, {MAX_CONE_RADIUS_ARCSEC:g}] arcsec, "
            f"not {radius_arcsec!r}"
        )
    return radius


def parse_target(text: str) -> Target:
    """Parse ``KIC n``, ``EPIC n``, ``TIC n``, ``ra,dec[,radius_arcsec]``,
    ``hosts:kepler|k2|tess`` or an object name.

    Raises
    ------
    ConfigError
        For an empty target, coordinates out of range, a radius outside
        ``(0, MAX_CONE_RADIUS_ARCSEC]`` arcsec, or a target that starts like coordinates
        but is not ``ra,dec[,radius_arcsec]``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"empty target {text!r}; give KIC n, EPIC n, TIC n, RA,DEC or a name")
    parsed = parse_id_target(text)
    if parsed is not None:
        return Target(text.strip(), "id", mission=parsed[0], number=parsed[1])
    if match := _HOSTS.match(text):
        return Target(text.strip(), "hosts", mission=check_mission_names([match.group(1)])[0])
    if match := _CONE.match(text):
        ra, dec = float(match.group(1)), float(match.group(2))
        if not (0 <= ra < 360 and -90 <= dec <= 90):
            raise ConfigError(f"{text!r}: RA must be in [0, 360) and Dec in [-90, 90] degrees")
        radius = (
            check_cone_radius(float(match.group(3)), f"target {text.strip()!r}")
            if match.group(3)
            else None
        )
        return Target(text.strip(), "cone", ra=ra, dec=dec, radius_arcsec=radius)
    if _LOOKS_LIKE_CONE.match(text):
        raise ConfigError(
            f"target {text.strip()!r} is not a cone: give RA,DEC[,RADIUS_ARCSEC] as numbers "
            "(degrees, degrees, arcsec), e.g. 292.25,47.97,5"
        )
    return Target(text.strip(), "name")


def read_targets_file(path: str) -> list[str]:
    """Targets from a file, one per line (``#`` comments and blank lines skipped)."""
    try:
        with open(path) as fh:
            lines = [line.split("#", 1)[0].strip() for line in fh]
    except OSError as exc:
        raise ConfigError(f"cannot read the targets file {path}: {exc}") from exc
    return [line for line in lines if line]


# ---------------------------------------------------------------------------- via MAST

DEFAULT_PRODUCTS = (
    "kepler-lc",
    "kepler-sc",
    "k2-lc",
    "k2-sc",
    "tess-spoc-2min",
    "tess-spoc-20s",
)


def mast_target_name(mission: str, number: int) -> str:
    """MAST's ``target_name`` of a star's mission products (``kplr010666592``, ...)."""
    if mission == "Kepler":
        return f"kplr{number:09d}"
    if mission == "K2":
        return f"ktwo{number:09d}"
    return str(number)


def _wanted(product_type: str | None, products: Sequence[str]) -> bool:
    return hlsp.matches(product_type, products)


def _wants_hlsp(products: Sequence[str]) -> bool:
    return any(
        p == "hlsp" or (hlsp.known_product(p) and p not in DEFAULT_PRODUCTS) for p in products
    )


def _wants_mission_products(products: Sequence[str]) -> bool:
    return any(p in DEFAULT_PRODUCTS for p in products)


def hlsp_target_names(mission: str, number: int) -> list[str]:
    """The ``target_name`` spellings of a star in MAST's HLSP collection.

    HLSP observations are not named as the mission's (``kplr010666592``) but as their teams
    wrote them: ``EPIC 211117077``, ``TIC 424865156``, the bare number, or the mission's own
    name; all of them are asked for.
    """
    prefix = _ID_PREFIX[mission]
    return sorted({f"{prefix} {number}", str(number), mast_target_name(mission, number)})


def planet_host_ids(client: MastClient, mission: str) -> list[tuple[str, int]]:
    """Catalogue IDs of a mission's confirmed planet hosts (NASA Exoplanet Archive).

    Kepler hosts come from ``keplernames`` (KIC), K2 hosts from ``k2names`` (EPIC), TESS
    hosts from ``pscomppars`` (TIC of planets discovered by TESS).
    """
    column = PLANET_HOST_TABLES[mission][1]
    ids: set[int] = set()
    for row in client.planet_hosts(mission):
        match = re.search(r"(\d+)", str(row.get(column) or ""))
        if match:
            ids.add(int(match.group(1)))
    return [(mission, number) for number in sorted(ids)]


@dataclasses.dataclass(frozen=True)
class _Query:
    criteria: dict[str, Any]
    what: str
    labels: dict[str, str]  # MAST target_name → target text ("" key: one target for all)


def _queries(
    targets: Sequence[Target],
    client: MastClient,
    missions: tuple[str, ...],
    products: Sequence[str],
    radius_arcsec: float,
    warnings: list[str],
) -> list[_Query]:
    queries: list[_Query] = []
    ids: dict[str, list[Target]] = {}
    for target in targets:
        if target.kind == "hosts":
            for mission, number in planet_host_ids(client, str(target.mission)):
                text = f"{target.text}:{mission_id_name(mission, number)}"
                ids.setdefault(mission, []).append(Target(text, "id", mission, number))
        elif target.kind == "id":
            if target.mission in missions:
                ids.setdefault(str(target.mission), []).append(target)
        else:
            if target.kind == "name":
                try:
                    ra, dec = client.resolve_name(target.text)
                except DiscoveryError as exc:
                    warnings.append(str(exc))
                    continue
            else:
                ra, dec = float(target.ra or 0.0), float(target.dec or 0.0)
            radius = target.radius_arcsec or radius_arcsec
            # All three missions, whatever is kept: one cached answer serves every filter.
            collections = list(MISSIONS) + (["HLSP"] if _wants_hlsp(products) else [])
            criteria = {
                "coordinates": f"{ra:.6f} {dec:.6f}",
                "radius": f"{radius / 3600:.6f} deg",
                "obs_collection": collections,
                "dataproduct_type": "timeseries",
            }
            queries.append(_Query(criteria, target.text, {"": target.text}))
    batch_size = client.settings.query_batch
    for mission, mission_targets in sorted(ids.items()):
        for first in range(0, len(mission_targets), batch_size):
            batch = mission_targets[first : first + batch_size]
            what = f"{mission} IDs {batch[0].text} .. {batch[-1].text} ({len(batch)})"
            if _wants_mission_products(products):
                labels = {mast_target_name(mission, int(t.number or 0)): t.text for t in batch}
                criteria = {
                    "obs_collection": mission,
                    "dataproduct_type": "timeseries",
                    "target_name": sorted(labels),
                }
                queries.append(_Query(criteria, what, labels))
            if _wants_hlsp(products):
                # HLSP records do not share the mission's target names: ask the HLSP
                # collection for every spelling the teams use.
                labels = {
                    name: t.text
                    for t in batch
                    for name in hlsp_target_names(mission, int(t.number or 0))
                }
                criteria = {
                    "obs_collection": "HLSP",
                    "dataproduct_type": "timeseries",
                    "target_name": sorted(labels),
                }
                queries.append(_Query(criteria, f"HLSPs of {what}", labels))
    return queries


def discover_mast(
    targets: Sequence[Target],
    client: MastClient,
    *,
    missions: Sequence[str] = MISSIONS,
    products: Sequence[str] = DEFAULT_PRODUCTS,
    radius_arcsec: float = 10.0,
) -> tuple[pd.DataFrame, list[str]]:
    """Discovery through MAST: targets → observations → products → cloud URIs, batched.

    Catalogue IDs are asked for ``client.settings.query_batch`` at a time (one
    ``query_criteria`` per mission and batch); names are resolved and, like cones, searched
    by position; product lists are fetched ``product_batch`` observations at a time and
    de-duplicated by file name; mission products get their S3 URI from the public key
    layout, other products (HLSPs) from MAST's batched path lookup. At most
    ``client.settings.concurrency`` calls are in flight; every answer is cached.

    Returns
    -------
    manifest : DataFrame
    warnings : list of str
        One per target that failed or found nothing (the others still land in the manifest).
    """
    missions = tuple(missions)
    warnings: list[str] = []
    queries = _queries(targets, client, missions, products, radius_arcsec, warnings)

    by_obsid: dict[str, tuple[dict[str, Any], str]] = {}  # obsid → observation, target text
    with ThreadPoolExecutor(max_workers=client.settings.concurrency) as pool:
        answers = [(q, pool.submit(client.query_criteria, q.criteria, q.what)) for q in queries]
        for query, answer in answers:
            try:
                observations = answer.result()
            except DiscoveryError as exc:
                warnings.append(str(exc))
                continue
            if not observations:
                warnings.append(f"{query.what}: MAST has no time-series observations")
            for obs in observations:
                text = query.labels.get("") or query.labels.get(str(obs.get("target_name")), "")
                by_obsid.setdefault(str(obs.get("obsid")), (obs, text))

    obsids = sorted(by_obsid)
    step = client.settings.product_batch
    batches = [obsids[i : i + step] for i in range(0, len(obsids), step)]
    products_by_name: dict[str, dict[str, Any]] = {}  # de-duplicated by file name
    with ThreadPoolExecutor(max_workers=client.settings.concurrency) as pool:
        lists = [
            pool.submit(client.product_list, batch, f"products of {len(batch)} observations")
            for batch in batches
        ]
        for product_list in lists:
            try:
                rows = product_list.result()
            except DiscoveryError as exc:
                warnings.append(str(exc))
                continue
            for product in rows:
                name = str(product.get("productFilename") or "")
                if name and _wanted(product_type_of(name), products):
                    products_by_name.setdefault(name, product)

    unmapped = sorted(
        {str(p["dataURI"]) for n, p in products_by_name.items() if layout_key(n) is None}
    )
    cloud_paths: dict[str, str | None] = {}
    for first in range(0, len(unmapped), 50):
        chunk = unmapped[first : first + 50]
        try:
            paths = client.relative_paths(chunk, f"cloud paths of {len(chunk)} HLSPs")
            cloud_paths.update(zip(chunk, paths, strict=True))
        except DiscoveryError as exc:
            warnings.append(str(exc))

    rows_out = []
    for name, product in sorted(products_by_name.items()):
        parent = str(product.get("parent_obsid") or product.get("obsID"))
        obs, text = by_obsid.get(parent) or by_obsid.get(str(product.get("obsID")), ({}, ""))
        data_uri = str(product.get("dataURI") or "")
        key = layout_key(name) or cloud_paths.get(data_uri)
        facts = parse_product_key(name) or _hlsp_facts(name, obs)
        if facts["mission"] not in missions:
            continue
        rows_out.append(
            {
                **facts,
                "target": text or facts.get("target", ""),
                "s3_uri": f"{PUBLIC_ARCHIVE}/{key}" if key else "",
                "https_url": f"{MAST_DOWNLOAD}{data_uri}" if data_uri else "",
                "size": product.get("size"),
                "ra": obs.get("s_ra"),
                "dec": obs.get("s_dec"),
                "source": "mast",
            }
        )
    found = {row["target"] for row in rows_out}
    for target in targets:
        if (
            target.kind in ("name", "cone")
            and target.text not in found
            and not any(target.text in w for w in warnings)
        ):
            warnings.append(f"{target.text}: no {', '.join(products)} products at MAST")
    for message in warnings:
        logger.info("%s", message)
    return manifest_frame(rows_out), warnings


def _hlsp_facts(name: str, observation: Mapping[str, Any]) -> dict[str, Any]:
    """Mission, star ID and segment of a high-level science product.

    A registered product's file name says them as its :class:`~starskope_dask.hlsp.HlspFormat`
    describes (a Gaia-named product, such as CDIPS or TGLC, takes its TIC ID from the MAST
    observation's ``target_name`` instead); other HLSPs are guessed from the name's fields
    and its longest number.
    """
    registered = hlsp.file_facts(name)
    mission = str(registered["mission"])
    number = registered["number"]
    if not mission:
        parts = name.lower().split("_")
        if "tess" in parts or "tess" in parts[1]:
            mission = "TESS"
        elif "k2" in parts or "k2" in parts[1]:
            mission = "K2"
        elif "kepler" in parts:
            mission = "Kepler"
        else:
            mission = str(observation.get("obs_collection") or "")
        digits = re.search(r"(\d{7,})", name)
        number = int(digits.group(1)) if digits else None
    elif number is None:
        found = re.fullmatch(
            r"\s*(?:(?:TIC|EPIC|KIC)\s*)?(\d+)\s*", str(observation.get("target_name") or "")
        )
        number = int(found.group(1)) if found else None
    facts: dict[str, Any] = {"mission": mission, "product_type": product_type_of(name)}
    if registered["segment"] is not None:
        facts["segment"] = registered["segment"]
    if number and mission in _ID_PREFIX:
        facts[_ID_COLUMN[mission]] = number
        facts["target"] = mission_id_name(mission, number)
    return facts


# ------------------------------------------------------------------------------ the API


def discover(
    targets: Sequence[str] = (),
    *,
    via: str = "auto",
    archive: str = PUBLIC_ARCHIVE,
    prefixes: Sequence[str] = (),
    missions: Sequence[str] | None = None,
    products: Sequence[str] | None = None,
    radius_arcsec: float = 10.0,
    mast: MastClient | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Targets to a manifest of light-curve products.

    Parameters
    ----------
    targets : sequence of str
        ``KIC n``, ``EPIC n``, ``TIC n``, ``ra,dec[,radius_arcsec]``, ``hosts:kepler|k2|tess``
        (confirmed planet hosts, NASA Exoplanet Archive) or names MAST resolves (``HAT-P-7``).
    via : {"auto", "mast", "archive"}
        ``auto``: catalogue IDs (and planet hosts' IDs) are found in the bucket itself from
        the public key layout — no MAST call — names and cones through MAST. ``mast``:
        everything through MAST. ``archive``: no MAST call at all (names and cones are
        reported as unsupported).
    archive : str
        Bucket (or local folder) with the public layout, for archive-native discovery.
    prefixes : sequence of str
        Prefixes to list in bulk (``s3://stpubdata/k2/public/lightcurves/c3/``).
    missions : sequence of str, optional
        Keep these missions only.
    products : sequence of str, optional
        Product types to keep (``kepler-lc``, ``tess-spoc-20s``, ``hlsp`` for every HLSP, ...);
        by default every mission pipeline light curve.
    radius_arcsec : float
        Search radius for names and cones without their own.
    mast : MastClient, optional
        Cached MAST access (default settings when needed and not given).
    storage_options : mapping, optional
        fsspec options for the archive (anonymous, ``AWS_ENDPOINT_URL_S3`` by default).

    Returns
    -------
    manifest : DataFrame
    warnings : list of str
        One per target or prefix that failed or found nothing; the rest is in the manifest.

    Raises
    ------
    ConfigError
        For a malformed target or an unknown mission, product type or ``via``.
    """
    if via not in ("auto", "mast", "archive"):
        raise ConfigError(f"via must be auto, mast or archive; got {via!r}")
    wanted_missions = check_mission_names(missions) if missions else MISSIONS
    wanted_products = tuple(products) if products else DEFAULT_PRODUCTS
    known = set(DEFAULT_PRODUCTS) | {"hlsp"}
    unknown = [p for p in wanted_products if p not in known and not hlsp.known_product(p)]
    if unknown:
        raise ConfigError(
            f"unknown product type(s) {unknown}; use {sorted(known)} or hlsp-NAME "
            f"({', '.join(sorted(hlsp.BY_NAME))})"
        )
    parsed = [parse_target(t) for t in targets]
    frames: list[pd.DataFrame] = []
    warnings: list[str] = []
    client = mast or MastClient()  # no I/O until a call needs MAST
    native = [t for t in parsed if t.kind == "id"] if via != "mast" else []
    if via == "auto":
        for target in [t for t in parsed if t.kind == "hosts"]:
            try:
                native += [
                    Target(f"{target.text}:{mission_id_name(m, n)}", "id", m, n)
                    for m, n in planet_host_ids(client, str(target.mission))
                ]
            except DiscoveryError as exc:
                warnings.append(f"{target.text}: {exc}")
    if via == "archive":
        through_mast: list[Target] = []
        warnings += [
            f"{t.text}: a {t.kind} needs MAST (use --via auto or mast)"
            for t in parsed
            if t.kind != "id"
        ]
    else:
        through_mast = [
            t for t in parsed if t not in native and (via == "mast" or t.kind in ("name", "cone"))
        ]
    native = [t for t in native if t.mission in wanted_missions]
    hlsp_products = [p for p in wanted_products if p not in DEFAULT_PRODUCTS]
    if native and hlsp_products and via == "archive":
        warnings.append(
            "HLSPs are found through MAST, not the bucket's layout: use --via auto or mast "
            f"for {', '.join(hlsp_products)}"
        )
    elif native and hlsp_products:
        # The bucket's layout knows mission products only: HLSPs of catalogue IDs come from
        # MAST's HLSP collection, asked by the IDs themselves (no position needed).
        frame, messages = discover_mast(
            native,
            client,
            missions=wanted_missions,
            products=hlsp_products,
            radius_arcsec=radius_arcsec,
        )
        frames.append(frame)
        warnings += messages
    if native and _wants_mission_products(wanted_products):
        frame, messages = discover_ids(
            [(str(t.mission), int(t.number or 0)) for t in native], archive, storage_options
        )
        labels = {(str(t.mission), int(t.number or 0)): t.text for t in native}
        if len(frame):
            frame["target"] = [
                labels.get((m, int(i)), frame_target)
                for m, i, frame_target in zip(
                    frame["mission"], _catalogue_ids(frame), frame["target"], strict=True
                )
            ]
        frames.append(frame)
        warnings += messages
    if through_mast:
        frame, messages = discover_mast(
            through_mast,
            client,
            missions=wanted_missions,
            products=wanted_products,
            radius_arcsec=radius_arcsec,
        )
        frames.append(frame)
        warnings += messages
    for prefix in prefixes:
        try:
            frames.append(list_archive(prefix, storage_options))
        except DiscoveryError as exc:
            warnings.append(str(exc))
    rows = pd.concat(frames).to_dict("records") if frames else []
    manifest = manifest_frame(rows)
    keep = manifest["mission"].isin(wanted_missions).to_numpy() & np.array(
        [_wanted(p, wanted_products) for p in manifest["product_type"]], dtype=bool
    )
    return manifest.loc[keep].reset_index(drop=True), warnings


def _catalogue_ids(frame: pd.DataFrame) -> list[int]:
    ids = frame[["kic", "epic", "tic"]].astype("Float64").fillna(-1).max(axis=1)
    return [int(v) for v in ids]


def discover_with_config(
    config: DiscoverConfig, storage: StorageConfig
) -> tuple[pd.DataFrame, list[str]]:
    """The discover stage of a config (``starskope discover``'s options, or the ``discover``
    section of a pipeline): targets (and a targets file) to a manifest, or, with no targets
    and no prefixes, every product of ``config.archive``.

    Returns
    -------
    manifest, problems
        The manifest frame and one line per target that found nothing or failed.

    Raises
    ------
    ConfigError
        For a bad target or targets file.
    ArchiveError, StoreError
        If the archive or MAST cannot be reached.
    """
    from pathlib import Path

    from starskope_dask.mast import MastSettings, default_cache_dir

    targets = list(config.targets)
    if config.targets_file:
        targets += read_targets_file(config.targets_file)
    options = storage.storage_options()
    if not targets and not config.prefixes:
        return list_archive(config.archive, options), []
    settings = MastSettings(
        cache_dir=Path(config.mast_cache) if config.mast_cache else default_cache_dir(),
        offline=config.offline,
    )
    return discover(
        targets,
        via=config.via,
        archive=config.archive,
        prefixes=config.prefixes,
        missions=config.missions or None,
        products=config.products or None,
        radius_arcsec=config.radius_arcsec,
        mast=MastClient(settings),
        storage_options=options,
    )
