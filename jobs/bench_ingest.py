"""Benchmark: distributed ingest from a local S3 server vs lightkurve and a bare GET.

Serves the real light curves in ../shared/data/real (or STARSKOPE_REAL_DATA) and a simulated
archive of --products products (real key layout) from a SeaweedFS server on 127.0.0.1 (a Go
server in its own process, objects on disk), then for each dataset measures, in this process:

* starskope ingest (read pass + write pass into a local Zarr cube) on the LocalCluster that
  ``starskope ingest`` starts (``cluster.make_client``: --workers worker processes, one thread
  each), the cluster already running;
* (a) lightkurve, one by one: GET each object, ``lk.read(...).normalize()``, then
  ``LightCurveCollection.stitch()`` per star — on a sample of whole stars (--lightkurve-sample
  products), extrapolated per product;
* (b) a bare concurrent GET of every object with the ingest's concurrency: plain HTTP GETs
  (the stricter baseline, and what starskope itself does for anonymous reads) and s3fs.

and prints products/s, MB/s (source FITS bytes), peak RSS of each worker and of this driver
process, and store bytes per product. The simulated archive is ingested twice, a --subset
first and then all of it, to show the driver's memory does not grow with N.

    python jobs/bench_ingest.py [--products 10000] [--subset 2500] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import psutil

from starskope_dask.cluster import make_client
from starskope_dask.config import load_ingest_config
from starskope_dask.discover import (
    list_archive,
    manifest_frame,
    parse_product_key,
    write_manifest,
)
from starskope_dask.fetch import anonymous_http_url, filesystem
from starskope_dask.pipeline import run_with_client
from starskope_dask.s3server import local_s3_server
from starskope_dask.simulate import SimulationConfig, make_star, star_segments

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STARSKOPE_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
MB = 1e6


@contextmanager
def peak_rss(pids: list[int]) -> Iterator[dict[int, float]]:
    """Sample the RSS of processes every 50 ms; yields {pid: peak MB} (this process: 0).

    Sampled rather than read from ``ru_maxrss``: a spawned worker inherits its parent's
    high-water mark, which would say nothing about the worker itself.
    """
    processes = {0: psutil.Process()} | {pid: psutil.Process(pid) for pid in pids}
    result = {key: 0.0 for key in processes}
    result[-1] = processes[0].memory_info().rss / MB  # this process at the start
    stop = threading.Event()

    def sample() -> None:
        while True:
            for key, process in processes.items():
                with suppress(psutil.Error):
                    result[key] = max(result[key], process.memory_info().rss / MB)
            if stop.wait(0.05):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def upload_real_files(s3_options: dict[str, Any]) -> pd.DataFrame:
    """Put the real light curves (not the deliberately broken ones) into the bucket."""
    fs = filesystem("s3", s3_options)
    rows = []
    for folder in ("kepler", "k2", "tess", "hlsp"):
        for path in sorted((DATA / folder).glob("*.fits")):
            uri = f"s3://stpubdata/real/{folder}/{path.name}"
            fs.pipe_file(uri, path.read_bytes())
            identity = parse_product_key(path.name) or {}
            rows.append({**identity, "s3_uri": uri, "size": path.stat().st_size, "source": "real"})
    return manifest_frame(rows)


def stars_for(n_products: int, seed: int) -> int:
    """How many simulated stars give at least ``n_products`` products."""
    config = SimulationConfig(n_stars=1, seed=seed)
    total, index = 0, 0
    while total < n_products:
        total += len(star_segments(make_star(config, index), config))
        index += 1
    return index


def bare_get(
    urls: list[str], options: dict[str, Any], concurrency: int, *, http: bool
) -> dict[str, float]:
    """GET every object, ``concurrency`` in flight: through s3fs, or as plain HTTP GETs
    (what starskope does for anonymous reads).
    """
    if http:
        fs = fsspec.filesystem("http")
        targets = [anonymous_http_url(u, options) or u for u in urls]
    else:
        fs = filesystem("s3", options)
        targets = urls
    start = time.perf_counter()
    nbytes = 0
    for first in range(0, len(targets), 512):
        blobs = fs.cat(targets[first : first + 512], batch_size=concurrency, on_error="raise")
        nbytes += sum(len(b) for b in blobs.values())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "products_s": len(urls) / seconds, "mb_s": nbytes / MB / seconds}


def lightkurve_sample(
    frame: pd.DataFrame, options: dict[str, Any], sample: int
) -> dict[str, float]:
    """Lightkurve on whole stars (all their products), one product at a time."""
    import lightkurve as lk

    fs = filesystem("s3", options)
    star = frame["star_key"]
    chosen: list[pd.DataFrame] = []
    count = 0
    for _, group in frame.groupby(star, sort=True):
        chosen.append(group)
        count += len(group)
        if count >= sample:
            break
    tmp = Path(tempfile.mkdtemp(prefix="bench-lk-"))
    n_products = failed = 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group in chosen:
            curves = []
            for uri in group["s3_uri"]:
                local = tmp / uri.rsplit("/", 1)[1]
                local.write_bytes(fs.cat_file(uri))
                n_products += 1
                try:
                    curves.append(lk.read(str(local)).normalize())
                except Exception:
                    failed += 1
                local.unlink()
            if curves:
                lk.LightCurveCollection(curves).stitch()
    seconds = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    return {"products": n_products, "failed": failed, "products_s": n_products / seconds}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ingest(
    label: str, frame: pd.DataFrame, workdir: Path, workers: int, star_chunk: int
) -> dict[str, Any]:
    manifest = workdir / f"{label}.parquet"
    store = workdir / f"{label}.zarr"
    write_manifest(frame.drop(columns=["star_key"], errors="ignore"), str(manifest))
    config = load_ingest_config(str(manifest), str(store), n_workers=workers, star_chunk=star_chunk)
    with make_client(config) as client, client.cluster:  # the LocalCluster `ingest` starts
        pids = sorted(client.run(os.getpid).values())
        with peak_rss(pids) as peaks:
            start = time.perf_counter()
            summary = run_with_client(config, client, progress=False)
            seconds = time.perf_counter() - start
    source_bytes = int(frame["size"].sum())
    store_bytes = du(store)
    return {
        "label": label,
        "products": len(frame),
        "stored": summary.n_stored,
        "failed": summary.n_failed,
        "stars": summary.n_stars,
        "seconds": seconds,
        "seconds_read": summary.seconds_read,
        "seconds_write": summary.seconds_write,
        "products_s": len(frame) / seconds,
        "mb_s": source_bytes / MB / seconds,
        "driver_start_mb": peaks[-1],
        "driver_peak_mb": peaks[0],
        "worker_peak_mb": [peaks[pid] for pid in pids],
        "store_bytes_per_product": store_bytes / len(frame),
        "store_share": store_bytes / source_bytes,
        "source_mb": source_bytes / MB,
    }


def star_keys(frame: pd.DataFrame) -> pd.Series:
    """A per-star key for grouping products (catalogue ID from the manifest, else the URI)."""
    ids = frame[["kic", "epic", "tic"]].astype("Float64").fillna(-1).astype("int64")
    keys = ids.astype(str).agg("-".join, axis=1)
    return keys.where(ids.max(axis=1) >= 0, frame["s3_uri"])


def report(
    result: dict[str, Any],
    lightkurve: dict[str, float],
    get: dict[str, float],
    s3fs_get: dict[str, float],
) -> None:
    print(f"\n== {result['label']}: {result['products']} products, {result['source_mb']:.0f} MB")
    print(
        f"  starskope ingest   {result['products_s']:8.1f} products/s  {result['mb_s']:7.1f} MB/s"
        f"  ({result['seconds']:.1f} s: read pass {result['seconds_read']:.1f} s, write pass"
        f" {result['seconds_write']:.1f} s; stored {result['stored']}, failed {result['failed']},"
        f" {result['stars']} stars)"
    )
    print(
        f"  (a) lightkurve     {lightkurve['products_s']:8.1f} products/s"
        f"  (sample of {lightkurve['products']:.0f} products, whole stars)"
        f"  -> starskope is {result['products_s'] / lightkurve['products_s']:.1f}x  [target >= 12x]"
    )
    print(
        f"  (b) bare HTTP GET  {get['products_s']:8.1f} products/s  {get['mb_s']:7.1f} MB/s"
        f"  -> starskope reaches {100 * result['products_s'] / get['products_s']:.0f} %"
        "  [target >= 65 %]"
    )
    print(
        f"      bare s3fs GET  {s3fs_get['products_s']:8.1f} products/s"
        f"  {s3fs_get['mb_s']:7.1f} MB/s"
        f"  -> starskope reaches {100 * result['products_s'] / s3fs_get['products_s']:.0f} %"
    )
    print(
        f"  store {result['store_bytes_per_product'] / 1e3:.1f} kB/product ="
        f" {100 * result['store_share']:.1f} % of the source FITS bytes  [target <= 20 %]"
    )
    workers = ", ".join(f"{mb:.0f}" for mb in result["worker_peak_mb"])
    print(
        f"  peak RSS: workers {workers} MB [target < 1500]; driver {result['driver_peak_mb']:.0f}"
        f" MB (+{result['driver_peak_mb'] - result['driver_start_mb']:.0f} MB during the ingest)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=2_500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--star-chunk", type=int, default=64)
    parser.add_argument("--lightkurve-sample", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with local_s3_server("stpubdata", backend="seaweedfs") as s3:
        read_options = s3.storage_options()
        datasets: list[tuple[str, pd.DataFrame]] = []
        if (DATA / "kepler").is_dir():
            real = upload_real_files(s3.storage_options(anon=False))
            datasets.append(("real", real))
        else:
            print(f"real files not found at {DATA}: skipping the real-file run")
        n_stars = stars_for(args.products, args.seed)
        start = time.perf_counter()
        # In a process of its own, so that this (driver) process's memory is the ingest's.
        subprocess.run(
            [
                sys.executable, "-m", "starskope_dask.cli", "simulate", "s3://stpubdata",
                "--stars", str(n_stars), "--seed", str(args.seed),
                "--processes", str(args.workers), "-q",
            ],
            check=True,
        )  # fmt: skip
        print(f"simulated {n_stars} stars in {time.perf_counter() - start:.0f} s")
        listed = pd.concat(
            [list_archive(f"s3://stpubdata/{m}/", read_options) for m in ("kepler", "k2", "tess")],
            ignore_index=True,
        )
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(listed))
        subset = listed.iloc[np.sort(order[: args.subset])].reset_index(drop=True)
        datasets += [(f"simulated-{len(subset)}", subset), (f"simulated-{len(listed)}", listed)]
        concurrency = load_ingest_config("m", "s").fetch_concurrency
        for label, frame in datasets:
            frame = frame.assign(star_key=star_keys(frame))
            urls = frame["s3_uri"].tolist()
            bare_get(urls, read_options, concurrency, http=True)  # warm the server, page cache
            get = bare_get(urls, read_options, concurrency, http=True)
            s3fs_get = bare_get(urls, read_options, concurrency, http=False)
            result = ingest(label, frame, workdir, args.workers, args.star_chunk)
            lightkurve = lightkurve_sample(frame, read_options, args.lightkurve_sample)
            report(result, lightkurve, get, s3fs_get)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
