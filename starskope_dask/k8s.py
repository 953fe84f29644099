"""Kubernetes manifests for the dask-kubernetes operator, rendered by pure functions.

``starskope k8s render --config PIPELINE.yaml`` writes two files (as dask-kubernetes'
``make_cluster_spec`` builds a ``DaskCluster`` from a few arguments):

``daskjob.yaml``
    The whole pipeline as a batch job: a ``ServiceAccount`` (with the IRSA annotation that
    gives the pods their store credentials), a ``ConfigMap`` holding the pipeline YAML and a
    ``DaskJob``: a runner pod running ``starskope run /etc/starskope/pipeline.yaml``
    (``restartPolicy: OnFailure``; a restarted runner resumes from the store's markers and
    the run record), a scheduler and the workers.
``daskcluster.yaml``
    A ``DaskCluster`` and a ``DaskAutoscaler`` for interactive use; a notebook connects with
    ``KubeCluster.from_name`` or starts the same cluster with :func:`make_kubecluster`.

Every ``render_*`` function is pure: a config in, dicts out; no I/O, no Kubernetes client,
dask-kubernetes imported only by :func:`make_kubecluster`. :func:`write_manifests` is the one
function that writes (and it never overwrites a file it did not write).

The pods: us-east-1 (next to the archive), anonymous reads of the public archive, store
credentials from the service account (IRSA; never a secret in a manifest), a non-root user
(uid :data:`RUN_AS_USER`, the ``Dockerfile``'s), a read-only root file system with an
``emptyDir`` at ``/tmp`` (spill, caches; ``HOME`` points there), requests equal to limits,
and on the workers the glibc malloc settings of
:data:`starskope_dask.cluster.WORKER_MALLOC_ENV` (through Dask's nanny).

:func:`validate_manifest` checks a rendered document offline: a custom resource against the
``openAPIV3Schema`` of its CRD shipped in dask-kubernetes (made strict: an unknown field is a
problem, where the API server would silently prune it), every embedded ``PodSpec``,
``ServiceSpec`` and ``ObjectMeta`` and every built-in kind against the strict Kubernetes
OpenAPI schemas of ``kubernetes-validate`` (:data:`KUBERNETES_VERSION`), and no credentials
anywhere. It needs ``jsonschema`` and ``kubernetes-validate`` (the ``test`` extra), imported
only when it is called.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from starskope_dask.cluster import WORKER_MALLOC_ENV
from starskope_dask.config import ARTEFACTS, KubernetesConfig, RunConfig
from starskope_dask.errors import ConfigError, NotAStoreError, StoreError

logger = logging.getLogger(__name__)

#: API group and version of the dask-kubernetes operator's resources.
DASK_API_VERSION = "kubernetes.dask.org/v1"
#: The Kubernetes version whose OpenAPI schemas (``kubernetes-validate``) the manifests meet.
KUBERNETES_VERSION = "1.33.0"
#: The image's user and group (``USER 10001:10001`` in the ``Dockerfile``).
RUN_AS_USER = 10001
#: Where the pipeline YAML of the ConfigMap is mounted in the runner pod.
CONFIG_DIR = "/etc/starskope"
CONFIG_KEY = "pipeline.yaml"
#: The runner's command (``starskope run``, which connects to ``DASK_SCHEDULER_ADDRESS``).
#: ``--allow-failures``: a run that finished with some items failed (recorded in its run
#: record) exits 0, so that ``restartPolicy: OnFailure`` restarts the runner only when the run
#: itself stopped (killed, a node lost, a store unreachable) — not forever over a corrupt
#: product that no rerun can read.
RUNNER_ARGS = ("starskope", "run", "--allow-failures", f"{CONFIG_DIR}/{CONFIG_KEY}")
#: The scheduler's and the workers' commands (distributed has no ``dask-worker`` any more).
SCHEDULER_COMMAND = ("dask", "scheduler")
WORKER_COMMAND = ("dask", "worker")
SCHEDULER_PORT, DASHBOARD_PORT, WORKER_DASHBOARD_PORT = 8786, 8787, 8788
#: CPU of the scheduler and of the runner pod (their memory is a worker's).
SCHEDULER_CPU = RUNNER_CPU = "1"
#: The malloc settings reach each worker process through its nanny (Dask's
#: ``distributed.nanny.pre-spawn-environ``, set as JSON in this variable; a variable of the
#: container's own environment would also reach the nanny).
MALLOC_ENV_VARIABLE = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"

#: Measured peak RSS of one single-threaded worker process: 618 MB, the features stage
#: (``python jobs/bench_features.py --stars 1000 --workers 2``: "peak worker RSS 599 and 618
#: MB", README, Features (issue 11)); ingest peaks lower (364-370 MB at 10 000 products,
#: ``jobs/bench_ingest.py``). A worker of N threads is sized for N such tasks at once.
PEAK_WORKER_RSS_BYTES = 618 * 10**6
#: Dask pauses a worker whose process memory passes this fraction of its memory limit
#: (``distributed.worker.memory.pause``); the measured peak must stay below it.
DASK_PAUSE_FRACTION = 0.8
#: The container's memory limit minus the worker's ``--memory-limit``: the nanny process and
#: allocator slack (the kernel kills the container at its limit; Dask should act before).
MIN_HEADROOM_BYTES = 256 * 2**20
HEADROOM_FRACTION = 0.1
#: ``/tmp`` (an ``emptyDir``: the root file system is read-only) holds a worker's spilled
#: data: up to this many times its memory; the runner's and scheduler's hold caches only.
WORKER_TMP_FACTOR = 4
SMALL_TMP = "1Gi"

#: First characters of every file ``starskope k8s render`` writes (what it may overwrite).
GENERATED_MARKER = "# Generated by `starskope k8s render`"

FILE_DESCRIPTIONS = {
    "daskjob.yaml": (
        "The whole pipeline as a DaskJob of the dask-kubernetes operator: a runner pod running\n"
        "`starskope run /etc/starskope/pipeline.yaml` (the pipeline YAML is the ConfigMap's;\n"
        "restartPolicy OnFailure: a restarted runner resumes from the store's markers), a\n"
        "scheduler and the workers; a ServiceAccount whose IRSA role gives the pods their store\n"
        "credentials (the archive is read anonymously; no secret in any manifest).\n"
        "Apply (operator and CRDs installed, namespace created): kubectl apply -f daskjob.yaml"
    ),
    "daskcluster.yaml": (
        "A DaskCluster and a DaskAutoscaler for interactive use (a notebook connects with\n"
        "KubeCluster.from_name, or starts the same with starskope_dask.k8s.make_kubecluster).\n"
        "Apply: kubectl apply -f daskcluster.yaml"
    ),
}

_SECRET_NAMES = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
_AWS_CREDENTIAL_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
_SECRET_TEXT = re.compile(
    r"(?-i:\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)|aws_secret_access_key\s*[:=]|"
    r"aws_session_token\s*[:=]|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    re.IGNORECASE,
)
_MAX_CONFIGMAP_BYTES = 1_000_000  # Kubernetes refuses ConfigMaps over 1 MiB


# ------------------------------------------------------------------------- names and sizes


def job_name(k8s: KubernetesConfig) -> str:
    """Name of the DaskJob (and of the DaskCluster the operator makes for it).

    The interactive DaskCluster is ``k8s.name``; the job's is ``NAME-run``, so both can run
    in one namespace.
    """
    return f"{k8s.name}-run"


def scheduler_address(cluster_name: str, namespace: str) -> str:
    """The address the operator gives a cluster's pods (``DASK_SCHEDULER_ADDRESS``)."""
    return f"tcp://{cluster_name}-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"


def daskjob_scheduler_address(k8s: KubernetesConfig) -> str:
    """The scheduler address of the DaskJob's cluster (``pipeline.scheduler_address``)."""
    return scheduler_address(job_name(k8s), k8s.namespace)


def _bytes(value: str | int, key: str) -> int:
    from dask.utils import parse_bytes

    if isinstance(value, str) and value.strip().lower() == "auto":
        raise ConfigError(f"{key} must be a size such as '4GiB' for Kubernetes, not 'auto'")
    return int(parse_bytes(value))


def quantity(n_bytes: int) -> str:
    """A byte count as a Kubernetes quantity (``4Gi``, ``1536Mi``, or bytes)."""
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n_bytes % size == 0:
            return f"{n_bytes // size}{suffix}"
    return str(n_bytes)


def worker_memory_limit(k8s: KubernetesConfig) -> str:
    """The workers' ``--memory-limit``: their container limit less the nanny's headroom.

    Parameters
    ----------
    k8s : KubernetesConfig
        ``worker_memory`` is the container's request and limit.

    Returns
    -------
    str
        Whole MiB, e.g. ``"3686MiB"`` for ``4GiB``.

    Raises
    ------
    ConfigError
        If the limit leaves less than the measured peak RSS (:data:`PEAK_WORKER_RSS_BYTES`
        per thread) below Dask's pause threshold.
    """
    container = _bytes(k8s.worker_memory, "kubernetes.worker_memory")
    headroom = max(MIN_HEADROOM_BYTES, int(container * HEADROOM_FRACTION))
    limit_mib = (container - headroom) // 2**20
    needed = k8s.worker_threads * PEAK_WORKER_RSS_BYTES / DASK_PAUSE_FRACTION
    if limit_mib * 2**20 < needed:
        raise ConfigError(
            f"kubernetes.worker_memory {k8s.worker_memory} gives each worker a Dask memory limit "
            f"of {max(limit_mib, 0)} MiB; {k8s.worker_threads} threads at the measured peak of "
            f"{PEAK_WORKER_RSS_BYTES / 1e6:.0f} MB each need {needed / 2**20:.0f} MiB "
            f"(below Dask's pause threshold, {DASK_PAUSE_FRACTION:.0%}): raise "
            "kubernetes.worker_memory or lower kubernetes.worker_threads"
        )
    return f"{limit_mib}MiB"


# ------------------------------------------------------------------------- pod pieces


def _metadata(name: str, k8s: KubernetesConfig, component: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "starskope", "app.kubernetes.io/component": component}
    return {"name": name, "namespace": k8s.namespace, "labels": labels}


def _env(k8s: KubernetesConfig, *, worker: bool = False) -> list[dict[str, str]]:
    env = [
        {"name": "AWS_DEFAULT_REGION", "value": k8s.region},
        {"name": "AWS_REGION", "value": k8s.region},
        # the root file system is read-only: caches (~/.cache, ~/.config, ~/.keras) in /tmp
        {"name": "HOME", "value": "/tmp"},
    ]
    if worker:
        env.append({"name": MALLOC_ENV_VARIABLE, "value": json.dumps(WORKER_MALLOC_ENV)})
    return env


def _resources(cpu: str, memory: str) -> dict[str, dict[str, str]]:
    amount = {"cpu": cpu, "memory": memory}
    return {"requests": dict(amount), "limits": dict(amount)}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_spec(
    k8s: KubernetesConfig,
    container: dict[str, Any],
    *,
    tmp_size: str,
    extra_volumes: Sequence[dict[str, Any]] = (),
    extra_mounts: Sequence[dict[str, Any]] = (),
    restart_policy: str | None = None,
) -> dict[str, Any]:
    container = {
        **container,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *extra_mounts],
    }
    spec: dict[str, Any] = {}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    spec.update(
        {
            "serviceAccountName": k8s.service_account,
            # IRSA's token is a projected volume of its own; the Kubernetes API is not used
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}}, *extra_volumes],
        }
    )
    return spec


def worker_args(k8s: KubernetesConfig) -> list[str]:
    """The worker container's args: ``dask worker`` with threads, memory limit and name.

    The first part is :func:`kubecluster_kwargs`' ``worker_command``; the rest is what
    dask-kubernetes' ``make_worker_spec`` appends to it.
    """
    return [*_worker_command(k8s), *_worker_name_args()]


def _worker_command(k8s: KubernetesConfig) -> list[str]:
    return [
        *WORKER_COMMAND,
        "--nthreads",
        str(k8s.worker_threads),
        "--memory-limit",
        worker_memory_limit(k8s),
    ]


def _worker_name_args() -> list[str]:
    return [
        "--name",
        "$(DASK_WORKER_NAME)",
        "--dashboard",
        "--dashboard-address",
        str(WORKER_DASHBOARD_PORT),
    ]


def _worker_spec(k8s: KubernetesConfig, replicas: int) -> dict[str, Any]:
    container = {
        "name": "worker",
        "image": k8s.image,
        "imagePullPolicy": "IfNotPresent",
        "args": worker_args(k8s),
        "env": _env(k8s, worker=True),
        "resources": _resources(k8s.worker_cpu, quantity(_worker_bytes(k8s))),
        "ports": [
            {"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}
        ],
    }
    tmp = quantity(WORKER_TMP_FACTOR * _worker_bytes(k8s))
    return {"replicas": replicas, "spec": _pod_spec(k8s, container, tmp_size=tmp)}


def _worker_bytes(k8s: KubernetesConfig) -> int:
    return _bytes(k8s.worker_memory, "kubernetes.worker_memory")


def _health_probe(initial_delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"port": "http-dashboard", "path": "/health"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
    }


def _scheduler_spec(k8s: KubernetesConfig, cluster_name: str) -> dict[str, Any]:
    container = {
        "name": "scheduler",
        "image": k8s.image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(SCHEDULER_COMMAND),
        "env": _env(k8s),
        "resources": _resources(SCHEDULER_CPU, quantity(_worker_bytes(k8s))),
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": _health_probe(5, 10),
        "livenessProbe": _health_probe(15, 20),
    }
    return {
        "spec": _pod_spec(k8s, container, tmp_size=SMALL_TMP),
        "service": {
            "type": "ClusterIP",
            "selector": {
                "dask.org/cluster-name": cluster_name,
                "dask.org/component": "scheduler",
            },
            "ports": [
                {
                    "name": "tcp-comm",
                    "protocol": "TCP",
                    "port": SCHEDULER_PORT,
                    "targetPort": "tcp-comm",
                },
                {
                    "name": "http-dashboard",
                    "protocol": "TCP",
                    "port": DASHBOARD_PORT,
                    "targetPort": "http-dashboard",
                },
            ],
        },
    }


def _cluster_spec(k8s: KubernetesConfig, cluster_name: str) -> dict[str, Any]:
    return {
        "worker": _worker_spec(k8s, k8s.workers),
        "scheduler": _scheduler_spec(k8s, cluster_name),
    }


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _check_runs_in_a_daskjob(run: RunConfig) -> None:
    pipeline, k8s = run.pipeline, run.kubernetes
    if pipeline.cluster not in ("address", "local"):
        raise ConfigError(
            f"pipeline.cluster is {pipeline.cluster!r}: a DaskJob brings its own scheduler; "
            "set pipeline.cluster to 'address' (with the DaskJob's scheduler_address)"
        )
    expected = daskjob_scheduler_address(k8s)
    if pipeline.scheduler_address and pipeline.scheduler_address != expected:
        raise ConfigError(
            f"pipeline.scheduler_address is {pipeline.scheduler_address} but the DaskJob's "
            f"scheduler is {expected} (from kubernetes.name and kubernetes.namespace): set it "
            "to that, or leave it out (the operator sets DASK_SCHEDULER_ADDRESS)"
        )
    urls = {"workdir": pipeline.workdir}
    urls.update({name: pipeline.artefact(name) for name in ARTEFACTS})
    for name, url in urls.items():
        if not _is_remote(url):
            raise ConfigError(
                f"pipeline.{name} {url} is a local path: in a DaskJob the runner and every "
                "worker have file systems of their own (and lose them); use an object store, "
                "s3://BUCKET/PREFIX"
            )


# ------------------------------------------------------------------------- documents


def render_service_account(k8s: KubernetesConfig) -> dict[str, Any]:
    """The pods' ServiceAccount; with ``role_arn`` the IRSA annotation (store credentials).

    Parameters
    ----------
    k8s : KubernetesConfig
        Name, namespace, role.

    Returns
    -------
    dict
        A ``v1`` ``ServiceAccount``.
    """
    metadata = _metadata(k8s.service_account, k8s, "service-account")
    if k8s.role_arn:
        metadata["annotations"] = {"eks.amazonaws.com/role-arn": k8s.role_arn}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        "automountServiceAccountToken": False,
    }


def render_configmap(run: RunConfig, config_yaml: str) -> dict[str, Any]:
    """The ConfigMap holding the pipeline YAML (mounted at ``/etc/starskope/pipeline.yaml``).

    Parameters
    ----------
    run : RunConfig
        The pipeline (``run.kubernetes.config_map`` names the ConfigMap).
    config_yaml : str
        The text of the pipeline YAML ``run`` was loaded from.

    Raises
    ------
    ConfigError
        If the text holds what looks like a credential, or is too large for a ConfigMap.
    """
    k8s = run.kubernetes
    found = _SECRET_TEXT.search(config_yaml)
    if found:
        raise ConfigError(
            f"the pipeline YAML ({run.source}) holds what looks like a credential "
            f"({found.group(0)[:4]}...): store credentials come from the service account's "
            "IAM role (kubernetes.role_arn), never from a manifest"
        )
    if len(config_yaml.encode()) > _MAX_CONFIGMAP_BYTES:
        raise ConfigError(
            f"the pipeline YAML ({run.source}) is {len(config_yaml.encode())} bytes; a "
            f"ConfigMap holds at most {_MAX_CONFIGMAP_BYTES} (put long target lists in "
            "discover.targets_file)"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(k8s.config_map, k8s, "pipeline-config"),
        "data": {CONFIG_KEY: config_yaml},
    }


def render_daskjob(run: RunConfig, config_yaml: str) -> dict[str, Any]:
    """The DaskJob that runs the pipeline: runner pod, scheduler and workers.

    Parameters
    ----------
    run : RunConfig
        The pipeline; its ``kubernetes`` section sizes the pods.
    config_yaml : str
        The pipeline YAML's text (checked here as :func:`render_configmap` does; the runner
        reads it from the ConfigMap).

    Returns
    -------
    dict
        A ``kubernetes.dask.org/v1`` ``DaskJob`` named :func:`job_name`.

    Raises
    ------
    ConfigError
        For a pipeline that cannot run in a DaskJob (a local workdir, a batch cluster, a
        scheduler address not the job's) or workers too small for the measured peak RSS.
    """
    render_configmap(run, config_yaml)  # the same checks of the text
    _check_runs_in_a_daskjob(run)
    k8s = run.kubernetes
    name = job_name(k8s)
    runner = {
        "name": "runner",
        "image": k8s.image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(RUNNER_ARGS),
        "env": _env(k8s),
        "resources": _resources(RUNNER_CPU, quantity(_worker_bytes(k8s))),
    }
    config_volume = {
        "name": "pipeline-config",
        "configMap": {
            "name": k8s.config_map,
            "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
        },
    }
    job_spec = _pod_spec(
        k8s,
        runner,
        tmp_size=SMALL_TMP,
        extra_volumes=[config_volume],
        extra_mounts=[{"name": "pipeline-config", "mountPath": CONFIG_DIR, "readOnly": True}],
        restart_policy="OnFailure",
    )
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskJob",
        "metadata": _metadata(name, k8s, "pipeline"),
        "spec": {
            "job": {"spec": job_spec},
            "cluster": {"spec": _cluster_spec(k8s, name)},
        },
    }


def render_daskcluster(run: RunConfig) -> dict[str, Any]:
    """The DaskCluster for interactive use (named ``kubernetes.name``).

    Returns
    -------
    dict
        A ``kubernetes.dask.org/v1`` ``DaskCluster`` of ``kubernetes.workers`` workers.
    """
    k8s = run.kubernetes
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskCluster",
        "metadata": _metadata(k8s.name, k8s, "interactive"),
        "spec": _cluster_spec(k8s, k8s.name),
    }


def render_daskautoscaler(run: RunConfig) -> dict[str, Any]:
    """The DaskAutoscaler of :func:`render_daskcluster`'s cluster.

    Returns
    -------
    dict
        Bounds ``kubernetes.min_workers`` .. ``kubernetes.max_workers``.
    """
    k8s = run.kubernetes
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": _metadata(k8s.name, k8s, "interactive"),
        "spec": {"cluster": k8s.name, "minimum": k8s.min_workers, "maximum": k8s.max_workers},
    }


def render_all(run: RunConfig, config_yaml: str) -> dict[str, list[dict[str, Any]]]:
    """Every document, by the file it goes in (``daskjob.yaml``, ``daskcluster.yaml``).

    Parameters
    ----------
    run : RunConfig
        The pipeline.
    config_yaml : str
        Its YAML text (the ConfigMap's content).
    """
    account = render_service_account(run.kubernetes)
    return {
        "daskjob.yaml": [
            account,
            render_configmap(run, config_yaml),
            render_daskjob(run, config_yaml),
        ],
        "daskcluster.yaml": [
            copy.deepcopy(account),
            render_daskcluster(run),
            render_daskautoscaler(run),
        ],
    }


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the ConfigMap's YAML stays readable)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_manifests(
    docs: Sequence[Mapping[str, Any]], *, description: str = "", source: str = ""
) -> str:
    """Multi-document YAML headed by a comment saying it is generated.

    Parameters
    ----------
    docs : sequence of dict
        The documents, in order.
    description : str, optional
        Comment lines after the header (what the file holds, how to apply it).
    source : str, optional
        The config it was rendered from (its file name goes in the header).

    Returns
    -------
    str
        Starts with :data:`GENERATED_MARKER`; documents separated by ``---``.
    """
    origin = f" from {Path(source).name}" if source else ""
    header = [
        f"{GENERATED_MARKER}{origin}: do not edit by hand;",
        "# change the config and render again: starskope k8s render --config PIPELINE.yaml",
    ]
    header += [f"# {line}".rstrip() for line in description.splitlines()]
    parts = [
        "---\n" + yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, width=100) for doc in docs
    ]
    return "\n".join(header) + "\n" + "".join(parts)


def render_files(run: RunConfig, config_yaml: str) -> dict[str, str]:
    """The text of each file ``starskope k8s render`` writes (see :func:`render_all`)."""
    return {
        name: dump_manifests(docs, description=FILE_DESCRIPTIONS.get(name, ""), source=run.source)
        for name, docs in render_all(run, config_yaml).items()
    }


def render_config_file(config_file: str | os.PathLike[str]) -> dict[str, str]:
    """Read a pipeline YAML and render its files (what the CLI does before writing).

    Raises
    ------
    ConfigError
        If the file cannot be read, or for any problem :func:`render_files` finds.
    """
    from starskope_dask.config import load_run_config

    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the pipeline config {config_file}: {exc}") from exc
    # the file alone: the pod gets its text, not this shell's DASK_STARSKOPE__* variables
    return render_files(load_run_config(config_file, environment=False), text)


def is_generated(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with :data:`GENERATED_MARKER`."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(len(GENERATED_MARKER.encode()))
    except OSError:
        return False
    return start == GENERATED_MARKER.encode()


def write_manifests(files: Mapping[str, str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write rendered files into ``out_dir``; refuse to overwrite one it did not write.

    Every target is checked before anything is written, so a refusal writes nothing; each
    file is replaced atomically.

    Parameters
    ----------
    files : mapping of str to str
        File name to text (:func:`render_files`).
    out_dir : path
        Folder (made if missing).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    NotAStoreError
        A file of that name exists and does not start with :data:`GENERATED_MARKER`.
    StoreError
        ``out_dir`` cannot be made or written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out-dir {out} is not a folder")
    paths = [out / name for name in files]
    for path in paths:
        if path.exists() and not (path.is_file() and is_generated(path)):
            raise NotAStoreError(
                f"{path} exists and was not written by `starskope k8s render` (it does not "
                f"start with {GENERATED_MARKER!r}); move it away or choose another --out-dir "
                "(nothing was written)"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in zip(paths, files.values(), strict=True):
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            logger.info("wrote %s", path)
    except OSError as exc:
        raise StoreError(f"cannot write the manifests into {out}: {exc}") from exc
    return paths


# ------------------------------------------------------------------------- KubeCluster


def kubecluster_kwargs(run: RunConfig) -> dict[str, Any]:
    """Arguments of ``dask_kubernetes.operator.KubeCluster`` for the interactive cluster.

    ``make_cluster_spec(**kwargs)`` (without ``namespace``) builds workers equal to those of
    :func:`render_daskcluster` in image, args, env, resources and replicas; what it cannot
    say (the service account, the security contexts, ``/tmp``, the ``dask scheduler``
    command of this image) is why :func:`make_kubecluster` passes the whole rendered spec.

    Returns
    -------
    dict
        ``name``, ``namespace``, ``image``, ``n_workers``, ``resources``, ``env`` (a dict),
        ``worker_command`` (a list).
    """
    k8s = run.kubernetes
    return {
        "name": k8s.name,
        "namespace": k8s.namespace,
        "image": k8s.image,
        "n_workers": k8s.workers,
        "resources": _resources(k8s.worker_cpu, quantity(_worker_bytes(k8s))),
        "env": {item["name"]: item["value"] for item in _env(k8s, worker=True)},
        "worker_command": _worker_command(k8s),
    }


def make_kubecluster(run: RunConfig, **overrides: Any) -> Any:
    """Start (or connect to) the interactive cluster from a notebook.

    Calls ``KubeCluster(**kubecluster_kwargs(run), custom_cluster_spec=render_daskcluster(run),
    **overrides)``: the rendered spec creates the cluster (service account, security
    contexts); the keyword arguments describe further worker groups.

    Raises
    ------
    ConfigError
        If dask-kubernetes is not installed (the ``k8s`` extra).
    """
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as exc:
        raise ConfigError(
            f"KubeCluster needs dask-kubernetes: pip install 'starskope-dask[k8s]' ({exc})"
        ) from exc
    kwargs = {**kubecluster_kwargs(run), "custom_cluster_spec": render_daskcluster(run)}
    kwargs.update(overrides)
    return KubeCluster(**kwargs)


# ------------------------------------------------------------------------- validation

#: Where a custom resource embeds core objects: kind -> [(path, definition)].
_EMBEDDED: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "DaskJob": [
        (("spec", "job", "spec"), "io.k8s.api.core.v1.PodSpec"),
        (("spec", "cluster", "spec", "worker", "spec"), "io.k8s.api.core.v1.PodSpec"),
        (("spec", "cluster", "spec", "scheduler", "spec"), "io.k8s.api.core.v1.PodSpec"),
        (("spec", "cluster", "spec", "scheduler", "service"), "io.k8s.api.core.v1.ServiceSpec"),
    ],
    "DaskCluster": [
        (("spec", "worker", "spec"), "io.k8s.api.core.v1.PodSpec"),
        (("spec", "scheduler", "spec"), "io.k8s.api.core.v1.PodSpec"),
        (("spec", "scheduler", "service"), "io.k8s.api.core.v1.ServiceSpec"),
    ],
    "DaskWorkerGroup": [(("spec", "worker", "spec"), "io.k8s.api.core.v1.PodSpec")],
    "DaskAutoscaler": [],
}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_MISSING_VALIDATOR = (
    "validating manifests needs jsonschema and kubernetes-validate (in the `test` extra, not "
    "the `k8s` one): pip install 'starskope-dask[test]' or pip install jsonschema "
    "kubernetes-validate"
)


def _package_dir(name: str, what: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(what)
    return Path(next(iter(spec.submodule_search_locations)))


def crd_dir() -> Path:
    """The fully resolved CRDs shipped in the installed dask-kubernetes.

    Raises
    ------
    ConfigError
        If dask-kubernetes is not installed (the ``k8s`` extra) or ships no CRDs there.
    """
    root = _package_dir(
        "dask_kubernetes", "the CRDs come with dask-kubernetes: pip install 'starskope-dask[k8s]'"
    )
    path = root / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    if not path.is_dir():
        raise ConfigError(f"the installed dask-kubernetes has no CRDs at {path}")
    return path


def kubernetes_schema_dir(version: str = KUBERNETES_VERSION) -> Path:
    """The strict Kubernetes OpenAPI schemas of ``version`` shipped in kubernetes-validate.

    Raises
    ------
    ConfigError
        If kubernetes-validate is not installed or does not ship that version.
    """
    root = _package_dir("kubernetes_validate", _MISSING_VALIDATOR)
    path = root / "kubernetes-json-schema" / f"v{version.lstrip('v')}-local-strict"
    if not path.is_dir():
        shipped = sorted(p.name for p in (root / "kubernetes-json-schema").glob("v*-strict"))
        raise ConfigError(
            f"kubernetes-validate has no schemas of Kubernetes {version} (it ships {shipped})"
        )
    return path


@functools.cache
def _crds() -> dict[str, dict[str, Any]]:
    """Kind -> the CRD (its YAML), for every CRD of dask-kubernetes."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            crd = yaml.load(fh, Loader=loader)  # a safe loader (C or Python)
        out[crd["spec"]["names"]["kind"]] = crd
    return out


def openapi_to_json_schema(node: Any, *, strict: bool = True) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema (draft 2020-12).

    ``nullable`` adds ``null``; ``x-kubernetes-int-or-string`` takes integers and strings
    (dask-kubernetes' CRDs say ``type: string, format: int-or-string`` instead, which the API
    server holds to strings: a probe's ``port: 8787`` is refused there, dask-kubernetes#778,
    and here; name the port); boolean ``exclusiveMinimum``/``exclusiveMaximum`` become
    numbers. With ``strict``, an object with ``properties`` and neither ``additionalProperties`` nor
    ``x-kubernetes-preserve-unknown-fields`` refuses unknown fields (the API server would
    prune them silently: a typo'd key is a setting lost without a word).

    Parameters
    ----------
    node : dict
        An ``openAPIV3Schema`` or a part of it.
    strict : bool
        Refuse unknown fields (see above).
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    nullable = bool(node.get("nullable"))
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string", *(["null"] if nullable else [])]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if nullable else node["type"]
    for key in (
        "enum", "format", "pattern", "minimum", "maximum", "minLength", "maxLength",
        "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
        "multipleOf", "required",
    ):  # fmt: skip
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if nullable and "enum" in out and None not in out["enum"]:
        out["enum"].append(None)
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(key) is True and bound in out:
            out[key] = out.pop(bound)
    if "properties" in node:
        out["properties"] = {
            k: openapi_to_json_schema(v, strict=strict) for k, v in node["properties"].items()
        }
    if "items" in node:
        out["items"] = openapi_to_json_schema(node["items"], strict=strict)
    if "additionalProperties" in node:
        out["additionalProperties"] = openapi_to_json_schema(
            node["additionalProperties"], strict=strict
        )
    elif strict and "properties" in node and not preserve:
        out["additionalProperties"] = False
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [openapi_to_json_schema(v, strict=strict) for v in node[key]]
    if "not" in node:
        out["not"] = openapi_to_json_schema(node["not"], strict=strict)
    return out


@functools.cache
def _crd_schema(kind: str) -> tuple[str, dict[str, Any]]:
    """(apiVersion, strict JSON Schema of the whole resource) of a dask-kubernetes kind."""
    crd = _crds()[kind]
    group = crd["spec"]["group"]
    version = next(v for v in crd["spec"]["versions"] if v.get("storage", v.get("served")))
    api_version = f"{group}/{version['name']}"
    schema = openapi_to_json_schema(version["schema"]["openAPIV3Schema"])
    schema.setdefault("properties", {}).update(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object"},  # checked against ObjectMeta
        }
    )
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return api_version, schema


@functools.cache
def _kubernetes_definitions(version: str) -> dict[str, Any]:
    path = kubernetes_schema_dir(version) / "_definitions.json"
    with path.open(encoding="utf-8") as fh:
        definitions: dict[str, Any] = json.load(fh)
    return definitions


def _format_checker() -> Any:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    def in_range(bits: int) -> Any:
        def check(value: object) -> bool:
            if not isinstance(value, int) or isinstance(value, bool):
                return True
            return -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

        return check

    checker.checks("int32")(in_range(32))
    checker.checks("int64")(in_range(64))
    return checker


@functools.cache
def _definition_validator(definition: str, version: str) -> Any:
    return _validator({"$ref": f"{_DEFINITIONS_ID}#/$defs/{definition}"}, version)


@functools.cache
def _crd_validator(kind: str, version: str) -> Any:
    return _validator(_crd_schema(kind)[1], version)


@functools.cache
def _kind_validator(kind: str, api_version: str, version: str) -> Any:
    schema = _kubernetes_kind_schema(kind, api_version, version)
    return None if schema is None else _validator(schema, version)


def _validator(schema: Mapping[str, Any], version: str) -> Any:
    try:
        import jsonschema
        from referencing import Registry, Resource
    except ImportError as exc:
        raise ConfigError(f"{_MISSING_VALIDATOR} ({exc})") from exc
    definitions = Resource.from_contents(_kubernetes_definitions(version))
    registry: Any = Registry().with_resource(_DEFINITIONS_ID, definitions)
    return jsonschema.Draft202012Validator(
        dict(schema), registry=registry, format_checker=_format_checker()
    )


@functools.cache
def _kubernetes_kind_schema(kind: str, api_version: str, version: str) -> dict[str, Any] | None:
    """The strict schema file of a built-in kind (named as kubernetes-validate names them)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = kubernetes_schema_dir(version) / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def _errors(validator: Any, instance: Any, where: Sequence[str | int], schema: str) -> list[str]:
    """Every error of ``instance``, as ``PATH: MESSAGE [SCHEMA]``, sorted."""
    problems = []
    for error in validator.iter_errors(instance):
        path = ".".join(str(p) for p in (*where, *error.absolute_path)) or "(root)"
        problems.append(f"{path}: {error.message} [{schema}]")
    return sorted(problems)


def _at(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _walk(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def secret_problems(doc: Any) -> list[str]:
    """Credentials in a manifest: a ``Secret``, AWS key variables, secret-looking values.

    Store credentials come from the service account's IAM role (IRSA); nothing in a manifest
    may carry a key, a token or a password, nor name AWS key variables at all.

    Returns
    -------
    list of str
        One line per finding (empty: none).
    """
    problems = []
    for path, node in _walk(doc):
        where = ".".join(str(p) for p in path) or "(root)"
        if isinstance(node, Mapping):
            if node.get("kind") == "Secret":
                problems.append(f"{where}: a Secret (credentials come from the IAM role)")
            name = node.get("name")
            if isinstance(name, str) and ("value" in node or "valueFrom" in node):
                if name.upper() in _AWS_CREDENTIAL_VARIABLES:
                    problems.append(
                        f"{where}: environment variable {name} (AWS credentials come from the "
                        "service account's IAM role, never from a manifest)"
                    )
                elif _SECRET_NAMES.search(name) and node.get("value"):
                    problems.append(f"{where}: environment variable {name} holds a literal value")
        elif isinstance(node, str):
            found = _SECRET_TEXT.search(node)
            if found:
                problems.append(f"{where}: a credential-looking value ({found.group(0)[:4]}...)")
    return problems


def validate_manifest(
    doc: Mapping[str, Any], *, kubernetes_version: str = KUBERNETES_VERSION
) -> list[str]:
    """Check one document offline; return its problems (empty: valid).

    A dask-kubernetes resource is checked against its CRD's ``openAPIV3Schema`` (strict:
    see :func:`openapi_to_json_schema`), its metadata against ``ObjectMeta`` and each
    embedded ``PodSpec`` and ``ServiceSpec`` against the strict Kubernetes OpenAPI schema of
    ``kubernetes_version``; a built-in kind against that version's schema of the kind. Every
    document is also searched for credentials (:func:`secret_problems`).

    Parameters
    ----------
    doc : dict
        One manifest document.
    kubernetes_version : str
        A version kubernetes-validate ships (``"1.33.0"``).

    Returns
    -------
    list of str
        ``KIND/NAME: PATH: PROBLEM`` lines.

    Raises
    ------
    ConfigError
        If jsonschema, kubernetes-validate or dask-kubernetes is not installed.
    """
    kind = str(doc.get("kind", "?"))
    metadata = doc.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
    problems: list[str] = []
    api_version = str(doc.get("apiVersion", ""))
    version = kubernetes_version
    if api_version.startswith("kubernetes.dask.org/"):
        if kind not in _crds():
            problems.append(f"(root): no CRD of kind {kind!r} in dask-kubernetes")
        else:
            crd = f"CRD {_crds()[kind]['metadata']['name']}"
            problems += _errors(_crd_validator(kind, version), doc, (), crd)
            problems += _errors(
                _definition_validator(_OBJECT_META, version),
                metadata,
                ("metadata",),
                f"Kubernetes {version} ObjectMeta",
            )
            if not isinstance(metadata, Mapping) or not metadata.get("name"):
                problems.append("metadata.name: missing")
            for path, definition in _EMBEDDED.get(kind, ()):
                value = _at(doc, path)
                if value is not None:
                    problems += _errors(
                        _definition_validator(definition, version),
                        value,
                        path,
                        f"Kubernetes {version} {definition.rsplit('.', 1)[-1]}",
                    )
    else:
        validator = _kind_validator(kind, api_version or "?", version)
        if validator is None:
            problems.append(f"(root): no Kubernetes {version} schema of {api_version} {kind}")
        else:
            problems += _errors(validator, doc, (), f"Kubernetes {version} {kind}")
    problems += secret_problems(doc)
    return [f"{kind}/{name}: {problem}" for problem in problems]
