"""Benchmark: per-file read cost of the reader vs fitsio, astropy and lightkurve.

Reads every Kepler, K2 and TESS light curve in ../shared/data/real (or STARSKOPE_REAL_DATA),
from local disk and from a local S3 server (moto on 127.0.0.1), and prints the median
per-file time of each method and the ratios against the reader. Same files, same process.

    python jobs/bench_read.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import fitsio
import numpy as np
from astropy.io import fits

from starskope_dask.read import read_light_curve

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STARSKOPE_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def columns_of(path: Path) -> list[str]:
    quality = "QUALITY" if path.name.startswith("tess") else "SAP_QUALITY"
    return ["TIME", "PDCSAP_FLUX", "PDCSAP_FLUX_ERR", quality]


def fitsio_bare(path: Path) -> None:
    with fitsio.FITS(str(path)) as hdul:
        hdul[1].read(columns=columns_of(path))


def astropy_columns(path: Path) -> None:
    with fits.open(path, memmap=False) as hdul:
        table = hdul[1].data
        for name in columns_of(path):
            np.asarray(table[name])


def lightkurve_read(path: Path) -> None:
    import lightkurve as lk

    lk.read(str(path)).normalize()


def timed(function: Callable[[Path], object], files: list[Path], rounds: int) -> float:
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for path in files:
            function(path)
        per_round.append((time.perf_counter() - start) / len(files))
    return statistics.median(per_round)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    files = sorted(p for d in ("kepler", "k2", "tess") for p in (DATA / d).glob("*.fits"))
    if not files:
        raise SystemExit(f"no real files under {DATA}")
    size = sum(p.stat().st_size for p in files) / len(files)
    print(f"{len(files)} files, mean {size / 1e6:.2f} MB, median of {args.rounds} rounds")
    lightkurve_read(files[0])  # import cost out of the timing
    ours = timed(lambda p: read_light_curve(str(p)), files, args.rounds)
    results = {
        "starskope read_light_curve": ours,
        "fitsio bare column read": timed(fitsio_bare, files, args.rounds),
        "astropy fits.open + columns": timed(astropy_columns, files, args.rounds),
        "lightkurve read().normalize()": timed(lightkurve_read, files, max(1, args.rounds - 2)),
    }
    print("\nlocal disk                       ms/file   vs starskope")
    for name, seconds in results.items():
        print(f"  {name:30s} {seconds * 1e3:8.2f}   {seconds / ours:6.2f}x")

    from starskope_dask.fetch import fetch_bytes
    from starskope_dask.s3server import local_s3_server

    with local_s3_server("stpubdata") as s3:
        import fsspec

        fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))
        urls = []
        for path in files:
            key = f"stpubdata/bench/{path.parent.name}/{path.name}"
            fs.put_file(str(path), key)
            urls.append(f"s3://{key}")

        def s3_ours(url: str) -> None:
            read_light_curve(url)

        def s3_get(url: str) -> None:
            fetch_bytes(url)

        quality = {u: columns_of(p) for u, p in zip(urls, files, strict=True)}

        def s3_fitsio_cols(url: str) -> None:
            data = fetch_bytes(url)
            with tempfile.NamedTemporaryFile(suffix=".fits") as tmp:
                tmp.write(data)
                tmp.flush()
                with fitsio.FITS(tmp.name) as hdul:
                    hdul[1].read(columns=quality[url])

        s3_ours_t = timed(s3_ours, urls, args.rounds)  # type: ignore[arg-type]
        s3_results = {
            "starskope read_light_curve": s3_ours_t,
            "GET + fitsio bare column read": timed(s3_fitsio_cols, urls, args.rounds),  # type: ignore[arg-type]
            "bare GET only": timed(s3_get, urls, args.rounds),  # type: ignore[arg-type]
        }
        print("\nlocal S3 (moto, 127.0.0.1)       ms/file   vs starskope")
        for name, seconds in s3_results.items():
            print(f"  {name:30s} {seconds * 1e3:8.2f}   {seconds / s3_ours_t:6.2f}x")


if __name__ == "__main__":
    main()
