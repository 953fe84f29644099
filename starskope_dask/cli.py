"""The ``starskope`` command. Thin: parses arguments, calls the library, sets exit codes.

Exit codes: 0 success; 1 some inputs failed (the others were processed); 2 bad usage or
configuration; 3 the run itself failed (store unreachable, locked, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from starskope_dask import __version__
from starskope_dask.errors import ConfigError, ProductError, StarskopeError

logger = logging.getLogger("starskope_dask")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _format_inspect(summary: dict[str, Any]) -> str:
    ids = " ".join(
        f"{name.upper()}={summary[name]}" for name in ("kic", "epic", "tic") if summary[name]
    )
    position = (
        f"ra={summary['ra']:.6f} dec={summary['dec']:+.6f}"
        if summary["ra"] is not None and summary["dec"] is not None
        else "ra=? dec=?"
    )
    span = (
        f"BJD_TDB {summary['bjd_start']:.5f}..{summary['bjd_stop']:.5f}"
        if summary["bjd_start"] is not None
        else "BJD_TDB ?"
    )
    return (
        f"{summary['url']}: {summary['mission']} {summary['object']} [{ids}] {position} "
        f"segment={summary['segment']} {summary['product_type']} "
        f"cadences={summary['n_cadences']} good={summary['n_good']} {span}"
    )


def cmd_inspect(args: argparse.Namespace) -> int:
    """Read each product and print one line (or JSON object) per product."""
    from starskope_dask.config import ReadConfig
    from starskope_dask.read import read_light_curve

    config = ReadConfig(flux=args.flux, quality_bitmask=_bitmask(args.quality_bitmask))
    failed = 0
    for url in args.urls:
        try:
            summary = read_light_curve(url, config=config).summary()
        except ProductError as exc:
            failed += 1
            if args.json:
                _emit(json.dumps({"url": url, "error": type(exc).__name__, "message": str(exc)}))
            else:
                _emit(f"{url}: ERROR {type(exc).__name__}: {exc}")
            continue
        _emit(json.dumps(summary) if args.json else _format_inspect(summary))
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


def _bitmask(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``starskope`` command."""
    parser = argparse.ArgumentParser(
        prog="starskope",
        description="Training-ready Kepler, K2 and TESS light curves from the cloud archive.",
    )
    parser.add_argument("--version", action="version", version=f"starskope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser("inspect", help="read products and summarise each")
    inspect.add_argument(
        "urls", nargs="+", metavar="URL", help="path, file://, s3:// or http(s)://"
    )
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    inspect.add_argument("--flux", choices=("pdcsap", "sap"), default="pdcsap")
    inspect.add_argument(
        "--quality-bitmask", default="default", help="none|default|hard|hardest|INT"
    )
    inspect.set_defaults(func=cmd_inspect)

    from starskope_dask import commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``starskope`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The scheduler of a LocalCluster runs in this process; its INFO chatter is for -vv.
    # distributed sets its loggers from dask.config when it is first imported (lazily, later).
    import dask.config

    dask.config.set({"logging.distributed": "info" if args.verbose >= 2 else "warning"})
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _emit(f"error: {exc}")
        return EXIT_USAGE
    except StarskopeError as exc:
        _emit(f"error: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _emit("interrupted; rerun the same command to resume")
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
