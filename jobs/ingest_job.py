"""Batch job: discover (archive listing) and ingest into a Zarr store, on any Dask cluster.

In a dask-kubernetes DaskJob the runner pod gets DASK_SCHEDULER_ADDRESS and this script
connects to that scheduler; on a laptop it starts a LocalCluster. Rerunning it after a
failure resumes where the store's done-markers say it stopped.

    python jobs/ingest_job.py s3://stpubdata/k2/public/lightcurves/c5/ s3://my-bucket/c5.zarr
"""

from __future__ import annotations

import argparse
import logging
import sys

from starskope_dask.config import load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.pipeline import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "prefix", help="archive prefix to list, e.g. s3://stpubdata/k2/public/lightcurves/c5/"
    )
    parser.add_argument("store", help="Zarr store URL (local or s3://)")
    parser.add_argument("--manifest", default=None, help="where to keep the manifest")
    parser.add_argument("--config", default=None, help="YAML config file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    manifest = args.manifest or args.store.rstrip("/") + ".manifest.parquet"
    write_manifest(list_archive(args.prefix), manifest)
    summary = run(load_ingest_config(manifest, args.store, args.config))
    logging.info("summary: %s", {k: v for k, v in summary.as_dict().items() if k != "failures"})
    return 0 if summary.n_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
