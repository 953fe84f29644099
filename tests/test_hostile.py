"""Hostile inputs through the whole ingest (issue 10): crafted headers, a decompression bomb,
impossible values, duplicate columns and a secrets file posing as a product, generated at
test time from the real files (nothing binary is committed), in one manifest with good
products. The run ends in bounded time with the workers unharmed; every bad product is a
typed failure naming its file (and quoting none of its content); the good ones are stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from starskope_dask.config import load_ingest_config
from starskope_dask.discover import manifest_frame, write_manifest
from starskope_dask.pipeline import run_with_client
from starskope_dask.store import open_cube

from .conftest import two_worker_client
from .hostile import gzip_bomb, with_card

SECRET = "s3cr3t-t0ken-do-not-leak"


@pytest.fixture(scope="module")
def small_workers() -> Iterator[object]:
    """Two worker processes with 1 GiB each: a bomb inflated in memory would kill them."""
    with two_worker_client(memory_limit="1GiB") as client:
        yield client


@pytest.mark.timeout(300)
def test_hostile_products_beside_good_ones(
    real_data: Path, small_workers: object, tmp_path: Path
) -> None:
    tess = real_data / "tess/tess2018206045859-s0001-0000000038846515-0120-s_lc.fits"
    kepler = real_data / "kepler/kplr002556081-2009166043257_llc.fits"
    good = [
        real_data / "kepler/kplr010666592-2009131110544_slc.fits",
        real_data / "k2/ktwo211117077-c04_llc.fits",
        real_data / "tess/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
    ]
    folder = tmp_path / "hostile"
    folder.mkdir()

    def made(name: str, data: bytes) -> str:
        path = folder / name
        path.write_bytes(data)
        return str(path)

    tess_bytes, kepler_bytes = tess.read_bytes(), kepler.read_bytes()
    bad = {
        "CorruptProductError": [
            # a negative NAXIS1 once made the layout walk loop forever
            made(
                "negative-naxis1_lc.fits",
                with_card(tess_bytes, 1, "NAXIS1", "-1180591620717411303424"),
            ),
            made("ticid-1e20_lc.fits", with_card(tess_bytes, 0, "TICID", "1E20")),
            made("duplicate-column_lc.fits", with_card(tess_bytes, 1, "TTYPE5", "'PDCSAP_FLUX'")),
            made("secrets_llc.fits", f"root:x:0:0:{SECRET}\n".encode() * 100),
            str(gzip_bomb(folder / "bomb_llc.fits.gz", kepler_bytes[: 2880 * 2], 700 * 2**20)),
        ],
    }
    # an impossible position: the product is stored, its position NaN (matched by its ID)
    bad_position = made("dec-500_lc.fits", with_card(tess_bytes, 0, "DEC_OBJ", "-500.0"))
    urls = [str(p) for p in good] + [bad_position] + bad["CorruptProductError"]
    manifest = str(tmp_path / "m.parquet")
    write_manifest(manifest_frame([{"s3_uri": u} for u in urls]), manifest)
    store = str(tmp_path / "cube.zarr")
    workers_before = set(small_workers.scheduler_info()["workers"])  # type: ignore[attr-defined]

    began = time.monotonic()
    summary = run_with_client(load_ingest_config(manifest, store), small_workers, progress=False)
    assert time.monotonic() - began < 120

    assert summary.n_stored == len(good) + 1
    failed = {f["url"]: f for f in summary.failures}
    assert set(failed) == set(bad["CorruptProductError"])
    for url, failure in failed.items():
        assert failure["error_type"] == "CorruptProductError", failure
        assert url in failure["message"]
    assert "max_product_bytes" in failed[str(folder / "bomb_llc.fits.gz")]["message"]
    assert "duplicate" in failed[str(folder / "duplicate-column_lc.fits")]["message"]
    # nothing of a file's content reaches the store's tables
    state = Path(store) / "_starskope"
    for name in ("products.parquet", "summary.json"):
        assert SECRET.encode() not in (state / name).read_bytes()
        assert b"root:x" not in (state / name).read_bytes()
    # the workers are the ones that started: none was killed by the bomb
    assert set(small_workers.scheduler_info()["workers"]) == workers_before  # type: ignore[attr-defined]
    cube = open_cube(store)
    tic = int(np.flatnonzero(cube["tic"].values == 38846515)[0])
    assert np.isfinite(cube["flux"].sel(mission="TESS", star=tic).values).sum() > 1000
    assert np.isnan(cube["dec"].values[tic])
