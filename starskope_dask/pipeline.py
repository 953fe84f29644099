"""The ``pipeline``: wiring of ingest — manifest → headers → star index → cube, resumably.

1. Header pass: a Dask bag over the manifest's new products; each partition fetches the
   first bytes of many objects at once (ranged requests) and parses identity and time span.
2. Cross-match (driver, small): products → stars; the star table and per-product state are
   written to the store, the cube's schema is written (or the ``star`` dim grown).
3. Data pass: one task per star chunk; each fetches its products many at a time, reads them,
   bins them onto the grid and writes whole chunks — no two tasks touch the same chunk —
   then writes the chunk's done-marker (products stored, failures). A rerun skips chunks whose
   marker lists exactly the chunk's current products; new products redo only their chunks.

``run(config)`` makes its own client; ``run_with_client(config, client)`` takes one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask import __version__
from starskope_dask.align import cross_match, grid_cells
from starskope_dask.config import IngestConfig, ReadConfig, StorageConfig
from starskope_dask.discover import product_urls, read_manifest
from starskope_dask.errors import ProductError, StoreError
from starskope_dask.fetch import decompress, fetch_many
from starskope_dask.read import parse_light_curve, read_product_headers
from starskope_dask.records import MISSIONS, Failure
from starskope_dask.store import (
    SCHEMA_VERSION,
    CubeLayout,
    acquire_lock,
    collect_failures,
    consolidate,
    count_stored,
    create_schema,
    grow_stars,
    read_cube_attrs,
    read_done_markers,
    read_table,
    release_lock,
    state_url,
    write_bytes,
    write_done_marker,
    write_region,
    write_table,
)

logger = logging.getLogger(__name__)

PRODUCT_COLUMNS = (
    "url",
    "mission",
    "kic",
    "epic",
    "tic",
    "ra",
    "dec",
    "segment",
    "cadence_days",
    "bjd_start",
    "bjd_stop",
    "error_type",
    "message",
    "star",
)


# ------------------------------------------------------------------------ task bodies


def header_partition(
    urls: Sequence[str], storage_options: Mapping[str, Any] | None, concurrency: int
) -> list[dict[str, Any]]:
    """Header facts (or the failure) of each product of a partition, fetched concurrently."""
    rows = []
    for url, header in zip(
        urls, read_product_headers(urls, storage_options, concurrency=concurrency), strict=True
    ):
        row: dict[str, Any] = {"url": url, "error_type": None, "message": None}
        if isinstance(header, ProductError):
            row.update(error_type=type(header).__name__, message=str(header))
        else:
            row.update(
                mission=header.mission,
                kic=header.ids.kic,
                epic=header.ids.epic,
                tic=header.ids.tic,
                ra=header.ra,
                dec=header.dec,
                segment=header.segment,
                cadence_days=header.cadence_days,
                bjd_start=header.bjd_start,
                bjd_stop=header.bjd_stop,
            )
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """Everything one data-pass task needs: one star chunk and its products."""

    store: str
    chunk: int
    star_start: int
    star_stop: int
    urls: tuple[str, ...]
    stars: tuple[int, ...]
    layout: CubeLayout
    read: ReadConfig
    source_options: Mapping[str, Any] | None
    store_options: Mapping[str, Any] | None
    concurrency: int


def ingest_chunk(task: ChunkTask) -> dict[str, Any]:
    """Read a star chunk's products, put them on the grid and write the chunk's region.

    Products are applied finest cadence first, so a long-cadence product of the same star,
    mission and time wins over a binned short-cadence one. Returns the done-marker record.
    """
    grid = task.layout.grid
    n_rows = task.star_stop - task.star_start
    order = sorted(range(len(task.urls)), key=lambda i: task.urls[i])
    cells: dict[int, list[tuple[float, int, Any]]] = {m: [] for m in range(len(MISSIONS))}
    stored: list[str] = []
    failures: list[dict[str, Any]] = []
    bytes_read = 0
    for batch_start in range(0, len(order), task.concurrency):
        batch = order[batch_start : batch_start + task.concurrency]
        urls = [task.urls[i] for i in batch]
        for index, data in zip(
            batch, fetch_many(urls, task.source_options, concurrency=task.concurrency), strict=True
        ):
            url = task.urls[index]
            try:
                if isinstance(data, ProductError):
                    raise data
                bytes_read += len(data)
                lc = parse_light_curve(url, decompress(url, data), task.read)
                gridded = grid_cells(lc, grid)
            except ProductError as exc:
                failures.append(dataclasses.asdict(Failure.from_exception(url, exc)))
                continue
            mission = MISSIONS.index(lc.mission)
            cadence = lc.cadence_days if math.isfinite(lc.cadence_days) else grid.cadence_days
            cells[mission].append((cadence, task.stars[index] - task.star_start, gridded))
            stored.append(url)
    star_slice = slice(task.star_start, task.star_stop)
    for mission, entries in cells.items():
        entries = [e for e in entries if e[2].index.size]
        if not entries:
            continue
        first = min(int(e[2].index[0]) for e in entries)
        last = max(int(e[2].index[-1]) for e in entries)
        time_slice = task.layout.time_slice(first, last)
        width = time_slice.stop - time_slice.start
        flux = np.full((n_rows, width), np.nan, dtype=np.float32)
        flux_err = np.full((n_rows, width), np.nan, dtype=np.float32)
        for _, row, gridded in sorted(entries, key=lambda e: e[0]):
            columns = gridded.index - time_slice.start
            flux[row, columns] = gridded.flux
            flux_err[row, columns] = gridded.flux_err
        write_region(
            task.store, mission, star_slice, time_slice, flux, flux_err, task.store_options
        )
    record = {
        "chunk": task.chunk,
        "products": sorted(stored),
        "failures": sorted(failures, key=lambda f: f["url"]),
        "bytes_read": bytes_read,
    }
    write_done_marker(task.store, task.chunk, record, task.store_options)
    return record


# --------------------------------------------------------------------------- driver


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    """What an ingest run did."""

    store: str
    n_products: int
    n_stars: int
    n_headers_read: int
    n_chunks_written: int
    n_chunks_skipped: int
    n_stored: int
    n_failed: int
    bytes_read: int
    seconds: float
    failures: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def store_options_for(storage: StorageConfig) -> dict[str, Any]:
    """Fsspec options for the cube's store: like the archive's, but signed (writes need
    credentials from the standard AWS chain).
    """
    options = storage.storage_options()
    options["anon"] = False
    return options


def _cube_attrs(config: IngestConfig) -> dict[str, Any]:
    grid = config.grid
    return {
        "title": "starskope_dask light-curve cube",
        "starskope_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "time_scale": "BJD_TDB days",
        "grid_start_bjd": grid.start_bjd,
        "grid_cadence_days": grid.cadence_days,
        "grid_size": grid.size,
        "star_chunk": config.star_chunk,
        "time_chunk": config.time_chunk,
        "normalisation": "per product (segment): flux / median(good flux); "
        "finer cadences averaged per grid step, err = sqrt(sum err^2)/n",
        "flux_kind": config.read.flux,
        "quality_bitmask": str(config.read.quality_bitmask),
        "match_radius_arcsec": config.match_radius_arcsec,
        "missions": list(MISSIONS),
    }


def _check_compatible(config: IngestConfig, existing: Mapping[str, Any]) -> None:
    expected = _cube_attrs(config)
    for key in (
        "grid_start_bjd",
        "grid_cadence_days",
        "grid_size",
        "star_chunk",
        "time_chunk",
        "flux_kind",
        "quality_bitmask",
    ):
        if key in existing and existing[key] != expected[key]:
            raise StoreError(
                f"store {config.store} was made with {key}={existing[key]!r}, this run asks for "
                f"{expected[key]!r}; use the same settings or a new store"
            )


def run_with_client(
    config: IngestConfig,
    client: Any,
    *,
    progress: bool = True,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> IngestSummary:
    """Ingest ``config.manifest`` into ``config.store`` on an existing Dask client.

    Parameters
    ----------
    config : IngestConfig
        Validated configuration.
    client : distributed.Client
        Where the work runs.
    progress : bool
        Show progress bars (and log the dashboard link).
    on_chunk : callable, optional
        Called with each finished chunk's record (tests use it to interrupt a run).

    Returns
    -------
    IngestSummary

    Raises
    ------
    StoreError, StoreLockedError, ConfigError
    """
    return _ingest(config, lambda: client, progress=progress, on_chunk=on_chunk)


def _ingest(
    config: IngestConfig,
    get_client: Callable[[], Any],
    *,
    progress: bool,
    on_chunk: Callable[[dict[str, Any]], None] | None,
) -> IngestSummary:
    """Ingest; the client is asked for only once the manifest is read and the store locked,
    so a bad manifest, an unreachable store or a busy one fail before any cluster starts.
    """
    import dask.bag as db

    started = time.perf_counter()
    source_options = config.storage.storage_options()
    store_options = store_options_for(config.storage)
    store = config.store.rstrip("/")
    manifest = read_manifest(config.manifest, source_options)
    urls = list(dict.fromkeys(u for u in product_urls(manifest) if u))
    lock = acquire_lock(store, store_options)
    try:
        client = get_client()
        if progress:
            logger.info("dashboard: %s", getattr(client, "dashboard_link", "n/a"))
        _check_compatible(config, read_cube_attrs(store, store_options))
        products = read_table(state_url(store, "products.parquet"), store_options)
        known = set() if products is None else set(products["url"])
        new_urls = [u for u in urls if u not in known]
        header_rows: list[dict[str, Any]] = []
        if new_urls:
            size = max(1, min(256, math.ceil(len(new_urls) / (4 * _n_workers(client)))))
            bag = db.from_sequence(new_urls, partition_size=size).map_partitions(
                header_partition, source_options, config.fetch_concurrency
            )
            header_rows = _gather(client, bag, "headers", progress)
        frame = pd.DataFrame(header_rows, columns=list(PRODUCT_COLUMNS))
        products = frame if products is None else pd.concat([products, frame], ignore_index=True)
        products = products[products["url"].isin(set(urls))].reset_index(drop=True)
        good = products["error_type"].isna()
        old_stars = read_table(state_url(store, "stars.parquet"), store_options)
        star_of, stars = cross_match(products[good], config.match_radius_arcsec, old_stars)
        products["star"] = pd.array([pd.NA] * len(products), dtype="Int64")
        products.loc[good, "star"] = star_of.to_numpy()
        layout = CubeLayout(config.grid, config.star_chunk, config.time_chunk)
        if old_stars is None:
            create_schema(store, layout, stars, _cube_attrs(config), store_options)
        elif not stars.equals(old_stars):
            grow_stars(store, stars, store_options)
        write_table(state_url(store, "stars.parquet"), stars, store_options)
        write_table(state_url(store, "products.parquet"), products, store_options)

        markers = read_done_markers(store, store_options)
        tasks, skipped = [], 0
        good_products = products[good]
        chunk_of = good_products["star"].astype(int) // config.star_chunk
        for chunk, group in good_products.groupby(chunk_of, sort=True):
            chunk = int(chunk)
            group_urls = tuple(group["url"])
            marker = markers.get(chunk)
            if marker is not None:
                done = set(marker["products"]) | {f["url"] for f in marker["failures"]}
                if done == set(group_urls):
                    skipped += 1
                    continue
            tasks.append(
                ChunkTask(
                    store=store,
                    chunk=chunk,
                    star_start=chunk * config.star_chunk,
                    star_stop=min((chunk + 1) * config.star_chunk, len(stars)),
                    urls=group_urls,
                    stars=tuple(int(s) for s in group["star"]),
                    layout=layout,
                    read=config.read,
                    source_options=source_options,
                    store_options=store_options,
                    concurrency=config.fetch_concurrency,
                )
            )
        records: list[dict[str, Any]] = []
        futures = client.map(ingest_chunk, tasks, pure=False) if tasks else []
        for future in _completed(futures, "ingest", "chunk", progress):
            record = future.result()
            records.append(record)
            markers[record["chunk"]] = record
            if on_chunk is not None:
                on_chunk(record)
        consolidate(store, store_options)
        failures = collect_failures(products, markers)
        summary = IngestSummary(
            store=store,
            n_products=len(products),
            n_stars=len(stars),
            n_headers_read=len(new_urls),
            n_chunks_written=len(records),
            n_chunks_skipped=skipped,
            n_stored=count_stored(markers),
            n_failed=len(failures),
            bytes_read=sum(r["bytes_read"] for r in records),
            seconds=round(time.perf_counter() - started, 3),
            failures=tuple(failures),
        )
        write_bytes(
            state_url(store, "summary.json"),
            json.dumps(summary.as_dict(), indent=1).encode(),
            store_options,
        )
        return summary
    finally:
        release_lock(lock)


def _n_workers(client: Any) -> int:
    try:
        return max(1, len(client.scheduler_info().get("workers", {})))
    except Exception:
        return 1


def _completed(futures: Sequence[Any], label: str, unit: str, progress: bool) -> Iterator[Any]:
    """Futures as they finish, behind a progress bar when ``progress``."""
    if not futures:
        return iter(())
    from distributed import as_completed

    iterator: Iterator[Any] = as_completed(futures)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(futures), desc=label, unit=unit)
    return iterator


def _gather(client: Any, bag: Any, label: str, progress: bool) -> list[dict[str, Any]]:
    futures = client.compute(bag.to_delayed())
    rows: list[dict[str, Any]] = []
    for future in _completed(futures, label, "partition", progress):
        rows.extend(future.result())
    return sorted(rows, key=lambda r: str(r["url"]))


def run(config: IngestConfig, *, progress: bool = True) -> IngestSummary:
    """Ingest with a client of its own (a LocalCluster, or the configured scheduler)."""
    from starskope_dask.cluster import make_client

    clients: list[Any] = []

    def start_client() -> Any:
        clients.append(make_client(config))
        return clients[0]

    try:
        return _ingest(config, start_client, progress=progress, on_chunk=None)
    finally:
        for client in clients:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
