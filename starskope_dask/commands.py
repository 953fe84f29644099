"""Pipeline subcommands of ``starskope``: simulate, discover, ingest, status, demo.

Each ``cmd_*`` function parses nothing and decides nothing: it turns arguments into a config,
calls one library function and reports: results to stdout, warnings to stderr. Errors are
raised as :class:`~starskope_dask.errors.StarskopeError` and turned into one line and an
exit code by :func:`starskope_dask.cli.main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from starskope_dask.errors import ConfigError, StarskopeError, StoreError, one_line
from starskope_dask.train.evaluate import score_text

logger = logging.getLogger(__name__)

#: Failures listed one by one in a summary; the rest are counted (``status --all`` lists all).
MAX_FAILURES_SHOWN = 10


def emit(text: str) -> None:
    """A result line, to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_error(text: str) -> None:
    """An error or warning line, to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write a simulated archive."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.fetch import url_protocol
    from starskope_dask.simulate import SimulationConfig, simulate_archive

    config = SimulationConfig(
        n_stars=args.stars,
        missions=tuple(m.strip().lower() for m in args.missions.split(",") if m.strip()),
        seed=args.seed,
        max_segments=args.max_segments,
        segment_days=args.segment_days,
        ffi_cubes=args.ffi_cubes,
    )
    if args.processes < 1:
        raise ConfigError(f"--processes must be at least 1, not {args.processes}")
    options = (
        load_storage_config(config_file=args.config).storage_options()
        if url_protocol(args.out_url) == "s3"
        else None
    )
    result = simulate_archive(
        args.out_url,
        config,
        storage_options=options,
        processes=args.processes,
        progress=not args.quiet,
    )
    emit(
        f"wrote {result.n_products} products of {result.n_stars} stars "
        f"({result.n_bytes / 1e6:.1f} MB) to {result.out_url}; truth: {result.truth_url}"
    )
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    """Targets to a manifest: archive-native for catalogue IDs, MAST for names and cones."""
    from starskope_dask.config import DiscoverConfig, load_storage_config
    from starskope_dask.discover import (
        check_cone_radius,
        check_manifest_output,
        discover_with_config,
        write_manifest,
    )
    from starskope_dask.pipeline import store_options_for

    radius = check_cone_radius(args.radius, "--radius")
    check_manifest_output(args.output)  # before any discovery: fail in seconds, not at the end
    config = DiscoverConfig(
        targets=tuple(args.targets),
        archive=args.archive,
        prefixes=tuple(args.prefix or ()),
        via=args.via,
        missions=tuple(args.mission or ()),
        products=tuple(args.product or ()),
        radius_arcsec=radius,
        mast_cache=args.mast_cache or "",
        offline=args.offline,
    )
    if args.targets_file:  # each file read here: one error names the file that failed
        from starskope_dask.discover import read_targets_file

        extra = tuple(t for path in args.targets_file for t in read_targets_file(path))
        config = dataclasses.replace(config, targets=config.targets + extra)
    storage = load_storage_config(config_file=args.config)
    manifest, problems = discover_with_config(config, storage)
    for problem in problems:
        emit_error(f"warning: {one_line(problem, 1000)}")
    if manifest.empty:
        emit_error(f"error: no products found; {args.output} was not written")
        return 3
    write_manifest(manifest, args.output, store_options_for(storage))
    emit(f"{len(manifest)} products of {manifest['target'].nunique()} targets -> {args.output}")
    return 0 if not problems else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    """Manifest to the Zarr cube."""
    from starskope_dask.config import load_ingest_config
    from starskope_dask.pipeline import run

    config = load_ingest_config(
        args.manifest,
        args.store,
        args.config,
        scheduler_address=args.scheduler,
        n_workers=args.workers,
        retry_failed=True if args.retry_failed else None,
    )
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    summary = run(config, progress=not args.quiet)
    emit(_summary_text(summary.as_dict()))
    if args.json:
        emit(json.dumps(summary.as_dict()))
    return 0 if summary.n_failed == 0 else 1


def _summary_text(summary: Mapping[str, Any]) -> str:
    lines = [
        f"store {summary['store']}: {summary['n_stars']} stars, {summary['n_products']} products "
        f"({summary['n_stored']} stored, {summary['n_failed']} failed); "
        f"{summary['n_chunks_written']} chunks written, "
        f"{summary['n_chunks_skipped']} already done; "
        f"{summary['bytes_read'] / 1e6:.1f} MB read in {summary['seconds']:.1f} s"
    ]
    lines += failure_lines(summary["failures"], str(summary["store"]))
    return "\n".join(lines)


def failure_lines(
    failures: Sequence[Mapping[str, Any]], store: str, *, show_all: bool = False
) -> list[str]:
    """Failures for a terminal: counts by error type, the first :data:`MAX_FAILURES_SHOWN`
    (every one with ``show_all``), and where to find the rest.

    Parameters
    ----------
    failures : sequence of mapping
        ``url``, ``error_type`` and ``message`` of each failure.
    store : str
        The store, for the ``starskope status`` hint.
    show_all : bool
        List every failure.

    Returns
    -------
    list of str
        One line each; empty without failures.
    """
    if not failures:
        return []
    counts = Counter(str(f.get("error_type")) for f in failures)
    lines = ["  failed by type: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())]
    shown = failures if show_all else failures[:MAX_FAILURES_SHOWN]
    for failure in shown:
        url = str(failure.get("url"))
        message = str(failure.get("message")).removeprefix(f"{url}: ")  # it names the URL too
        lines.append(f"  failed: {url}: {failure.get('error_type')}: {one_line(message)}")
    if len(shown) < len(failures):
        lines.append(
            f"  ... and {len(failures) - len(shown)} more; see `starskope status {store} --all` "
            "(or --json) for all"
        )
    return lines


def _unreadable_state(store: str, options: Mapping[str, Any], exc: Exception) -> StoreError:
    """Name the state file of ``store`` that cannot be read (``exc`` came from reading it)."""
    from starskope_dask.store import read_table, state_url

    for name in ("products.parquet", "stars.parquet"):
        url = state_url(store, name)
        try:
            read_table(url, options)
        except Exception as error:
            return StoreError(
                f"cannot read {url}: {type(error).__name__}: {one_line(error)}; the store's "
                "ingest state is damaged: restore that file, or ingest again into a new store"
            )
    return StoreError(
        f"cannot read the ingest state of {store}: {type(exc).__name__}: {one_line(exc)}; "
        "the store may be damaged: ingest again into a new store"
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Report a store's contents and failures."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.pipeline import store_options_for
    from starskope_dask.store import store_status

    options = store_options_for(load_storage_config(config_file=args.config))
    try:
        status = store_status(args.store, options)
    except StarskopeError:
        raise
    except Exception as exc:  # a state file that is not what ingest wrote
        raise _unreadable_state(args.store, options, exc) from exc
    if args.json:
        emit(json.dumps(status.as_dict()))
        return 0
    emit(
        f"store {status.store}: {status.n_stars} stars, {status.n_products} products, "
        f"{status.n_stored} stored, {status.n_failed} failed; chunks done "
        f"{status.n_chunks_done}/{status.n_chunks}; grid {status.grid}"
    )
    for line in failure_lines(status.failures, status.store, show_all=args.all):
        emit(line)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Cube to the features store."""
    from starskope_dask.config import load_features_config
    from starskope_dask.features.pipeline import run

    config = load_features_config(
        args.store,
        args.out,
        args.config,
        scheduler_address=args.scheduler,
        n_workers=args.workers,
        stars=tuple(s for item in args.stars or () for s in item.split(",") if s.strip()) or None,
        stellar=args.stellar,
        ephemerides=args.ephemerides,
    )
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    summary = run(config, progress=not args.quiet)
    result = summary.as_dict()
    emit(
        f"features {result['out']}: {result['n_stars']} stars in the cube, "
        f"{result['n_stars_computed']} computed in {result['n_chunks_computed']} chunks "
        f"({result['n_chunks_skipped']} already done), {result['n_signals']} transit signals, "
        f"{result['n_stars_without_features']} stars without features; "
        f"{result['seconds']:.1f} s"
    )
    for line in failure_lines(
        [
            {
                "url": f"star {r['star']}",
                "error_type": "failed" if r["status"] == 2 else "too little data",
                "message": r["reason"],
            }
            for r in result["reasons"]
        ],
        result["out"],
        show_all=False,
    ):
        emit_error(line)
    if args.json:
        emit(json.dumps(result))
    return 0 if not any(r["status"] == 2 for r in result["reasons"]) else 1


def cmd_plot(args: argparse.Namespace) -> int:
    """One page per star of a features store (and its cube)."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.features.pipeline import open_features, select_stars
    from starskope_dask.pipeline import store_options_for
    from starskope_dask.plots import plot_star_page

    options = store_options_for(load_storage_config(config_file=args.config))
    features = open_features(args.features, options)
    import pandas as pd

    table = pd.DataFrame({name: features[name].values for name in ("star", "kic", "epic", "tic")})
    rows = select_stars(table, [s for item in args.star for s in item.split(",") if s.strip()])
    written = []
    for row in rows:
        out = args.out if args.out and len(rows) == 1 else None
        path = out or os.path.join(args.out_dir, f"star-{row:06d}.png")
        written.append(str(plot_star_page(features, row, path, storage_options=options)))
    for path in written:
        emit(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Features and labels to a trained model."""
    from starskope_dask.config import load_train_config
    from starskope_dask.train.pipeline import run

    config = load_train_config(
        args.features,
        args.labels or "",
        args.out or "",
        args.config,
        model=args.model,
        search=args.search,
        unsupervised=args.unsupervised,
        seed=args.seed,
        epochs=args.epochs,
        scheduler_address=args.scheduler,
        n_workers=args.workers,
    )
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    summary = run(config).as_dict()
    validation = summary["validation"]
    emit(
        f"model {summary['out']}: {summary['model']} on {summary['n_labelled']} labelled of "
        f"{summary['n_examples']} signals; validation ROC-AUC {_fmt(validation['roc_auc'])}, "
        f"AP {_fmt(validation['average_precision'])}; threshold {score_text(summary['threshold'])} "
        f"(validation precision 0.95); {summary['n_trials']} trials; {summary['seconds']:.1f} s"
    )
    for name, counts in summary["counts"].items():
        emit(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    emit(f"evaluate on the test split: starskope evaluate {summary['out']}")
    if args.json:
        emit(json.dumps(summary, default=str))
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A model's test split (or other labelled features): metrics.json and plots."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.train.pipeline import EvaluateConfig, evaluate

    if bool(args.features) != bool(args.labels):
        from starskope_dask.errors import ConfigError

        raise ConfigError("evaluate takes FEATURES and --labels together (or neither)")
    storage = load_storage_config(config_file=args.config)
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    metrics = evaluate(
        EvaluateConfig(
            model=args.model,
            features=args.features or "",
            labels=args.labels or "",
            out=args.out or "",
        ),
        storage,
    )
    rap = metrics.get("recall_at_precision") or {}
    emit(
        f"{metrics['model']} on {metrics['evaluated_on']}: {metrics['n']} signals "
        f"({metrics['n_positive']} planets); ROC-AUC {_fmt(metrics['roc_auc'])}, "
        f"AP {_fmt(metrics['average_precision'])}, "
        + ", ".join(f"recall at precision {p} {_fmt(_recall(v))}" for p, v in rap.items())
    )
    confusion = metrics.get("confusion") or {}
    if confusion:
        emit(
            "at threshold {}: tp {} fp {} tn {} fn {}".format(
                score_text(metrics["threshold"]),
                *(confusion.get(k) for k in ("tp", "fp", "tn", "fn")),
            )
        )
    emit(f"written to {metrics['out']}: {', '.join(metrics['files'])}")
    if args.json:
        emit(json.dumps(metrics, default=str))
    return 0


def _recall(value: Any) -> Any:
    return value.get("recall") if isinstance(value, dict) else value


def cmd_predict(args: argparse.Namespace) -> int:
    """Score every detected signal of a features store with a trained model."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.train.pipeline import predict

    storage = load_storage_config(config_file=args.config)
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    ranked = predict(args.model, args.features, args.output, storage)
    emit(
        f"{len(ranked)} signals scored, {int(ranked['candidate'].sum())} candidates: {args.output}"
    )
    for row in ranked.head(args.top).itertuples():
        ids = " ".join(
            f"{n.upper()} {getattr(row, n)}"
            for n in ("kic", "epic", "tic")
            if not _missing(getattr(row, n))
        )
        emit(
            f"  {row.rank:>4} star {row.star} [{ids}] P={row.period:.5f} d "
            f"SNR={row.snr:.1f} score={score_text(row.score)}"
        )
    return 0


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline (or a contiguous run of its stages) from one config file."""
    from starskope_dask.config import load_run_config
    from starskope_dask.runner import run_pipeline

    stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else None
    run = load_run_config(
        args.pipeline,
        stages=stages,
        workdir=args.workdir,
        scheduler_address=args.scheduler,
        n_workers=args.workers,
        memory_limit=args.memory_limit,
        cluster=args.cluster,
    )
    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    summary = run_pipeline(run, progress=not args.quiet)
    emit(summary.table())
    emit(f"run record: {summary.record} ({summary.seconds:.1f} s)")
    for outcome in summary.stages:
        if outcome.stage == "ingest" and outcome.failures:
            emit_error(
                f"ingest: {outcome.failures} products failed; see `starskope status "
                f"{outcome.output}`"
            )
        elif outcome.failures:
            emit_error(f"{outcome.stage}: {outcome.failures} failures (see {summary.record})")
    if args.json:
        emit(json.dumps(summary.as_dict(), default=str))
    return 0 if summary.n_failures == 0 or args.allow_failures else 1


def cmd_k8s_render(args: argparse.Namespace) -> int:
    """Render the Kubernetes manifests of a pipeline config (``starskope_dask.k8s``)."""
    from starskope_dask import k8s

    files = k8s.render_config_file(args.config)
    if args.stdout:
        for text in files.values():
            emit(text.rstrip("\n"))
        return 0
    for path in k8s.write_manifests(files, args.out_dir):
        emit(str(path))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded main job: local S3 server, simulated archive, discover, ingest, plot."""
    from starskope_dask.demo import DEMO_STARS, run_demo

    logging.getLogger("starskope_dask").setLevel(logging.INFO)
    result = run_demo(
        args.out,
        n_stars=DEMO_STARS if args.stars is None else args.stars,
        seed=args.seed,
        n_workers=args.workers,
        model=args.model,
    )
    emit(result["run"].table())
    emit(_summary_text(result["summary"]))
    plot = result["plot"] or "none (no star was stored)"
    emit(f"manifest: {result['manifest']}\nstore: {result['store']}\nplot: {plot}")
    if result["features_summary"]:
        features = result["features_summary"]
        emit(
            f"features: {result['features']}: {features['n_stars_computed']} stars, "
            f"{features['n_signals']} transit signals in {features['seconds']:.1f} s"
        )
        for page in result["pages"]:
            emit(f"star page: {page}")
    stamps = result.get("stamps") or {}
    if stamps:
        emit(
            f"TESS FFI stamps: {stamps['store']}: {stamps['n_stamps']} stamps, "
            f"{stamps['bytes_stamps'] / 1e6:.2f} MB of ranged reads; plot: {stamps['png']}"
        )
    if result.get("test"):
        test = result["test"]
        emit(
            f"model: {result['train_summary']['out']} ({result['train_summary']['model']}); "
            f"test split: {test['n']} signals, {test['n_positive']} planets, ROC-AUC "
            f"{_fmt(test['roc_auc'])}, AP {_fmt(test['average_precision'])}; ROC curve: "
            f"{result['roc']}"
        )
        emit(f"candidates (every signal, ranked): {result['candidates']}")
        for row in result["top"]:
            emit(
                f"  {row['rank']:>3} star {row['star']} P={row['period']:.4f} d "
                f"SNR={row['snr']:.1f} score={score_text(row['score'])}"
            )
    return 0 if result["summary"]["n_failed"] == 0 else 1


def cmd_download(args: argparse.Namespace) -> int:
    """Copy a manifest's products to a folder or a bucket, or write a curl script for them."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.discover import read_manifest
    from starskope_dask.download import (
        check_concurrency,
        download_manifest,
        failure_report,
        write_curl_script,
    )

    check_concurrency(args.concurrency)
    storage = load_storage_config(config_file=args.config)
    if args.curl_script:
        frame = read_manifest(args.manifest, storage)
        n = write_curl_script(
            frame, args.dest, args.curl_script, args.source, storage=storage, manifest=args.manifest
        )
        emit(
            f"wrote {args.curl_script}: {n} curl commands downloading into {args.dest}; run it "
            f"with `bash {args.curl_script}` (export MAST_API_TOKEN first for exclusive-access "
            "products)"
        )
        return 0
    # The token is handed to the library only: never printed, logged or written.
    token = os.environ.get("MAST_API_TOKEN") or None
    summary = download_manifest(
        args.manifest,
        args.dest,
        storage=storage,
        concurrency=args.concurrency,
        source=args.source,
        progress=not args.quiet,
        token=token,
    )
    for line in failure_report(summary):
        emit_error(line)
    emit(
        f"{summary.dest}: {summary.n_downloaded} of {summary.n_products} products downloaded, "
        f"{summary.n_skipped} already there, {summary.n_failed} failed; "
        f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s"
    )
    return 0 if summary.n_failed == 0 else 1


def cmd_cutout(args: argparse.Namespace) -> int:
    """Postage stamps of targets out of the TESS FFI cubes (ranged reads) into a Zarr store."""
    from starskope_dask.config import load_storage_config
    from starskope_dask.ffi import CutoutConfig, parse_sectors, run

    config = CutoutConfig(
        targets=tuple(args.targets),
        store=args.out,
        sectors=parse_sectors(args.sectors),
        size=args.size,
        archive=args.archive,
        storage=load_storage_config(config_file=args.config),
        n_workers=args.workers if args.workers is not None else 2,
        scheduler_address=args.scheduler,
    )
    summary = run(config, progress=not args.quiet)
    for failure in summary.failures[:MAX_FAILURES_SHOWN]:
        where = failure["target"] or failure["cube"]
        emit_error(f"warning: {where}: {failure['error_type']}: {failure['problem']}")
    if summary.n_failed > MAX_FAILURES_SHOWN:
        emit_error(
            f"... and {summary.n_failed - MAX_FAILURES_SHOWN} more failures in "
            f"{summary.store}/_starskope/failures.parquet"
        )
    total = summary.bytes_probe + summary.bytes_table + summary.bytes_stamps
    emit(
        f"{summary.n_stamps} stamps of {summary.n_targets} targets from {summary.n_cubes} cubes "
        f"-> {summary.store}; {total / 1e6:.2f} MB read ({summary.bytes_stamps / 1e6:.2f} MB of "
        f"stamps) in {summary.requests} requests, {summary.seconds:.1f} s; "
        f"{summary.n_failed} failed"
    )
    if args.json:
        emit(json.dumps(summary.as_dict(), default=str))
    return 0 if summary.n_failed == 0 else 1


def _parser(sub: Any, name: str, help_text: str, codes: str, **kwargs: Any) -> Any:
    """A subcommand parser whose help ends with its exit codes."""
    return sub.add_parser(
        name,
        help=help_text,
        epilog=f"exit codes: {codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def _config_option(parser: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config file (sections read, grid, ingest, features, train, storage, ...); "
        "DASK_STARSKOPE__SECTION__KEY variables apply too",
    )


def register(sub: Any) -> None:
    """Add the pipeline subcommands to the ``starskope`` parser."""
    simulate = _parser(
        sub,
        "simulate",
        "write a simulated archive with truth tables",
        "0 written; 2 bad arguments (--stars, --seed, --missions, --segment-days, ...);\n"
        "3 OUT_URL cannot be written (a file, read-only, an S3 endpoint that does not answer).",
    )
    simulate.add_argument("out_url", metavar="OUT_URL", help="local folder or s3://bucket[/prefix]")
    simulate.add_argument("--stars", type=int, default=20, help="number of stars (default 20)")
    simulate.add_argument("--missions", default="kepler,k2,tess", help="comma-separated")
    simulate.add_argument("--seed", type=int, default=0, help="seed, >= 0 (default 0)")
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
    simulate.add_argument(
        "--ffi-cubes",
        type=int,
        default=0,
        help="also write this many TESS FFI cubes with the stars in them (for `cutout`)",
    )
    simulate.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    simulate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _config_option(simulate)
    simulate.set_defaults(func=cmd_simulate)

    discover = _parser(
        sub,
        "discover",
        "targets to a manifest of products",
        "0 every target found; 1 some targets found nothing or failed (warnings on stderr);\n"
        "2 bad target, --radius or option; 3 -o cannot be written, the archive cannot be\n"
        "listed, or no product was found at all (nothing is written then).",
        description="TARGET: KIC n | EPIC n | TIC n | RA,DEC[,RADIUS_ARCSEC] (degrees, degrees,\n"
        "arcsec; radius in (0, 3600]) | hosts:kepler|k2|tess (confirmed planet hosts) |\n"
        "a name MAST resolves (HAT-P-7)",
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
        "--radius", type=float, default=10.0, help="search radius in arcsec, (0, 3600] (default 10)"
    )
    discover.add_argument(
        "--mast-cache", help="where MAST answers are cached (default ~/.cache/starskope/mast)"
    )
    discover.add_argument(
        "--offline", action="store_true", help="answer from the MAST cache only (replay)"
    )
    discover.add_argument(
        "-o", "--output", default="manifest.parquet", help="manifest: local path or s3:// URL"
    )
    _config_option(discover)
    discover.set_defaults(func=cmd_discover)

    ingest = _parser(
        sub,
        "ingest",
        "manifest to the time-aligned Zarr cube",
        "0 every product stored; 1 some products failed (the others are stored; see\n"
        "`starskope status STORE`); 2 bad config or manifest, or an unreachable --scheduler;\n"
        "3 the store cannot be reached or written, is locked by another ingest, or is not a\n"
        "starskope store.",
    )
    ingest.add_argument("manifest", metavar="MANIFEST")
    ingest.add_argument("--store", required=True, help="local path or s3:// URL of the cube")
    ingest.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    ingest.add_argument("--workers", type=int, help="LocalCluster worker processes")
    ingest.add_argument(
        "--retry-failed",
        action="store_true",
        help="read every product that failed before again (a rerun always retries transient "
        "failures: timeouts, servers that were down; stored products are never read again)",
    )
    _config_option(ingest)
    ingest.add_argument("--json", action="store_true", help="also print the summary as JSON")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ingest.set_defaults(func=cmd_ingest)

    status = _parser(
        sub,
        "status",
        "what a store holds, and its failures",
        "0 reported (failures or not); 2 bad config; 3 the store cannot be read, holds no\n"
        "ingest state, or its state files are damaged.",
    )
    status.add_argument("store", metavar="STORE")
    status.add_argument("--json", action="store_true", help="everything, every failure, as JSON")
    status.add_argument(
        "--all",
        action="store_true",
        help=f"list every failure (default: counts by type and the first {MAX_FAILURES_SHOWN})",
    )
    _config_option(status)
    status.set_defaults(func=cmd_status)

    features = _parser(
        sub,
        "features",
        "cube to per-star features (transit search, spectra, views) in a Zarr store",
        "0 every star computed (stars with too little data get NaN and a reason); 1 some\n"
        "stars failed (reported; the others are stored); 2 bad config, --stars or an\n"
        "unreachable --scheduler; 3 the cube or --out cannot be read or written, is locked,\n"
        "or is not a starskope store of the right kind.",
    )
    features.add_argument("store", metavar="STORE", help="the cube (local path or s3:// URL)")
    features.add_argument("--out", required=True, help="features store: local path or s3:// URL")
    features.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    features.add_argument("--workers", type=int, help="LocalCluster worker processes")
    features.add_argument(
        "--stars",
        action="append",
        help="only these stars: indices or kic:N, epic:N, tic:N (comma-separated, repeatable)",
    )
    features.add_argument(
        "--stellar", help="stellar properties: mast | none | URL of a catalogue table"
    )
    features.add_argument(
        "--ephemerides",
        metavar="URL",
        help="fold at these instead of searching: a CSV/Parquet table with star|tic|kic|epic, "
        "period, t0 (BJD_TDB), duration (days)",
    )
    _config_option(features)
    features.add_argument("--json", action="store_true", help="also print the summary as JSON")
    features.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    features.set_defaults(func=cmd_features)

    plot = _parser(
        sub,
        "plot",
        "one PNG page per star: light curve, detrended, spectra, periodogram, views",
        "0 written; 2 a --star that is not in the store; 3 the store cannot be read.",
    )
    plot.add_argument("features", metavar="FEATURES", help="features store (path or s3://)")
    plot.add_argument(
        "--star", action="append", required=True, help="index or kic:N, epic:N, tic:N"
    )
    plot.add_argument("--out", help="PNG path (one star)")
    plot.add_argument("--out-dir", default=".", help="folder for star-NNNNNN.png (default .)")
    _config_option(plot)
    plot.set_defaults(func=cmd_plot)

    train = _parser(
        sub,
        "train",
        "features + labels to a trained model (split by star; search; distributed)",
        "0 trained; 2 bad config, labels that give no usable classes or an unreachable\n"
        "--scheduler; 3 the features or the model folder cannot be read or written.",
    )
    train.add_argument("features", metavar="FEATURES", help="features store (path or s3://)")
    train.add_argument(
        "--labels", help="truth:SIM_URL | koi:CSV | toi:CSV | k2:CSV | csv:URL (ID + label)"
    )
    train.add_argument("--out", help="model folder: local path or s3:// URL")
    train.add_argument("--model", help="cnn | spectrogram-cnn | gbt | logistic (default cnn)")
    train.add_argument("--search", type=int, help="hyper-parameter trials (default 0)")
    train.add_argument("--unsupervised", help="none | rbm | autoencoder (gbt, logistic)")
    train.add_argument("--seed", type=int, help="split and training seed")
    train.add_argument("--epochs", type=int, help="most CNN epochs (early stopping)")
    train.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    train.add_argument("--workers", type=int, help="LocalCluster worker processes")
    _config_option(train)
    train.add_argument("--json", action="store_true", help="also print the summary as JSON")
    train.set_defaults(func=cmd_train)

    evaluate = _parser(
        sub,
        "evaluate",
        "a model on its test split (or on other labelled features): metrics.json, plots",
        "0 evaluated; 2 labels or features that do not fit the model; 3 the model or the\n"
        "features cannot be read, or --out cannot be written.",
    )
    evaluate.add_argument("model", metavar="MODEL_URL")
    evaluate.add_argument("features", nargs="?", metavar="FEATURES", help="other features")
    evaluate.add_argument("--labels", help="labels of FEATURES (as for train)")
    evaluate.add_argument("--out", help="folder for metrics.json and PNGs (MODEL_URL/evaluation)")
    _config_option(evaluate)
    evaluate.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = _parser(
        sub,
        "predict",
        "score every detected signal of a features store, ranked",
        "0 scored; 2 features whose schema or grid do not fit the model; 3 the model or the\n"
        "features cannot be read, or -o cannot be written.",
    )
    predict.add_argument("model", metavar="MODEL_URL")
    predict.add_argument("features", metavar="FEATURES")
    predict.add_argument(
        "-o", "--output", required=True, help="scores: .csv or Parquet (path or s3://)"
    )
    predict.add_argument("--top", type=int, default=10, help="candidates to print (default 10)")
    _config_option(predict)
    predict.set_defaults(func=cmd_predict)

    run = _parser(
        sub,
        "run",
        "the whole pipeline from one config: discover, ingest, features, train, evaluate, predict",
        "0 every stage done without failures; 1 some items failed (targets, products, stars;\n"
        "the others went on); 2 bad config (the message names the key and where it was set),\n"
        "labels that give no usable classes, an unreachable scheduler; 3 an artefact that\n"
        "cannot be read or written, or that this pipeline did not write. A rerun skips the\n"
        "stages that finished (same settings, unchanged input) and resumes the others.",
        description="PIPELINE.yaml holds the sections of every stage (pipeline, discover, read,\n"
        "grid, ingest, features, train, storage, jobqueue, kubernetes); DASK_STARSKOPE__*\n"
        "variables override it. See jobs/pipeline.yaml for an annotated example.",
    )
    run.add_argument("pipeline", metavar="PIPELINE.yaml", help="the pipeline config")
    run.add_argument("--stages", help="a contiguous run of stages, comma-separated")
    run.add_argument("--workdir", help="folder (or s3:// URL) of the artefacts and pipeline.json")
    run.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    run.add_argument("--workers", type=int, help="LocalCluster worker processes")
    run.add_argument("--memory-limit", help="memory per LocalCluster worker (4GiB, auto)")
    run.add_argument(
        "--cluster", choices=("local", "address", "slurm", "pbs"), help="where the stages run"
    )
    run.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 when every stage ran to its end although some items failed (they are in "
        "the run record): for job systems that restart failed jobs (a DaskJob's runner)",
    )
    run.add_argument("--json", action="store_true", help="also print the summary as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    download = _parser(
        sub,
        "download",
        "copy a manifest's products to a folder or a bucket (a mirror), or write a curl script",
        "0 every product downloaded or already there (or the script written); 1 some products\n"
        "failed (listed on stderr and in DEST/_download/failures.csv; a rerun retries them);\n"
        "2 bad arguments or manifest; 3 DEST (or the script) cannot be written.",
        description="Products keep the archive's key layout below DEST, so that the mirror is an\n"
        "archive itself (`starskope discover --archive DEST`). A rerun skips complete\n"
        "products; partial files never get a final name. Exclusive-access products: set\n"
        "MAST_API_TOKEN (a MAST token: sent to mast.stsci.edu only, never printed or\n"
        "stored).",
    )
    download.add_argument("manifest", metavar="MANIFEST", help="manifest (path, s3:// or https://)")
    download.add_argument("dest", metavar="DEST", help="local folder or s3://bucket[/prefix]")
    download.add_argument(
        "--source",
        choices=("auto", "s3", "https"),
        default="auto",
        help="auto: each product's s3_uri, else its https_url (default); s3: the bucket only; "
        "https: MAST's HTTPS URLs",
    )
    download.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight at once (default 16)"
    )
    download.add_argument(
        "--curl-script",
        metavar="FILE",
        help="instead of downloading, write a bash script of curl commands that downloads "
        "into DEST",
    )
    _config_option(download)
    download.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=cmd_download)

    k8s_parser = _parser(
        sub,
        "k8s",
        "Kubernetes manifests of the pipeline (dask-kubernetes operator)",
        "0 done; 2 a bad config; 3 a file in --out-dir that starskope did not write.",
    )
    k8s_sub = k8s_parser.add_subparsers(dest="k8s_command", required=True)
    k8s_render = _parser(
        k8s_sub,
        "render",
        "write daskjob.yaml and daskcluster.yaml from a pipeline config",
        "0 written; 2 a bad config (or one that cannot run in a DaskJob); 3 a file in\n"
        "--out-dir that `starskope k8s render` did not write (refused; nothing written).",
    )
    k8s_render.add_argument(
        "--config", required=True, metavar="PIPELINE.yaml", help="the pipeline config"
    )
    k8s_render.add_argument("--out-dir", default="k8s", help="folder of the files (default k8s)")
    k8s_render.add_argument("--stdout", action="store_true", help="print instead of writing")
    k8s_render.set_defaults(func=cmd_k8s_render)

    cutout = _parser(
        sub,
        "cutout",
        "postage stamps of targets out of the TESS FFI cubes (ranged reads) into a Zarr store",
        "0 every target stamped; 1 some targets or cubes failed (on stderr and in\n"
        "STORE/_starskope/failures.parquet; the others are stored); 2 bad target, --size or\n"
        "--sectors; 3 the archive cannot be listed, or --out cannot be written or is not a\n"
        "cutout store.",
        description="TARGET: TIC n | KIC n | EPIC n (the archive's catalog/tic.parquet, else\n"
        "the TIC at MAST) | RA,DEC (degrees) | a name MAST resolves. The store holds flux and\n"
        "flux_err (star, time, y, x), quality and BJD_TDB time (star, time), and per stamp its\n"
        "target, sector, camera, CCD, origin on the CCD and WCS; one row per stamp (a target\n"
        "observed in two sectors has two).",
    )
    cutout.add_argument("targets", nargs="+", metavar="TARGET")
    cutout.add_argument(
        "--sectors", help="sectors whose cubes are looked at: 1,2 or 1-13 (default: every cube)"
    )
    cutout.add_argument("--size", type=int, default=11, help="stamp side in pixels (default 11)")
    cutout.add_argument("--out", required=True, help="Zarr store: local path or s3:// URL")
    cutout.add_argument(
        "--archive", default="s3://stpubdata", help="bucket (or folder) holding tess/public/mast/"
    )
    cutout.add_argument("--workers", type=int, help="LocalCluster worker processes (default 2)")
    cutout.add_argument("--scheduler", help="Dask scheduler address (or DASK_SCHEDULER_ADDRESS)")
    _config_option(cutout)
    cutout.add_argument("--json", action="store_true", help="also print the summary as JSON")
    cutout.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cutout.set_defaults(func=cmd_cutout)

    demo = _parser(
        sub,
        "demo",
        "the main job on a local S3 server and simulated archive",
        "0 done; 1 some products failed; 2 bad arguments; 3 --out cannot be written.",
    )
    demo.add_argument("--out", default="starskope-demo", help="output folder")
    demo.add_argument("--stars", type=int, help="stars to simulate (default 300)")
    demo.add_argument(
        "--model", default="gbt", help="model to train: gbt (default) | logistic | cnn | ..."
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--workers", type=int, default=2)
    demo.set_defaults(func=cmd_demo)
