"""Synchronous data-parallel training of a Keras classifier across Dask workers.

TensorFlow's ``MultiWorkerMirroredStrategy`` runs one TensorFlow worker inside each chosen Dask
worker process:

1. choose ``n`` workers, preferring processes that have not imported TensorFlow yet (a worker
   that already ran a strategy hangs on a second one, so such workers are restarted first);
2. count the training examples of each worker's shard (one small task per worker) and fix the
   steps per epoch: the largest shard's ``ceil(n / batch_size)``, smaller shards repeating, so
   every worker takes the same number of steps (collective ops deadlock otherwise) and no
   example is skipped;
3. ask every worker for a free TCP port (``client.run``) and build each one's ``TF_CONFIG``
   (``{"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker", "index": i}}``);
4. submit one task per worker, all at once (``workers=[address]``, ``allow_other_workers=False``,
   ``pure=False``): each needs a free thread, and the strategy waits until all have joined;
   each runs :func:`starskope_dask.train.models.train_model` under the strategy on its own shard
   (``source_factory(i, n, "train")``), with the global batch the sum of the per-worker batches,
   and evaluates the whole validation source (``source_factory(0, 1, "val")``), the metrics
   averaged across workers so that early stopping agrees;
5. collect worker 0's weights and every worker's weight digest, and restart the workers that
   trained (``client.restart_workers``): TensorFlow keeps its collective state for the life of
   the process, and a second strategy with new ports in the same processes hangs silently.

Keras 3 ``model.fit`` fails under this strategy (keras#20585); the custom loop of
:mod:`~starskope_dask.train.models` is used instead. Workers need a :class:`distributed.Nanny`
(the default) to be restarted. On a 2-core machine two workers are slower than one process; the
point is scale-out to many cores or machines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from starskope_dask.errors import ConfigError
from starskope_dask.train.models import (
    BatchSource,
    CnnParams,
    TrainedModel,
    build_model,
    count_examples,
    train_model,
    weights_digest,
)

logger = logging.getLogger(__name__)

SourceFactory = Callable[[int, int, str], BatchSource]
"""``source_factory(shard_index, shard_count, split)`` → batch source (picklable)."""

RESTART_TIMEOUT = 120.0
"""Seconds to wait for restarted workers to come back."""


# ----------------------------------------------------------------------------- in the workers


def _free_port() -> int:
    """A TCP port free on this worker's host right now (runs on the worker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _tensorflow_loaded() -> bool:
    """Whether this worker process has imported TensorFlow (runs on the worker)."""
    return "tensorflow" in sys.modules


def _count_shard(source_factory: SourceFactory, shard_index: int, shard_count: int) -> int:
    """Training examples of one shard (runs on the worker)."""
    return count_examples(source_factory(shard_index, shard_count, "train"))


def _train_on_worker(
    tf_config: Mapping[str, Any],
    kind: str,
    shapes: Mapping[str, tuple[int, ...]],
    params: CnnParams,
    source_factory: SourceFactory,
    steps_per_epoch: int,
    threads: int,
) -> dict[str, Any]:
    """One TensorFlow worker of the strategy (runs as a task on its Dask worker)."""
    index = int(tf_config["task"]["index"])
    count = len(tf_config["cluster"]["worker"])
    previous = os.environ.get("TF_CONFIG")
    os.environ["TF_CONFIG"] = json.dumps(dict(tf_config))
    started = time.perf_counter()
    try:
        import tensorflow as tf

        imported = time.perf_counter()

        try:  # only possible before TensorFlow's runtime starts (a fresh process)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(2, min(threads, 4)))
        except RuntimeError as exc:
            logger.warning("worker %d: TensorFlow threads already set (%s)", index, exc)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        joined = time.perf_counter()
        trained = train_model(
            kind,
            shapes,
            params,
            source_factory(index, count, "train"),
            source_factory(0, 1, "val"),
            strategy=strategy,
            steps_per_epoch=steps_per_epoch,
        )
        weights = [np.asarray(w) for w in trained.model.get_weights()]
        seconds = {
            "import": imported - started,
            "strategy": joined - imported,
            "train": time.perf_counter() - joined,
        }
        logger.info("worker %d of %d: %s", index, count, seconds)
        return {
            "index": index,
            "digest": weights_digest(weights),
            "weights": weights if index == 0 else None,
            "history": trained.history,
            "best_epoch": trained.best_epoch,
            "best_val_auc": trained.best_val_auc,
            "device": trained.device,
            "mixed_precision": trained.mixed_precision,
            "seconds": seconds,
        }
    finally:
        if previous is None:
            os.environ.pop("TF_CONFIG", None)
        else:
            os.environ["TF_CONFIG"] = previous


# ----------------------------------------------------------------------------- in the client


def _workers(client: Any) -> dict[str, dict[str, Any]]:
    return dict(client.scheduler_info(n_workers=-1)["workers"])


def _restart(client: Any, addresses: list[str]) -> None:
    """Restart worker processes (nanny-managed) and wait until as many are back."""
    total = len(_workers(client))
    started = time.perf_counter()
    try:
        client.restart_workers(addresses, timeout=RESTART_TIMEOUT)
    except Exception as exc:
        raise ConfigError(
            f"workers {addresses}: cannot restart them after TensorFlow ran there ({exc}); "
            "run the workers under a nanny (the default) or start fresh ones before training again"
        ) from exc
    client.wait_for_workers(total, timeout=RESTART_TIMEOUT)
    logger.info("restarted %d worker(s) in %.1f s", len(addresses), time.perf_counter() - started)


def _choose_workers(client: Any, n_workers: int | None) -> tuple[list[str], dict[str, int]]:
    """``n`` worker addresses whose processes have not run TensorFlow, and their threads."""
    for attempt in range(2):
        info = _workers(client)
        n = len(info) if n_workers is None else int(n_workers)
        if n < 1 or n > len(info):
            raise ConfigError(
                f"n_workers: asked for {n_workers}, the cluster has {len(info)} worker(s)"
            )
        loaded = client.run(_tensorflow_loaded)
        order = sorted(info, key=lambda a: (bool(loaded.get(a, True)), str(info[a].get("name"))))
        chosen = order[:n]
        dirty = [a for a in chosen if loaded.get(a, True)]
        if not dirty:
            return chosen, {a: int(info[a].get("nthreads", 1)) for a in chosen}
        if attempt == 1:
            break
        logger.info("restarting %d worker(s) that already imported TensorFlow", len(dirty))
        _restart(client, dirty)
    raise ConfigError(f"workers {dirty}: still hold TensorFlow after a restart")


def _gather_all(client: Any, futures: list[Any], timeout: float | None) -> list[Any]:
    """Results of all futures; the first failure (or the timeout) raises at once."""
    from distributed import wait

    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(futures)
    while pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done, not_done = wait(pending, timeout=remaining, return_when="FIRST_COMPLETED")
        except TimeoutError as exc:
            raise TimeoutError(
                f"multi-worker training did not finish within {timeout} s "
                f"({len(pending)} of {len(futures)} workers still running)"
            ) from exc
        for future in done:
            if future.status == "error":
                future.result()  # raises the worker's exception, with its traceback
        pending = list(not_done)
    return list(client.gather(futures))


def train_multiworker(
    client: Any,
    kind: str,
    shapes: Mapping[str, tuple[int, ...]],
    params: CnnParams,
    source_factory: SourceFactory,
    n_workers: int | None = None,
    *,
    threads_per_worker: int | None = None,
    timeout: float | None = None,
) -> TrainedModel:
    """Train a classifier synchronously across ``n_workers`` Dask workers.

    Parameters
    ----------
    client : distributed.Client
        Client of the cluster (LocalCluster or an existing scheduler).
    kind : str
        ``"cnn"`` or ``"spectrogram-cnn"``.
    shapes : mapping
        Per-example input shapes (see :func:`~starskope_dask.train.models.build_model`).
    params : CnnParams
        Hyper-parameters; ``batch_size`` is per worker (the global batch is ``n`` times it).
    source_factory : callable
        ``source_factory(shard_index, shard_count, split)`` with split ``"train"`` or ``"val"``
        returns a batch source; it is pickled to the workers. Every training shard must hold
        examples.
    n_workers : int, optional
        Workers to train on (all of the cluster's when None).
    threads_per_worker : int, optional
        TensorFlow intra-op threads per worker (default: the Dask worker's thread count).
    timeout : float, optional
        Seconds to wait for training; on expiry the workers are restarted and
        :class:`TimeoutError` raised.

    Returns
    -------
    TrainedModel
        A model built here with worker 0's final (best-epoch) weights, worker 0's history,
        ``n_workers`` and ``weights_digests``, one SHA-256 per worker (all equal when the
        training was synchronous).

    Notes
    -----
    The workers that trained are restarted afterwards (also on failure): a second
    ``MultiWorkerMirroredStrategy`` in the same processes hangs. Anything else running on them
    is lost; give training workers of their own on a shared cluster.
    """
    chosen, nthreads = _choose_workers(client, n_workers)
    n = len(chosen)
    finished = False
    futures: list[Any] = []
    try:
        counts = client.gather(
            [
                client.submit(
                    _count_shard,
                    source_factory,
                    i,
                    n,
                    workers=[address],
                    pure=False,
                    allow_other_workers=False,
                )
                for i, address in enumerate(chosen)
            ]
        )
        empty = [i for i, c in enumerate(counts) if c < 1]
        if empty:
            raise ConfigError(
                f"n_workers: training shards {empty} of {n} hold no examples; use fewer workers"
            )
        steps = max(math.ceil(c / params.batch_size) for c in counts)
        ports = client.run(_free_port, workers=chosen)
        from distributed.comm import get_address_host

        hosts = [f"{get_address_host(a)}:{ports[a]}" for a in chosen]
        logger.info(
            "training %s on %d workers %s: shard sizes %s, %d steps per epoch of %d examples",
            kind, n, hosts, counts, steps, params.batch_size * n,
        )  # fmt: skip
        futures = [
            client.submit(
                _train_on_worker,
                {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}},
                kind,
                dict(shapes),
                params,
                source_factory,
                steps,
                int(threads_per_worker or nthreads[address]),
                workers=[address],
                pure=False,
                allow_other_workers=False,
            )
            for i, address in enumerate(chosen)
        ]
        results = sorted(_gather_all(client, futures, timeout), key=lambda r: r["index"])
        finished = True
    finally:
        # Forget the tasks first: the scheduler would rerun held futures on the new workers.
        client.cancel(futures)
        del futures
        logger.info("restarting the %d training workers (one strategy per process)", n)
        try:
            _restart(client, chosen)
        except ConfigError:
            if finished:
                raise
            logger.exception("could not restart the workers after the failed training")
    first = results[0]
    model = build_model(
        kind, shapes, CnnParams(**{**params.to_dict(), "mixed_precision": first["mixed_precision"]})
    )
    model.set_weights(first["weights"])
    digests = tuple(r["digest"] for r in results)
    logger.info("worker timings (s): %s", [r["seconds"] for r in results])
    if len(set(digests)) != 1:
        logger.warning("workers ended with different weights: %s", digests)
    return TrainedModel(
        model=model,
        history=first["history"],
        best_epoch=first["best_epoch"],
        best_val_auc=first["best_val_auc"],
        device=first["device"],
        mixed_precision=first["mixed_precision"],
        n_workers=n,
        weights_digests=digests,
    )
