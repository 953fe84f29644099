"""The ``cluster`` stage: config to a Dask client (local processes, an address, Kubernetes,
Slurm or PBS).

A DaskJob started by dask-kubernetes sets ``DASK_SCHEDULER_ADDRESS`` in the job's runner
pod; ``make_client`` connects there. Without an address it starts a LocalCluster of worker
processes bound to 127.0.0.1. With ``pipeline.cluster: slurm | pbs`` ``make_run_client``
starts a dask-jobqueue cluster: the scheduler in this process (a login node), the workers
as batch jobs (``jobs/submit_jobqueue.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import dask
from distributed import Client, LocalCluster
from distributed.core import Status

from starskope_dask.errors import ConfigError

if TYPE_CHECKING:
    from distributed.deploy.spec import SpecCluster

    from starskope_dask.config import JobqueueConfig, PipelineConfig, RunConfig

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
    cluster (a LocalCluster, or a Slurm/PBS cluster for a ``RunConfig`` that names one, whose
    close cancels its batch jobs) are closed afterwards, whatever happens.
    """
    clients: list[Client] = []

    def get_client() -> Client:
        if not clients:
            clients.append(_make_any_client(config))
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


# --- Slurm and PBS through dask-jobqueue -----------------------------------------------------

#: ``pipeline.cluster`` kinds that run workers as batch jobs, with their dask-jobqueue classes.
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}

#: The scheduler address a rendered job script shows: the real one (the login node's scheduler,
#: started by ``make_jobqueue_cluster``) is known only once the cluster runs.
JOB_SCRIPT_SCHEDULER = "tcp://SCHEDULER-ADDRESS:8786"

#: Folder of the worker jobs' batch logs, under a local ``pipeline.workdir``.
JOBQUEUE_LOG_FOLDER = "jobqueue-logs"


def worker_malloc_exports() -> list[str]:
    """Shell lines that export :data:`WORKER_MALLOC_ENV` (job scripts' prologue).

    Returns
    -------
    list of str
        ``export NAME=VALUE`` lines.
    """
    return [f"export {name}={value}" for name, value in WORKER_MALLOC_ENV.items()]


def jobqueue_cluster_kwargs(
    kind: str, jobqueue: JobqueueConfig, pipeline: PipelineConfig
) -> dict[str, Any]:
    """The keyword arguments of dask-jobqueue's ``SLURMCluster`` / ``PBSCluster`` for a run.

    Each batch job runs ``jobqueue.processes`` workers (``--nworkers``) of
    ``cores // processes`` threads (``--nthreads``) and ``memory / processes`` each
    (``--memory-limit``): dask-jobqueue writes those flags from ``cores``, ``processes`` and
    ``memory``, so ``pipeline.n_workers``, ``threads_per_worker`` and ``memory_limit`` are not
    used. The job script's prologue exports :data:`WORKER_MALLOC_ENV` first, then runs
    ``jobqueue.job_script_prologue`` (whose lines can override them): the nanny inherits the
    exports from the job's shell and hands them to the worker processes it spawns (a variable
    in a nanny's environment wins over its ``distributed.nanny.pre-spawn-environ``). The
    workers run this Python (the same environment as the client: the tasks' code is pickled
    by reference). The scheduler listens on ``jobqueue.interface`` when set (the workers use
    it too), else on every interface, and gives the workers the address of the default route:
    either way the compute nodes reach it. ``jobqueue.<kind>.scheduler-options`` and
    ``worker-extra-args`` of Dask's own jobqueue config still apply.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The batch system.
    jobqueue : JobqueueConfig
        The ``jobqueue`` section.
    pipeline : PipelineConfig
        The ``pipeline`` section; the batch logs go to ``WORKDIR/jobqueue-logs`` when the
        workdir is a local folder, else to ``./starskope-jobqueue-logs``.

    Returns
    -------
    dict
        Keyword arguments; nothing is started and nothing is written.

    Raises
    ------
    ConfigError
        For a kind other than slurm or pbs, and for ``jobqueue.memory: auto`` (a batch job asks
        for a fixed amount).
    """
    _check_jobqueue_kind(kind)
    memory = jobqueue.memory
    if isinstance(memory, str) and memory.strip().lower() == "auto":
        raise ConfigError(
            "jobqueue.memory must be a size such as '16GiB' (what each batch job asks for), "
            "not 'auto'"
        )
    walltime = jobqueue.walltime if kind == "slurm" else _pbs_walltime(jobqueue.walltime)
    return {
        "name": "starskope",  # the cluster's: workers are starskope-0, starskope-1-0, ...
        "job_name": "starskope-worker",  # #SBATCH -J / #PBS -N
        "cores": jobqueue.cores,
        "processes": jobqueue.processes,
        "memory": memory,
        "walltime": walltime,
        "queue": jobqueue.queue or None,
        "account": jobqueue.account or None,
        "interface": jobqueue.interface or None,
        "local_directory": jobqueue.local_directory or None,
        "job_extra_directives": list(jobqueue.job_extra_directives),
        "job_script_prologue": [*worker_malloc_exports(), *jobqueue.job_script_prologue],
        "log_directory": _jobqueue_log_directory(pipeline.workdir),
        "python": sys.executable,
    }


def make_jobqueue_cluster(
    kind: str, jobqueue: JobqueueConfig, pipeline: PipelineConfig
) -> SpecCluster:
    """Start a dask-jobqueue cluster: its scheduler here, ``jobqueue.jobs`` batch jobs of workers.

    The jobs are submitted (``sbatch`` / ``qsub``) before this returns; their workers join as
    the batch system starts them, and tasks wait in the scheduler until then.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The batch system.
    jobqueue, pipeline
        The run's ``jobqueue`` and ``pipeline`` sections (see :func:`jobqueue_cluster_kwargs`).

    Returns
    -------
    distributed.deploy.spec.SpecCluster
        The ``SLURMCluster`` or ``PBSCluster``; closing it cancels its jobs.

    Raises
    ------
    ConfigError
        If dask-jobqueue is not installed (the ``batch`` extra), the submit command is not on
        ``PATH`` (not a login node), the cluster cannot start from the config (an unknown
        network interface) or the batch system refuses the jobs (its message is included).
    """
    _check_jobqueue_kind(kind)
    module = _import_jobqueue()
    cluster_cls = getattr(module, JOBQUEUE_CLUSTERS[kind])
    submit = str(cluster_cls.job_cls.submit_command).split()[0]
    if shutil.which(submit) is None:
        raise ConfigError(
            f"pipeline.cluster is {kind!r} but {submit!r} is not on PATH: run on a login node "
            "of the batch system, or start the pipeline inside one allocation with "
            "jobs/slurm/starskope.sbatch or jobs/pbs/starskope.pbs"
        )
    kwargs = jobqueue_cluster_kwargs(kind, jobqueue, pipeline)
    try:
        cluster = cluster_cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(
            f"cannot start the {kind} cluster from the jobqueue section: {exc}"
        ) from exc
    try:
        logger.debug("%s job script:\n%s", kind, cluster.job_script())
        cluster.scale(jobs=jobqueue.jobs)
        # scale() submits in the background; wait for the submissions (the cluster's lock
        # orders this after them) so that a refused job (an unknown partition or account) is
        # an error here, not a run that waits for workers forever.
        cluster.sync(cluster._correct_state)
        refused = _refused_jobs(cluster)
        if refused:
            raise RuntimeError(
                f"{refused} of {len(cluster.workers)} submissions failed (the batch system's "
                "message is in the log above)"
            )
    except RuntimeError as exc:
        _refused_jobs(cluster)
        cluster.close()
        raise ConfigError(f"the {kind} batch system refused the worker jobs: {exc}") from exc
    except BaseException:
        cluster.close()
        raise
    logger.info(
        "%s cluster: scheduler %s (dashboard %s), %d jobs of %d workers submitted (logs in %s)",
        kind,
        cluster.scheduler_address,
        cluster.dashboard_link,
        jobqueue.jobs,
        jobqueue.processes,
        kwargs["log_directory"],
    )
    return cluster


def make_run_client(run: RunConfig) -> Client:
    """Return the client of a ``starskope run``: on a Slurm or PBS cluster when
    ``pipeline.cluster`` names one, else as :func:`make_client` (a LocalCluster or a scheduler
    address).

    Close the client's ``cluster`` too when done (:func:`with_own_client` does): that cancels
    the batch jobs.

    Parameters
    ----------
    run : RunConfig
        The whole pipeline's config.

    Returns
    -------
    distributed.Client
        A client whose ``cluster`` is the cluster it started (``None`` for an address).

    Raises
    ------
    ConfigError
        As :func:`make_jobqueue_cluster` and :func:`make_client`.
    """
    kind = run.pipeline.cluster
    if kind not in JOBQUEUE_CLUSTERS:
        return make_client(run)
    cluster = make_jobqueue_cluster(kind, run.jobqueue, run.pipeline)
    try:
        return Client(cluster)
    except BaseException:
        cluster.close()
        raise


def render_job_script(
    kind: str,
    jobqueue: JobqueueConfig,
    pipeline: PipelineConfig,
    scheduler_address: str = JOB_SCRIPT_SCHEDULER,
) -> str:
    """The batch script each worker job of :func:`make_jobqueue_cluster` runs, for review.

    It is built by the cluster class's ``job_cls`` (dask-jobqueue's ``SLURMJob`` / ``PBSJob``)
    from the same keyword arguments
    as the cluster (what ``cluster.job_script()`` returns), without a cluster: no scheduler
    starts, no port is opened and nothing is submitted. The only difference to a submitted
    script is the scheduler address and the worker's ``--name``.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The batch system.
    jobqueue, pipeline
        The run's ``jobqueue`` and ``pipeline`` sections.
    scheduler_address : str
        The address the workers connect to.

    Returns
    -------
    str
        The script: ``#SBATCH`` / ``#PBS`` header, prologue, worker command.

    Raises
    ------
    ConfigError
        As :func:`jobqueue_cluster_kwargs`, and if dask-jobqueue is not installed.

    Notes
    -----
    As the cluster would, it creates the log folder (dask-jobqueue makes it for the header).
    """
    _check_jobqueue_kind(kind)
    job_cls = getattr(_import_jobqueue(), JOBQUEUE_CLUSTERS[kind]).job_cls
    kwargs = jobqueue_cluster_kwargs(kind, jobqueue, pipeline)
    kwargs.pop("name")  # the cluster's name; a job gets its worker's
    try:
        job = job_cls(scheduler_address, name="starskope-0", **kwargs)
    except ValueError as exc:
        raise ConfigError(f"cannot render the {kind} job script: {exc}") from exc
    script: str = job.job_script()
    return script


def _make_any_client(config: ClusterSpec) -> Client:
    """:func:`make_run_client` for a ``RunConfig``, :func:`make_client` for a stage's config."""
    from starskope_dask.config import RunConfig

    if isinstance(config, RunConfig):
        return make_run_client(config)
    return make_client(config)


def _refused_jobs(cluster: SpecCluster) -> int:
    """Mark the cluster's jobs that were never submitted (no job ID) failed; count them.

    A job whose submission failed stays ``created``, which the cluster's ``close()`` refuses.
    """
    refused = [job for job in cluster.workers.values() if getattr(job, "job_id", 0) is None]
    for job in refused:
        job.status = Status.failed
    return len(refused)


def _check_jobqueue_kind(kind: str) -> None:
    if kind not in JOBQUEUE_CLUSTERS:
        raise ConfigError(
            f"a jobqueue cluster is one of {', '.join(JOBQUEUE_CLUSTERS)}, not {kind!r}"
        )


def _import_jobqueue() -> ModuleType:
    try:
        return importlib.import_module("dask_jobqueue")
    except ImportError as exc:
        raise ConfigError(
            "pipeline.cluster slurm and pbs need dask-jobqueue: install the batch extra "
            "(pip install 'starskope-dask[batch]')"
        ) from exc


def _pbs_walltime(walltime: str) -> str:
    """``D-HH:MM:SS`` (Slurm's days) as PBS's ``HH:MM:SS`` with hours past 24."""
    match = re.fullmatch(r"(\d+)-(\d+):(\d{2}):(\d{2})", walltime)
    if match is None:
        return walltime
    days, hours, minutes, seconds = match.groups()
    return f"{int(days) * 24 + int(hours):02d}:{minutes}:{seconds}"


def _jobqueue_log_directory(workdir: str) -> str:
    """``WORKDIR/jobqueue-logs`` for a local workdir, else ``./starskope-jobqueue-logs``
    (absolute: the batch system writes there from the compute nodes).
    """
    folder = workdir.removeprefix("file://")
    if "://" in folder:
        return os.path.abspath("starskope-" + JOBQUEUE_LOG_FOLDER)
    return os.path.abspath(os.path.join(os.path.expanduser(folder), JOBQUEUE_LOG_FOLDER))
