"""Distributed ingest end to end: real files on a local S3 server, a LocalCluster of two
worker processes, resume after kill -9, concurrent runs, failures kept as data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starskope_dask.align import grid_cells, grid_index
from starskope_dask.config import GridConfig, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.errors import StoreLockedError
from starskope_dask.pipeline import run_with_client
from starskope_dask.read import read_light_curve
from starskope_dask.store import (
    acquire_lock,
    list_staged,
    open_cube,
    release_lock,
    store_status,
)

from .conftest import HAT_P_7_KEPLER, HAT_P_7_TESS, two_worker_client

REAL_SUBSET = [
    HAT_P_7_KEPLER,
    *HAT_P_7_TESS,
    "kepler/kplr002556081-2009166043257_llc.fits",
    "kepler/kplr002556081-2009259160929_llc.fits",
    "k2/ktwo211117077-c04_llc.fits",
    "tess/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
]
CORRUPT = "edge/test-lc-tess-pimen-corrupted.fits"


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    # The S3 endpoint reaches the worker processes through the environment.
    with two_worker_client() as c:
        yield c


@pytest.fixture(scope="module")
def real_manifest(real_data: Path, s3: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    import fsspec

    fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))  # type: ignore[attr-defined]
    for name in REAL_SUBSET:
        fs.put_file(str(real_data / name), f"stpubdata/ingest/{name}")
    # a corrupt product under a real-looking TESS key
    fs.put_file(
        str(real_data / CORRUPT),
        "stpubdata/ingest/tess/tess2018206045859-s0001-0000000261136679-0120-s_lc.fits",
    )
    manifest = list_archive("s3://stpubdata/ingest/")
    assert len(manifest) == len(REAL_SUBSET) + 1
    path = str(tmp_path_factory.mktemp("manifest") / "real.parquet")
    write_manifest(manifest, path)
    return path


def test_real_files_end_to_end(
    real_manifest: str, real_data: Path, client: object, tmp_path: Path
) -> None:
    store = str(tmp_path / "cube.zarr")
    config = load_ingest_config(real_manifest, store, star_chunk=2)
    summary = run_with_client(config, client, progress=False)
    assert summary.n_products == len(REAL_SUBSET) + 1
    assert summary.n_stored == len(REAL_SUBSET)
    assert summary.n_failed == 1
    failure = summary.failures[0]
    assert failure["error_type"] == "CorruptProductError" and "truncated" in failure["message"]

    cube = open_cube(store)
    assert set(cube["flux"].dims) == {"mission", "star", "time"}
    assert cube["time"].dtype == np.float64
    # HAT-P-7: Kepler and TESS products are one star
    hat = int(np.flatnonzero(cube["kic"].values == 10666592)[0])
    assert int(cube["tic"].values[hat]) == 424865156
    assert str(cube["missions"].values[hat]) == "Kepler,TESS"
    # HAT-P-7, KIC 2556081, EPIC 211117077, TIC 25155310; the corrupt TIC 261136679 (its
    # header reads, its data does not) gets no star row: every product is read in full
    # before the star index is made
    assert cube.sizes["star"] == 4
    assert 261136679 not in set(cube["tic"].values.tolist())

    # values: a TESS sector binned onto the grid, normalised by its median
    grid = GridConfig()
    lc = read_light_curve(str(real_data / HAT_P_7_TESS[0]))
    expected = grid_cells(lc, grid)
    stored = cube["flux"].sel(mission="TESS", star=hat).values
    np.testing.assert_allclose(stored[expected.index], expected.flux, rtol=1e-6)
    assert np.isfinite(stored).sum() >= expected.index.size
    kepler = read_light_curve(
        str(real_data / "kepler/kplr002556081-2009259160929_llc.fits")
    ).good_only()
    star = int(np.flatnonzero(cube["kic"].values == 2556081)[0])
    steps = grid_index(kepler.time, grid)
    values = cube["flux"].sel(mission="Kepler", star=star).values[steps]
    np.testing.assert_allclose(values, kepler.flux / np.median(kepler.flux), rtol=1e-6)
    assert np.isnan(cube["flux"].sel(mission="K2", star=star).values).all()

    status = store_status(store)
    assert (status.n_stars, status.n_stored, status.n_failed) == (4, len(REAL_SUBSET), 1)

    rerun = run_with_client(config, client, progress=False)
    assert (rerun.n_products_read, rerun.n_chunks_written) == (0, 0)
    assert rerun.n_chunks_skipped == summary.n_chunks_written


def test_store_is_small_and_sparse(real_manifest: str, client: object, tmp_path: Path) -> None:
    store = tmp_path / "cube.zarr"
    run_with_client(load_ingest_config(real_manifest, str(store)), client, progress=False)
    chunks = [p for p in (store / "flux").rglob("*") if p.is_file() and p.name != "zarr.json"]
    grid_chunks = 3 * -(-GridConfig().size // 4096)
    assert 0 < len(chunks) < grid_chunks / 4  # gaps cost nothing
    total = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    manifest = pd.read_parquet(real_manifest)
    assert total < 0.2 * manifest["size"].sum()


def test_new_products_update_only_affected_chunks(
    sim_archive: Path, client: object, tmp_path: Path
) -> None:
    full = list_archive(str(sim_archive))
    tess = full["mission"] == "TESS"
    first = full[~tess | (full.index % 2 == 0)]
    m1, m2 = str(tmp_path / "m1.parquet"), str(tmp_path / "m2.parquet")
    write_manifest(first, m1)
    write_manifest(full, m2)
    store = str(tmp_path / "cube.zarr")
    one = run_with_client(load_ingest_config(m1, store, star_chunk=4), client, progress=False)
    # The update rebuilds whole chunks from staged copies: the first run's sources are never
    # fetched again (they are gone: every URL of the first manifest now points nowhere).
    assert set(list_staged(store)) == set(first["s3_uri"])
    moved = tmp_path / "moved"
    for url in first["s3_uri"]:
        target = moved / Path(url).relative_to(sim_archive)
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(url).rename(target)
    try:
        two = run_with_client(load_ingest_config(m2, store, star_chunk=4), client, progress=False)
    finally:
        for url in first["s3_uri"]:
            (moved / Path(url).relative_to(sim_archive)).rename(url)
    assert two.n_failed == 0
    assert two.n_products_read == len(full) - len(first)
    assert 0 < two.n_chunks_written < one.n_chunks_written + 2
    assert two.n_stored == len(full)
    # the same contents as a fresh ingest of the full manifest
    fresh = str(tmp_path / "fresh.zarr")
    run_with_client(load_ingest_config(m2, fresh, star_chunk=4), client, progress=False)
    a, b = open_cube(store), open_cube(fresh)
    order_a = np.lexsort((a["dec"].values, a["ra"].values))
    order_b = np.lexsort((b["dec"].values, b["ra"].values))
    np.testing.assert_array_equal(a["flux"].values[:, order_a], b["flux"].values[:, order_b])


def cli_ingest_setup(sim_archive: Path, tmp_path: Path) -> tuple[str, Path, dict[str, str]]:
    """A manifest of the simulated archive, a store path, and an env with 2-star chunks."""
    manifest = str(tmp_path / "m.parquet")
    write_manifest(list_archive(str(sim_archive)), manifest)
    env = {**os.environ, "DASK_STARSKOPE__INGEST__STAR_CHUNK": "2"}
    return manifest, tmp_path / "cube.zarr", env


def ingest_command(manifest: str, store: Path) -> list[str]:
    """``starskope ingest`` in a process of its own, one worker, quiet."""
    return [
        sys.executable, "-m", "starskope_dask.cli", "ingest", manifest,
        "--store", str(store), "--workers", "1", "-q",
    ]  # fmt: skip


def assert_same_as_a_clean_ingest(
    manifest: str, store: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """The store holds what an uninterrupted ingest of the manifest makes."""
    reference = tmp_path / "reference.zarr"
    clean = subprocess.run(
        ingest_command(manifest, reference), env=env, capture_output=True, text=True, timeout=300
    )
    assert clean.returncode == 0, clean.stdout
    a, b = open_cube(str(store)), open_cube(str(reference))
    np.testing.assert_array_equal(a["flux"].values, b["flux"].values)
    np.testing.assert_array_equal(a["kic"].values, b["kic"].values)


def test_kill_minus_9_and_rerun(sim_archive: Path, tmp_path: Path) -> None:
    manifest, store, env = cli_ingest_setup(sim_archive, tmp_path)
    command = ingest_command(manifest, store)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    done = store / "_starskope" / "done"
    deadline = time.time() + 120
    while time.time() < deadline and not (done.exists() and len(list(done.glob("*.json"))) >= 2):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # driver and workers
    process.wait()
    finished_before = {p.name for p in done.glob("*.json")}
    assert finished_before, "the run was killed before any chunk finished"
    rerun = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["n_chunks_skipped"] >= len(finished_before)  # finished chunks not re-read
    assert_same_as_a_clean_ingest(manifest, store, tmp_path, env)


def test_two_ingests_started_at_once(sim_archive: Path, tmp_path: Path) -> None:
    manifest, store, env = cli_ingest_setup(sim_archive, tmp_path)
    command = ingest_command(manifest, store)
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0].decode() for run in runs]
    codes = sorted(run.returncode for run in runs)
    # one finishes; the other is refused with a clear message (exit 3) and changes nothing
    assert codes == [0, 3], outputs
    refused = outputs[[run.returncode for run in runs].index(3)]
    assert "another ingest" in refused and str(store) in refused
    assert_same_as_a_clean_ingest(manifest, store, tmp_path, env)
    assert not (store / "_starskope" / "lock.json").exists()


def test_two_ingests_on_one_store(tmp_path: Path) -> None:
    store = str(tmp_path / "cube.zarr")
    lock = acquire_lock(store)
    try:
        with pytest.raises(StoreLockedError, match="another ingest"):
            acquire_lock(store)
    finally:
        release_lock(lock)
    assert not (tmp_path / "cube.zarr" / "_starskope" / "lock.json").exists()
    # a lock left by a dead process is taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path = tmp_path / "cube.zarr" / "_starskope" / "lock.json"
    lock_path.write_text(
        json.dumps({"owner": f"{os.uname().nodename}:{dead.pid}:0", "heartbeat": 0})
    )
    release_lock(acquire_lock(store))


@given(
    index=st.lists(st.integers(0, 2**31 - 1), max_size=50, unique=True),
    median=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
@settings(max_examples=50, deadline=None)
def test_staged_product_round_trip(index: list[int], median: float) -> None:
    from starskope_dask.align import GriddedFlux
    from starskope_dask.store import decode_staged, encode_staged

    steps = np.array(sorted(index), dtype=np.int64)
    flux = np.linspace(0.9, 1.1, steps.size).astype(np.float32)
    err = np.full(steps.size, np.nan, np.float32)
    facts = {"mission": "TESS", "tic": 1, "kic": None, "ra": 1.5, "cadence_days": 0.0013}
    meta, back = decode_staged(encode_staged(facts, GriddedFlux(steps, flux, err, median)))
    assert meta == facts
    np.testing.assert_array_equal(back.index, steps)
    np.testing.assert_array_equal(back.flux, flux)
    np.testing.assert_array_equal(back.flux_err, err)
    assert back.median == median
    with pytest.raises(ValueError):
        decode_staged(b"not staged")


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    cut=st.floats(0.0, 1.0),
)
@settings(max_examples=40, deadline=None)
def test_staged_pack_round_trip_and_cut(sizes: list[int], cut: float) -> None:
    """Products written in a pack read back from their byte ranges; a pack cut short (a
    killed writer on local disk) loses only the products it no longer holds whole."""
    import tempfile

    from starskope_dask.align import GriddedFlux
    from starskope_dask.store import encode_staged, read_staged_at, staged_dir, write_pack

    blobs = {
        f"s3://stpubdata/x/{i}.fits": encode_staged(
            {"mission": "K2", "epic": i},
            GriddedFlux(
                np.arange(n, dtype=np.int64),
                np.full(n, i, np.float32),
                np.ones(n, np.float32),
                1.0 + i,
            ),
        )
        for i, n in enumerate(sizes)
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = f"{tmp}/cube.zarr"
        places = write_pack(store, blobs)
        assert list_staged(store) == places
        urls = list(blobs)
        back = read_staged_at(store, [places[u] for u in urls])
        for i, (url, copy) in enumerate(zip(urls, back, strict=True)):
            assert copy is not None, url
            meta, gridded = copy
            assert meta == {"mission": "K2", "epic": i}
            np.testing.assert_array_equal(gridded.flux, np.full(sizes[i], i, np.float32))
        (pack,) = Path(staged_dir(store)).iterdir()
        data = pack.read_bytes()
        keep = int(cut * len(data))
        pack.write_bytes(data[:keep])
        listed = list_staged(store)
        assert listed in ({}, places)  # an index cut short hides the whole pack
        back = read_staged_at(store, [places[u] for u in urls])
        for url, copy in zip(urls, back, strict=True):
            whole = places[url].offset + places[url].length <= keep
            assert (copy is not None) == whole, url


def test_read_pass_resumes_from_staged_packs(sim_archive: Path, tmp_path: Path) -> None:
    """A read pass killed after staging some packs: the rerun takes those products from the
    packs (their sources are gone) and fetches only the rest."""
    from starskope_dask.config import ReadConfig
    from starskope_dask.pipeline import PACK_PRODUCTS, ReadTask, read_partition

    urls = list_archive(str(sim_archive))["s3_uri"].tolist()[: PACK_PRODUCTS + 5]
    store = str(tmp_path / "cube.zarr")
    task = ReadTask(store, ReadConfig(), GridConfig(), None, None, concurrency=8)
    first = read_partition([(u, None) for u in urls], task)
    staged = list_staged(store)
    assert set(staged) == set(urls)
    moved = tmp_path / "moved"
    for url in urls:
        target = moved / Path(url).relative_to(sim_archive)
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(url).rename(target)
    try:
        again = read_partition([(u, staged.get(u)) for u in urls], task)
    finally:
        for url in urls:
            (moved / Path(url).relative_to(sim_archive)).rename(url)
    assert [r["error_type"] for r in again] == [None] * len(urls)
    for before, after in zip(first, again, strict=True):
        for key in ("mission", "ra", "dec", "bjd_start", "bjd_stop", "staged_pack"):
            assert before[key] == after[key]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_workers_start_with_the_malloc_settings(tmp_path: Path) -> None:
    """glibc reads its malloc settings once, at process start: they must be in the worker's
    environment when it is spawned (/proc/PID/environ), not set once it runs."""
    from starskope_dask.cluster import WORKER_MALLOC_ENV, make_client

    config = load_ingest_config("m.parquet", str(tmp_path / "s.zarr"), n_workers=1)
    client = make_client(config)
    try:
        environs = client.run(lambda: Path("/proc/self/environ").read_bytes().split(b"\0"))
    finally:
        client.close()
        client.cluster.close()
    (environ,) = environs.values()
    for name, value in WORKER_MALLOC_ENV.items():
        assert f"{name}={value}".encode() in environ


def test_kubernetes_workers_get_the_malloc_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask
    import yaml

    from starskope_dask.cluster import WORKER_MALLOC_ENV

    documents = yaml.safe_load_all((Path(__file__).parents[1] / "k8s" / "daskjob.yaml").read_text())
    (job,) = [d for d in documents if d["kind"] == "DaskJob"]
    (worker,) = job["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in worker["env"]}
    name = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"
    config = dask.config.collect_env({name: env[name]})
    spawn = config["distributed"]["nanny"]["pre_spawn_environ"]
    assert {k: int(v) for k, v in spawn.items()} == WORKER_MALLOC_ENV
