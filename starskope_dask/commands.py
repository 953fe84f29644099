"""Pipeline subcommands of ``starskope``: simulate, discover, ingest, status, demo.

Each ``cmd_*`` function parses nothing and decides nothing: it turns arguments into a config,
calls one library function and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

logger = logging.getLogger(__name__)


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write a simulated archive."""
    from starskope_dask.simulate import SimulationConfig, simulate_archive

    config = SimulationConfig(
        n_stars=args.stars,
        missions=tuple(m.strip().lower() for m in args.missions.split(",") if m.strip()),
        seed=args.seed,
        max_segments=args.max_segments,
        segment_days=args.segment_days,
    )
    result = simulate_archive(
        args.out_url, config, processes=args.processes, progress=not args.quiet
    )
    _emit(
        f"wrote {result.n_products} products of {result.n_stars} stars "
        f"({result.n_bytes / 1e6:.1f} MB) to {result.out_url}; truth: {result.truth_url}"
    )
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    """Targets to a manifest: archive-native for catalogue IDs, MAST for names and cones."""
    from pathlib import Path

    from starskope_dask.config import load_storage_config
    from starskope_dask.discover import discover, list_archive, read_targets_file, write_manifest
    from starskope_dask.mast import MastClient, MastSettings, default_cache_dir

    targets = list(args.targets)
    for path in args.targets_file or []:
        targets += read_targets_file(path)
    options = load_storage_config().storage_options()
    settings = MastSettings(
        cache_dir=Path(args.mast_cache) if args.mast_cache else default_cache_dir(),
        offline=args.offline,
    )
    problems: list[str] = []
    if not targets and not args.prefix:
        manifest = list_archive(args.archive, options)
    else:
        manifest, problems = discover(
            targets,
            via=args.via,
            archive=args.archive,
            prefixes=args.prefix or (),
            missions=args.mission,
            products=args.product,
            radius_arcsec=args.radius,
            mast=MastClient(settings),
            storage_options=options,
        )
    write_manifest(manifest, args.output)
    for problem in problems:
        _emit(f"warning: {problem}")
    _emit(f"{len(manifest)} products of {manifest['target'].nunique()} targets -> {args.output}")
    if manifest.empty:
        return 3
    return 0 if not problems else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    """Manifest to the Zarr cube."""
    from starskope_dask.config import load_ingest_config
    from starskope_dask.pipeline import run

    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    config = load_ingest_config(
        args.manifest,
        args.store,
        args.config,
        scheduler_address=args.scheduler,
        n_workers=args.workers,
    )
    summary = run(config, progress=not args.quiet)
    _emit(_summary_text(summary.as_dict()))
    if args.json:
        _emit(json.dumps(summary.as_dict()))
    return 0 if summary.n_failed == 0 else 1


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"store {summary['store']}: {summary['n_stars']} stars, {summary['n_products']} products "
        f"({summary['n_stored']} stored, {summary['n_failed']} failed); "
        f"{summary['n_chunks_written']} chunks written, "
        f"{summary['n_chunks_skipped']} already done; "
        f"{summary['bytes_read'] / 1e6:.1f} MB read in {summary['seconds']:.1f} s"
    ]
    lines += [
        f"  failed: {f['url']}: {f['error_type']}: {f['message']}" for f in summary["failures"]
    ]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    """Report a store's contents and failures."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.pipeline import store_options_for
    from starskope_dask.store import store_status

    status = store_status(args.store, store_options_for(load_storage_config()))
    if args.json:
        _emit(json.dumps(status.as_dict()))
        return 0
    _emit(
        f"store {status.store}: {status.n_stars} stars, {status.n_products} products, "
        f"{status.n_stored} stored, {status.n_failed} failed; chunks done "
        f"{status.n_chunks_done}/{status.n_chunks}; grid {status.grid}"
    )
    for failure in status.failures:
        _emit(f"  failed: {failure['url']}: {failure['error_type']}: {failure['message']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded main job: local S3 server, simulated archive, discover, ingest, plot."""
    from starskope_dask.demo import run_demo

    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    result = run_demo(args.out, n_stars=args.stars, seed=args.seed, n_workers=args.workers)
    _emit(_summary_text(result["summary"]))
    _emit(f"manifest: {result['manifest']}\nstore: {result['store']}\nplot: {result['plot']}")
    return 0


def register(sub: Any) -> None:
    """Add the pipeline subcommands to the ``starskope`` parser."""
    simulate = sub.add_parser("simulate", help="write a simulated archive with truth tables")
    simulate.add_argument("out_url", metavar="OUT_URL", help="local folder or s3://bucket[/prefix]")
    simulate.add_argument("--stars", type=int, default=20, help="number of stars (default 20)")
    simulate.add_argument("--missions", default="kepler,k2,tess", help="comma-separated")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--max-segments",
        type=int,
        default=3,
        help="most quarters/campaigns/sectors per star and mission",
    )
    simulate.add_argument(
        "--segment-days",
        type=float,
        default=None,
        help="cut segments to this many days (small, fast archives)",
    )
    simulate.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    simulate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    discover = sub.add_parser(
        "discover",
        help="targets to a manifest of products",
        description="TARGET: KIC n | EPIC n | TIC n | RA,DEC[,RADIUS_ARCSEC] | "
        "hosts:kepler|k2|tess (confirmed planet hosts) | a name MAST resolves (HAT-P-7)",
    )
    discover.add_argument("targets", nargs="*", metavar="TARGET")
    discover.add_argument("--targets-file", action="append", help="file with one target per line")
    discover.add_argument(
        "--archive", default="s3://stpubdata", help="bucket (or folder) holding the public layout"
    )
    discover.add_argument(
        "--prefix", action="append", help="list every product under this prefix (bulk)"
    )
    discover.add_argument(
        "--via",
        choices=("auto", "mast", "archive"),
        default="auto",
        help="auto: IDs from the bucket's key layout, names and cones through MAST (default)",
    )
    discover.add_argument("--mission", action="append", help="kepler|k2|tess (repeatable)")
    discover.add_argument(
        "--product",
        action="append",
        help="kepler-lc|kepler-sc|k2-lc|k2-sc|tess-spoc-2min|tess-spoc-20s|hlsp|hlsp-NAME "
        "(repeatable; default: every mission light curve)",
    )
    discover.add_argument(
        "--radius", type=float, default=10.0, help="search radius in arcsec (default 10)"
    )
    discover.add_argument(
        "--mast-cache", help="where MAST answers are cached (default ~/.cache/starskope/mast)"
    )
    discover.add_argument(
        "--offline", action="store_true", help="answer from the MAST cache only (replay)"
    )
    discover.add_argument("-o", "--output", default="manifest.parquet")
    discover.set_defaults(func=cmd_discover)

    ingest = sub.add_parser("ingest", help="manifest to the time-aligned Zarr cube")
    ingest.add_argument("manifest", metavar="MANIFEST")
    ingest.add_argument("--store", required=True, help="local path or s3:// URL of the cube")
    ingest.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    ingest.add_argument("--workers", type=int, help="LocalCluster worker processes")
    ingest.add_argument("--config", help="YAML config file")
    ingest.add_argument("--json", action="store_true", help="also print the summary as JSON")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ingest.set_defaults(func=cmd_ingest)

    status = sub.add_parser("status", help="what a store holds, and its failures")
    status.add_argument("store", metavar="STORE")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    demo = sub.add_parser("demo", help="the main job on a local S3 server and simulated archive")
    demo.add_argument("--out", default="starskope-demo", help="output folder")
    demo.add_argument("--stars", type=int, default=24)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--workers", type=int, default=2)
    demo.set_defaults(func=cmd_demo)
