"""Benchmark: products per second of `simulate_archive`, and driver memory as N grows.

python jobs/bench_simulate.py --stars 200 800 --missions kepler,k2,tess --processes 2
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time

from starskope_dask.simulate import SimulationConfig, simulate_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stars", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--missions", default="kepler,k2,tess")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--max-segments", type=int, default=3)
    args = parser.parse_args()
    for n in args.stars:
        out = tempfile.mkdtemp(prefix="bench-sim-")
        config = SimulationConfig(
            n_stars=n,
            missions=tuple(args.missions.split(",")),
            max_segments=args.max_segments,
            seed=1,
        )
        start = time.perf_counter()
        result = simulate_archive(out, config, processes=args.processes)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"stars={n} products={result.n_products} {result.n_bytes / 1e6:.0f} MB "
            f"{seconds:.1f} s -> {result.n_products / seconds:.1f} products/s, "
            f"{result.n_bytes / 1e6 / seconds:.1f} MB/s; driver peak RSS {rss:.0f} MB; "
            f"10 000 products in {10000 / (result.n_products / seconds) / 60:.1f} min"
        )
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
