"""A real S3 server on 127.0.0.1 for the demo, tests and benchmarks (moto's threaded server).

The server holds a public-read bucket, so anonymous clients (the default everywhere in
starskope_dask, as for the real ``stpubdata`` bucket) can read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
def local_s3_server(bucket: str = "stpubdata", *, set_env: bool = True) -> Iterator[LocalS3]:
    """Run moto's threaded S3 server on 127.0.0.1 with a public bucket.

    Parameters
    ----------
    bucket : str
        Bucket to create (the public archive's name by default).
    set_env : bool
        Set ``AWS_ENDPOINT_URL_S3`` (and dummy credentials for signed writes) while the server
        runs, so that processes started inside the block (Dask workers) find it.

    Yields
    ------
    LocalS3
    """
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
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    try:
        _public_bucket(endpoint, bucket)
        if set_env:
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        logger.info("local S3 server at %s (bucket %s)", endpoint, bucket)
        yield LocalS3(endpoint_url=endpoint, bucket=bucket)
    finally:
        if set_env:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        server.stop()
