"""Benchmark: the features stage (stars/s, memory, scaling) vs lightkurve one star at a time.

On a simulated archive of --stars multi-mission stars (Kepler, K2, TESS; real segment
lengths, up to --max-segments per mission) this runs the real pipeline in this process:
simulate → ``list_archive`` → ingest → ``features.pipeline.run_with_client``, the features
stage once per worker count in --workers on the LocalCluster that ``starskope features``
starts (``cluster.make_client``: worker processes, one thread each), timed from the call to
its return with the cluster already running, and the peak RSS of every worker (psutil,
sampled every 50 ms). Seconds per star per core = wall seconds × workers / stars.

Then, on a random sample of --sample stars (the same stars for both), in this process, one
core, one star at a time:

* lightkurve: a ``lightkurve.LightCurve`` from the star's cube series (the data the features
  stage reads), ``flatten()``, ``to_periodogram("bls")`` with lightkurve's DEFAULT period grid
  and durations, ``fold()`` at the highest peak. Lightkurve's default grid has
  ``≈ 5.7 × baseline²`` periods (frequency step ``10 × 0.05 d / baseline²``): a star seen by
  Kepler and TESS (baseline ~10 years) gets ~10⁸ periods, which lightkurve refuses (> 10⁷,
  ValueError) and would take hours. Where the default grid has more than --lk-max-periods
  periods, astropy's ``BoxLeastSquares.power`` (what lightkurve calls, same data, errors and
  durations) is timed on every k-th period of that grid (at most --lk-subset-periods of them)
  and its time extrapolated linearly to the whole grid (systematic sampling in frequency, so
  the mix of short and long periods — long ones cost more — is kept); flatten and fold are
  timed as they are. Such stars have no lightkurve period, so recovery is compared on the
  sample stars whose full default grid ran.
* "where the time goes": ``compute.star_features`` with every function it calls from
  ``detrend``, ``search``, ``vetting``, ``views``, ``spectrum`` and ``variability`` wrapped in a
  timer (outermost call only), so each stage is timed directly inside the real composition.

Recovery of injected planets (truth period within 0.1 %, or its 1/2 or 2× harmonic, counted
apart), for starskope (any reported signal, from the features store) and lightkurve (the
BLS peak) on the same stars. Prints a summary table; --json-out writes it as JSON.

    python jobs/bench_features.py [--stars 1000] [--workers 1,2] [--sample 100]
                                  [--max-segments 3] [--seed 7] [--json-out bench.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from starskope_dask.cluster import make_client
from starskope_dask.config import GridConfig, load_features_config, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.features import compute, detrend, search, spectrum, variability, vetting, views
from starskope_dask.features.pipeline import ChunkFeaturesTask, read_chunk_series
from starskope_dask.features.series import StarSeries
from starskope_dask.pipeline import run_with_client as ingest
from starskope_dask.simulate import SimulationConfig, simulate_archive
from starskope_dask.store import read_chunk_records, read_cube_attrs, read_table, state_url

MB = 1e6
#: lightkurve's BLS defaults (``BoxLeastSquaresPeriodogram.from_lightcurve``).
LK_DURATIONS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.33)
LK_FREQUENCY_FACTOR = 10.0
LK_MAX_GRID = 1e7  # lightkurve raises ValueError above this many periods
#: Stage of each module whose public functions ``compute.star_features`` calls; a few
#: ``search`` functions have stages of their own (see :data:`STAGE_OF`).
MODULE_STAGES = (
    (detrend, "detrend"),
    (search, "search"),
    (vetting, "vetting"),
    (views, "views"),
    (spectrum, "spectrum"),
    (variability, "variability"),
)
STAGE_OF = {
    "box_fit": "box fit",
    "transit_mask": "box fit",
    "find_single_transits": "single transits",
    "single_transit_periods": "single transits",
}
STAGES = (
    "detrend",
    "search",
    "vetting",
    "box fit",
    "views",
    "single transits",
    "spectrum",
    "variability",
)


# ------------------------------------------------------------------------ measurement


@contextlib.contextmanager
def peak_rss(pids: list[int]) -> Iterator[dict[int, float]]:
    """Sample the RSS of processes every 50 ms; yields {pid: peak MB}."""
    processes = {pid: psutil.Process(pid) for pid in pids}
    result = dict.fromkeys(processes, 0.0)
    stop = threading.Event()

    def sample() -> None:
        while True:
            for pid, process in processes.items():
                with contextlib.suppress(psutil.Error):
                    result[pid] = max(result[pid], process.memory_info().rss / MB)
            if stop.wait(0.05):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Wrap the public functions of the feature modules in timers (outermost call only).

    Yields the seconds per stage, accumulated until the block ends (then the originals are back).
    """
    seconds = dict.fromkeys(STAGES, 0.0)
    depth = [0]
    saved: list[tuple[Any, str, Callable[..., Any]]] = []

    def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return function(*args, **kwargs)
            depth[0] += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
                depth[0] -= 1

        return wrapper

    for module, module_stage in MODULE_STAGES:
        for name, original in vars(module).copy().items():
            if name.startswith("_") or not inspect.isfunction(original):
                continue
            if original.__module__ != module.__name__:
                continue
            saved.append((module, name, original))
            setattr(module, name, timed(STAGE_OF.get(name, module_stage), original))
    try:
        yield seconds
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


# ------------------------------------------------------------------------ the pipeline


def run_pipeline(
    workdir: Path, args: argparse.Namespace, workers: list[int]
) -> tuple[str, str, dict[str, Any], list[dict[str, Any]]]:
    """Simulate, list, ingest, then run the features stage once per worker count.

    Returns the archive, the cube, the simulate/ingest timings and one result per count.
    """
    archive = workdir / "archive"
    for old in (archive, workdir / "cube.zarr", *workdir.glob("features-*.zarr")):
        shutil.rmtree(old, ignore_errors=True)  # this job's own outputs of an earlier run
    start = time.perf_counter()
    simulate_archive(
        str(archive),
        SimulationConfig(n_stars=args.stars, seed=args.seed, max_segments=args.max_segments),
        processes=max(workers),
    )
    simulate_s = time.perf_counter() - start
    manifest = str(workdir / "manifest.parquet")
    frame = list_archive(str(archive))
    write_manifest(frame, manifest)
    cube = str(workdir / "cube.zarr")
    ingest_config = load_ingest_config(
        manifest, cube, n_workers=max(workers), star_chunk=args.star_chunk
    )
    with make_client(ingest_config) as client, client.cluster:
        start = time.perf_counter()
        summary = ingest(ingest_config, client, progress=False)
        ingest_s = time.perf_counter() - start
    if summary.n_failed:
        print(f"warning: {summary.n_failed} products failed to ingest")
    prep = {
        "simulate_s": simulate_s,
        "products": len(frame),
        "ingest_s": ingest_s,
        "cube_stars": summary.n_stars,
    }
    catalogue = str(archive / "catalog" / "tic.parquet")
    runs = []
    for n in workers:
        out = str(workdir / f"features-{n}.zarr")
        config = load_features_config(cube, out, stellar=catalogue, n_workers=n)
        with make_client(config) as client, client.cluster:
            pids = sorted(client.run(os.getpid).values())
            with peak_rss(pids) as peaks:
                start = time.perf_counter()
                result = run_features(config, client)
                seconds = time.perf_counter() - start
        stars = result.n_stars_computed
        runs.append(
            {
                "workers": n,
                "out": out,
                "stars": stars,
                "seconds": seconds,
                "stars_per_s": stars / seconds,
                "s_per_star_per_core": seconds * n / stars,
                "worker_peak_rss_mb": [peaks[p] for p in pids],
                "without_features": result.n_stars_without_features,
                "signals": result.n_signals,
            }
        )
        print(
            f"features on {n} worker(s): {stars} stars in {seconds:.1f} s = "
            f"{stars / seconds:.2f} stars/s; worker peak RSS "
            f"{', '.join(f'{peaks[p]:.0f}' for p in pids)} MB"
        )
    return str(archive), cube, prep, runs


def run_features(config: Any, client: Any) -> Any:
    from starskope_dask.features.pipeline import run_with_client

    return run_with_client(config, client, progress=False)


def cube_grid(attrs: Mapping[str, Any]) -> tuple[GridConfig, int, int]:
    start, cadence = float(attrs["grid_start_bjd"]), float(attrs["grid_cadence_days"])
    size = int(attrs["grid_size"])
    grid = GridConfig(
        start_bjd=start, stop_bjd=start + (size + 0.5) * cadence, cadence_days=cadence
    )
    return grid, int(attrs["star_chunk"]), int(attrs["time_chunk"])


def load_series(cube: str, rows: list[int], config: Any) -> dict[int, StarSeries]:
    """The cube series of ``rows``, read as a features task reads them."""
    grid, star_chunk, time_chunk = cube_grid(read_cube_attrs(cube, {}))
    markers = read_chunk_records(cube, {})
    n_stars = len(read_table(state_url(cube, "stars.parquet"), {}))
    by_chunk: dict[int, list[int]] = {}
    for row in rows:
        by_chunk.setdefault(row // star_chunk, []).append(row)
    series: dict[int, StarSeries] = {}
    for chunk, chunk_rows in sorted(by_chunk.items()):
        start = chunk * star_chunk
        task = ChunkFeaturesTask(
            cube=cube,
            out="",
            chunk=chunk,
            star_start=start,
            star_stop=min(start + star_chunk, n_stars),
            rows=tuple(chunk_rows),
            time_chunks=dict(markers[chunk].get("time_chunks", {})),
            products=(),
            grid=grid,
            time_chunk=time_chunk,
            config=config,
            parameters_hash="",
            stellar={},
            storage_options={},
        )
        series.update(read_chunk_series(task))
    return series


def truth_rows(truth: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """The truth table with each star's cube row (``row``; -1 when not in the cube)."""
    lookup: dict[tuple[str, int], int] = {}
    for name in ("kic", "epic", "tic"):
        for row, value in zip(stars["star"], stars[name], strict=True):
            if pd.notna(value) and int(value) > 0:
                lookup[(name, int(value))] = int(row)
    rows = []
    for _, star in truth.iterrows():
        found = -1
        for name in ("kic", "epic", "tic"):
            value = star[name]
            if pd.notna(value) and (name, int(value)) in lookup:
                found = lookup[(name, int(value))]
                break
        rows.append(found)
    return truth.assign(row=rows)


def match(periods: Any, truth_period: float, tolerance: float = 1e-3) -> str:
    """``"period"``, ``"harmonic"`` (1/2 or 2×) or ``""`` for the best of ``periods``."""
    values = np.asarray(periods, float)
    values = values[np.isfinite(values)]
    if values.size == 0 or not math.isfinite(truth_period):
        return ""
    if np.any(np.abs(values / truth_period - 1) < tolerance):
        return "period"
    for factor in (0.5, 2.0):
        if np.any(np.abs(values / (truth_period * factor) - 1) < tolerance):
            return "harmonic"
    return ""


# ------------------------------------------------------------------------ lightkurve


def lk_default_grid(time_days: np.ndarray) -> tuple[float, float, float, int]:
    """The default BLS period grid of lightkurve: (min period, max period, df, number)."""
    cadence = float(np.median(np.diff(time_days)))
    minimum = max(cadence * 4, max(LK_DURATIONS) + cadence)
    baseline = float(time_days.max() - time_days.min())
    maximum = baseline / 3.0
    df = LK_FREQUENCY_FACTOR * min(LK_DURATIONS) / baseline**2
    n = 1 + round((1 / minimum - 1 / maximum) / df)
    return minimum, maximum, df, n


def lightkurve_star(series: StarSeries, max_periods: int, subset_periods: int) -> dict[str, Any]:
    """Lightkurve flatten → BLS (default grid) → fold of one star (extrapolated if huge)."""
    import lightkurve as lk
    from astropy.time import Time
    from astropy.timeseries import BoxLeastSquares

    start = time.perf_counter()
    lc = lk.LightCurve(
        time=Time(series.time, format="jd", scale="tdb"),
        flux=series.flux,
        flux_err=series.flux_err,
    )
    flat = lc.flatten()
    times = np.asarray(flat.remove_nans().time.value, float)
    minimum, _, df, n_periods = lk_default_grid(times)
    if n_periods <= max_periods:
        pg = flat.to_periodogram("bls")
        period = float(pg.period_at_max_power.value)
        epoch = pg.transit_time_at_max_power
        flat.fold(period=period, epoch_time=epoch)
        return {
            "seconds": time.perf_counter() - start,
            "n_periods": n_periods,
            "extrapolated": False,
            "period": period,
        }
    # lightkurve's own steps up to its BLS call, then astropy's BLS (what it calls) on
    # every k-th period of the default grid, extrapolated linearly in the number of periods
    clean = flat.remove_nans()
    dy = clean.flux_err if np.isfinite(clean.flux_err).all() else None
    bls = BoxLeastSquares(clean.time, clean.flux, dy)
    step = math.ceil(n_periods / subset_periods)
    index = np.arange(0, n_periods, step)
    periods = 1.0 / (1.0 / minimum - df * index)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    result = bls.power(periods, LK_DURATIONS)
    bls_seconds = (time.perf_counter() - start) * n_periods / index.size
    start = time.perf_counter()
    best = int(np.argmax(np.asarray(result.power)))
    flat.fold(period=float(periods[best]), epoch_time=result.transit_time[best])
    fold = time.perf_counter() - start
    return {
        "seconds": setup + bls_seconds + fold,
        "n_periods": n_periods,
        "extrapolated": True,
        "timed_periods": int(index.size),
        "refused_by_lightkurve": n_periods > LK_MAX_GRID,
        "period": math.nan,
    }


# ------------------------------------------------------------------------ report


def recovery_line(label: str, kinds: list[str]) -> str:
    n = len(kinds)
    exact = kinds.count("period")
    harmonic = kinds.count("harmonic")
    share = 100 * exact / n if n else math.nan
    return (
        f"  {label:44s} {exact:4d}/{n:<4d} ({share:5.1f} %) at the period, "
        f"+{harmonic} at a harmonic"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stars", type=int, default=1000)
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    parser.add_argument("--max-segments", type=int, default=3)
    parser.add_argument(
        "--sample",
        type=int,
        default=100,
        help="stars run through lightkurve and the stage breakdown",
    )
    parser.add_argument(
        "--lk-max-periods",
        type=int,
        default=1_000_000,
        help="run lightkurve's full default grid up to this many periods",
    )
    parser.add_argument(
        "--lk-subset-periods",
        type=int,
        default=20_000,
        help="periods timed where the default grid is larger (extrapolated)",
    )
    parser.add_argument(
        "--star-chunk",
        type=int,
        default=64,
        help="cube star chunk = one features task (the default is ingest's)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir", help="keep the archive, cube and features here (replaced on each run)"
    )
    parser.add_argument("--json-out")
    args = parser.parse_args()
    workers = sorted({int(w) for w in args.workers.split(",")})
    logging.getLogger("lightkurve").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-features-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        summary = benchmark(workdir, args, workers)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(json_ready(summary), indent=1, allow_nan=False))
        print(f"\nwrote {args.json_out}")


def benchmark(workdir: Path, args: argparse.Namespace, workers: list[int]) -> dict[str, Any]:
    archive, cube, prep, runs = run_pipeline(workdir, args, workers)
    best = runs[-1]  # the most workers
    import xarray as xr

    ds = xr.open_zarr(best["out"], zarr_format=3)
    store_periods = ds["period"].values
    truth = truth_rows(
        pd.read_parquet(Path(archive) / "truth" / "stars.parquet"),
        read_table(state_url(cube, "stars.parquet"), {}),
    )
    in_cube = truth[truth["row"] >= 0]
    rng = np.random.default_rng(args.seed)
    sample_size = min(args.sample, len(in_cube))
    sample = in_cube.iloc[np.sort(rng.choice(len(in_cube), sample_size, replace=False))]
    config = load_features_config(cube, str(workdir / "unused.zarr"), stellar="none")
    series = load_series(cube, sample["row"].astype(int).tolist(), config)

    # warm up imports and caches outside the timing
    first = series[int(sample["row"].iloc[0])]
    compute.star_features(first, config, {})
    lightkurve_star(first, 10**5, 2_000)

    per_star = []
    totals = dict.fromkeys(STAGES, 0.0)
    for _, star in sample.iterrows():
        row = int(star["row"])
        one = series[row]
        with stage_timers() as stage_seconds:
            start = time.perf_counter()
            compute.star_features(one, config, {})  # stellar values only pass through
            ours = time.perf_counter() - start
        for stage, seconds in stage_seconds.items():
            totals[stage] += seconds
        lk_result = lightkurve_star(one, args.lk_max_periods, args.lk_subset_periods)
        per_star.append(
            {
                "row": row,
                "label": star["label"],
                "missions": star["missions"],
                "baseline_days": one.baseline_days,
                "points": one.size,
                "expected_snr": float(star["expected_snr"]),
                "truth_period": float(star["period"]),
                "starskope_s": ours,
                "starskope_match": match(store_periods[row], float(star["period"])),
                "lightkurve_s": lk_result["seconds"],
                "lightkurve_periods": lk_result["n_periods"],
                "lightkurve_extrapolated": lk_result["extrapolated"],
                "lightkurve_match": match([lk_result["period"]], float(star["period"])),
            }
        )
        print(
            f"  star {row:5d} {star['label']:6s} {star['missions']:16s} "
            f"{one.baseline_days:7.0f} d {one.size:6d} pts  starskope {ours:6.2f} s  "
            f"lightkurve {lk_result['seconds']:8.1f} s"
            + (" (extrapolated)" if lk_result["extrapolated"] else "")
        )
    stars = pd.DataFrame(per_star)
    return report(args, prep, runs, stars, totals, truth, store_periods)


def report(
    args: argparse.Namespace,
    prep: dict[str, Any],
    runs: list[dict[str, Any]],
    stars: pd.DataFrame,
    totals: dict[str, float],
    truth: pd.DataFrame,
    store_periods: np.ndarray,
) -> dict[str, Any]:
    n_sample = len(stars)
    best = runs[-1]
    lk_mean = float(stars["lightkurve_s"].mean())
    ours_sample = float(stars["starskope_s"].mean())
    extrapolated = int(stars["lightkurve_extrapolated"].sum())
    print(
        f"\n== features benchmark: {args.stars} simulated stars (seed {args.seed}, up to "
        f"{args.max_segments} segments per mission, real lengths), {prep['products']} products"
    )
    print(
        f"  simulate {prep['simulate_s']:.0f} s, ingest {prep['ingest_s']:.0f} s "
        f"({prep['cube_stars']} cube stars)"
    )
    print("\n  workers  stars/s   s/star/core  speed-up  worker peak RSS (MB)")
    base = runs[0]
    for run in runs:
        speedup = base["seconds"] / run["seconds"]
        rss = ", ".join(f"{mb:.0f}" for mb in run["worker_peak_rss_mb"])
        print(
            f"  {run['workers']:7d}  {run['stars_per_s']:7.2f}   {run['s_per_star_per_core']:9.2f}"
            f"    {speedup:5.2f}x  {rss}"
        )
    print(
        f"\n  per core, {n_sample} sample stars ({extrapolated} with lightkurve's BLS timed on a "
        f"subset of its default grid and extrapolated linearly, as its grid has more than "
        f"{args.lk_max_periods} periods; {int((stars['lightkurve_periods'] > LK_MAX_GRID).sum())} "
        "of them lightkurve itself refuses: > 1e7 periods):"
    )
    ratio_pipeline = lk_mean / best["s_per_star_per_core"]
    ratio_same = lk_mean / ours_sample
    print(
        f"  lightkurve flatten+BLS+fold  {lk_mean:9.2f} s/star  (median "
        f"{stars['lightkurve_s'].median():.2f} s)"
    )
    print(
        f"  starskope pipeline           {best['s_per_star_per_core']:9.2f} s/star/core "
        f"({best['workers']} workers, all {best['stars']} stars)  -> {ratio_pipeline:.1f}x "
        "faster per core  [target >= 20x]"
    )
    print(
        f"  starskope star_features      {ours_sample:9.2f} s/star  (same sample stars, this "
        f"process)  -> {ratio_same:.1f}x"
    )
    for label, chosen in (
        ("single-mission stars", ~stars["missions"].str.contains(",")),
        ("multi-mission stars", stars["missions"].str.contains(",")),
    ):
        part = stars[chosen]
        if len(part):
            print(
                f"    {label:22s} {len(part):4d}: lightkurve {part['lightkurve_s'].mean():8.2f} s,"
                f" starskope {part['starskope_s'].mean():6.2f} s"
                f" -> {part['lightkurve_s'].mean() / part['starskope_s'].mean():.1f}x"
            )
    total = float(stars["starskope_s"].sum())
    print(f"\n  where the time goes (star_features on the {n_sample} sample stars, {total:.1f} s):")
    other = total - sum(totals.values())
    for stage, seconds in [*totals.items(), ("other", other)]:
        print(f"    {stage:16s} {seconds / n_sample:7.3f} s/star  {100 * seconds / total:5.1f} %")
    planets = truth[(truth["label"] == "planet") & (truth["row"] >= 0)]
    all_kinds = [
        match(store_periods[int(r)], p)
        for r, p in zip(planets["row"], planets["period"], strict=True)
    ]
    strong = planets["expected_snr"] >= 12
    strong_kinds = [k for k, s in zip(all_kinds, strong, strict=True) if s]
    sample_planets = stars[(stars["label"] == "planet") & ~stars["lightkurve_extrapolated"]]
    print("\n  recovery of injected planets (period within 0.1 %; harmonics 1/2, 2x apart):")
    print(recovery_line(f"starskope, all {len(planets)} planets", all_kinds))
    print(recovery_line("starskope, expected SNR >= 12", strong_kinds))
    print(
        recovery_line(
            f"starskope, {len(sample_planets)} sample planets lightkurve ran fully",
            sample_planets["starskope_match"].tolist(),
        )
    )
    print(
        recovery_line("lightkurve, the same planets", sample_planets["lightkurve_match"].tolist())
    )
    return {
        "stars": args.stars,
        "seed": args.seed,
        "max_segments": args.max_segments,
        "prep": prep,
        "runs": runs,
        "sample": n_sample,
        "lightkurve_s_per_star": lk_mean,
        "lightkurve_extrapolated_stars": extrapolated,
        "starskope_s_per_star_per_core": best["s_per_star_per_core"],
        "starskope_sample_s_per_star": ours_sample,
        "ratio_per_core": ratio_pipeline,
        "ratio_same_stars": ratio_same,
        "stage_s_per_star": {k: v / n_sample for k, v in [*totals.items(), ("other", other)]},
        "recovery": {
            "starskope_all": {
                "n": len(all_kinds),
                "period": all_kinds.count("period"),
                "harmonic": all_kinds.count("harmonic"),
            },
            "starskope_snr12": {
                "n": len(strong_kinds),
                "period": strong_kinds.count("period"),
                "harmonic": strong_kinds.count("harmonic"),
            },
            "same_planets_starskope": sample_planets["starskope_match"].value_counts().to_dict(),
            "same_planets_lightkurve": sample_planets["lightkurve_match"].value_counts().to_dict(),
            "same_planets_n": len(sample_planets),
        },
        "per_star": stars.to_dict(orient="records"),
    }


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    main()
