"""The ``store`` stage: the Zarr v3 cube, its schema, region writes, resume state and failures.

Layout of a store (local path or ``s3://``)::

    STORE/zarr.json, flux/, flux_err/, time/, star/, mission/, kic/, ...   the xarray Dataset
    STORE/_starskope/products.parquet   every manifest product: header facts, star row, state
    STORE/_starskope/stars.parquet      the star table (row = ``star`` index)
    STORE/_starskope/done/chunk-NNNNNN.json   written after a star chunk's data: its products,
                                              failures and bytes; a chunk without one is redone
    STORE/_starskope/lock.json          held by the running ingest
    STORE/_starskope/store.json         says "this is a starskope store": written first

Safety: starskope writes only below the store's URL and deletes only keys it wrote there (the
cube's own arrays, its state files, its temporary files). A target that holds anything else
and no ``_starskope/store.json`` is refused with :class:`NotAStoreError` before anything is
written (:func:`claim_store`). Every state file is written whole or not at all (local: a
temporary file, fsync, rename; S3: one PUT), so a torn write is never mistaken for a finished
one; a state file that cannot be parsed all the same is reported, never trusted.

The Dataset has dims ``mission`` (Kepler, K2, TESS), ``star`` and ``time``; ``flux`` and
``flux_err`` are float32, NaN where there is no data, chunked ``(1, star_chunk, time_chunk)``.
Missions stay apart because their bandpasses differ and K2 campaign 19 overlapped TESS
sector 1-2 in time; ``flux.max("mission")`` (or a mission of choice) gives one series per star.
Empty chunks are never written (Zarr 3 ``write_empty_chunks=False``), so the gaps cost nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from starskope_dask.align import GriddedFlux, grid_times
from starskope_dask.config import GridConfig
from starskope_dask.errors import NotAStoreError, StoreError, StoreLockedError
from starskope_dask.fetch import filesystem, local_path, url_protocol
from starskope_dask.records import MISSIONS

logger = logging.getLogger(__name__)

STATE_DIR = "_starskope"
SCHEMA_VERSION = 1
LOCK_STALE_SECONDS = 120.0
STORE_MARKER = "store.json"
STORE_FORMAT = "starskope-cube"
FEATURES_FORMAT = "starskope-features"
#: The cube's own top-level keys: the only ones outside ``_starskope/`` starskope ever removes.
CUBE_KEYS = (
    "zarr.json",
    "flux",
    "flux_err",
    "time",
    "star",
    "mission",
    "ra",
    "dec",
    "kic",
    "epic",
    "tic",
    "missions",
)
TMP_INFIX = ".tmp-"


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Filter the warnings we know and accept: Zarr 3 on consolidated metadata (we consolidate
    on purpose so that opening a store on S3 is one request), on our ``_starskope`` state
    folder inside the store, and xarray on the int32-encoded time coordinate.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*consolidated.*")
        warnings.filterwarnings("ignore", message=".*is not recognized as a component of a Zarr.*")
        warnings.filterwarnings("ignore", message=".*floating point data as an integer dtype.*")
        yield


# ------------------------------------------------------------------- small file I/O


@contextlib.contextmanager
def store_io(url: str, action: str) -> Iterator[None]:
    """Turn any transport error (OSError, botocore, aiohttp, ...) into a :class:`StoreError`
    naming the URL; missing files and our own errors pass through.
    """
    try:
        yield
    except (FileNotFoundError, StoreError):
        raise
    except Exception as exc:
        raise StoreError(
            f"cannot {action} {url}: {type(exc).__name__}: {exc}; check the store URL, the "
            "endpoint (AWS_ENDPOINT_URL_S3) and the credentials (AWS_ACCESS_KEY_ID/...)"
        ) from exc


def _join(store: str, *parts: str) -> str:
    return "/".join([store.rstrip("/"), *parts])


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    protocol = url_protocol(url)
    if protocol == "file":
        return filesystem("file"), str(local_path(url))
    return filesystem(protocol, storage_options), url


def _write_local_tmp(path: str, data: bytes) -> str:
    """Write ``data`` whole to a fresh temporary file beside ``path`` (fsynced); its name.

    A failure (a full disk) removes the temporary file before raising.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}{TMP_INFIX}{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return tmp


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a file whole or not at all: local files through a temporary file, fsync and
    rename (a full disk leaves the old file, never a torn one); object stores in one PUT.
    """
    with store_io(url, "write"):
        fs, path = _fs(url, storage_options)
        if url_protocol(url) == "file":
            tmp = _write_local_tmp(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
        else:
            fs.pipe_file(path, data)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes | None:
    """Read a small file, or ``None`` when it does not exist."""
    try:
        with store_io(url, "read"):
            fs, path = _fs(url, storage_options)
            data: bytes = fs.cat_file(path)
            return data
    except FileNotFoundError:
        return None


def write_table(
    url: str, table: pd.DataFrame, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write a DataFrame as Parquet."""
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    write_bytes(url, buffer.getvalue(), storage_options)


def read_table(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
    """Read a Parquet table, or ``None`` when it does not exist.

    Raises
    ------
    StoreError
        If the file exists but is not a readable Parquet table (damaged outside starskope:
        its own writes are atomic).
    """
    data = read_bytes(url, storage_options)
    if data is None:
        return None
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise StoreError(
            f"state file {url} is damaged ({len(data)} bytes, not a Parquet table: "
            f"{type(exc).__name__}); move it aside and rerun `starskope ingest` with the same "
            "manifest: it is rebuilt from the staged products without fetching them again"
        ) from exc


def read_json(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read a JSON state file; ``None`` when it does not exist.

    Raises
    ------
    StoreError
        If it exists but does not parse.
    """
    data = read_bytes(url, storage_options)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"state file {url} is damaged ({len(data)} bytes, not JSON)") from exc


# ------------------------------------------------------------------------------- lock


@dataclasses.dataclass(frozen=True)
class Lock:
    """The ingest lock of a store, refreshed by a heartbeat thread while held."""

    url: str
    owner: str
    stop: threading.Event
    storage_options: Mapping[str, Any] | None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"


#: Owners of the locks this process holds now: a lock naming this process that is not
#: among them was left by an ingest that ended without removing it (its store was down).
_HELD_HERE: set[str] = set()


def _lock_is_stale(record: Mapping[str, Any]) -> bool:
    owner = str(record.get("owner", "::"))
    host, pid = owner.split(":")[:2]
    if host == socket.gethostname() and pid == str(os.getpid()):
        return owner not in _HELD_HERE
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            return False
        return False
    return time.time() - float(record.get("heartbeat", 0)) > LOCK_STALE_SECONDS


def _json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object parsed from ``data``, or ``None`` when it is not one (torn, foreign)."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def acquire_lock(store: str, storage_options: Mapping[str, Any] | None = None) -> Lock:
    """Take the store's ingest lock, or raise :class:`StoreLockedError`.

    The lock is written whole or not at all (local: a complete temporary file hard-linked
    into place, which also fails if another run created the lock first; S3: one PUT). A lock
    left by a killed run (its process is gone, or on another host its heartbeat is older than
    two minutes) is taken over with a warning, and so is one that cannot be parsed (torn by
    an earlier version on a full disk): only a complete, live lock stops a run.
    """
    url = _join(store, STATE_DIR, "lock.json")
    owner = _owner()
    existing = read_bytes(url, storage_options)
    if existing is not None:
        record = _json_object(existing)
        if record is None:
            logger.warning(
                "the lock %s is unreadable (%d bytes: torn by a crash or a full disk); "
                "taking it over",
                url,
                len(existing),
            )
        elif not _lock_is_stale(record):
            raise StoreLockedError(
                f"store {store} is being written by another ingest ({record.get('owner')}, "
                f"started {record.get('started')}); wait for it to finish, or remove {url} if "
                "that run is dead"
            )
        else:
            logger.warning("taking over the stale lock of %s (%s)", store, record.get("owner"))
    payload = {
        "owner": owner,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "heartbeat": time.time(),
    }
    data = json.dumps(payload).encode()
    if url_protocol(url) == "file":
        path = str(local_path(url))
        with store_io(url, "write the lock"):
            tmp = _write_local_tmp(path, data)
            try:
                if existing is None:
                    os.link(tmp, path)  # atomic, and refuses an existing lock
                else:
                    os.replace(tmp, path)
            except FileExistsError as exc:
                raise StoreLockedError(
                    f"store {store} was locked by another ingest a moment ago; wait for it"
                ) from exc
            finally:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
    else:
        write_bytes(url, data, storage_options)
    time.sleep(0.05)
    current = read_bytes(url, storage_options)
    record = None if current is None else _json_object(current)
    if record is None or record.get("owner") != owner:
        raise StoreLockedError(f"store {store} was locked by another ingest at the same time")
    stop = threading.Event()
    lock = Lock(url, owner, stop, storage_options)
    _HELD_HERE.add(owner)

    def heartbeat() -> None:
        while not stop.wait(30.0):
            payload["heartbeat"] = time.time()
            with contextlib.suppress(StoreError):
                write_bytes(url, json.dumps(payload).encode(), storage_options)

    threading.Thread(target=heartbeat, name="starskope-lock", daemon=True).start()
    return lock


def release_lock(lock: Lock) -> None:
    """Release a lock taken by :func:`acquire_lock`; never raises.

    It is called in ``finally`` blocks: an error here (the store's server died) must not
    hide the error that ended the run. The lock is removed only while it is still this
    run's. A lock that cannot be removed is left for the next run, which takes it over once
    its heartbeat is stale.
    """
    lock.stop.set()
    _HELD_HERE.discard(lock.owner)
    try:
        current = read_bytes(lock.url, lock.storage_options)
        if current is None:
            return
        record = _json_object(current)
        if record is not None and record.get("owner") != lock.owner:
            logger.warning("the lock %s is no longer this run's; left alone", lock.url)
            return
        fs, path = _fs(lock.url, lock.storage_options)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    except Exception as exc:
        logger.warning(
            "could not remove the lock %s (%s: %s); the next run takes it over once it is stale",
            lock.url,
            type(exc).__name__,
            exc,
        )


# ------------------------------------------------------------------ store ownership


def _entries(fs: Any, root: str) -> list[str]:
    """Top-level names under ``root`` (``[]`` when it does not exist)."""
    try:
        if url_protocol(root) == "file" and not os.path.isdir(root):
            return []
        listing = fs.ls(root, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    root_name = root.rstrip("/")
    return sorted(
        os.path.basename(str(e).rstrip("/")) for e in listing if str(e).rstrip("/") != root_name
    )


def claim_store(
    store: str,
    storage_options: Mapping[str, Any] | None = None,
    store_format: str = STORE_FORMAT,
) -> bool:
    """Check that ``store`` is a starskope store of ``store_format`` (the cube, or a features
    store: :data:`FEATURES_FORMAT`) or an empty target, and mark it as one.

    Returns whether it already was such a store. Nothing is written to, or removed from, a
    target that holds anything else (another kind of starskope store included).

    Raises
    ------
    NotAStoreError
        If the target is a file, or holds data and is not a starskope store (no
        ``_starskope/store.json``).
    StoreError
        If it cannot be listed or written.
    """
    marker_url = _join(store, STATE_DIR, STORE_MARKER)
    what = "cube" if store_format == STORE_FORMAT else "features store"
    if (
        url_protocol(store) == "file"
        and local_path(store).exists()
        and not local_path(store).is_dir()
    ):
        raise NotAStoreError(
            f"store {store} is a file, not a folder; nothing was written: give a new "
            f"folder for the {what} (e.g. {what.split()[0]}.zarr)"
        )
    marker = read_json(marker_url, storage_options)
    if marker is not None:
        found = marker.get("format") if isinstance(marker, dict) else None
        if found in (STORE_FORMAT, FEATURES_FORMAT) and found != store_format:
            other = "a cube" if found == STORE_FORMAT else "a features store"
            raise NotAStoreError(
                f"{store} is {other}, not a {what}; nothing was written: give a new, empty "
                f"location for the {what}"
            )
        if found != store_format:
            raise NotAStoreError(
                f"{marker_url} was not written by starskope; refusing to touch {store}: "
                f"use a new, empty location for the {what}"
            )
        return True
    with store_io(store, "list"):
        fs, root = _fs(store, storage_options)
        entries = _entries(fs, root)
        if entries == [STATE_DIR] and _being_claimed(fs, _join(root, STATE_DIR)):
            # another starskope run is writing its marker this instant: the same claim; the
            # lock that follows decides which run goes on
            entries = []
        # a store made before store.json existed: only the cube's keys and our state
        legacy = (
            store_format == STORE_FORMAT
            and STATE_DIR in entries
            and set(entries) <= {STATE_DIR, *CUBE_KEYS}
            and not {"products.parquet", "stars.parquet", "lock.json", "staged"}.isdisjoint(
                _entries(fs, _join(root, STATE_DIR))
            )
        )
    if entries and not legacy:
        shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise NotAStoreError(
            f"store {store} is not empty and is not a starskope store ({len(entries)} entries: "
            f"{shown}); nothing was written or deleted. Give a new or empty location for the "
            f"{what}, e.g. {store.rstrip('/')}/{'cube' if what == 'cube' else 'features'}.zarr"
        )
    record = {"format": store_format, "schema_version": SCHEMA_VERSION, "created": time.time()}
    write_bytes(marker_url, json.dumps(record).encode(), storage_options)
    return legacy


def _being_claimed(fs: Any, state_dir: str) -> bool:
    """Whether a state folder holds nothing but a marker being written (its temporary file)
    or the marker itself: what a concurrent claim of an empty target leaves for a moment.
    """
    names = _entries(fs, state_dir)
    return bool(names) and all(
        name == STORE_MARKER or name.startswith(f"{STORE_MARKER}{TMP_INFIX}") for name in names
    )


def remove_temporary_files(store: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """Remove temporary files a killed run left in the store's state folder (call holding
    the lock); returns how many. Only names starskope makes (``*.tmp-PID-THREAD``).
    """
    if url_protocol(store) != "file":
        return 0  # object stores are written in single PUTs: no temporary files
    root = str(local_path(_join(store, STATE_DIR)))
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if TMP_INFIX in name and name.rsplit(TMP_INFIX, 1)[1].replace("-", "").isdigit():
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    removed += 1
    if removed:
        logger.info("removed %d temporary files left by an earlier run in %s", removed, root)
    return removed


# ---------------------------------------------------------------------------- schema


@dataclasses.dataclass(frozen=True)
class CubeLayout:
    """Shape and chunking of the cube."""

    grid: GridConfig
    star_chunk: int
    time_chunk: int

    def time_slice(self, first_step: int, last_step: int) -> slice:
        """Chunk-aligned time slice covering steps ``first_step..last_step``."""
        start = first_step // self.time_chunk * self.time_chunk
        stop = min(-(-(last_step + 1) // self.time_chunk) * self.time_chunk, self.grid.size)
        return slice(start, stop)

    def occupied_time_slices(self, steps: npt.NDArray[np.int64]) -> list[slice]:
        """Chunk-aligned time slices covering the runs of time chunks that hold ``steps``.

        A star chunk's data is written one run at a time, so the years between a star's
        Kepler quarters and its TESS sectors are never materialised, let alone written.
        """
        if steps.size == 0:
            return []
        chunks = np.unique(steps // self.time_chunk)
        breaks = np.flatnonzero(np.diff(chunks) > 1) + 1
        slices = []
        for run in np.split(chunks, breaks):
            start = int(run[0]) * self.time_chunk
            stop = min((int(run[-1]) + 1) * self.time_chunk, self.grid.size)
            slices.append(slice(start, stop))
        return slices


def _zarr_target(
    store: str, storage_options: Mapping[str, Any] | None, *, read_only: bool = False
) -> tuple[Any, dict[str, Any]]:
    """What zarr and xarray need for a store URL: a local path, or a zarr ``FsspecStore``
    (one object every zarr and xarray call accepts; ``zarr.consolidate_metadata`` takes no
    ``storage_options``).
    """
    if url_protocol(store) == "file":
        return str(local_path(store)), {}
    from zarr.storage import FsspecStore

    options = dict(storage_options or {})
    return FsspecStore.from_url(store, storage_options=options, read_only=read_only), {}


def _zarr_open_group(
    store: str, storage_options: Mapping[str, Any] | None, mode: Literal["r", "r+"]
) -> Any:
    import zarr

    target, kwargs = _zarr_target(store, storage_options, read_only=mode == "r")
    with quiet_zarr():
        # Writers never trust the consolidated metadata: it is rewritten at the end of a
        # run, so while the star dimension grows it still holds the old shapes, and a write
        # past the old end would be lost.
        return zarr.open_group(target, mode=mode, use_consolidated=mode == "r", **kwargs)


def _star_coords(stars: pd.DataFrame) -> dict[str, Any]:
    return {
        "ra": ("star", stars["ra"].to_numpy(np.float64)),
        "dec": ("star", stars["dec"].to_numpy(np.float64)),
        "kic": ("star", stars["kic"].to_numpy(np.int64)),
        "epic": ("star", stars["epic"].to_numpy(np.int64)),
        "tic": ("star", stars["tic"].to_numpy(np.int64)),
        "missions": ("star", stars["missions"].astype(str).to_numpy(dtype=object)),
    }


def create_schema(
    store: str,
    layout: CubeLayout,
    stars: pd.DataFrame,
    attrs: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write the cube's metadata and coordinates (no data chunks) with xarray.

    Parameters
    ----------
    store : str
        Store URL.
    layout : CubeLayout
        Grid and chunking.
    stars : DataFrame
        The star table.
    attrs : mapping
        Attributes recorded on the Dataset (grid, normalisation, config).
    storage_options : mapping, optional
        fsspec options for remote stores.
    """
    import dask.array as da
    import xarray as xr

    shape = (len(MISSIONS), len(stars), layout.grid.size)
    chunks = (1, layout.star_chunk, layout.time_chunk)
    # Never computed (compute=False writes metadata only), so one Dask chunk: a graph of the
    # cube's zarr chunks (17 000 per variable for 4 500 stars) took the driver seconds to build.
    data = da.full(shape, np.nan, dtype=np.float32, chunks=shape)
    dataset = xr.Dataset(
        {
            "flux": (("mission", "star", "time"), data),
            "flux_err": (("mission", "star", "time"), data),
        },
        coords={
            "mission": ("mission", np.array(MISSIONS, dtype=object)),
            "star": ("star", stars["star"].to_numpy(np.int64)),
            "time": ("time", grid_times(layout.grid)),
            **_star_coords(stars),
        },
        attrs=dict(attrs),
    )
    dataset["time"].attrs.update(units="d", long_name="BJD_TDB", scale="tdb")
    dataset["flux"].attrs.update(units="1", long_name="flux normalised by its segment's median")
    dataset["flux_err"].attrs.update(units="1", long_name="1-sigma error of flux")
    encoding = {
        name: {"chunks": chunks, "_FillValue": np.float32(np.nan)} for name in ("flux", "flux_err")
    }
    # The grid is regular: store step numbers (int32, compress to almost nothing) and let
    # CF decoding give float64 BJD_TDB = add_offset + step * scale_factor.
    encoding["time"] = {
        "chunks": (min(layout.grid.size, 1 << 20),),
        "dtype": "int32",
        "scale_factor": layout.grid.cadence_days,
        "add_offset": layout.grid.start_bjd + 0.5 * layout.grid.cadence_days,
        "_FillValue": None,
    }
    write_schema(store, dataset, encoding, CUBE_KEYS, storage_options, "create the cube in")


def write_schema(
    store: str,
    dataset: Any,
    encoding: Mapping[str, Any],
    own_keys: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    action: str = "create the schema in",
) -> None:
    """Write a Dataset's metadata and coordinates (``compute=False``: no data chunks) after
    removing the store's earlier arrays: only ``own_keys`` (a half-made or outdated cube or
    features store), never anything else under the store, and not its state
    (``_starskope/``: the lock, staged products). ``mode="w"`` would take all.
    """
    target, kwargs = _zarr_target(store, storage_options)
    with store_io(store, action), quiet_zarr():
        fs, root = _fs(store, storage_options)
        for name in set(_entries(fs, root)) & set(own_keys):
            fs.rm(_join(root, name), recursive=True)
        dataset.to_zarr(
            target,
            mode="a",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=encoding,
            **kwargs,
        )


def grow_stars(
    store: str, stars: pd.DataFrame, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Extend the ``star`` dimension to the star table and rewrite the per-star coordinates."""
    with store_io(store, "grow the cube in"):
        _grow_stars(_zarr_open_group(store, storage_options, "r+"), stars)


def _grow_stars(group: Any, stars: pd.DataFrame) -> None:
    values = {"star": stars["star"].to_numpy(np.int64)}
    values.update({k: v[1] for k, v in _star_coords(stars).items()})
    grow_star_dim(group, {"flux": 1, "flux_err": 1}, values)


def grow_star_dim(
    group: Any, arrays: Mapping[str, int], coords: Mapping[str, npt.NDArray[Any]]
) -> None:
    """Resize the ``star`` axis of ``arrays`` (name → axis) to the length of the star
    coordinates, and write ``coords`` (name → values) whole.
    """
    n = len(next(iter(coords.values())))
    for name, axis in arrays.items():
        array = group[name]
        if array.shape[axis] != n:
            shape = list(array.shape)
            shape[axis] = n
            array.resize(tuple(shape))
    for name, column in coords.items():
        array = group[name]
        if array.shape[0] != n:
            array.resize((n,))
        array[:] = np.asarray(column, array.dtype)


RegionBlock = tuple[int, slice, slice, npt.NDArray[np.float32], npt.NDArray[np.float32]]
"""One chunk-aligned block: mission index, star slice, time slice, flux, flux_err."""


def write_regions(
    store: str,
    blocks: Iterable[RegionBlock],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write chunk-aligned blocks (a worker's star chunk), opening the cube once.

    ``blocks`` may be a generator: each block is made, written and dropped in turn.
    """
    with store_io(store, "write to"):
        group = _zarr_open_group(store, storage_options, "r+")
        flux_array, err_array = group["flux"], group["flux_err"]
        for mission_index, star_slice, time_slice, flux, flux_err in blocks:
            flux_array[mission_index, star_slice, time_slice] = flux
            err_array[mission_index, star_slice, time_slice] = flux_err


def consolidate(store: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Consolidate the store's metadata so that opening it is one read."""
    import zarr

    target, kwargs = _zarr_target(store, storage_options)
    with store_io(store, "consolidate"), quiet_zarr():
        zarr.consolidate_metadata(target, zarr_format=3, **kwargs)


def open_cube(store: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Open the cube as an xarray Dataset (lazy, Dask-backed).

    Raises
    ------
    StoreError
        If there is no cube at ``store``.
    """
    return open_dataset(store, storage_options, "starskope cube", "starskope ingest")


def open_dataset(
    store: str, storage_options: Mapping[str, Any] | None, what: str, command: str
) -> Any:
    """Open a Zarr v3 store of this tool as an xarray Dataset (lazy, Dask-backed).

    Raises
    ------
    StoreError
        ``no {what} at {store}: ...; run `{command}` first`` when there is none.
    """
    import xarray as xr

    target, kwargs = _zarr_target(store, storage_options, read_only=True)
    try:
        with quiet_zarr():
            return xr.open_zarr(target, zarr_format=3, **kwargs)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise StoreError(f"no {what} at {store}: {exc}; run `{command}` first") from exc


# ---------------------------------------------------------------------- resume state


#: A star chunk's records: ``done/`` after its data is written (its products, failures and
#: time chunks), ``pending/`` before (every time chunk the write may touch; removed once the
#: done-marker is written, so a run killed in between leaves it for the next to clear).
ChunkFolder = Literal["done", "pending"]


def chunk_record_url(store: str, chunk: int, folder: ChunkFolder = "done") -> str:
    """URL of star chunk ``chunk``'s done-marker (or pending record)."""
    return _join(store, STATE_DIR, folder, f"chunk-{chunk:06d}.json")


def write_chunk_record(
    store: str,
    chunk: int,
    record: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
    folder: ChunkFolder = "done",
) -> None:
    """Write a star chunk's done-marker (after its data, never before) or pending record."""
    url = chunk_record_url(store, chunk, folder)
    write_bytes(url, json.dumps(record, sort_keys=True).encode(), storage_options)


def remove_chunk_record(
    store: str,
    chunk: int,
    storage_options: Mapping[str, Any] | None = None,
    folder: ChunkFolder = "pending",
) -> None:
    """Remove a star chunk's pending record (or done-marker), if it is there."""
    url = chunk_record_url(store, chunk, folder)
    with store_io(url, "remove"):
        fs, path = _fs(url, storage_options)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


def remove_chunk_records(
    store: str,
    storage_options: Mapping[str, Any] | None = None,
    folder: ChunkFolder = "done",
) -> None:
    """Remove every done-marker (or pending record) of a store, if there are any."""
    url = _join(store, STATE_DIR, folder)
    with store_io(url, "remove"):
        fs, path = _fs(url, storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def clear_time_chunks(
    store: str,
    star_slice: slice,
    chunks: Mapping[int, Sequence[int]],
    layout: CubeLayout,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Set time chunks of a star chunk back to NaN (Zarr deletes chunks left all NaN)."""
    n_rows = star_slice.stop - star_slice.start

    def blocks() -> Iterator[RegionBlock]:
        for mission, numbers in chunks.items():
            for number in numbers:
                start = number * layout.time_chunk
                stop = min(start + layout.time_chunk, layout.grid.size)
                empty = np.full((n_rows, stop - start), np.nan, dtype=np.float32)
                yield mission, star_slice, slice(start, stop), empty, empty

    write_regions(store, blocks(), storage_options)


def read_chunk_records(
    store: str, storage_options: Mapping[str, Any] | None = None, folder: ChunkFolder = "done"
) -> dict[int, dict[str, Any]]:
    """All done-markers of a store (or pending records), by chunk number; unreadable ones
    are left out with a warning (their chunks are written again).
    """
    url = _join(store, STATE_DIR, folder)
    try:
        with store_io(url, "list"):
            fs, root = _fs(url, storage_options)
            paths = sorted(fs.glob(f"{root}/chunk-*.json"))
            contents = fs.cat(paths) if paths else {}  # a list always gives a dict
    except FileNotFoundError:
        return {}
    markers: dict[int, dict[str, Any]] = {}
    for path, data in contents.items():
        number = os.path.basename(path)[len("chunk-") : -len(".json")]
        marker = _json_object(data) if isinstance(data, bytes) else None
        if (
            not number.isdigit()
            or marker is None
            or (folder == "done" and not isinstance(marker.get("products"), list))
            or (folder == "done" and not isinstance(marker.get("failures"), list))
        ):
            logger.warning("chunk record %s is unreadable: its chunk is written again", path)
            continue
        markers[int(number)] = marker
    return markers


# ----------------------------------------------------------------- staged products
#
# The read pass puts every product on the grid once and stages the result (a few kB) in the
# store; the write pass assembles star chunks from staged products. A rerun after a kill, or
# an update that rewrites a chunk for a new sector, reads the staged products instead of
# fetching the source FITS again.
#
# Staged products are written in packs, one file (one PUT) per batch of products: a file per
# product was one of the read pass's larger costs on local disk.
# A pack starts with an index of its products, so that a rerun after a kill finds what an
# earlier read pass staged without reading the packs whole; the products table records each
# product's pack, offset and length for the write pass.

STAGED_MAGIC = b"STARSKOPE-STAGED-1\n"
PACK_MAGIC = b"STARSKOPE-PACK-1\n"
_PACK_HEAD = len(PACK_MAGIC) + 8  # magic, then the index's length (uint64, little-endian)
_INDEX_GUESS = 64 * 1024  # bytes read to find a pack's index (enough for ~500 products)


@dataclasses.dataclass(frozen=True)
class StagedAt:
    """Where a product's staged copy lies: its pack (file name) and byte range in it."""

    pack: str
    offset: int
    length: int

    def as_columns(self) -> dict[str, Any]:
        """The products table's columns for this copy."""
        return {
            "staged_pack": self.pack,
            "staged_offset": self.offset,
            "staged_length": self.length,
        }

    @classmethod
    def from_columns(cls, row: Any) -> StagedAt | None:
        """Inverse of :meth:`as_columns` for a products-table row (``None``: not staged)."""
        pack = getattr(row, "staged_pack", None)
        if not isinstance(pack, str) or not pack:
            return None
        return cls(pack, int(row.staged_offset), int(row.staged_length))


def staged_dir(store: str) -> str:
    """The folder of the store's staged packs."""
    return _join(store, STATE_DIR, "staged")


def encode_staged(facts: Mapping[str, Any], gridded: GriddedFlux) -> bytes:
    """Serialise a product's header facts and gridded flux (JSON line + raw arrays)."""
    meta = {**facts, "n": int(gridded.index.size), "median": gridded.median}
    return b"".join(
        [
            STAGED_MAGIC,
            json.dumps(meta, sort_keys=True, default=_json_scalar).encode(),
            b"\n",
            gridded.index.astype("<i4").tobytes(),
            gridded.flux.astype("<f4").tobytes(),
            gridded.flux_err.astype("<f4").tobytes(),
        ]
    )


def decode_staged(data: bytes) -> tuple[dict[str, Any], GriddedFlux]:
    """Inverse of :func:`encode_staged`.

    Raises
    ------
    ValueError
        If ``data`` is not a staged product.
    """
    if not data.startswith(STAGED_MAGIC):
        raise ValueError("not a staged product")
    try:
        end = data.index(b"\n", len(STAGED_MAGIC))
        meta: dict[str, Any] = json.loads(data[len(STAGED_MAGIC) : end])
        n = int(meta.pop("n"))
        median = float(meta.pop("median"))
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"staged product header is damaged ({type(exc).__name__})") from exc
    body = memoryview(data)[end + 1 :]
    if len(body) != 12 * n:
        raise ValueError(f"staged product holds {len(body)} bytes, expected {12 * n}")
    index = np.frombuffer(body[: 4 * n], "<i4").astype(np.int64)
    flux = np.frombuffer(body[4 * n : 8 * n], "<f4").astype(np.float32)
    flux_err = np.frombuffer(body[8 * n :], "<f4").astype(np.float32)
    return meta, GriddedFlux(index, flux, flux_err, median)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def encode_pack(staged: Mapping[str, bytes]) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """A pack of staged products (product URL -> :func:`encode_staged` bytes).

    Returns the pack's bytes and each product's ``(offset, length)`` in it.
    """
    sizes = [len(blob) for blob in staged.values()]
    # Offsets in the index count from the end of the index (whose length they would change).
    starts = itertools.accumulate(sizes[:-1], initial=0)
    entries = list(zip(staged, starts, sizes, strict=True))
    index = json.dumps(entries).encode()
    base = _PACK_HEAD + len(index)
    head = PACK_MAGIC + len(index).to_bytes(8, "little") + index
    return b"".join([head, *staged.values()]), {u: (base + o, n) for u, o, n in entries}


def decode_pack_index(head: bytes, pack: str) -> dict[str, StagedAt] | int:
    """The products in a pack, from its first bytes; or, when ``head`` is too short to hold
    the index, how many bytes are needed.

    Raises
    ------
    ValueError
        If ``head`` is not the start of a pack.
    """
    if not head.startswith(PACK_MAGIC) or len(head) < _PACK_HEAD:
        raise ValueError(f"{pack} is not a staged pack")
    size = int.from_bytes(head[len(PACK_MAGIC) : _PACK_HEAD], "little")
    if len(head) < _PACK_HEAD + size:
        return _PACK_HEAD + size
    base = _PACK_HEAD + size
    entries = json.loads(head[_PACK_HEAD:base])
    return {url: StagedAt(pack, base + int(start), int(length)) for url, start, length in entries}


def write_pack(
    store: str, staged: Mapping[str, bytes], storage_options: Mapping[str, Any] | None = None
) -> dict[str, StagedAt]:
    """Write a pack of staged products (one file); return where each product lies.

    The pack's name is a hash of its products' URLs. A pack cut short all the same (a disk
    that filled up) is recognised when read: its index points past its end, or a product's
    length is wrong, and its products are read again from source.
    """
    if not staged:
        return {}
    data, where = encode_pack(staged)
    name = hashlib.sha1("\n".join(staged).encode()).hexdigest() + ".pack"
    write_bytes(_join(staged_dir(store), name), data, storage_options)
    return {product: StagedAt(name, offset, length) for product, (offset, length) in where.items()}


def list_staged(
    store: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    known_packs: Iterable[str] = (),
) -> dict[str, StagedAt]:
    """Every product staged in a store (from the packs' indexes), by product URL.

    Used to resume a read pass that was killed before the products table was written:
    packs the table already records (``known_packs``, file names) are not read again.
    Unreadable packs are skipped (their products are read again).
    """
    url = staged_dir(store)
    skip = set(known_packs)
    try:
        with store_io(url, "list"):
            fs, root = _fs(url, storage_options)
            packs = sorted(
                p for p in fs.find(root) if p.endswith(".pack") and os.path.basename(p) not in skip
            )
    except FileNotFoundError:
        return {}
    found: dict[str, StagedAt] = {}
    with store_io(url, "read the staged packs in"):
        heads = fs.cat_ranges(packs, [0] * len(packs), [_INDEX_GUESS] * len(packs))
        for path, head in zip(packs, heads, strict=True):
            name = os.path.basename(path)
            try:
                index = decode_pack_index(head, name)
                if isinstance(index, int):
                    index = decode_pack_index(fs.cat_file(path, start=0, end=index), name)
            except (ValueError, OSError, TypeError, KeyError) as exc:
                logger.warning("staged pack %s unreadable (%s): products read again", path, exc)
                continue
            if isinstance(index, dict):
                found.update(index)
    return found


def read_staged_at(
    store: str,
    places: Sequence[StagedAt],
    storage_options: Mapping[str, Any] | None = None,
) -> list[tuple[dict[str, Any], GriddedFlux] | None]:
    """Read staged products from their packs (byte ranges, one request each, concurrently on
    object stores); ``None`` for a copy that is missing or unreadable.
    """
    if not places:
        return []
    root = staged_dir(store)
    fs, base = _fs(root, storage_options)
    paths = [f"{base}/{place.pack}" for place in places]
    starts = [place.offset for place in places]
    ends = [place.offset + place.length for place in places]
    with store_io(root, "read the staged packs in"):
        blobs = fs.cat_ranges(paths, starts, ends, on_error="return")
    found: list[tuple[dict[str, Any], GriddedFlux] | None] = []
    for place, blob in zip(places, blobs, strict=True):
        try:
            if not isinstance(blob, bytes):
                raise ValueError(f"cannot read it: {blob!r}")
            found.append(decode_staged(blob))
        except ValueError as exc:
            logger.warning("staged copy in %s is unreadable (%s)", place.pack, exc)
            found.append(None)
    return found


def state_url(store: str, name: str) -> str:
    """URL of a state file (``products.parquet``, ``stars.parquet``, ``summary.json``)."""
    return _join(store, STATE_DIR, name)


@dataclasses.dataclass(frozen=True)
class StoreStatus:
    """What ``starskope status`` reports."""

    store: str
    n_stars: int
    n_products: int
    n_stored: int
    n_failed: int
    n_chunks_done: int
    n_chunks: int
    grid: dict[str, Any]
    failures: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def read_cube_attrs(store: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The cube's attributes (grid, chunking, read settings); empty when there is no cube."""
    root = read_json(_join(store, "zarr.json"), storage_options)
    attrs = root.get("attributes", {}) if isinstance(root, dict) else {}
    return attrs if isinstance(attrs, dict) else {}


def collect_failures(
    products: pd.DataFrame, markers: Mapping[int, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every failure of a store: header-pass failures and those in the chunks' done-markers."""
    failures = [
        {"url": r.url, "error_type": r.error_type, "message": r.message, "stage": "read"}
        for r in products[products["error_type"].notna()].itertuples()
    ]
    for marker in markers.values():
        failures.extend(marker.get("failures", []))
    return sorted(failures, key=lambda f: str(f["url"]))


def count_stored(markers: Mapping[int, Mapping[str, Any]]) -> int:
    """Products stored, according to the done-markers."""
    return sum(len(marker.get("products", [])) for marker in markers.values())


def store_status(store: str, storage_options: Mapping[str, Any] | None = None) -> StoreStatus:
    """Summarise a store: stars, products stored and failed, grid and failures."""
    products = read_table(state_url(store, "products.parquet"), storage_options)
    if products is None:
        raise StoreError(f"{store} holds no starskope ingest state; run `starskope ingest` first")
    markers = read_chunk_records(store, storage_options)
    stars = read_table(state_url(store, "stars.parquet"), storage_options)
    failures = collect_failures(products, markers)
    attrs = read_cube_attrs(store, storage_options)
    star_chunk = int(attrs.get("star_chunk", 64))
    n_stars = 0 if stars is None else len(stars)
    return StoreStatus(
        store=store,
        n_stars=n_stars,
        n_products=len(products),
        n_stored=count_stored(markers),
        n_failed=len(failures),
        n_chunks_done=len(markers),
        n_chunks=-(-n_stars // star_chunk),
        grid={
            k: attrs.get(k)
            for k in ("grid_start_bjd", "grid_cadence_days", "grid_size", "normalisation")
        },
        failures=failures,
    )
