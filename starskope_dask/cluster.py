"""The ``cluster`` stage: config to a Dask client (local processes, an address, Kubernetes).

A DaskJob started by dask-kubernetes sets ``DASK_SCHEDULER_ADDRESS`` in the job's runner
pod; ``make_client`` connects there. Without an address it starts a LocalCluster of worker
processes bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar

import dask
from distributed import Client, LocalCluster

from starskope_dask.errors import ConfigError

logger = logging.getLogger(__name__)

#: glibc malloc settings for worker processes, set before a nanny spawns them (Dask's
#: ``distributed.nanny.pre-spawn-environ``; glibc reads them once, at process start). Dask's
#: default, ``MALLOC_TRIM_THRESHOLD_=65536``, also freezes glibc's mmap threshold at 128 kiB:
#: every megabyte-sized product buffer (the download, its decompressed copy, the columns) was
#: then a fresh ``mmap`` that page-faulted in and was unmapped on free, and each arena's free top
#: was handed back after every product: the read pass's costliest overhead. Buffers up to 16 MiB
#: now come from the heap and up to 64 MiB of free heap stays mapped per arena (worker RSS stayed
#: under 400 MB in ``jobs/bench_ingest.py``). Kubernetes workers get the same through
#: ``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON`` (``k8s/daskjob.yaml``).
WORKER_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": 16 * 2**20,
    "MALLOC_TRIM_THRESHOLD_": 64 * 2**20,
}


class ClusterSpec(Protocol):
    """What a stage's config says about its cluster (``IngestConfig``, ``FeaturesConfig``)."""

    @property
    def n_workers(self) -> int:
        """LocalCluster worker processes."""
        ...

    @property
    def threads_per_worker(self) -> int:
        """Threads per worker."""
        ...

    @property
    def memory_limit(self) -> str | int:
        """Memory limit per worker."""
        ...

    @property
    def resolved_scheduler_address(self) -> str | None:
        """An existing scheduler's address, or ``None`` for a new LocalCluster."""
        ...


T = TypeVar("T")


def with_own_client(config: ClusterSpec, stage: Callable[[Callable[[], Client]], T]) -> T:
    """Run ``stage(get_client)`` where ``get_client()`` starts a client for ``config`` the first
    time it is called (a stage with nothing to do starts none); the client and its
    LocalCluster are closed afterwards, whatever happens.
    """
    clients: list[Client] = []

    def get_client() -> Client:
        if not clients:
            clients.append(make_client(config))
        return clients[0]

    try:
        return stage(get_client)
    finally:
        for client in clients:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def make_client(config: ClusterSpec) -> Client:
    """Return a client for ``config``: the scheduler at its address, or a new LocalCluster.

    Raises
    ------
    ConfigError
        If the scheduler address cannot be reached.
    """
    address = config.resolved_scheduler_address
    if address:
        try:
            client = Client(address, timeout="30s")
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}; check --scheduler or "
                "DASK_SCHEDULER_ADDRESS"
            ) from exc
        logger.info("connected to scheduler %s (dashboard %s)", address, client.dashboard_link)
        return client
    with _worker_spawn_environ(WORKER_MALLOC_ENV):  # read by each nanny as it is made, here
        cluster = LocalCluster(
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            memory_limit=config.memory_limit,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    client = Client(cluster)
    logger.info(
        "started a LocalCluster of %d worker processes (dashboard %s)",
        config.n_workers,
        client.dashboard_link,
    )
    return client


@contextlib.contextmanager
def _worker_spawn_environ(values: Mapping[str, int]) -> Iterator[None]:
    """Nannies made inside the block spawn their workers with ``values`` in the environment.

    A nanny takes ``distributed.nanny.pre-spawn-environ`` from the config, but a variable
    already in this process's environment wins, and every nanny copies its settings into
    this process's environment when it spawns (so after any earlier LocalCluster, Dask's
    ``MALLOC_TRIM_THRESHOLD_=65536`` would win). Both are set for the block, then restored.
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: str(value) for name, value in values.items()})
    try:
        with dask.config.set(
            {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in values.items()}
        ):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
