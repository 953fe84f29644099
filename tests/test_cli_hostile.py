"""Hostile inputs to the `starskope` command: each gets a typed error, named, on stderr, with
the documented exit code (0 ok, 1 some inputs failed, 2 usage/config, 3 store/environment),
and never a traceback. Everything runs in-process and offline (127.0.0.1 only).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from starskope_dask.cli import main
from starskope_dask.config import GridConfig, IngestConfig, ReadConfig, StorageConfig
from starskope_dask.discover import manifest_frame, read_manifest, write_manifest
from starskope_dask.errors import (
    ConfigError,
    CorruptProductError,
    SimulationError,
    StoreError,
)
from starskope_dask.simulate import SimulationConfig

from .conftest import serve_folder

GOOD_URI = (
    "s3://stpubdata/kepler/public/lightcurves/0106/010666592/kplr010666592-2009131110544_llc.fits"
)


def _chmod_stops_writes() -> bool:
    """Whether a folder without write permission refuses this process (not so for root)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.mkdir(mode=0o500)
        try:
            (locked / "probe").write_bytes(b"")
        except PermissionError:
            return True
        finally:
            locked.chmod(0o700)
        return False


CHMOD_IS_IGNORED = not _chmod_stops_writes()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(err: str, *needles: str) -> None:
    """One error on stderr, naming every needle, without a traceback."""
    assert "Traceback" not in err
    assert "error:" in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr: {err!r}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No starskope settings from the outside; nothing reaches beyond 127.0.0.1."""
    for name in list(os.environ):
        if name.startswith("DASK_STARSKOPE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an ingest gets as far as starting a cluster."""
    monkeypatch.setattr(
        "starskope_dask.cluster.make_client",
        lambda config: pytest.fail("a cluster was started although the input is bad"),
    )


@pytest.fixture
def manifest(tmp_path: Path) -> str:
    """A valid one-product manifest (the product itself need not exist)."""
    path = str(tmp_path / "good.parquet")
    write_manifest(manifest_frame([{"s3_uri": GOOD_URI}]), path)
    return path


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1: (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    with serve_folder(root) as base:
        yield root, base


# ----------------------------------------------------------------- the contract itself


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "exit codes" in out
    for line in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {line}" in out
    assert "stderr" in out
    for command in ("simulate", "discover", "ingest", "status", "demo"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0 and "exit codes:" in out, command


def test_usage_errors_return_2_instead_of_raising(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "simulate", "--stars", "many", "out")
    assert code == 2 and out == "" and "--stars" in err


@pytest.mark.parametrize(
    ("error", "code", "shown"),
    [
        (ConfigError("ingest.n_workers must be ..."), 2, "ingest.n_workers"),
        (SimulationError("seed must be ..."), 2, "seed must be"),
        (StoreError("cannot write s.zarr"), 3, "StoreError: cannot write s.zarr"),
        (CorruptProductError("x.fits", "truncated"), 1, "CorruptProductError: x.fits"),
        (RuntimeError("boom\nsecond line"), 3, "unexpected RuntimeError: boom second line"),
    ],
)
def test_every_error_is_one_line_with_its_exit_code(
    error: Exception,
    code: int,
    shown: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(args: Any) -> int:
        raise error

    monkeypatch.setattr("starskope_dask.commands.cmd_status", fail)
    got, out, err = cli(capsys, "status", str(tmp_path))
    assert got == code and out == ""
    assert_clean_error(err, shown)
    assert len(err.strip().splitlines()) == 1
    if isinstance(error, RuntimeError):
        assert "rerun with -v for the traceback" in err
        got, _, err = cli(capsys, "-v", "status", str(tmp_path))
        assert got == 3 and "Traceback" in err and "RuntimeError: boom" in err


# ------------------------------------------------------------------ config file and env


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (None, ("is a folder",)),
        ("ingest: [1, 2\n", ("not valid YAML", "line 2")),
        ("ingest: null\n", ("section ingest", "mapping", "null")),
        ("grid: 5\n", ("section grid", "mapping", "not 5")),
        ("starskope: 5\n", ("starskope must be a mapping",)),
        ("ingest:\n  star_chunk: true\n", ("ingest.star_chunk", "boolean")),
        ("read:\n  quality_bitmask: 100000000000000000000\n", ("read.quality_bitmask",)),
        ("grid:\n  start_bjd: .nan\n", ("grid.start_bjd", "finite")),
        ("read:\n  column_map: {time: 5, flux: F}\n", ("read.column_map.time",)),
        ("inges:\n  star_chunk: 8\n", ("unknown config section", "did you mean 'ingest'")),
    ],
    ids=[
        "folder",
        "not-yaml",
        "null-section",
        "scalar-section",
        "scalar-root",
        "bool-for-int",
        "huge-bitmask",
        "nan-float",
        "column-map-type",
        "unknown-section",
    ],
)
def test_bad_config_file_is_a_usage_error(
    text: str | None,
    needles: tuple[str, ...],
    tmp_path: Path,
    manifest: str,
    no_cluster: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "folder.yaml"
    if text is None:
        config.mkdir()
    else:
        config.write_text(text)
    store = tmp_path / "s.zarr"
    code, out, err = cli(capsys, "ingest", manifest, "--store", str(store), "--config", str(config))
    assert code == 2 and out == ""
    assert_clean_error(err, str(config), *needles)
    assert not store.exists()  # validation has no side effects


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("INGEST__THREADS_PER_WORKER", "abc", "ingest.threads_per_worker"),
        ("INGEST__THREADS_PER_WORKER", "0", "ingest.threads_per_worker"),
        ("INGEST__MEMORY_LIMIT", "abc", "ingest.memory_limit"),
        ("INGEST__MEMORY_LIMIT", "0", "ingest.memory_limit"),
        ("INGEST__STAR_CHUNK", "true", "ingest.star_chunk"),
        ("INGEST__STAR_CHUNK", "8.0", "ingest.star_chunk"),
        ("INGEST__FETCH_CONCURRENCY", "100000", "ingest.fetch_concurrency"),
        ("INGEST__MATCH_RADIUS_ARCSEC", "nan", "ingest.match_radius_arcsec"),
        ("INGEST__SCHEDULER_ADDRESS", "5", "ingest.scheduler_address"),
        ("INGEST__STAR_CHUNKS", "8", "ingest.star_chunks"),
        ("INGEST", "5", "section ingest"),
        ("INGEST__RETRY_FAILED", "maybe", "ingest.retry_failed"),
        ("GRID__CADENCE_DAYS", "abc", "grid.cadence_days"),
        ("GRID__CADENCE_DAYS", "1e-12", "grid.cadence_days"),
        ("GRID__STOP_BJD", "1e999", "grid.stop_bjd"),
        ("READ__QUALITY_BITMASK", "1e20", "read.quality_bitmask"),
        ("READ__QUALITY_BITMASK", str(10**20), "read.quality_bitmask"),
        ("READ__FLUX", "PDCSAP", "read.flux"),
        ("STORAGE__ANON", "maybe", "storage.anon"),
    ],
)
def test_bad_environment_value_names_key_and_variable(
    variable: str,
    value: str,
    key: str,
    tmp_path: Path,
    manifest: str,
    no_cluster: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"DASK_STARSKOPE__{variable}"
    monkeypatch.setenv(name, value)
    code, out, err = cli(capsys, "ingest", manifest, "--store", str(tmp_path / "s.zarr"))
    assert code == 2 and out == ""
    assert_clean_error(err, key, name)


def test_bad_command_line_override_says_so(
    tmp_path: Path, manifest: str, no_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "ingest", manifest, "--store", str(tmp_path / "s"), "--workers", "0")
    assert code == 2
    assert_clean_error(err, "ingest.n_workers", "command line")


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: ReadConfig(quality_bitmask=10**20), "read.quality_bitmask"),
        (lambda: ReadConfig(quality_bitmask=1e20), "read.quality_bitmask"),  # type: ignore[arg-type]
        (lambda: ReadConfig(quality_bitmask=True), "read.quality_bitmask"),
        (lambda: ReadConfig(flux=5), "read.flux"),  # type: ignore[arg-type]
        (lambda: ReadConfig(column_map=["time"]), "read.column_map"),  # type: ignore[arg-type]
        (lambda: GridConfig(start_bjd=math.nan), "grid.start_bjd"),
        (lambda: GridConfig(stop_bjd=math.inf), "grid.stop_bjd"),
        (lambda: GridConfig(start_bjd="2454950"), "grid.start_bjd"),  # type: ignore[arg-type]
        (lambda: GridConfig(cadence_days=1e-9), "grid.cadence_days"),
        (lambda: GridConfig(start_bjd=1.0, stop_bjd=1.001), "grid"),
        (lambda: IngestConfig(star_chunk=True), "ingest.star_chunk"),
        (lambda: IngestConfig(threads_per_worker=1.5), "ingest.threads_per_worker"),  # type: ignore[arg-type]
        (lambda: IngestConfig(star_chunk=65536, time_chunk=2**24), "ingest.star_chunk"),
        (lambda: IngestConfig(match_radius_arcsec=math.nan), "ingest.match_radius_arcsec"),
        (lambda: IngestConfig(memory_limit=-1), "ingest.memory_limit"),
        (lambda: IngestConfig(memory_limit=None), "ingest.memory_limit"),  # type: ignore[arg-type]
        (lambda: IngestConfig(fetch_concurrency=10**6), "ingest.fetch_concurrency"),
        (lambda: IngestConfig(scheduler_address=""), "ingest.scheduler_address"),
        (lambda: IngestConfig(store=None), "ingest.store"),  # type: ignore[arg-type]
        (lambda: IngestConfig(grid={}), "ingest.grid"),  # type: ignore[arg-type]
    ],
)
def test_every_field_is_checked_for_type_and_range(make: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make()


def test_good_values_still_pass() -> None:
    assert ReadConfig(quality_bitmask=2**31 - 1).quality_bitmask == 2**31 - 1
    grid = GridConfig(start_bjd=2454950, stop_bjd=2455950, cadence_days=0.5)
    assert isinstance(grid.start_bjd, float) and grid.size == 2000
    assert IngestConfig(memory_limit="auto").memory_limit == "auto"
    assert IngestConfig(memory_limit=2**30, scheduler_address="tcp://1.2.3.4:8786")


# ------------------------------------------------------------------------------ discover


def _fake_archive(root: Path) -> Path:
    """A folder with one (empty) Kepler product under the public layout: enough to list."""
    key = root / "kepler/public/lightcurves/0106/010666592/kplr010666592-2009131110544_llc.fits"
    key.parent.mkdir(parents=True)
    key.write_bytes(b"")
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["292.2,47.9", "--radius", "-5"],
        ["292.2,47.9", "--radius", "0"],
        ["292.2,47.9", "--radius", "nan"],
        ["292.2,47.9", "--radius", "4000"],
        ["292.2,47.9,-5"],
        ["292.2,47.9,0"],
        ["292.2,47.9,abc"],
    ],
)
def test_discover_bad_cone_is_a_usage_error(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "m.parquet"
    code, out, err = cli(
        capsys,
        "discover",
        *argv,
        "--offline",
        "--mast-cache",
        str(tmp_path / "cache"),
        "-o",
        str(out_file),
    )
    assert code == 2 and out == ""
    assert_clean_error(err, argv[0] if len(argv) == 1 else "--radius")
    assert "radius" in err or "not a cone" in err
    assert not out_file.exists()


def test_discover_output_that_cannot_be_written_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(_fake_archive(tmp_path / "archive"))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for output in (str(a_file / "m.parquet"), str(tmp_path)):
        code, _, err = cli(capsys, "discover", "--archive", archive, "-o", output)
        assert code == 3
        assert_clean_error(err, "StoreError", output)
    # a dead S3 server: refused at once, no retries, one line naming the output
    monkeypatch.setenv("DASK_STARSKOPE__STORAGE__RETRIES", "0")
    started = time.perf_counter()
    code, _, err = cli(capsys, "discover", "--archive", archive, "-o", "s3://bucket/m.parquet")
    assert code == 3 and time.perf_counter() - started < 60
    assert_clean_error(err, "StoreError", "s3://bucket/m.parquet")
    # and a good output still works
    code, out, _ = cli(capsys, "discover", "--archive", archive, "-o", str(tmp_path / "m.parquet"))
    assert code == 0 and "1 products" in out


@pytest.mark.skipif(
    CHMOD_IS_IGNORED,
    reason="this process (root) writes into read-only folders: chmod cannot stop it",
)
def test_discover_into_read_only_folder_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(_fake_archive(tmp_path / "archive"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli(capsys, "discover", "--archive", archive, "-o", str(locked / "m.pq"))
    finally:
        locked.chmod(0o700)
    assert code == 3
    assert_clean_error(err, "not writable", str(locked))


def test_discover_that_finds_nothing_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "m.parquet"
    write_manifest(manifest_frame([{"s3_uri": GOOD_URI}]), str(out_file))
    before = out_file.read_bytes()
    code, _, err = cli(
        capsys,
        "discover",
        "Nowhere-Star-123",
        "--offline",
        "--mast-cache",
        str(tmp_path / "cache"),
        "-o",
        str(out_file),
    )
    assert code == 3 and "Nowhere-Star-123" in err and "not written" in err
    assert out_file.read_bytes() == before  # an earlier good manifest is not overwritten


# ------------------------------------------------------------------------------ simulate

SMALL = ["--stars", "1", "--max-segments", "1", "--segment-days", "1", "--processes", "1", "-q"]


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--segment-days", "0", "--segment-days"),
        ("--segment-days", "-3", "--segment-days"),
        ("--segment-days", "nan", "--segment-days"),
        ("--seed", "-1", "--seed"),
        ("--stars", "0", "--stars"),
        ("--stars", "-4", "--stars"),
        ("--max-segments", "0", "--max-segments"),
        ("--missions", "kepler,hubble", "hubble"),
        ("--missions", ",", "--missions"),
        ("--processes", "0", "--processes"),
    ],
)
def test_simulate_bad_parameters_are_usage_errors(
    option: str, value: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "sim"
    argv = [*SMALL, option, value]
    code, out, err = cli(capsys, "simulate", str(out_dir), *argv)
    assert code == 2 and out == ""
    assert_clean_error(err, needle)
    assert not out_dir.exists()


def test_simulation_config_rejects_bad_values() -> None:
    for kwargs in (
        {"seed": -1},
        {"seed": 1.5},
        {"n_stars": True},
        {"segment_days": math.inf},
        {"planet_fraction": math.nan},
        {"tess_cadence_days": 0},
        {"missions": "kepler"},
    ):
        with pytest.raises(SimulationError):
            SimulationConfig(**kwargs)


def test_simulate_output_that_cannot_be_written_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for target in (str(a_file), str(a_file / "sub")):
        code, _, err = cli(capsys, "simulate", target, *SMALL)
        assert code == 3
        assert_clean_error(err, "StoreError", target)
    monkeypatch.setenv("DASK_STARSKOPE__STORAGE__RETRIES", "0")
    started = time.perf_counter()
    code, _, err = cli(capsys, "simulate", "s3://bucket", *SMALL)
    assert code == 3 and time.perf_counter() - started < 60
    assert_clean_error(err, "StoreError", "s3://bucket")
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "simulate", "ftp://host/x", *SMALL)
    assert code == 2 and "ftp://" in err


@pytest.mark.skipif(
    CHMOD_IS_IGNORED,
    reason="this process (root) writes into read-only folders: chmod cannot stop it",
)
def test_simulate_into_read_only_folder_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli(capsys, "simulate", str(locked), *SMALL)
    finally:
        locked.chmod(0o700)
    assert code == 3
    assert_clean_error(err, "not writable", str(locked))


# ---------------------------------------------------------------------------------- demo


def test_demo_output_that_cannot_be_written_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "starskope_dask.demo.local_s3_server",
        lambda *a, **k: pytest.fail("the server started although --out cannot be written"),
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for out_dir in (str(a_file), str(a_file / "demo")):
        code, _, err = cli(capsys, "demo", "--out", out_dir)
        assert code == 3
        assert_clean_error(err, "StoreError", out_dir, "--out")
    code, _, err = cli(capsys, "demo", "--out", str(tmp_path / "d"), "--stars", "0")
    assert code == 2 and "--stars" in err
    code, _, err = cli(capsys, "demo", "--out", str(tmp_path / "d"), "--workers", "0")
    assert code == 2 and "pipeline.n_workers" in err


# ----------------------------------------------------------------------------- manifests


def _parquet(path: Path, frame: pd.DataFrame) -> str:
    frame.to_parquet(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("frame", "needles"),
    [
        (
            pd.DataFrame({"s3_uri": [GOOD_URI, "", None], "https_url": ["", None, ""]}),
            ("rows 1, 2", "no URL"),
        ),
        (pd.DataFrame({"s3_uri": pd.Series([], dtype=str)}), ("0 rows",)),
        (pd.DataFrame({"s3_uri": [1, 2]}), ("rows 0, 1", "not a string", "int")),
        (pd.DataFrame({"s3_uri": [b"s3://a/b"]}), ("row 0", "not a string", "bytes")),
        (
            pd.DataFrame({"s3_uri": [GOOD_URI, "ftp://host/x.fits", "gs://b/k.fits"]}),
            ("row 1", "ftp://", "row 2", "gs://"),
        ),
        (pd.DataFrame({"https_url": [" https://h/x.fits"]}), ("row 0", "spaces")),
        (pd.DataFrame({"url": [GOOD_URI]}), ("no s3_uri or https_url column",)),
    ],
    ids=["no-url", "empty", "ints", "bytes", "schemes", "spaces", "no-url-column"],
)
def test_bad_manifest_is_a_usage_error_naming_rows(
    frame: pd.DataFrame,
    needles: tuple[str, ...],
    tmp_path: Path,
    no_cluster: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _parquet(tmp_path / "bad.parquet", frame)
    store = tmp_path / "s.zarr"
    code, out, err = cli(capsys, "ingest", path, "--store", str(store), "-q")
    assert code == 2 and out == ""
    assert_clean_error(err, path, *needles)
    assert not store.exists()


def test_manifest_that_is_not_parquet(
    tmp_path: Path, no_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all")
    for path in (str(garbage), str(tmp_path)):
        code, _, err = cli(capsys, "ingest", path, "--store", str(tmp_path / "s"), "-q")
        assert code == 2
        assert_clean_error(err, path)
    with pytest.raises(ConfigError, match="unsupported scheme"):
        read_manifest("ftp://host/m.parquet")


def test_repeated_urls_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = GOOD_URI.replace("llc", "slc")
    path = _parquet(tmp_path / "dup.parquet", pd.DataFrame({"s3_uri": [GOOD_URI, other, GOOD_URI]}))
    with caplog.at_level(logging.WARNING, logger="starskope_dask"):
        frame = read_manifest(path)
    assert frame["s3_uri"].tolist() == [GOOD_URI, other]
    assert "row 2" in caplog.text and "repeat" in caplog.text


def test_manifest_over_http(
    http_dir: tuple[Path, str],
    tmp_path: Path,
    no_cluster: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, base = http_dir
    write_manifest(manifest_frame([{"s3_uri": GOOD_URI}]), str(root / "m.parquet"))
    # S3 options (region_name, ...) are never handed to the HTTP filesystem
    for options in (None, StorageConfig(), StorageConfig().storage_options()):
        frame = read_manifest(f"{base}/m.parquet", options)
        assert frame["s3_uri"].tolist() == [GOOD_URI]
    # a bad manifest over HTTP is named, rows and all
    _parquet(root / "bad.parquet", pd.DataFrame({"s3_uri": [GOOD_URI, "ftp://x/y.fits"]}))
    code, _, err = cli(capsys, "ingest", f"{base}/bad.parquet", "--store", str(tmp_path / "s"))
    assert code == 2
    assert_clean_error(err, f"{base}/bad.parquet", "row 1", "ftp://")
    code, _, err = cli(capsys, "ingest", f"{base}/missing.parquet", "--store", str(tmp_path / "s"))
    assert code == 2 and "does not exist" in err
    # a dead server is the environment's fault: exit 3
    monkeypatch.setenv("DASK_STARSKOPE__STORAGE__RETRIES", "0")
    dead = "http://127.0.0.1:9/m.parquet"
    code, _, err = cli(capsys, "ingest", dead, "--store", str(tmp_path / "s"))
    assert code == 3
    assert_clean_error(err, "StoreError", dead)


# -------------------------------------------------------------------------------- status


def _store_with_failures(root: Path, n: int) -> Path:
    from starskope_dask.store import state_url, write_table

    products = pd.DataFrame(
        {
            "url": [f"s3://b/p{i:05d}.fits" for i in range(n)],
            "error_type": [
                "ProductNotFoundError" if i % 4 else "CorruptProductError" for i in range(n)
            ],
            "message": [f"p{i:05d}: broken\nsecond line" for i in range(n)],
        }
    )
    write_table(state_url(str(root), "products.parquet"), products)
    return root


def test_status_of_a_damaged_store_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "cube.zarr" / "_starskope"
    state.mkdir(parents=True)
    (state / "products.parquet").write_bytes(os.urandom(256))
    code, out, err = cli(capsys, "status", str(tmp_path / "cube.zarr"))
    assert code == 3 and out == ""
    assert_clean_error(err, "products.parquet", "damaged")


def test_status_summarises_many_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(_store_with_failures(tmp_path / "cube.zarr", 20_000))
    code, out, _ = cli(capsys, "status", store)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) < 20
    assert "15000 ProductNotFoundError" in out and "5000 CorruptProductError" in out
    assert "19990 more" in out and f"starskope status {store} --all" in out
    code, out, _ = cli(capsys, "status", store, "--all")
    assert code == 0 and len(out.splitlines()) > 20_000
    code, out, _ = cli(capsys, "status", store, "--json")
    assert code == 0 and out.count("p19999.fits") == 1


def test_ingest_summary_text_is_bounded() -> None:
    from starskope_dask.commands import _summary_text

    failures = [
        {"url": f"u{i}", "error_type": "FetchError", "message": "timed out"} for i in range(20_000)
    ]
    summary = {
        "store": "s.zarr",
        "n_stars": 0,
        "n_products": 20_000,
        "n_stored": 0,
        "n_failed": 20_000,
        "n_chunks_written": 0,
        "n_chunks_skipped": 0,
        "bytes_read": 0,
        "seconds": 1.0,
        "failures": failures,
    }
    text = _summary_text(summary)
    assert len(text.splitlines()) < 20
    assert "20000 FetchError" in text and "starskope status s.zarr" in text


def test_inspect_huge_bitmask_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "inspect", "x.fits", "--quality-bitmask", str(10**20))
    assert code == 2
    assert_clean_error(err, "read.quality_bitmask")
