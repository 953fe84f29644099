"""Benchmark: discovery throughput, archive-native and through MAST.

1. Archive-native: --ids catalogue IDs (Kepler, K2 and TESS alike) are found in a bucket on
   a local S3 server (SeaweedFS on 127.0.0.1) holding their products under the public key
   layout (empty objects: discovery lists keys, it never reads them). Prints targets/s with
   the default concurrency and with one listing at a time.
2. MAST: the same kind of request answered by a replay of MAST-shaped answers with injected
   latency (--latency seconds per call plus 1 ms per row returned), comparing
   starskope's batched path (``discover_mast``: 100 IDs per query, 50 observations per
   product list, 4 calls in flight, S3 URIs from the key layout) with the one-at-a-time
   pattern of the MAST tutorials (per target ``query_criteria``, per observation
   ``get_product_list``, per product a ``get_cloud_uris`` lookup). The one-at-a-time path is
   timed on a sample and extrapolated per target.

    python jobs/bench_discover.py [--ids 10000] [--latency 0.3] [--sample 100]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starskope_dask.discover import (
    discover_ids,
    discover_mast,
    layout_key,
    mast_target_name,
    mission_id_name,
    parse_target,
)
from starskope_dask.fetch import filesystem
from starskope_dask.mast import MastClient, MastSettings
from starskope_dask.s3server import local_s3_server

SECTOR_STAMPS = {1: "2018206045859", 14: "2019198215352", 40: "2021204101404"}


def product_names(mission: str, number: int) -> list[str]:
    """Two or three light curves per star, named as the pipelines name them."""
    if mission == "Kepler":
        return [f"kplr{number:09d}-{s}_llc.fits" for s in ("2009166043257", "2009259160929")]
    if mission == "K2":
        return [f"ktwo{number}-c{c:02d}_llc.fits" for c in (4, 5)]
    return [
        f"tess{stamp}-s{sector:04d}-{number:016d}-{120 + sector:04d}-s_lc.fits"
        for sector, stamp in SECTOR_STAMPS.items()
    ]


def catalogue(n: int) -> list[tuple[str, int]]:
    missions = ("Kepler", "K2", "TESS")
    bases = {"Kepler": 1_000_000, "K2": 201_000_000, "TESS": 10_000_000}
    return [(missions[i % 3], bases[missions[i % 3]] + 7 * i) for i in range(n)]


class ReplayedMast:
    """MAST-shaped answers for the catalogue, with latency per call and per row."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0
        self.lock = threading.Lock()

    def _wait(self, rows: int) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(self.latency + 0.001 * rows)

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        names = criteria["target_name"]
        names = [names] if isinstance(names, str) else names
        mission = criteria["obs_collection"]
        rows = [
            {
                "obsid": f"{mission}-{name}",
                "obs_collection": mission,
                "target_name": name,
                "s_ra": 10.0,
                "s_dec": 20.0,
            }
            for name in names
        ]
        self._wait(len(rows))
        return rows

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        rows = []
        for obsid in obsids:
            mission, name = obsid.split("-", 1)
            number = int("".join(c for c in name if c.isdigit()))
            for file_name in product_names(mission, number):
                rows.append(
                    {
                        "obsID": obsid,
                        "parent_obsid": obsid,
                        "productFilename": file_name,
                        "dataURI": f"mast:{mission}/product/{file_name}",
                        "size": 1_000_000,
                    }
                )
                rows.append(
                    {**rows[-1], "productFilename": file_name.replace("lc.fits", "tp.fits")}
                )
        self._wait(len(rows))
        return rows

    def cloud_uri(self, data_uri: str) -> str | None:
        self._wait(1)
        key = layout_key(data_uri.rsplit("/", 1)[1])
        return f"s3://stpubdata/{key}" if key else None

    def resolve_name(self, name: str) -> list[float]:
        raise NotImplementedError

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        raise NotImplementedError

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        raise NotImplementedError


def one_at_a_time(backend: ReplayedMast, ids: list[tuple[str, int]]) -> int:
    """The tutorial pattern: one query, one product list per observation, one URI per product."""
    found = 0
    for mission, number in ids:
        observations = backend.query_criteria(
            {"obs_collection": mission, "target_name": mast_target_name(mission, number)}
        )
        for obs in observations:
            for product in backend.product_list([obs["obsid"]]):
                if product["productFilename"].endswith("lc.fits"):
                    found += backend.cloud_uri(product["dataURI"]) is not None
    return found


def bench_archive_native(n: int) -> None:
    ids = catalogue(n)
    with local_s3_server("stpubdata", backend="seaweedfs") as s3:
        writer = filesystem("s3", s3.storage_options(anon=False))
        blobs = {
            f"stpubdata/{layout_key(name)}": b""
            for mission, number in ids
            for name in product_names(mission, number)
        }
        start = time.perf_counter()
        items = list(blobs.items())
        for first in range(0, len(items), 2000):
            writer.pipe(dict(items[first : first + 2000]), batch_size=64)
        print(
            f"archive: {len(blobs)} objects of {n} stars written in {time.perf_counter() - start:.0f} s"
        )
        options = s3.storage_options()
        for concurrency in (32, 1):
            sample = ids if concurrency > 1 else ids[:: max(1, 20)]
            filesystem("s3", options).invalidate_cache()  # no listing answered from memory
            start = time.perf_counter()
            frame, warnings = discover_ids(
                sample, "s3://stpubdata", options, concurrency=concurrency
            )
            seconds = time.perf_counter() - start
            assert not warnings and len(frame) == sum(
                len(product_names(m, i)) for m, i in sample
            ), warnings[:3]
            print(
                f"  archive-native, {concurrency:2d} listings in flight: {len(sample)} IDs -> "
                f"{len(frame)} products in {seconds:.1f} s = {len(sample) / seconds:.0f} targets/s"
            )


def bench_mast(n: int, latency: float, sample: int) -> None:
    ids = catalogue(n)
    targets = [parse_target(mission_id_name(m, i)) for m, i in ids]
    backend = ReplayedMast(latency)
    with tempfile.TemporaryDirectory() as cache:
        client = MastClient(MastSettings(cache_dir=Path(cache)), backend)  # type: ignore[arg-type]
        start = time.perf_counter()
        frame, warnings = discover_mast(targets, client)
        batched = time.perf_counter() - start
    assert not warnings, warnings[:3]
    print(
        f"  MAST batched: {n} IDs -> {len(frame)} products, {backend.calls} calls, "
        f"{batched:.1f} s = {n / batched:.0f} targets/s"
    )
    naive_backend = ReplayedMast(latency)
    start = time.perf_counter()
    found = one_at_a_time(naive_backend, ids[:sample])
    naive = (time.perf_counter() - start) / sample
    print(
        f"  MAST one at a time: {sample} IDs -> {found} products, {naive_backend.calls} calls, "
        f"{naive:.2f} s/target = {1 / naive:.2f} targets/s (extrapolated: {n * naive / 3600:.1f} h "
        f"for {n})  -> batched is {naive * n / batched:.0f}x faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per MAST call")
    parser.add_argument("--sample", type=int, default=60, help="IDs for the one-at-a-time path")
    args = parser.parse_args()
    print(f"== archive-native discovery of {args.ids} IDs on a local S3 server")
    bench_archive_native(args.ids)
    print(f"== MAST discovery of {args.ids} IDs, replayed with {args.latency} s per call")
    bench_mast(args.ids, args.latency, args.sample)


if __name__ == "__main__":
    main()
