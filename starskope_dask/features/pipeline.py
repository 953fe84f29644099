"""Wiring of the features stage: cube → per-star features → the features store (Zarr v3).

1. Driver (small, no cluster): read the cube's attributes, its star table and its ingest
   done-markers; pick the star chunks whose features are missing or stale (the cube chunk's
   products changed, the science parameters changed, or newly selected stars); look up the
   stars' catalogue properties in batches; write (or grow) the features store's schema.
2. One Dask task per cube star chunk (``client.map``): read only the time chunks holding the
   chunk's data, compute every selected star's features with the pure functions of
   :mod:`starskope_dask.features.compute`, write the chunk's region of every variable (star
   chunks of the features store are the cube's, so no two tasks touch a chunk), then the
   chunk's done-marker (the cube products it saw, the parameters' hash, the stars computed,
   the reasons of stars without features).
3. Consolidate, write ``_starskope/summary.json``.

A rerun recomputes only what changed; a killed run leaves no chunk marked done before its
data. ``run(config)`` makes its own client; ``run_with_client(config, client)`` takes one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from starskope_dask import __version__
from starskope_dask.config import FeaturesConfig, GridConfig
from starskope_dask.errors import ConfigError, StoreError
from starskope_dask.features.layout import (
    STATUS_FAILED,
    STATUS_MEANINGS,
    STELLAR_VARIABLES,
    VARIABLES,
    dim_sizes,
    empty_block,
)
from starskope_dask.features.series import StarSeries
from starskope_dask.records import MISSIONS
from starskope_dask.store import (
    FEATURES_FORMAT,
    _zarr_open_group,
    _zarr_target,
    acquire_lock,
    claim_store,
    consolidate,
    grow_star_dim,
    quiet_zarr,
    read_chunk_records,
    read_cube_attrs,
    read_table,
    release_lock,
    remove_chunk_records,
    remove_temporary_files,
    state_url,
    store_io,
    write_bytes,
    write_chunk_record,
    write_schema,
)

logger = logging.getLogger(__name__)

#: Top-level keys of a features store: the only ones outside ``_starskope/`` ever removed.
FEATURE_KEYS = (
    "zarr.json",
    *VARIABLES,
    "star",
    "kic",
    "epic",
    "tic",
    "ra",
    "dec",
    "signal",
    "frequency",
    "spectrogram_band",
    "global_phase",
    "local_phase",
)


@dataclasses.dataclass(frozen=True)
class FeaturesSummary:
    """What a features run did."""

    store: str
    out: str
    n_stars: int
    n_chunks_computed: int
    n_chunks_skipped: int
    n_stars_computed: int
    n_stars_without_features: int
    n_signals: int
    seconds: float
    reasons: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


Ephemeris = tuple[float, float, float]
"""A user's ephemeris: period (d), t0 (BJD_TDB), duration (d)."""


@dataclasses.dataclass(frozen=True)
class ChunkFeaturesTask:
    """One star chunk's work: where to read, what to compute, where to write."""

    cube: str
    out: str
    chunk: int
    star_start: int
    star_stop: int
    rows: tuple[int, ...]  # star rows (absolute) to compute
    time_chunks: Mapping[str, Sequence[int]]  # mission index → time chunk numbers with data
    products: tuple[str, ...]  # the cube chunk's products (its fingerprint)
    grid: GridConfig
    time_chunk: int
    config: FeaturesConfig
    parameters_hash: str
    stellar: Mapping[int, Mapping[str, float]]  # star row → catalogue properties
    storage_options: Mapping[str, Any]
    ephemerides: Mapping[int, tuple[Ephemeris, ...]] = dataclasses.field(default_factory=dict)


def parameters_hash(config: FeaturesConfig) -> str:
    """A short hash of the science parameters (a change recomputes every star)."""
    text = json.dumps({"version": __version__, **config.science_parameters()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_chunk_series(task: ChunkFeaturesTask) -> dict[int, StarSeries]:
    """Each task star's series, reading only the cube's time chunks that hold data."""
    group = _zarr_open_group(task.cube, task.storage_options, "r")
    flux_array, err_array = group["flux"], group["flux_err"]
    n_rows = task.star_stop - task.star_start
    steps: dict[int, list[npt.NDArray[np.int64]]] = {r: [] for r in range(n_rows)}
    values: dict[int, list[npt.NDArray[np.float32]]] = {r: [] for r in range(n_rows)}
    errors: dict[int, list[npt.NDArray[np.float32]]] = {r: [] for r in range(n_rows)}
    missions: dict[int, list[npt.NDArray[np.int8]]] = {r: [] for r in range(n_rows)}
    wanted = [r - task.star_start for r in task.rows]
    size = task.grid.size
    for mission_key, numbers in sorted(task.time_chunks.items()):
        mission = int(mission_key)
        for start_chunk, stop_chunk in _runs(sorted(int(n) for n in numbers)):
            start = start_chunk * task.time_chunk
            stop = min(stop_chunk * task.time_chunk, size)
            flux = flux_array[mission, task.star_start : task.star_stop, start:stop]
            err = err_array[mission, task.star_start : task.star_stop, start:stop]
            for row in wanted:
                occupied = np.flatnonzero(np.isfinite(flux[row]))
                if occupied.size:
                    steps[row].append(occupied + start)
                    values[row].append(flux[row, occupied])
                    errors[row].append(err[row, occupied])
                    missions[row].append(np.full(occupied.size, mission, np.int8))
    series: dict[int, StarSeries] = {}
    for row in wanted:
        series[row + task.star_start] = _assemble(
            steps[row], values[row], errors[row], missions[row], task.grid
        )
    return series


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of chunk numbers as ``(first, last + 1)``."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n:
            runs[-1] = (runs[-1][0], n + 1)
        else:
            runs.append((n, n + 1))
    return runs


def _assemble(
    steps: list[npt.NDArray[np.int64]],
    values: list[npt.NDArray[np.float32]],
    errors: list[npt.NDArray[np.float32]],
    missions: list[npt.NDArray[np.int8]],
    grid: GridConfig,
) -> StarSeries:
    if not steps:
        empty = np.zeros(0)
        return StarSeries(
            np.zeros(0, np.int64), empty, empty, empty, np.zeros(0, np.int8), grid.cadence_days
        )
    step = np.concatenate(steps)
    flux = np.concatenate(values).astype(np.float64)
    err = np.concatenate(errors).astype(np.float64)
    mission = np.concatenate(missions)
    # one row per step: the first mission in cube order wins where two overlap (K2 C19/TESS)
    order = np.lexsort((mission, step))
    step, flux, err, mission = step[order], flux[order], err[order], mission[order]
    first = np.r_[True, step[1:] != step[:-1]]
    step, flux, err, mission = step[first], flux[first], err[first], mission[first]
    times = np.asarray(grid.start_bjd + (step + 0.5) * grid.cadence_days, np.float64)
    return StarSeries(step, times, flux, err, mission, grid.cadence_days)


def features_chunk(task: ChunkFeaturesTask) -> dict[str, Any]:
    """Compute and write one star chunk's features; return its done-marker record.

    A star whose features cannot be computed gets its fill values, a status and a reason;
    the chunk goes on. Only a store that cannot be read or written ends the task.
    """
    from starskope_dask.features.compute import star_features

    series = read_chunk_series(task)
    n_rows = task.star_stop - task.star_start
    block = empty_block(task.config, n_rows)
    reasons: list[dict[str, Any]] = []
    n_signals = 0
    for row in task.rows:
        local = row - task.star_start
        try:
            values, reason = star_features(
                series[row], task.config, task.stellar.get(row, {}), task.ephemerides.get(row, ())
            )
        except Exception as exc:  # one star never ends the chunk: it is recorded
            logger.exception("features of star %d failed", row)
            values, reason = {"status": np.int8(STATUS_FAILED)}, f"{type(exc).__name__}: {exc}"
        for name, value in values.items():
            block[name][local] = value
        if reason:
            reasons.append({"star": row, "status": int(block["status"][local]), "reason": reason})
        n_signals += max(0, int(block["n_signals"][local]))
    write_feature_block(
        task.out, slice(task.star_start, task.star_stop), block, task.storage_options
    )
    record = {
        "chunk": task.chunk,
        "products": list(task.products),
        "failures": reasons,
        "stars": sorted(task.rows),
        "parameters_hash": task.parameters_hash,
        "n_signals": n_signals,
    }
    write_chunk_record(task.out, task.chunk, record, task.storage_options)
    return record


def write_feature_block(
    out: str,
    star_slice: slice,
    block: Mapping[str, npt.NDArray[Any]],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a star chunk's rows of every variable (chunk-aligned)."""
    with store_io(out, "write features to"):
        group = _zarr_open_group(out, storage_options, "r+")
        for name, values in block.items():
            group[name][star_slice] = values


# ----------------------------------------------------------------------- schema


def _coords(config: FeaturesConfig, stars: pd.DataFrame, grid: GridConfig) -> dict[str, Any]:
    from starskope_dask.features.spectrum import frequency_grid, spectrogram_bands

    sizes = dim_sizes(config)
    half = config.local_half_width_durations
    frequency = frequency_grid(grid.cadence_days, config.nperseg)
    return {
        "star": ("star", stars["star"].to_numpy(np.int64)),
        "kic": ("star", stars["kic"].to_numpy(np.int64)),
        "epic": ("star", stars["epic"].to_numpy(np.int64)),
        "tic": ("star", stars["tic"].to_numpy(np.int64)),
        "ra": ("star", stars["ra"].to_numpy(np.float64)),
        "dec": ("star", stars["dec"].to_numpy(np.float64)),
        "signal": ("signal", np.arange(sizes["signal"])),
        "frequency": ("frequency", frequency),
        "spectrogram_band": (
            "spectrogram_band",
            spectrogram_bands(frequency, config.spectrogram_freq).centres,
        ),
        "global_phase": ("global_bin", np.linspace(-0.5, 0.5, config.global_bins)),
        "local_phase": ("local_bin", np.linspace(-half, half, config.local_bins)),
    }


def create_features_schema(
    out: str,
    config: FeaturesConfig,
    stars: pd.DataFrame,
    grid: GridConfig,
    star_chunk: int,
    attrs: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write the features store's metadata and coordinates (no data chunks)."""
    import dask.array as da
    import xarray as xr

    sizes = {"star": len(stars), **dim_sizes(config)}
    data_vars = {}
    encoding: dict[str, Any] = {}
    for name, var in VARIABLES.items():
        shape = tuple(sizes[d] for d in var.dims)
        data_vars[name] = (var.dims, da.full(shape, var.fill, dtype=var.dtype, chunks=shape))
        encoding[name] = {
            "chunks": (min(star_chunk, max(1, len(stars))), *shape[1:]),
            "_FillValue": np.array(var.fill, dtype=var.dtype),
            "fill_value": np.array(var.fill, dtype=var.dtype),  # of chunks never written
        }
    dataset = xr.Dataset(data_vars, coords=_coords(config, stars, grid), attrs=dict(attrs))
    for name, var in VARIABLES.items():
        dataset[name].attrs.update(units=var.units, long_name=var.long_name)
    dataset["status"].attrs["flag_meanings"] = STATUS_MEANINGS
    for name in ("missions_observed", "missions_used"):
        dataset[name].attrs["flag_masks"] = [1 << i for i in range(len(MISSIONS))]
        dataset[name].attrs["flag_meanings"] = " ".join(MISSIONS)
    dataset["frequency"].attrs.update(units="1/d", long_name="frequency (cycles per day)")
    dataset["global_phase"].attrs.update(units="1", long_name="orbital phase")
    dataset["local_phase"].attrs.update(units="transit durations", long_name="time from t0")
    write_schema(
        out, dataset, encoding, FEATURE_KEYS, storage_options, "create the features store in"
    )
    # the done-markers were of the old arrays
    remove_chunk_records(out, storage_options)


def _grow_features(
    out: str, stars: pd.DataFrame, storage_options: Mapping[str, Any] | None
) -> None:
    """Extend the ``star`` dim to the cube's star table (a cube that gained stars)."""
    coords = {name: stars[name].to_numpy() for name in ("star", "kic", "epic", "tic", "ra", "dec")}
    with store_io(out, "grow the features store in"):
        group = _zarr_open_group(out, storage_options, "r+")
        grow_star_dim(group, dict.fromkeys(VARIABLES, 0), coords)


# ----------------------------------------------------------------------- driver


def select_stars(stars: pd.DataFrame, wanted: Sequence[str]) -> list[int]:
    """Star rows for ``wanted`` (indices or ``kic:``/``epic:``/``tic:`` IDs); all when empty.

    Raises
    ------
    ConfigError
        For an entry that is not a star of the cube (naming it).
    """
    if not wanted:
        return stars["star"].astype(int).tolist()
    rows: list[int] = []
    for item in wanted:
        text = item.strip().lower().replace(" ", "")
        prefix, _, number = text.rpartition(":")
        if not prefix:
            for name in ("kic", "epic", "tic"):
                if text.startswith(name) and text[len(name) :].isdigit():
                    prefix, number = name, text[len(name) :]
        if not number.isdigit():
            raise ConfigError(
                f"features.stars: {item!r} is not a star index or an ID such as "
                "'tic:424865156', 'kic:10666592' or 'epic:201367065'"
            )
        if prefix in ("", "star"):
            match = stars["star"] == int(number)
        elif prefix in ("kic", "epic", "tic"):
            match = stars[prefix] == int(number)
        else:
            raise ConfigError(
                f"features.stars: {item!r}: unknown catalogue {prefix!r}; use kic, epic or tic"
            )
        found = stars.loc[match, "star"].astype(int).tolist()
        if not found:
            raise ConfigError(
                f"features.stars: {item!r} is not in the cube ({len(stars)} stars); "
                "`starskope status STORE` lists what it holds"
            )
        rows.extend(found)
    return sorted(set(rows))


def read_ephemerides(
    url: str, stars: pd.DataFrame, storage_options: Mapping[str, Any] | None = None
) -> dict[int, tuple[Ephemeris, ...]]:
    """Read a table of ephemerides and match its rows to the cube's stars.

    Returns
    -------
    dict
        Star row → its ephemerides, in the table's order. Rows naming a star the cube does
        not hold are left out with a warning.

    Raises
    ------
    ConfigError
        If the table cannot be read, lacks a star column or ``period``, ``t0``, ``duration``,
        or holds a value that is not a positive period or duration or a finite time (the
        message names the table and the row).
    """
    import fsspec

    try:
        with fsspec.open(url, "rb", **dict(storage_options or {})) as fh:
            table = pd.read_parquet(fh) if url.endswith(".parquet") else pd.read_csv(fh)
    except Exception as exc:
        raise ConfigError(
            f"features.ephemerides {url}: cannot be read ({type(exc).__name__}: {exc}); give a "
            "CSV or Parquet table with columns star|tic|kic|epic, period, t0, duration"
        ) from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    id_column = next((c for c in ("star", "tic", "kic", "epic") if c in table.columns), None)
    missing = [c for c in ("period", "t0", "duration") if c not in table.columns]
    if id_column is None or missing:
        raise ConfigError(
            f"features.ephemerides {url}: needs a star column (star, tic, kic or epic) and "
            f"period, t0, duration; missing {missing or ['a star column']}"
        )
    found: dict[int, list[Ephemeris]] = {}
    unknown = []
    for number, row in enumerate(table.itertuples(index=False), start=1):
        values = row._asdict()
        period, t0, duration = (
            pd.to_numeric(values[k], errors="coerce") for k in ("period", "t0", "duration")
        )
        if not (
            np.isfinite(period)
            and period > 0
            and np.isfinite(t0)
            and np.isfinite(duration)
            and 0 < duration < period
        ):
            raise ConfigError(
                f"features.ephemerides {url}, row {number}: period {values['period']!r}, t0 "
                f"{values['t0']!r}, duration {values['duration']!r} are not a positive period, a "
                "finite BJD_TDB and a duration between 0 and the period (days)"
            )
        ident = pd.to_numeric(values[id_column], errors="coerce")
        matches = stars.loc[stars[id_column] == ident, "star"] if np.isfinite(ident) else []
        if len(matches) == 0:
            unknown.append(f"{id_column} {values[id_column]}")
            continue
        for star in matches:
            found.setdefault(int(star), []).append((float(period), float(t0), float(duration)))
    if unknown:
        logger.warning(
            "features.ephemerides %s: %d rows name stars the cube does not hold (%s)",
            url,
            len(unknown),
            ", ".join(unknown[:5]),
        )
    return {star: tuple(e) for star, e in found.items()}


def cube_reference(store: str) -> str:
    """The cube's URL as the features store records it: absolute for a local path (so that
    ``starskope plot`` finds it from any folder).
    """
    from starskope_dask.fetch import local_path, url_protocol

    if url_protocol(store) == "file":
        return str(local_path(store).resolve())
    return store.rstrip("/")


def _attrs(config: FeaturesConfig, cube_attrs: Mapping[str, Any], digest: str) -> dict[str, Any]:
    return {
        "title": FEATURES_TITLE,
        "starskope_version": __version__,
        "cube": cube_reference(config.store),
        "cube_grid_start_bjd": cube_attrs.get("grid_start_bjd"),
        "cube_grid_cadence_days": cube_attrs.get("grid_cadence_days"),
        "cube_flux_kind": cube_attrs.get("flux_kind"),
        "cube_quality_bitmask": cube_attrs.get("quality_bitmask"),
        "parameters": json.dumps(config.science_parameters(), sort_keys=True),
        "parameters_hash": digest,
        "missions": list(MISSIONS),
        "time_scale": "BJD_TDB days",
    }


def _cube_grid(cube_attrs: Mapping[str, Any], store: str) -> tuple[GridConfig, int, int]:
    try:
        start = float(cube_attrs["grid_start_bjd"])
        cadence = float(cube_attrs["grid_cadence_days"])
        size = int(cube_attrs["grid_size"])
        star_chunk = int(cube_attrs["star_chunk"])
        time_chunk = int(cube_attrs["time_chunk"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(
            f"no starskope cube at {store} (its attributes lack {exc}); run `starskope ingest` "
            "first, or give the cube's URL"
        ) from exc
    grid = GridConfig(
        start_bjd=start, stop_bjd=start + (size + 0.5) * cadence, cadence_days=cadence
    )
    return grid, star_chunk, time_chunk


def _features(
    config: FeaturesConfig,
    get_client: Callable[[], Any],
    *,
    progress: bool,
    on_chunk: Callable[[dict[str, Any]], None] | None,
) -> FeaturesSummary:
    from starskope_dask.pipeline import _completed, check_store_url, store_options_for

    started = time.perf_counter()
    options = store_options_for(config.storage)
    store = check_store_url(config.store)
    out = check_store_url(config.out)
    if out == store:
        raise ConfigError(f"--out {out} is the cube itself: give a new location for features")
    cube_attrs = read_cube_attrs(store, options)
    grid, star_chunk, time_chunk = _cube_grid(cube_attrs, store)
    stars = read_table(state_url(store, "stars.parquet"), options)
    if stars is None:
        raise StoreError(f"cube {store} has no star table: run `starskope ingest` first")
    ingest_markers = read_chunk_records(store, options)
    wanted = select_stars(stars, config.stars)
    given = read_ephemerides(config.ephemerides, stars, options) if config.ephemerides else {}
    claim_store(out, options, FEATURES_FORMAT)
    lock = acquire_lock(out, options)
    clients: list[Any] = []
    try:
        remove_temporary_files(out, options)
        digest = parameters_hash(config)
        existing = read_cube_attrs(out, options)
        fresh = existing.get("parameters_hash") != digest or existing.get("cube") != cube_reference(
            config.store
        )
        if fresh:
            if existing:
                logger.info("parameters or cube changed: every star's features are recomputed")
            create_features_schema(
                out, config, stars, grid, star_chunk, _attrs(config, cube_attrs, digest), options
            )
        else:
            _grow_features(out, stars, options)
        done = {} if fresh else read_chunk_records(out, options)
        tasks = _plan(
            given,
            config,
            store,
            out,
            stars,
            wanted,
            ingest_markers,
            done,
            grid,
            star_chunk,
            time_chunk,
            digest,
            options,
        )
        records: list[dict[str, Any]] = [done[c] for c in done if c not in {t.chunk for t in tasks}]
        if tasks:
            client = get_client()
            clients.append(client)
            if progress:
                logger.info("dashboard: %s", getattr(client, "dashboard_link", "n/a"))
            futures = client.map(features_chunk, tasks, pure=False)
            for future in _completed(futures, "features", "chunk", progress):
                record = future.result()
                records.append(record)
                if on_chunk is not None:
                    on_chunk(record)
        consolidate(out, options)
        reasons = tuple(r for rec in records for r in rec.get("failures", []))
        summary = FeaturesSummary(
            store=store,
            out=out,
            n_stars=len(stars),
            n_chunks_computed=len(tasks),
            n_chunks_skipped=len(records) - len(tasks),
            n_stars_computed=sum(len(t.rows) for t in tasks),
            n_stars_without_features=len(reasons),
            n_signals=sum(int(rec.get("n_signals", 0)) for rec in records),
            seconds=round(time.perf_counter() - started, 3),
            reasons=reasons,
        )
        write_bytes(
            state_url(out, "summary.json"),
            json.dumps(summary.as_dict(), indent=1).encode(),
            options,
        )
        return summary
    finally:
        release_lock(lock)


def _plan(
    given: Mapping[int, tuple[Ephemeris, ...]],
    config: FeaturesConfig,
    store: str,
    out: str,
    stars: pd.DataFrame,
    wanted: Sequence[int],
    ingest_markers: Mapping[int, Mapping[str, Any]],
    done: Mapping[int, Mapping[str, Any]],
    grid: GridConfig,
    star_chunk: int,
    time_chunk: int,
    digest: str,
    options: Mapping[str, Any],
) -> list[ChunkFeaturesTask]:
    """The star chunks to compute: a selected star's chunk whose record is missing, was made
    from other cube products or parameters, or lacks the star. A recomputed chunk also
    recomputes the stars it held before, so nothing computed earlier is lost.
    """
    from starskope_dask.features.stellar import stellar_properties

    by_chunk: dict[int, set[int]] = {}
    for row in wanted:
        by_chunk.setdefault(row // star_chunk, set()).add(int(row))
    plans: list[tuple[int, set[int], Mapping[str, Any]]] = []
    for chunk, rows in sorted(by_chunk.items()):
        marker = ingest_markers.get(chunk)
        if marker is None:
            logger.warning("cube chunk %d is not ingested yet: its stars are left out", chunk)
            continue
        previous = done.get(chunk)
        products = sorted(marker.get("products", []))
        if previous is not None:
            same = (
                previous.get("parameters_hash") == digest
                and sorted(previous.get("products", [])) == products
            )
            before = {int(s) for s in previous.get("stars", [])}
            if same and rows <= before:
                continue
            rows = rows | before
        plans.append((chunk, rows, marker))
    if not plans:
        return []
    rows_needed = sorted({r for _, rows, _ in plans for r in rows})
    table = stars.set_index("star").loc[rows_needed].reset_index()
    # a catalogue that cannot be read or a MAST outage leaves NaN properties (and a warning),
    # never a failed run
    properties = stellar_properties(
        table, source=config.stellar, storage_options=options, on_error="nan"
    )
    missing = properties["stellar_source"].isin(["missing", "error"])
    if missing.any():
        notes = properties.loc[missing, "stellar_note"].astype(str).unique()[:3]
        logger.warning(
            "%d of %d stars have no stellar properties (%s)",
            int(missing.sum()),
            len(properties),
            "; ".join(notes),
        )
    stellar = {
        int(r): {k: float(props[k]) for k in STELLAR_VARIABLES}
        for r, props in properties.iterrows()
    }
    tasks = []
    for chunk, rows, marker in plans:
        start = chunk * star_chunk
        stop = min(start + star_chunk, len(stars))
        tasks.append(
            ChunkFeaturesTask(
                cube=store,
                out=out,
                chunk=chunk,
                star_start=start,
                star_stop=stop,
                rows=tuple(sorted(rows)),
                time_chunks=dict(marker.get("time_chunks", {})),
                products=tuple(sorted(marker.get("products", []))),
                grid=grid,
                time_chunk=time_chunk,
                config=config,
                parameters_hash=digest,
                stellar={r: stellar.get(r, {}) for r in rows},
                storage_options=options,
                ephemerides={r: given[r] for r in rows if r in given},
            )
        )
    return tasks


def run_with_client(
    config: FeaturesConfig,
    client: Any,
    *,
    progress: bool = True,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> FeaturesSummary:
    """Compute the features of ``config.store`` into ``config.out`` on an existing client.

    Parameters
    ----------
    config : FeaturesConfig
        Validated configuration.
    client : distributed.Client
        Where the work runs.
    progress : bool
        Show a progress bar (and log the dashboard link).
    on_chunk : callable, optional
        Called with each finished chunk's record (tests use it to interrupt a run).

    Returns
    -------
    FeaturesSummary

    Raises
    ------
    StoreError, StoreLockedError, NotAStoreError, ConfigError
    """
    return _features(config, lambda: client, progress=progress, on_chunk=on_chunk)


def run(config: FeaturesConfig, *, progress: bool = True) -> FeaturesSummary:
    """Compute features with a client of its own (a LocalCluster, or the configured
    scheduler), started only when there is work.
    """
    from starskope_dask.cluster import with_own_client

    return with_own_client(
        config,
        lambda get_client: _features(config, get_client, progress=progress, on_chunk=None),
    )


#: The ``title`` attribute of every features store (what tells it from a cube or other Zarr).
FEATURES_TITLE = "starskope_dask features"


def open_features(out: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Open a features store as an xarray Dataset (lazy).

    Raises
    ------
    StoreError
        If there is no features store at ``out``: nothing there, or another Zarr store (a
        cube given where features were meant).
    """
    import xarray as xr

    target, kwargs = _zarr_target(out, storage_options, read_only=True)
    try:
        with quiet_zarr():
            dataset = xr.open_zarr(target, zarr_format=3, **kwargs)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise StoreError(
            f"no starskope features at {out}: {exc}; run `starskope features` first"
        ) from exc
    title = dataset.attrs.get("title")
    if title != FEATURES_TITLE:
        raise StoreError(
            f"{out} is not a starskope features store (its title is {title!r}); give the "
            "store `starskope features --out` wrote (a cube goes to `starskope features`)"
        )
    return dataset
