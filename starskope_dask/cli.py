"""The ``starskope`` command. Thin: parses arguments, calls the library, sets exit codes.

Results go to stdout; errors and warnings to stderr, one line each (the traceback only
with ``-v``). Exit codes (:data:`EXIT_CODES`): 0 success; 1 some inputs failed (the others
were processed); 2 bad usage or configuration (arguments, config file, ``DASK_STARSKOPE__*``
variables, a manifest or target that cannot be used); 3 the run itself failed (store or
output unreachable, locked, not a store or not writable; a server that does not answer).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from starskope_dask import __version__
from starskope_dask.commands import emit, emit_error, one_line
from starskope_dask.errors import (
    ConfigError,
    LabelError,
    ModelMismatchError,
    ProductError,
    SimulationError,
    StarskopeError,
)

logger = logging.getLogger("starskope_dask")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit codes:
  0    success: every input was processed
  1    some inputs failed (each is reported on stderr); the others were processed
  2    bad usage or configuration: arguments, the --config file, DASK_STARSKOPE__*
       variables, a manifest or target that cannot be used
  3    the run itself failed: a store or output that cannot be reached, read or
       written (missing, locked, not a store, read-only), a server that does not
       answer; `discover` also when it found no product at all
  130  interrupted; rerun the same command to resume

Results go to stdout; errors and warnings to stderr, one line each (-v adds the
traceback). Settings: --config FILE, or DASK_STARSKOPE__SECTION__KEY variables, e.g.
DASK_STARSKOPE__INGEST__STAR_CHUNK=128."""


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
    import dataclasses

    from starskope_dask.config import load_read_config, load_storage_config
    from starskope_dask.read import read_light_curve

    # limits and timeouts from starskope.yaml / DASK_STARSKOPE__* (as ingest), flux and
    # quality bitmask from the command line
    config = dataclasses.replace(
        load_read_config(), flux=args.flux, quality_bitmask=_bitmask(args.quality_bitmask)
    )
    storage = load_storage_config()
    failed = 0
    for url in args.urls:
        try:
            summary = read_light_curve(url, config=config, storage_options=storage).summary()
        except ProductError as exc:
            failed += 1
            if args.json:
                emit(json.dumps({"url": url, "error": type(exc).__name__, "message": str(exc)}))
            else:
                emit_error(f"{url}: ERROR {type(exc).__name__}: {one_line(str(exc))}")
            continue
        emit(json.dumps(summary) if args.json else _format_inspect(summary))
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


def _bitmask(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``starskope`` command."""
    parser = argparse.ArgumentParser(
        prog="starskope",
        description="Training-ready Kepler, K2 and TESS light curves from the cloud archive.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"starskope {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; tracebacks of errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser(
        "inspect",
        help="read products and summarise each",
        epilog="exit codes: 0 every product read; 1 some could not be read (each reported); "
        "2 bad arguments (e.g. --quality-bitmask).",
    )
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


def _exit_code(exc: BaseException) -> int:
    """The documented exit code of an error (see :data:`EXIT_CODES`)."""
    if isinstance(exc, ConfigError | SimulationError | LabelError | ModelMismatchError):
        return EXIT_USAGE
    if isinstance(exc, ProductError):
        return EXIT_PARTIAL
    return EXIT_FAILED


def _report(exc: Exception, verbose: int) -> int:
    """Print one line for an error (and its traceback under ``-v``); return the exit code."""
    code = _exit_code(exc)
    if verbose:
        sys.stderr.write("".join(traceback.format_exception(exc)))
    if isinstance(exc, ConfigError | SimulationError):
        emit_error(f"error: {one_line(str(exc), 2000)}")
    elif isinstance(exc, StarskopeError):
        emit_error(f"error: {type(exc).__name__}: {one_line(str(exc), 2000)}")
    else:
        hint = "" if verbose else "; rerun with -v for the traceback"
        emit_error(f"error: unexpected {type(exc).__name__}: {one_line(str(exc))}{hint}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``starskope`` console script; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0, 1, 2, 3 or 130, as :data:`EXIT_CODES` documents. Never raises for a bad input.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The scheduler of a LocalCluster runs in this process; its INFO chatter is for -vv.
    # distributed sets its loggers from dask.config when it is first imported (lazily, later).
    import dask.config

    dask.config.set({"logging.distributed": "info" if args.verbose >= 2 else "warning"})
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        emit_error("interrupted; rerun the same command to resume")
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report(exc, args.verbose)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
