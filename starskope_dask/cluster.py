"""The ``cluster`` stage: config to a Dask client (local processes, an address, Kubernetes).

A DaskJob started by dask-kubernetes sets ``DASK_SCHEDULER_ADDRESS`` in the job's runner
pod; ``make_client`` connects there. Without an address it starts a LocalCluster of worker
processes bound to 127.0.0.1.
"""

from __future__ import annotations

import logging

from distributed import Client, LocalCluster

from starskope_dask.config import IngestConfig
from starskope_dask.errors import ConfigError

logger = logging.getLogger(__name__)


def make_client(config: IngestConfig) -> Client:
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
