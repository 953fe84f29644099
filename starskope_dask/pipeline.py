"""The ``pipeline``: wiring of ingest — manifest → read pass → star index → write pass.

1. Read pass: a Dask bag over the manifest's new products; each partition fetches many
   objects at once (the next batch downloading while the current one is parsed), reads each
   light curve once, bins it onto the global grid and stages the result in the store
   (``_starskope/staged/``, a few kB per product); only identity, position and time span go
   back to the driver.
2. Cross-match (driver, small): products → stars; the star table and per-product state are
   written to the store, the cube's schema is written (or the ``star`` dim grown).
3. Write pass: one task per star chunk; it assembles its stars from the staged products and
   writes the runs of time chunks that hold data — no two tasks touch the same chunk — then
   the chunk's done-marker (products stored, failures). A rerun skips chunks whose marker
   lists exactly the chunk's current products; new products redo only their chunks, from
   staged copies, so no source product is fetched twice.

``run(config)`` makes its own client; ``run_with_client(config, client)`` takes one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask import __version__
from starskope_dask.align import GriddedFlux, cross_match, empty_grid_reason, grid_cells
from starskope_dask.config import GridConfig, IngestConfig, ReadConfig, StorageConfig
from starskope_dask.discover import product_urls, read_manifest
from starskope_dask.errors import (
    ConfigError,
    CorruptProductError,
    NoUsableDataError,
    ProductError,
    StoreError,
    UnsupportedSchemeError,
)
from starskope_dask.fetch import decompress, iter_fetched, writable_protocol
from starskope_dask.read import parse_light_curve
from starskope_dask.records import MISSIONS, Failure, LightCurve
from starskope_dask.store import (
    SCHEMA_VERSION,
    CubeLayout,
    RegionBlock,
    StagedAt,
    acquire_lock,
    claim_store,
    clear_time_chunks,
    collect_failures,
    consolidate,
    count_stored,
    create_schema,
    encode_staged,
    grow_stars,
    list_staged,
    read_chunk_records,
    read_cube_attrs,
    read_staged_at,
    read_table,
    release_lock,
    remove_chunk_record,
    remove_temporary_files,
    state_url,
    write_bytes,
    write_chunk_record,
    write_pack,
    write_regions,
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
    "bytes",
    "staged_pack",
    "staged_offset",
    "staged_length",
    "star",
)

#: Products staged per pack (one file, one PUT): a kill loses at most this many reads.
PACK_PRODUCTS = 64


# ------------------------------------------------------------------------ task bodies


def product_facts(lc: LightCurve) -> dict[str, Any]:
    """What the driver needs of a product to cross-match it: identity, position, span."""
    bjd_start, bjd_stop = lc.time_range
    return {
        "mission": lc.mission,
        "kic": lc.ids.kic,
        "epic": lc.ids.epic,
        "tic": lc.ids.tic,
        "ra": lc.ra,
        "dec": lc.dec,
        "segment": lc.segment,
        "cadence_days": lc.cadence_days,
        "bjd_start": bjd_start,
        "bjd_stop": bjd_stop,
    }


def _read_and_grid(
    urls: Sequence[str],
    source_options: StorageConfig | None,
    read: ReadConfig,
    grid: GridConfig,
    concurrency: int,
) -> Iterator[tuple[str, tuple[dict[str, Any], GriddedFlux, int] | ProductError]]:
    """Fetch products (``concurrency`` downloads in flight while they are parsed), read
    them and put them on the grid, in the order they arrive.

    Yields each URL with its facts, gridded flux and source size, or the error it raised.
    One product never ends the task: an error that is not a :class:`ProductError` (a bug
    the hostile input found) becomes a :class:`CorruptProductError` for that product alone.
    A product with no cadence to store is a :class:`NoUsableDataError`.
    """
    limit = read.max_product_bytes
    fetched = iter_fetched(urls, source_options, concurrency=concurrency, max_bytes=limit)
    for index, data in fetched:
        url = urls[index]
        try:
            if isinstance(data, ProductError):
                raise data
            lc = parse_light_curve(url, decompress(url, data, max_bytes=limit), read)
            gridded = grid_cells(lc, grid)
            if gridded.index.size == 0:
                raise NoUsableDataError(url, empty_grid_reason(lc, grid))
            yield url, (product_facts(lc), gridded, len(data))
        except ProductError as exc:
            yield url, exc
        except Exception as exc:  # MemoryError and the like included: the worker goes on
            logger.debug("unexpected error reading %s", url, exc_info=True)
            yield (
                url,
                CorruptProductError(
                    url,
                    f"cannot be read ({type(exc).__name__} in starskope's reader)",
                    "please report it with the file; the other products are stored",
                ),
            )


@dataclasses.dataclass(frozen=True)
class ReadTask:
    """What the read pass needs: where products come from and where to stage them."""

    store: str
    read: ReadConfig
    grid: GridConfig
    source_options: StorageConfig | None
    store_options: Mapping[str, Any] | None
    concurrency: int


def read_staged(
    task: ReadTask, places: Mapping[str, StagedAt]
) -> dict[str, tuple[dict[str, Any], GriddedFlux]]:
    """The staged copies of products, by URL (unreadable copies left out, with a warning)."""
    urls = list(places)
    copies = read_staged_at(task.store, [places[u] for u in urls], task.store_options)
    return {url: copy for url, copy in zip(urls, copies, strict=True) if copy is not None}


def read_partition(
    items: Sequence[tuple[str, StagedAt | None]], task: ReadTask
) -> list[dict[str, Any]]:
    """Read pass over one partition of ``(product URL, staged copy or None)``: each product
    read once, put on the grid and staged (packs of :data:`PACK_PRODUCTS`).

    Products already staged (an interrupted earlier run) are not fetched again: their facts
    come from the staged copy. Returns one row per product: its facts and where it is staged,
    or its failure.
    """
    items = list(items)
    urls = [url for url, _ in items]
    already = {url: place for url, place in items if place is not None}
    rows: dict[str, dict[str, Any]] = {
        url: {"url": url, **facts, "error_type": None, "message": None} | already[url].as_columns()
        for url, (facts, _) in read_staged(task, already).items()
    }
    todo = [u for u in urls if u not in rows]
    pack: dict[str, bytes] = {}

    def flush() -> None:
        for url, place in write_pack(task.store, pack, task.store_options).items():
            rows[url].update(place.as_columns())
        pack.clear()

    for url, result in _read_and_grid(
        todo, task.source_options, task.read, task.grid, task.concurrency
    ):
        if isinstance(result, ProductError):
            rows[url] = {"url": url, "error_type": type(result).__name__, "message": str(result)}
            continue
        facts, gridded, size = result
        rows[url] = {"url": url, **facts, "error_type": None, "message": None, "bytes": size}
        pack[url] = encode_staged(facts, gridded)
        if len(pack) >= PACK_PRODUCTS:
            flush()
    flush()
    return [rows[u] for u in urls]


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """Everything one write-pass task needs: one star chunk, its products, and how to read
    any that were not staged.
    """

    io: ReadTask
    chunk: int
    star_start: int
    star_stop: int
    urls: tuple[str, ...]
    stars: tuple[int, ...]
    staged: tuple[StagedAt | None, ...]
    layout: CubeLayout
    previous: Mapping[int, set[int]] | None = None
    """Time chunks an earlier run may have written for this star chunk, per mission index
    (``None``: unknown, so every time chunk is cleared that this run does not write)."""


def _staged_products(
    task: ChunkTask, failures: list[dict[str, Any]]
) -> Iterator[tuple[int, dict[str, Any], GriddedFlux]]:
    """A chunk's products from their staged copies; any not staged are read from source."""
    staged = read_staged(
        task.io, {u: p for u, p in zip(task.urls, task.staged, strict=True) if p is not None}
    )
    missing: list[int] = []
    for index, url in enumerate(task.urls):
        if url in staged:
            yield index, *staged[url]
        else:
            missing.append(index)
    if missing:
        logger.info("chunk %d: %d products not staged; reading them", task.chunk, len(missing))
        urls = [task.urls[i] for i in missing]
        results = _read_and_grid(
            urls, task.io.source_options, task.io.read, task.io.grid, task.io.concurrency
        )
        position = {task.urls[i]: i for i in missing}
        for url, result in results:
            index = position[url]
            if isinstance(result, ProductError):
                failures.append(dataclasses.asdict(Failure.from_exception(url, result)))
                continue
            facts, gridded, _ = result
            yield index, facts, gridded


def _blocks(
    task: ChunkTask, cells: Mapping[int, list[tuple[float, str, int, GriddedFlux]]]
) -> Iterator[RegionBlock]:
    """The chunk's regions, one run of occupied time chunks per mission at a time."""
    n_rows = task.star_stop - task.star_start
    star_slice = slice(task.star_start, task.star_stop)
    for mission, entries in cells.items():
        entries = sorted((e for e in entries if e[3].index.size), key=lambda e: e[:2])
        if not entries:
            continue
        steps = np.concatenate([e[3].index for e in entries])
        for time_slice in task.layout.occupied_time_slices(steps):
            width = time_slice.stop - time_slice.start
            flux = np.full((n_rows, width), np.nan, dtype=np.float32)
            flux_err = np.full((n_rows, width), np.nan, dtype=np.float32)
            for _, _, row, gridded in entries:
                inside = (gridded.index >= time_slice.start) & (gridded.index < time_slice.stop)
                columns = gridded.index[inside] - time_slice.start
                flux[row, columns] = gridded.flux[inside]
                flux_err[row, columns] = gridded.flux_err[inside]
            yield mission, star_slice, time_slice, flux, flux_err


def ingest_chunk(task: ChunkTask) -> dict[str, Any]:
    """Assemble a star chunk from its staged products and write the chunk's regions.

    Products are applied finest cadence first, so a long-cadence product of the same star,
    mission and time wins over a binned short-cadence one. Only runs of time chunks holding
    data are materialised and written. Time chunks that an earlier run wrote and this one
    does not (products dropped from the manifest) are cleared, so the cube always equals
    what the current manifest gives. Before any data, a pending record names every time
    chunk the task may touch (a kill leaves it for the next run); the done-marker follows
    the data. Returns the done-marker record.
    """
    cells: dict[int, list[tuple[float, str, int, GriddedFlux]]] = {
        m: [] for m in range(len(MISSIONS))
    }
    stored: list[str] = []
    failures: list[dict[str, Any]] = []
    for index, facts, gridded in _staged_products(task, failures):
        cadence = float(facts.get("cadence_days") or math.nan)
        if not math.isfinite(cadence):
            cadence = task.layout.grid.cadence_days
        row = task.stars[index] - task.star_start
        cells[MISSIONS.index(facts["mission"])].append((cadence, task.urls[index], row, gridded))
        stored.append(task.urls[index])
    time_chunk = task.layout.time_chunk
    planned: dict[int, set[int]] = {m: set() for m in range(len(MISSIONS))}
    for mission, entries in cells.items():
        steps = [e[3].index for e in entries if e[3].index.size]
        if steps:
            planned[mission] = set(np.unique(np.concatenate(steps) // time_chunk).tolist())
    every = set(range(-(-task.layout.grid.size // time_chunk)))
    previous = task.previous
    stale = {
        m: (every if previous is None else previous.get(m, set())) - planned[m] for m in planned
    }
    pending = {"chunk": task.chunk, "time_chunks": _chunk_lists(_union(planned, stale))}
    write_chunk_record(task.io.store, task.chunk, pending, task.io.store_options, "pending")
    write_regions(task.io.store, _blocks(task, cells), task.io.store_options)
    if any(stale.values()):
        clear_time_chunks(
            task.io.store,
            slice(task.star_start, task.star_stop),
            {m: sorted(c) for m, c in stale.items()},
            task.layout,
            task.io.store_options,
        )
    record = {
        "chunk": task.chunk,
        "products": sorted(stored),
        "failures": sorted(failures, key=lambda f: f["url"]),
        "time_chunks": _chunk_lists(planned),
    }
    write_chunk_record(task.io.store, task.chunk, record, task.io.store_options)
    remove_chunk_record(task.io.store, task.chunk, task.io.store_options)
    return record


TimeChunks = Mapping[int, Iterable[int]]
"""Time chunk numbers per mission index."""


def _union(*parts: TimeChunks | None) -> dict[int, set[int]] | None:
    """The union of time-chunk maps; ``None`` (unknown) if any part is unknown."""
    merged: dict[int, set[int]] = {}
    for part in parts:
        if part is None:
            return None
        for mission, chunks in part.items():
            merged.setdefault(int(mission), set()).update(int(c) for c in chunks)
    return merged


def _chunk_lists(chunks: TimeChunks | None) -> dict[str, list[int]]:
    """A time-chunk map as JSON (mission keys are strings), empty missions left out."""
    return {str(m): sorted(c) for m, c in (chunks or {}).items() if c}


# --------------------------------------------------------------------------- driver


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    """What an ingest run did."""

    store: str
    n_products: int
    n_stars: int
    n_products_read: int
    n_chunks_written: int
    n_chunks_skipped: int
    n_stored: int
    n_failed: int
    bytes_read: int
    seconds: float
    seconds_read: float
    seconds_write: float
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


def check_store_url(store: str) -> str:
    """The store URL without a trailing slash, or :class:`ConfigError` for one that cannot
    hold a cube (a scheme other than a local path or ``s3://``, an ``s3://`` URL without a
    bucket).
    """
    if not isinstance(store, str) or not store.strip():
        raise ConfigError("the store URL is empty: give --store PATH or s3://bucket/prefix")
    try:
        protocol = writable_protocol(store)
    except UnsupportedSchemeError as exc:
        raise ConfigError(f"store {store}: {exc.problem}; {exc.hint}") from exc
    if protocol == "s3" and not store[len("s3://") :].strip("/"):
        raise ConfigError(f"store {store} names no bucket: use s3://bucket[/prefix]")
    return store.rstrip("/") or store


#: Error types a rerun reads again without being asked (see :func:`fetch.is_transient`).
TRANSIENT_ERRORS = ("FetchError",)


def _read_again(error_type: Any, retry_failed: bool) -> bool:
    """Whether a product that failed with ``error_type`` is read again by this run: a
    transient failure (a server that was down, a timeout) always, any with ``retry_failed``.
    """
    return isinstance(error_type, str) and (retry_failed or error_type in TRANSIENT_ERRORS)


def _recorded_chunks(record: Mapping[str, Any] | None) -> TimeChunks | None:
    """Time chunks a chunk record names (``{}`` without a record; ``None``: an old record
    that does not say, so every time chunk is suspect).
    """
    if record is None:
        return {}
    chunks = record.get("time_chunks")
    if not isinstance(chunks, Mapping):
        return None
    try:
        return {int(m): [int(c) for c in values] for m, values in chunks.items()}
    except (TypeError, ValueError):
        return None


def _star_ids_from_products(stars: pd.DataFrame, good: pd.DataFrame) -> pd.DataFrame:
    """Each star's catalogue IDs and ``missions`` from the products it holds now.

    Products dropped from the manifest take their IDs and mission with them, so the star
    coordinates always say what the cube holds; a star left with no product keeps its row
    (the star index is stable) and its position, with no IDs (-1) and no missions.
    """
    order = {m: i for i, m in enumerate(MISSIONS)}
    stars = stars.copy()
    rows = good.assign(_star=good["star"].astype(int))
    for column in ("kic", "epic", "tic"):
        values = pd.to_numeric(rows[column], errors="coerce")
        first = values.groupby(rows["_star"]).first()
        stars[column] = stars["star"].map(first).fillna(-1).astype(np.int64).to_numpy()
    by_star: dict[int, set[str]] = {}
    for star, mission in zip(rows["_star"], rows["mission"].astype(str), strict=True):
        by_star.setdefault(int(star), set()).add(mission)
    stars["missions"] = [
        ",".join(sorted(by_star.get(int(star), ()), key=lambda m: order.get(m, 9)))
        for star in stars["star"]
    ]
    return stars


def _read_state_table(store: str, name: str, options: Mapping[str, Any]) -> pd.DataFrame | None:
    """A state table, or ``None`` (with a warning) when it is damaged: it is rebuilt."""
    try:
        return read_table(state_url(store, name), options)
    except StoreError as exc:
        logger.warning("%s; rebuilding it from the staged products", exc)
        return None


def _ingest(
    config: IngestConfig,
    get_client: Callable[[], Any],
    *,
    progress: bool,
    on_chunk: Callable[[dict[str, Any]], None] | None,
) -> IngestSummary:
    """Ingest; the client is asked for only when there is work for it (a read pass or a
    write pass), so a bad manifest, a foreign, unreachable or busy store fail before any
    cluster starts, and a rerun with nothing to do starts none.
    """
    import dask.bag as db

    started = time.perf_counter()
    source_options = config.storage
    store_options = store_options_for(config.storage)
    store = check_store_url(config.store)
    manifest = read_manifest(config.manifest, source_options)
    urls = list(dict.fromkeys(u for u in product_urls(manifest) if u))
    claim_store(store, store_options)
    lock = acquire_lock(store, store_options)
    clients: list[Any] = []

    def client() -> Any:
        if not clients:
            clients.append(get_client())
            if progress:
                logger.info("dashboard: %s", getattr(clients[0], "dashboard_link", "n/a"))
        return clients[0]

    try:
        remove_temporary_files(store, store_options)
        _check_compatible(config, read_cube_attrs(store, store_options))
        products = _read_state_table(store, "products.parquet", store_options)
        old_stars = _read_state_table(store, "stars.parquet", store_options)
        if products is not None:
            retry = products["error_type"].map(lambda e: _read_again(e, config.retry_failed))
            if retry.any():
                logger.info("reading %d products that failed before again", int(retry.sum()))
            products = products[~retry].reset_index(drop=True)
        known = set() if products is None else set(products["url"])
        new_urls = [u for u in urls if u not in known]
        header_rows: list[dict[str, Any]] = []
        read_started = time.perf_counter()
        read_task = ReadTask(
            store=store,
            read=config.read,
            grid=config.grid,
            source_options=source_options,
            store_options=store_options,
            concurrency=config.fetch_concurrency,
        )
        if new_urls:
            recorded = [] if products is None else products.get("staged_pack", pd.Series())
            recorded = [pack for pack in recorded if isinstance(pack, str)]
            # what a killed read pass staged (packs the products table records are complete)
            staged = list_staged(store, store_options, known_packs=recorded)
            items = [(url, staged.get(url)) for url in new_urls]
            # 8 partitions a worker or more: short tails when the last ones finish
            size = max(1, min(128, math.ceil(len(new_urls) / (8 * _n_workers(client())))))
            bag = db.from_sequence(items, partition_size=size).map_partitions(
                read_partition, read_task
            )
            header_rows = _gather(client(), bag, "read", progress)
        seconds_read = time.perf_counter() - read_started
        frame = pd.DataFrame(header_rows, columns=list(PRODUCT_COLUMNS))
        if products is None:
            products = frame
        elif len(frame):
            products = pd.concat([products, frame], ignore_index=True)
        dropped = int((~products["url"].isin(set(urls))).sum())
        if dropped:
            logger.info("%d products are no longer in the manifest: their flux is removed", dropped)
        products = products[products["url"].isin(set(urls))].reset_index(drop=True)
        good = products["error_type"].isna()
        markers = read_chunk_records(store, store_options)
        pending = read_chunk_records(store, store_options, "pending")
        if old_stars is None and markers:
            logger.warning("the star table of %s is gone: every chunk is written again", store)
            markers = {}
        star_of, stars = cross_match(products[good], config.match_radius_arcsec, old_stars)
        products["star"] = pd.array([pd.NA] * len(products), dtype="Int64")
        products.loc[good, "star"] = star_of.to_numpy()
        stars = _star_ids_from_products(stars, products[good])
        layout = CubeLayout(config.grid, config.star_chunk, config.time_chunk)
        if old_stars is None:
            create_schema(store, layout, stars, _cube_attrs(config), store_options)
        elif not stars.equals(old_stars):
            grow_stars(store, stars, store_options)
        write_table(state_url(store, "stars.parquet"), stars, store_options)
        write_table(state_url(store, "products.parquet"), products, store_options)

        tasks, skipped = [], 0
        good_products = products[good]
        chunk_of = good_products["star"].astype(int) // config.star_chunk
        groups = dict(iter(good_products.groupby(chunk_of, sort=True)))
        # chunks whose products all left the manifest are cleared too
        for chunk in sorted(set(markers) | set(pending) | {int(c) for c in groups}):
            group = groups.get(chunk, good_products.iloc[0:0])
            group_urls = tuple(group["url"])
            marker = markers.get(chunk)
            if marker is not None and chunk not in pending:
                done = set(marker["products"]) | {
                    f["url"]
                    for f in marker["failures"]
                    if not _read_again(f.get("error_type"), config.retry_failed)
                }
                if done == set(group_urls):
                    skipped += 1
                    continue
            if not group_urls and marker is not None and not marker["products"]:
                continue
            star_start = chunk * config.star_chunk
            tasks.append(
                ChunkTask(
                    io=read_task,
                    chunk=chunk,
                    star_start=star_start,
                    star_stop=min((chunk + 1) * config.star_chunk, len(stars)),
                    urls=group_urls,
                    stars=tuple(int(s) for s in group["star"]),
                    staged=tuple(StagedAt.from_columns(row) for row in group.itertuples()),
                    layout=layout,
                    previous=_union(_recorded_chunks(marker), _recorded_chunks(pending.get(chunk))),
                )
            )
        records: list[dict[str, Any]] = []
        write_started = time.perf_counter()
        futures = client().map(ingest_chunk, tasks, pure=False) if tasks else []
        for future in _completed(futures, "ingest", "chunk", progress):
            record = future.result()
            records.append(record)
            markers[record["chunk"]] = record
            if on_chunk is not None:
                on_chunk(record)
        del futures
        seconds_write = time.perf_counter() - write_started
        consolidate(store, store_options)
        failures = collect_failures(products, markers)
        summary = IngestSummary(
            store=store,
            n_products=len(products),
            n_stars=len(stars),
            n_products_read=len(new_urls),
            n_chunks_written=len(records),
            n_chunks_skipped=skipped,
            n_stored=count_stored(markers),
            n_failed=len(failures),
            bytes_read=int(sum(r.get("bytes") or 0 for r in header_rows)),
            seconds=round(time.perf_counter() - started, 3),
            seconds_read=round(seconds_read, 3),
            seconds_write=round(seconds_write, 3),
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
    from starskope_dask.cluster import with_own_client

    return with_own_client(
        config, lambda get_client: _ingest(config, get_client, progress=progress, on_chunk=None)
    )
