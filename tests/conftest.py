"""Shared fixtures: the real data folder, a real S3 server, an HTTP server, a simulated archive."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("STARSKOPE_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))

HAT_P_7_KEPLER = "kepler/kplr010666592-2009131110544_slc.fits"
HAT_P_7_TESS = (
    "tess/tess2019198215352-s0014-0000000424865156-0150-s_lc.fits",
    "tess/tess2019226182529-s0015-0000000424865156-0151-s_lc.fits",
)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared folder of real Kepler, K2 and TESS products (skips when absent)."""
    if not (REAL_DATA / "README.md").exists():
        pytest.skip(
            f"real data folder {REAL_DATA} is absent (clone with ../shared beside the project, "
            "or set STARSKOPE_REAL_DATA)"
        )
    return REAL_DATA


@pytest.fixture(scope="session")
def s3() -> Iterator[object]:
    """A real S3 server (moto, threaded) on 127.0.0.1 with a public ``stpubdata`` bucket."""
    from starskope_dask.s3server import local_s3_server

    with local_s3_server("stpubdata") as server:
        yield server


@contextlib.contextmanager
def serve_folder(folder: Path, port: int = 0) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a threaded stdlib server); yields the base URL.

    ``port`` reopens a server on the port of one stopped before (a source that was down).
    """

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True

    server = Server(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def two_worker_client(**cluster_options: Any) -> Iterator[Any]:
    """A client of a LocalCluster of two single-threaded worker processes on 127.0.0.1
    (endpoints set in the environment before it starts reach the workers)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            **cluster_options,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def http_root(real_data: Path) -> Iterator[str]:
    """The real data folder served over HTTP on 127.0.0.1."""
    with serve_folder(real_data) as base:
        yield base


@pytest.fixture(scope="session")
def sim_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated archive on local disk (truth in truth/)."""
    from starskope_dask.simulate import SimulationConfig, simulate_archive

    out = tmp_path_factory.mktemp("sim")
    simulate_archive(str(out), SimulationConfig(n_stars=18, seed=11, max_segments=2), processes=2)
    return out
