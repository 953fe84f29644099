"""Reliability of ingest (issue 10): never lose a user's data, never wedge a store, work on
every store and transport it claims, and keep going when servers fail.

Real parts throughout: the simulated archive in the real FITS format, a moto S3 server and
HTTP servers on 127.0.0.1, a LocalCluster of worker processes, tmpfs mounts for a full disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from starskope_dask.cli import main
from starskope_dask.config import StorageConfig, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.errors import FetchError, NotAStoreError, StoreError, UnsupportedSchemeError
from starskope_dask.pipeline import run, run_with_client
from starskope_dask.read import read_light_curve
from starskope_dask.store import claim_store, open_cube, store_status

from .conftest import serve_folder, two_worker_client

FAST_FAIL = {  # a dead server fails in well under a second
    "DASK_STARSKOPE__STORAGE__RETRIES": "0",
    "DASK_STARSKOPE__STORAGE__CONNECT_TIMEOUT_S": "2",
    "AWS_MAX_ATTEMPTS": "1",
}


@pytest.fixture(scope="module")
def client(s3: object) -> Iterator[object]:
    """Two worker processes, started once the S3 server's endpoint is in the environment."""
    with two_worker_client() as c:
        yield c


@pytest.fixture(scope="module")
def manifest(sim_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("manifest") / "sim.parquet")
    write_manifest(list_archive(str(sim_archive)), path)
    return path


@pytest.fixture(scope="module")
def reference_store(
    manifest: str, client: object, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A clean ingest of the whole simulated manifest into a local store."""
    store = tmp_path_factory.mktemp("reference") / "cube.zarr"
    run_with_client(load_ingest_config(manifest, str(store), star_chunk=4), client, progress=False)
    return store


@pytest.fixture(scope="module")
def reference(reference_store: Path) -> Any:
    return open_cube(str(reference_store)).load()


def assert_same_stored_chunks(fs: Any, root: str, reference_store: Path) -> None:
    """The data chunks of a remote store are those of the reference, byte for byte (a
    cheaper check than loading a remote cube whole: every empty chunk would be a GET)."""
    fs.invalidate_cache()
    for name in ("flux", "flux_err", "kic", "tic", "epic", "ra", "dec"):
        local = {
            p.relative_to(reference_store / name).as_posix(): p.read_bytes()
            for p in (reference_store / name).rglob("*")
            if p.is_file() and p.name != "zarr.json"
        }
        remote_paths = [p for p in fs.find(f"{root}/{name}") if not p.endswith("zarr.json")]
        remote = {p[len(f"{root}/{name}/") :]: data for p, data in fs.cat(remote_paths).items()}
        assert remote.keys() == local.keys(), name
        assert all(remote[k] == local[k] for k in local), name


def assert_same_cube(a: Any, b: Any) -> None:
    """Same stars (matched by catalogue IDs: star rows are stable across incremental runs,
    so their order depends on the order products arrived) with the same values."""
    assert a.sizes["star"] == b.sizes["star"]
    ids = ("kic", "epic", "tic")
    key_a = list(zip(*(a[n].values.tolist() for n in ids), strict=True))
    key_b = list(zip(*(b[n].values.tolist() for n in ids), strict=True))
    assert sorted(key_a) == sorted(key_b)
    order = [key_a.index(k) for k in key_b]
    for name in ("flux", "flux_err"):
        np.testing.assert_array_equal(a[name].values[:, order], b[name].values, err_msg=name)
    for name in ("ra", "dec", "missions"):
        np.testing.assert_array_equal(a[name].values[order], b[name].values, err_msg=name)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def https_manifest(sim_archive: Path, base: str, path: Path, rows: slice = slice(None)) -> str:
    """A manifest of the simulated archive whose products have only HTTP(S) URLs."""
    frame = list_archive(str(sim_archive)).iloc[rows].copy()
    frame["https_url"] = [
        f"{base}/{Path(u).relative_to(sim_archive).as_posix()}" for u in frame["s3_uri"]
    ]
    frame["s3_uri"] = None
    write_manifest(frame, str(path))
    return str(path)


# ------------------------------------------------------------------ 1. data loss


def test_a_foreign_folder_is_refused_and_left_intact(manifest: str, tmp_path: Path) -> None:
    target = tmp_path / "thesis-work"
    (target / "thesis").mkdir(parents=True)
    (target / "thesis" / "chapter1.tex").write_text("\\chapter{Introduction}")
    (target / "notes.txt").write_text("remember the milk")
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = tree_digest(target)
    assert main(["ingest", manifest, "--store", str(target), "-q"]) == 3
    assert tree_digest(target) == before  # nothing written, nothing deleted
    a_file = tmp_path / "results.csv"
    a_file.write_text("a,b\n")
    with pytest.raises(NotAStoreError, match="is a file"):
        claim_store(str(a_file))
    assert a_file.read_text() == "a,b\n"


def test_user_files_inside_a_store_survive_a_rebuild(
    manifest: str, client: object, tmp_path: Path
) -> None:
    """Only the cube's own keys are removed when a cube is (re)made: a file the user put in
    the store, or under its state folder, is never touched."""
    store = tmp_path / "cube.zarr"
    claim_store(str(store))
    (store / "README-mine.txt").write_text("my notes")
    run_with_client(load_ingest_config(manifest, str(store), star_chunk=4), client, progress=False)
    (store / "_starskope" / "stars.parquet").unlink()  # forces the cube to be made again
    run_with_client(load_ingest_config(manifest, str(store), star_chunk=4), client, progress=False)
    assert (store / "README-mine.txt").read_text() == "my notes"


def test_a_foreign_bucket_is_refused_and_left_intact(s3: Any, manifest: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options(anon=False))
    fs.mkdir("lab-bucket")
    fs.pipe("lab-bucket/papers/draft.pdf", b"%PDF-1.7 draft")
    fs.pipe("lab-bucket/keep.json", b'{"keep": true}')
    for store in ("s3://lab-bucket", "s3://lab-bucket/", "s3://lab-bucket/papers"):
        assert main(["ingest", manifest, "--store", store, "-q"]) == 3
    fs.invalidate_cache()
    assert sorted(fs.find("lab-bucket")) == ["lab-bucket/keep.json", "lab-bucket/papers/draft.pdf"]
    assert fs.cat("lab-bucket/papers/draft.pdf") == b"%PDF-1.7 draft"


# ------------------------------------------------------------------ 2. S3 stores


def test_s3_store_cycle(
    s3: Any,
    manifest: str,
    client: object,
    reference: Any,
    reference_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ingest -> status -> rerun -> xr.open_zarr("s3://...") against a real S3 server."""
    import s3fs
    import xarray as xr

    fs = s3fs.S3FileSystem(**s3.storage_options(anon=False))
    fs.mkdir("cubes")
    store = "s3://cubes/sim/cube.zarr"
    config = load_ingest_config(manifest, store, star_chunk=4)
    first = run_with_client(config, client, progress=False)
    assert first.n_failed == 0 and first.n_stored == first.n_products > 0
    fs.invalidate_cache()
    assert fs.exists("cubes/sim/cube.zarr/_starskope/summary.json")
    assert main(["status", store, "--json"]) == 0
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status["n_stored"] == first.n_products and status["n_failed"] == 0
    again = run_with_client(config, client, progress=False)
    assert (again.n_products_read, again.n_chunks_written) == (0, 0)
    assert_same_stored_chunks(fs, "cubes/sim/cube.zarr", reference_store)
    cube = xr.open_zarr(store, storage_options=s3.storage_options(anon=False))
    star = int(np.flatnonzero(np.isfinite(reference["flux"].sel(mission="TESS")).any("time"))[0])
    np.testing.assert_array_equal(
        cube["flux"].sel(mission="TESS").isel(star=star).values,
        reference["flux"].sel(mission="TESS").isel(star=star).values,
    )
    # a bucket of its own, no prefix: the cube sits at the bucket's root
    fs.mkdir("cube-root")
    root = run_with_client(load_ingest_config(manifest, "s3://cube-root", star_chunk=4), client)
    assert root.n_stored == first.n_stored
    assert_same_stored_chunks(fs, "cube-root", reference_store)


# ------------------------------------------------------------------ 3. HTTP(S) products


def test_https_products_and_manifest_cycle(
    sim_archive: Path, client: object, reference: Any, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with serve_folder(sim_archive) as base, serve_folder(served) as manifests:
        https_manifest(sim_archive, base, served / "https.parquet")
        store = str(tmp_path / "cube.zarr")
        config = load_ingest_config(f"{manifests}/https.parquet", store, star_chunk=4)
        summary = run_with_client(config, client, progress=False)
    assert summary.n_failed == 0, summary.failures[:3]
    assert summary.n_stored == summary.n_products > 0
    assert_same_cube(open_cube(store), reference)


# ------------------------------------------------------------------ 4. hangs, timeouts


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


@pytest.mark.timeout(60)
def test_a_silent_server_times_out_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = StorageConfig(read_timeout_s=0.5, retries=1, retry_backoff_s=0.05)
    with silent_server() as base:
        url = f"{base}/tess/x_lc.fits"
        began = time.monotonic()
        with pytest.raises(FetchError, match=r"read_timeout_s=0\.5") as info:
            read_light_curve(url, storage_options=storage)
        assert time.monotonic() - began < 5  # two tries of 0.5 s, one backoff
        assert url in str(info.value)
        # anonymous S3 against a silent endpoint, through the command and its config
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", base)
        monkeypatch.setenv("DASK_STARSKOPE__STORAGE__READ_TIMEOUT_S", "0.5")
        monkeypatch.setenv("DASK_STARSKOPE__STORAGE__RETRIES", "0")
        began = time.monotonic()
        assert main(["inspect", "s3://stpubdata/tess/x_lc.fits"]) == 1
        assert time.monotonic() - began < 5
    out = capsys.readouterr()
    assert "FetchError" in out.out + out.err and "read_timeout_s" in out.out + out.err


def test_an_http_transfer_encoding_bomb_stops_at_the_limit() -> None:
    """A server that gzips its answer (``Content-Encoding: gzip``) is inflated by the HTTP
    client itself, past the reader's decompression: the download is capped while it
    streams."""
    import gzip

    from starskope_dask.config import ReadConfig
    from starskope_dask.errors import CorruptProductError

    body = gzip.compress(bytes(64 * 2**20), compresslevel=1)

    class Bomb(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bomb_lc.fits"
        with pytest.raises(CorruptProductError, match="max_product_bytes"):
            read_light_curve(url, config=ReadConfig(max_product_bytes=8 * 2**20))
    finally:
        server.shutdown()
        server.server_close()


def test_unsupported_schemes_are_named(tmp_path: Path) -> None:
    for url in ("ftp://archive.stsci.edu/x.fits", "gs://bucket/x.fits", "hdfs://n/x.fits"):
        with pytest.raises(UnsupportedSchemeError, match="unsupported scheme"):
            read_light_curve(url)


# ------------------------------------------------------------------ 7. retries of failures


def test_source_server_down_then_up_retries_only_what_failed(
    sim_archive: Path,
    client: object,
    reference: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in FAST_FAIL.items():
        monkeypatch.setenv(key, value)
    store = str(tmp_path / "cube.zarr")
    with serve_folder(sim_archive) as base:
        port = int(base.rsplit(":", 1)[1])
        n_first = 20
        first = https_manifest(sim_archive, base, tmp_path / "first.parquet", slice(0, n_first))
        full = https_manifest(sim_archive, base, tmp_path / "full.parquet")
        one = run_with_client(
            load_ingest_config(first, store, star_chunk=4), client, progress=False
        )
        assert one.n_failed == 0 and one.n_stored == n_first
    # the server is gone: the new products fail (transient), the stored ones stay stored
    down = run_with_client(load_ingest_config(full, store, star_chunk=4), client, progress=False)
    n_new = down.n_products - n_first
    assert down.n_failed == n_new and down.n_stored == n_first
    assert {f["error_type"] for f in down.failures} == {"FetchError"}
    with serve_folder(sim_archive, port):
        up = run_with_client(load_ingest_config(full, store, star_chunk=4), client, progress=False)
    assert up.n_failed == 0 and up.n_stored == up.n_products
    assert up.n_products_read == n_new  # the stored products were not read again
    assert_same_cube(open_cube(store), reference)


def test_corrupt_products_are_retried_only_when_asked(
    sim_archive: Path, client: object, tmp_path: Path
) -> None:
    frame = list_archive(str(sim_archive)).iloc[:6]
    broken = tmp_path / "broken_llc.fits"
    good = Path(frame["s3_uri"].iloc[0])
    broken.write_bytes(good.read_bytes()[:5000])  # cut short
    frame.loc[frame.index[0], "s3_uri"] = str(broken)
    manifest = str(tmp_path / "m.parquet")
    write_manifest(frame, manifest)
    store = str(tmp_path / "cube.zarr")
    config = load_ingest_config(manifest, store)
    assert run_with_client(config, client, progress=False).n_failed == 1
    broken.write_bytes(good.read_bytes())  # the user mends it
    again = run_with_client(config, client, progress=False)
    assert (again.n_products_read, again.n_failed) == (0, 1)  # corrupt stays failed ...
    retried = run_with_client(
        load_ingest_config(manifest, store, retry_failed=True), client, progress=False
    )
    assert (retried.n_products_read, retried.n_failed) == (1, 0)  # ... until asked


# ------------------------------------------------------------------ 8. wedged stores


def test_torn_and_damaged_state_files(
    manifest: str, sim_archive: Path, client: object, reference: Any, tmp_path: Path
) -> None:
    store = tmp_path / "cube.zarr"
    claim_store(str(store))
    state = store / "_starskope"
    (state / "lock.json").write_bytes(b"")  # what a full disk made of an earlier lock
    (state / "staged").mkdir()
    leftover = state / "staged" / "0123abcd.pack.tmp-4242-139876543"
    leftover.write_bytes(b"half a pack")
    config = load_ingest_config(manifest, str(store), star_chunk=4)
    first = run_with_client(config, client, progress=False)  # the torn lock is taken over
    assert first.n_failed == 0
    assert not leftover.exists() and not (state / "lock.json").exists()
    # damaged state: a products table of garbage, a done-marker cut short
    (state / "products.parquet").write_bytes(b"PAR1 not really")
    marker = sorted((state / "done").iterdir())[0]
    marker.write_bytes(marker.read_bytes()[:10])
    assert main(["status", str(store)]) == 3  # a typed error naming the file
    with pytest.raises(StoreError, match=r"products\.parquet is damaged"):
        store_status(str(store))
    # the rerun rebuilds the table from the staged products: no source is read again
    moved = tmp_path / "moved"
    sim_archive.rename(moved)
    try:
        rebuilt = run_with_client(config, client, progress=False)
    finally:
        moved.rename(sim_archive)
    assert rebuilt.n_failed == 0 and rebuilt.n_stored == first.n_stored
    assert rebuilt.n_chunks_written >= 1  # the chunk whose marker was damaged
    assert_same_cube(open_cube(str(store)), reference)
    assert store_status(str(store)).n_stored == first.n_stored


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_disk_full_then_room_again(
    manifest: str, client: object, reference: Any, tmp_path: Path
) -> None:
    disk = tmp_path / "small-disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "400k"):
        pytest.skip("needs root and tmpfs mounts to make a small disk")
    try:
        store = disk / "cube.zarr"
        config = load_ingest_config(manifest, str(store), star_chunk=4)
        with pytest.raises(StoreError):
            run_with_client(config, client, progress=False)
        state = store / "_starskope"
        assert not (state / "lock.json").exists()
        assert not [p for p in state.rglob("*") if ".tmp-" in p.name]  # no temporary files
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        summary = run_with_client(config, client, progress=False)
        assert summary.n_failed == 0
        assert_same_cube(open_cube(str(store)), reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_read_only_store_is_a_typed_error(
    manifest: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "read-only"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "1m"):
        pytest.skip("needs root and tmpfs mounts to make a read-only disk")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        store = disk / "cube.zarr"
        assert main(["ingest", manifest, "--store", str(store), "-q"]) == 3
        err = capsys.readouterr().err
        assert "StoreError" in err and str(store) in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ------------------------------------------------------------------ 11. store server dies


def test_store_server_killed_mid_run_then_restarted(
    manifest: str, client: object, reference_store: Path
) -> None:
    """The run ends with the store's error (not one from releasing the lock); once the
    server is back, the rerun completes and the store equals a clean ingest."""
    from moto.server import ThreadedMotoServer

    from starskope_dask.s3server import _free_port

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("dying")
    store = "s3://dying/cube.zarr"
    config = dataclasses.replace(
        load_ingest_config(manifest, store, star_chunk=4),
        storage=StorageConfig(endpoint_url=endpoint, retries=0, connect_timeout_s=2),
    )

    def kill(record: dict[str, Any]) -> None:
        server.stop()

    try:
        with pytest.raises(StoreError, match=r"dying/cube\.zarr"):
            run_with_client(config, client, progress=False, on_chunk=kill)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # moto keeps its buckets in the process: the store is as it was
        summary = run_with_client(config, client, progress=False)
        assert summary.n_failed == 0 and summary.n_chunks_skipped >= 1
        assert_same_stored_chunks(s3fs.S3FileSystem(**options), "dying/cube.zarr", reference_store)
    finally:
        with contextlib.suppress(Exception):
            server.stop()


# ------------------------------------------------------------------ 10. pruning


def test_products_dropped_from_the_manifest_leave_the_cube(
    sim_archive: Path, client: object, tmp_path: Path
) -> None:
    full = list_archive(str(sim_archive))
    m_full, m_less = str(tmp_path / "full.parquet"), str(tmp_path / "less.parquet")
    write_manifest(full, m_full)
    gone_star = full["tic"].dropna().iloc[0]
    less = full[(full["tic"] != gone_star) & ~(full.index % 5 == 1)]
    write_manifest(less, m_less)
    store = str(tmp_path / "cube.zarr")
    run_with_client(load_ingest_config(m_full, store, star_chunk=4), client, progress=False)
    pruned = run_with_client(load_ingest_config(m_less, store, star_chunk=4), client)
    assert pruned.n_products == len(less) and pruned.n_stored == len(less)
    fresh = str(tmp_path / "fresh.zarr")
    run_with_client(load_ingest_config(m_less, fresh, star_chunk=4), client, progress=False)
    a, b = open_cube(store).load(), open_cube(fresh).load()
    # star rows are stable: compare star by star through the catalogue IDs
    key = list(zip(b["kic"].values, b["epic"].values, b["tic"].values, strict=True))
    rows = {k: i for i, k in enumerate(key)}
    for i, k in enumerate(zip(a["kic"].values, a["epic"].values, a["tic"].values, strict=True)):
        if k in rows:
            np.testing.assert_array_equal(a["flux"].values[:, i], b["flux"].values[:, rows[k]])
        else:  # the star whose products all left: no flux, no missions
            assert np.isnan(a["flux"].values[:, i]).all() and str(a["missions"].values[i]) == ""
    assert store_status(store).n_stored == len(less)


# ------------------------------------------------------------------ 14. noise, no-op reruns


def test_a_rerun_with_nothing_to_do_starts_no_cluster(
    manifest: str, client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "cube.zarr")
    config = load_ingest_config(manifest, store, star_chunk=4)
    with pytest.warns() as caught:
        import warnings

        warnings.warn("sentinel", UserWarning, stacklevel=1)
        run_with_client(config, client, progress=False)
    noisy = [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    assert not noisy, [str(w.message) for w in noisy]
    monkeypatch.setattr(
        "starskope_dask.cluster.make_client",
        lambda config: pytest.fail("a cluster was started for a run with nothing to do"),
    )
    summary = run(config, progress=False)
    assert summary.n_chunks_written == 0 and summary.n_products_read == 0


def test_no_usable_cadences_are_failures_of_their_own(
    sim_archive: Path, client: object, tmp_path: Path
) -> None:
    from astropy.io import fits

    frame = list_archive(str(sim_archive)).iloc[:3].copy()
    source = Path(frame["s3_uri"].iloc[0])
    made = []
    for name, change in (
        ("nan", lambda d: d["FLUX"].__setitem__(slice(None), np.nan)),
        ("zero", lambda d: d["FLUX"].__setitem__(slice(None), 0.0)),
        ("inftime", lambda d: d["TIME"].__setitem__(slice(None), np.inf)),
    ):
        with fits.open(source) as hdus:
            table = hdus[1].data
            column = "PDCSAP_FLUX" if "PDCSAP_FLUX" in table.columns.names else "FLUX"
            change({"FLUX": table[column], "TIME": table["TIME"]})
            out = tmp_path / f"{name}-{source.name}"
            hdus.writeto(out)
        made.append(str(out))
    manifest = str(tmp_path / "m.parquet")
    write_manifest(pd.concat([frame, frame.iloc[:3].assign(s3_uri=made)]), manifest)
    summary = run_with_client(
        load_ingest_config(manifest, str(tmp_path / "cube.zarr")), client, progress=False
    )
    assert summary.n_stored == 3 and summary.n_failed == 3
    assert {f["error_type"] for f in summary.failures} == {"NoUsableDataError"}
    assert all("no usable cadence" in f["message"] for f in summary.failures)
