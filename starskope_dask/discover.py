"""The ``discover`` stage: targets to a manifest of products (cloud URIs).

Archive-native discovery needs no MAST call: catalogue IDs map onto the public key layout of
``s3://stpubdata`` (the star's prefix is listed), and whole prefixes (a K2 campaign, a TESS
sector) are listed in bulk. Object stores are reached with anonymous access by default and
the endpoint from ``AWS_ENDPOINT_URL_S3``, so the same call works against a local S3 server.

The manifest is Parquet, one row per product, columns ``MANIFEST_COLUMNS``, sorted by
mission, star IDs, segment and URI so that it is deterministic.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from starskope_dask.errors import ArchiveError, ConfigError, TargetNotFoundError
from starskope_dask.fetch import filesystem, local_path, url_protocol
from starskope_dask.records import MANIFEST_COLUMNS, MISSIONS

logger = logging.getLogger(__name__)

PUBLIC_ARCHIVE = "s3://stpubdata"
MAST_HTTPS = "https://archive.stsci.edu/missions"

_KEPLER_KEY = re.compile(r"kplr(\d{9})-(\d{13})_(llc|slc)\.fits(\.gz)?$")
_K2_KEY = re.compile(r"ktwo(\d{9})-c(\d{2,3})_(llc|slc)\.fits(\.gz)?$")
_TESS_KEY = re.compile(r"tess(\d{13})-s(\d{4})-(\d{16})-(\d{4})-([a-z])_(lc|fast-lc)\.fits(\.gz)?$")
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


def parse_product_key(uri: str) -> dict[str, Any] | None:
    """Mission, IDs, segment, cadence and product type from a product's key or file name.

    Returns ``None`` for keys that are not light-curve products (target pixel files, ...).
    """
    name = uri.rsplit("/", 1)[-1]
    if match := _KEPLER_KEY.search(name):
        short = match.group(3) == "slc"
        return {
            "mission": "Kepler",
            "kic": int(match.group(1)),
            "epic": None,
            "tic": None,
            "segment": _KEPLER_QUARTER_OF_STAMP.get(match.group(2), -1),
            "cadence": "short" if short else "long",
            "product_type": "kepler-sc" if short else "kepler-lc",
            "target": f"KIC {int(match.group(1))}",
        }
    if match := _K2_KEY.search(name):
        short = match.group(3) == "slc"
        return {
            "mission": "K2",
            "kic": None,
            "epic": int(match.group(1)),
            "tic": None,
            "segment": int(match.group(2)),
            "cadence": "short" if short else "long",
            "product_type": "k2-sc" if short else "k2-lc",
            "target": f"EPIC {int(match.group(1))}",
        }
    if match := _TESS_KEY.search(name):
        fast = match.group(6) == "fast-lc"
        return {
            "mission": "TESS",
            "kic": None,
            "epic": None,
            "tic": int(match.group(3)),
            "segment": int(match.group(2)),
            "cadence": "20s" if fast else "2min",
            "product_type": "tess-spoc-20s" if fast else "tess-spoc-2min",
            "target": f"TIC {int(match.group(3))}",
        }
    return None


def https_url(s3_uri: str) -> str:
    """MAST's HTTPS download URL for a public-bucket URI (fallback without S3 access)."""
    if not s3_uri.startswith(PUBLIC_ARCHIVE + "/"):
        return ""
    key = s3_uri[len(PUBLIC_ARCHIVE) + 1 :]
    mission, _, rest = key.partition("/public/")
    name = rest.rsplit("/", 1)[-1]
    if mission == "tess":
        return f"https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:TESS/product/{name}"
    return f"{MAST_HTTPS}/{mission}/{rest.replace('lightcurves/', 'lightcurves/', 1)}"


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


def write_manifest(
    frame: pd.DataFrame, url: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write a manifest as Parquet (local or remote)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    if url_protocol(url) == "file":
        path = local_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
    else:
        filesystem(url_protocol(url), storage_options).pipe_file(url, buffer.getvalue())


def read_manifest(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`.

    Raises
    ------
    ConfigError
        If the manifest is missing or lacks the product URI columns.
    """
    try:
        if url_protocol(url) == "file":
            frame = pd.read_parquet(local_path(url))
        else:
            fs = filesystem(url_protocol(url), storage_options)
            frame = pd.read_parquet(io.BytesIO(fs.cat_file(url)))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"manifest {url} does not exist; make one with `starskope discover`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"manifest {url} cannot be read as Parquet: {exc}") from exc
    if "s3_uri" not in frame and "https_url" not in frame:
        raise ConfigError(
            f"manifest {url} has no s3_uri or https_url column; columns: {list(frame)}"
        )
    return frame


def product_urls(frame: pd.DataFrame) -> list[str]:
    """The URL to read for each manifest row: the S3 URI, else the HTTPS URL."""
    s3 = (
        frame["s3_uri"].fillna("").astype(str)
        if "s3_uri" in frame
        else pd.Series([""] * len(frame))
    )
    https = (
        frame["https_url"].fillna("").astype(str)
        if "https_url" in frame
        else pd.Series([""] * len(frame))
    )
    return [a or b for a, b in zip(s3.tolist(), https.tolist(), strict=True)]


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


def star_prefixes(mission: str, catalogue_id: int, archive: str = PUBLIC_ARCHIVE) -> list[str]:
    """Prefixes (or glob patterns) under which a star's products live in the public layout."""
    base = archive.rstrip("/")
    if mission == "Kepler":
        kic9 = f"{catalogue_id:09d}"
        return [f"{base}/kepler/public/lightcurves/{kic9[:4]}/{kic9}/"]
    if mission == "K2":
        sub = f"{catalogue_id // 100000 * 100000}/{catalogue_id % 100000 // 1000 * 1000:05d}"
        return [f"{base}/k2/public/lightcurves/c*/{sub}/ktwo{catalogue_id}-*"]
    tic16 = f"{catalogue_id:016d}"
    return [f"{base}/tess/public/tid/s*/{tic16[0:4]}/{tic16[4:8]}/{tic16[8:12]}/{tic16[12:16]}/"]


def discover_ids(
    ids: Sequence[tuple[str, int]],
    archive: str = PUBLIC_ARCHIVE,
    storage_options: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 16,
) -> tuple[pd.DataFrame, list[str]]:
    """Archive-native discovery: the products of catalogue IDs, from the key layout alone.

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

    def strip(url: str) -> str:
        return str(local_path(url)) if protocol == "file" else url.split("://", 1)[1]

    def find(item: tuple[str, int]) -> tuple[tuple[str, int], list[str], str | None]:
        mission, number = item
        paths: list[str] = []
        try:
            for prefix in star_prefixes(mission, number, archive):
                pattern = strip(prefix)
                if "*" in pattern:
                    paths += fs.glob(pattern.rstrip("/") + ("/*" if pattern.endswith("/") else ""))
                else:
                    paths += fs.find(pattern.rstrip("/"))
        except FileNotFoundError:
            pass
        except Exception as exc:
            return (
                item,
                [],
                f"{mission} {number}: cannot list the archive ({type(exc).__name__}: {exc})",
            )
        return item, paths, None

    rows, messages = [], []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for (mission, number), paths, error in pool.map(find, ids):
            if error:
                messages.append(error)
                continue
            found = 0
            for path in sorted(paths):
                facts = parse_product_key(path)
                if facts is None or facts["mission"] != mission:
                    continue
                uri = f"{scheme}{path}"
                rows.append(
                    {
                        **facts,
                        "s3_uri": uri,
                        "https_url": https_url(uri),
                        "source": "archive-layout",
                    }
                )
                found += 1
            if not found:
                messages.append(f"{mission} {number}: no light-curve products in {archive}")
    for message in messages:
        logger.warning("%s", message)
    return manifest_frame(rows), messages


_ID_TARGET = re.compile(r"^\s*(KIC|EPIC|TIC)\s*(\d+)\s*$", re.IGNORECASE)


def parse_id_target(target: str) -> tuple[str, int] | None:
    """``"KIC 10666592"`` → ``("Kepler", 10666592)``; ``None`` for other targets."""
    match = _ID_TARGET.match(target)
    if match is None:
        return None
    mission = {"KIC": "Kepler", "EPIC": "K2", "TIC": "TESS"}[match.group(1).upper()]
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
