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


def register(sub: Any) -> None:
    """Add the pipeline subcommands to the ``starskope`` parser."""
    simulate = sub.add_parser("simulate", help="write a simulated archive with truth tables")
    simulate.add_argument("out_url", metavar="OUT_URL", help="local folder or s3://bucket[/prefix]")
    simulate.add_argument("--stars", type=int, default=20, help="number of stars (default 20)")
    simulate.add_argument("--missions", default="kepler,k2,tess", help="comma-separated")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--max-segments", type=int, default=3,
                          help="most quarters/campaigns/sectors per star and mission")
    simulate.add_argument("--segment-days", type=float, default=None,
                          help="cut segments to this many days (small, fast archives)")
    simulate.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    simulate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    for extra in _LATER:
        extra(sub)


_LATER: list[Any] = []
