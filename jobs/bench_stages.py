"""Benchmark: the ingest's stages one at a time, in this process, without Dask.

1. The read pass's task body (``read_partition``: fetch, read, grid, stage) on a simulated
   archive of --stars stars, from local disk and from a SeaweedFS server on 127.0.0.1 (objects
   fetched once before timing, so the server answers from a warm cache): ms per product.
2. The driver's cross-match (``cross_match``) of --products synthetic products: seconds.

    python jobs/bench_stages.py [--stars 300] [--products 10000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from starskope_dask.align import cross_match
from starskope_dask.config import GridConfig, ReadConfig
from starskope_dask.discover import list_archive
from starskope_dask.fetch import filesystem, iter_fetched
from starskope_dask.pipeline import ReadTask, read_partition
from starskope_dask.s3server import local_s3_server
from starskope_dask.simulate import SimulationConfig, simulate_archive


def time_read_partition(urls: list[str], options: dict | None, workdir: Path) -> float:
    store = workdir / "stage.zarr"
    shutil.rmtree(store, ignore_errors=True)
    task = ReadTask(
        store=str(store),
        read=ReadConfig(),
        grid=GridConfig(),
        source_options=options,
        store_options=None,
        concurrency=32,
    )
    start = time.perf_counter()
    read_partition([(url, None) for url in urls], task)
    return (time.perf_counter() - start) / len(urls) * 1e3


def bench_read_pass(n_stars: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    archive = workdir / "archive"
    simulate_archive(str(archive), SimulationConfig(n_stars=n_stars, seed=11), processes=2)
    local = list_archive(str(archive))["s3_uri"].tolist()
    print(f"read pass (read_partition), {len(local)} simulated products:")
    print(f"  local disk: {time_read_partition(local, None, workdir):.2f} ms/product")
    with local_s3_server("stpubdata", backend="seaweedfs") as s3:
        writer = filesystem("s3", s3.storage_options(anon=False))
        for mission in ("kepler", "k2", "tess"):
            writer.put(str(archive / mission), "stpubdata/", recursive=True)
        options = s3.storage_options()
        remote = list_archive("s3://stpubdata/", options)["s3_uri"].tolist()
        for _ in iter_fetched(remote, options):  # warm the server
            pass
        print(f"  SeaweedFS:  {time_read_partition(remote, options, workdir):.2f} ms/product")
    shutil.rmtree(workdir, ignore_errors=True)


def bench_cross_match(n: int) -> None:
    rng = np.random.default_rng(1)
    kic = np.where(rng.random(n) < 0.3, rng.integers(1, 4000, n), -1)
    products = pd.DataFrame(
        {
            "mission": rng.choice(["Kepler", "K2", "TESS"], n),
            "kic": pd.array(kic, dtype="Int64"),
            "epic": pd.array([pd.NA] * n, dtype="Int64"),
            "tic": pd.array(rng.integers(1, 4548, n), dtype="Int64"),
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-90, 90, n),
        }
    )
    products["kic"] = products["kic"].where(products["kic"] > 0)
    start = time.perf_counter()
    _, stars = cross_match(products, 2.0, None)
    print(f"cross_match: {n} products -> {len(stars)} stars in {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stars", type=int, default=300)
    parser.add_argument("--products", type=int, default=10_000)
    args = parser.parse_args()
    bench_cross_match(args.products)
    bench_read_pass(args.stars)


if __name__ == "__main__":
    main()
