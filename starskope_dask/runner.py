"""The whole pipeline from one config: ``starskope run PIPELINE.yaml``.

discover → ingest → features → train → evaluate → predict (any contiguous run of them), one
cluster for all, every artefact under ``pipeline.workdir`` unless given its own URL. The
wiring only: each stage is the library function its own command calls.

Resume. Every stage resumes on its own (ingest and features skip finished chunks, training
rewrites its model folder). On top, the run record ``WORKDIR/pipeline.json`` says per stage
what it did (items, failures, seconds), with a fingerprint of the stage's settings and the
version of its input it used; a rerun skips a stage that finished without failures, with the
same settings, on an input that has not changed since — so a rerun of a finished pipeline
does nothing, a pipeline killed in training reruns only training onwards, and a new product
ingested reruns the stages after ingest. A stage's *version* changes only when it changed
its output (new chunks written, a model retrained), so downstream stages rerun only then.

Two entry points (hats-import style): :func:`run_pipeline` starts its own client (a
LocalCluster, the scheduler at ``DASK_SCHEDULER_ADDRESS`` as in a DaskJob, or a Slurm/PBS
cluster), :func:`run_pipeline_with_client` takes one (tests, notebooks).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starskope_dask.config import STAGES, RunConfig
from starskope_dask.errors import ConfigError, NotAStoreError, StoreError
from starskope_dask.fetch import filesystem, url_protocol, writable_protocol
from starskope_dask.store import write_bytes

logger = logging.getLogger(__name__)

#: The ``format`` of a run record (what tells it from any other JSON file).
RECORD_FORMAT = "starskope pipeline record"

#: What each stage reads (the artefact of the stage before) and writes.
STAGE_INPUTS = {
    "discover": None,
    "ingest": "manifest",
    "features": "cube",
    "train": "features",
    "evaluate": "model",
    "predict": "model",
}
STAGE_OUTPUTS = {
    "discover": "manifest",
    "ingest": "cube",
    "features": "features",
    "train": "model",
    "evaluate": "model",
    "predict": "candidates",
}
#: The stage whose version a stage's input carries (evaluate and predict read the model).
UPSTREAM = {
    "discover": None,
    "ingest": "discover",
    "features": "ingest",
    "train": "features",
    "evaluate": "train",
    "predict": "train",
}
#: Cluster keys: where a stage runs, not what it computes (not in the fingerprints).
_RUN_KEYS = {"n_workers", "threads_per_worker", "memory_limit", "scheduler_address"}


@dataclasses.dataclass(frozen=True)
class StageOutcome:
    """What one stage did in one run.

    Attributes
    ----------
    stage : str
        One of :data:`~starskope_dask.config.STAGES`.
    status : str
        ``done`` (ran to its end; ``failures`` may be > 0) or ``skipped`` (finished before
        with these settings on this input).
    items : int
        Products (discover, ingest), stars (features), signals (train, evaluate, predict).
    failures : int
        Items that failed (targets that found nothing, products not read, stars that failed).
    seconds : float
        Wall time of the stage in this run (0 when skipped).
    changed : bool
        Whether the stage changed its output (downstream stages rerun only then).
    output : str
        The URL of what it wrote.
    details : dict
        The stage's own summary (``IngestSummary.as_dict()``, metrics, ...), trimmed.
    """

    stage: str
    status: str
    items: int
    failures: int
    seconds: float
    changed: bool
    output: str
    details: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a pipeline run did, stage by stage; also kept in ``WORKDIR/pipeline.json``."""

    record: str
    stages: tuple[StageOutcome, ...]
    seconds: float

    @property
    def n_failures(self) -> int:
        """Failed items over every stage that ran."""
        return sum(s.failures for s in self.stages)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "record": self.record,
            "seconds": self.seconds,
            "stages": [s.as_dict() for s in self.stages],
        }

    def table(self) -> str:
        """A plain-text table: stage, status, items, failures, seconds, output."""
        rows = [("stage", "status", "items", "failures", "seconds", "output")]
        rows += [
            (s.stage, s.status, str(s.items), str(s.failures), f"{s.seconds:.1f}", s.output)
            for s in self.stages
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
            + "  "
            + row[5]
            for row in rows
        )


# ---------------------------------------------------------------- settings and record


def _settings(value: Any) -> Any:
    """A config as plain JSON values, cluster keys left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _settings(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _RUN_KEYS
        }
    if isinstance(value, tuple | list):
        return [_settings(v) for v in value]
    return value


def stage_settings(run: RunConfig, stage: str) -> dict[str, Any]:
    """What a stage computes from, as JSON: its section and its artefact URLs (the cluster it
    runs on is not part of it).
    """
    pipeline = run.pipeline
    source = STAGE_INPUTS[stage]
    urls = {
        "input": pipeline.artefact(source) if source else "",
        "output": pipeline.artefact(STAGE_OUTPUTS[stage]),
    }
    section: Any = {
        "discover": run.discover,
        "ingest": run.ingest,
        "features": run.features,
        "train": run.train,
        "evaluate": {"labels": run.train.labels, "period_tolerance": run.train.period_tolerance},
        "predict": {},
    }[stage]
    settings = _settings(section)
    if stage == "ingest":
        settings.pop("retry_failed", None)  # how a rerun treats failures, not what is made
    return {"stage": stage, **urls, "settings": settings}


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short, stable digest of a stage's settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The most bytes a run record may have (a crafted or runaway file is refused, not parsed).
MAX_RECORD_BYTES = 16 * 2**20


def read_record(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The run record at ``url`` (empty when there is none yet), checked for shape.

    Raises
    ------
    NotAStoreError
        If ``url`` holds a file that is not a run record (nothing is overwritten).
    StoreError
        If it cannot be read, is not JSON, is too large, or is a damaged record.
    """
    from starskope_dask.store import read_bytes

    try:
        data = read_bytes(url, options)
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot read the run record {url}: {exc}") from exc
    if data is None:
        return {}
    if len(data) > MAX_RECORD_BYTES:
        raise StoreError(
            f"the run record {url} is {len(data)} bytes (at most {MAX_RECORD_BYTES}): not a "
            "record this tool wrote; choose another pipeline.workdir"
        )
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise NotAStoreError(
            f"{url} is not a starskope run record (not JSON); choose another pipeline.workdir "
            "(nothing was written)"
        ) from exc
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise NotAStoreError(
            f"{url} is not a starskope run record; choose another pipeline.workdir (nothing "
            "was written)"
        )
    stages = record.get("stages", {})
    written = record.get("written", [])
    if (
        not isinstance(stages, dict)
        or not all(k in STAGES and isinstance(v, dict) for k, v in stages.items())
        or not isinstance(written, list)
        or not all(isinstance(w, str) for w in written)
    ):
        raise StoreError(
            f"the run record {url} is damaged (stages must map stage names to entries, "
            "written must list URLs); move it away to start the pipeline afresh"
        )
    return record


def should_skip(
    record: Mapping[str, Any],
    stage: str,
    settings: Mapping[str, Any],
    input_version: str,
) -> bool:
    """Whether ``stage`` finished before, without failures, with these settings, on the input
    version it sees now (pure: decided from the record alone; the caller checks that the
    output is still there). Discover is never skipped: the archive or the targets file may
    have changed, and its version changes only when the manifest does.
    """
    if stage == "discover":
        return False
    previous = (record.get("stages") or {}).get(stage)
    if not isinstance(previous, Mapping):
        return False
    return bool(
        previous.get("status") == "done"
        and type(previous.get("failures")) is int
        and previous.get("failures") == 0
        and previous.get("fingerprint") == fingerprint(settings)
        and previous.get("input_version", "") == input_version
    )


def input_version(
    record: Mapping[str, Any],
    stage: str,
    in_run: Sequence[str],
    marker: str | Callable[[], str],
) -> str:
    """The version of ``stage``'s input: its upstream stage's version in the record when that
    stage is part of this run (or recorded), else ``marker`` (a digest of the input artefact
    made elsewhere, e.g. a model trained by ``starskope train``; a callable is called only
    then, so the artefact is read only when its digest is needed).
    """
    upstream = UPSTREAM[stage]
    if upstream is None:
        return ""
    entry = (record.get("stages") or {}).get(upstream)
    if upstream in in_run or isinstance(entry, Mapping):
        return str((entry or {}).get("version", ""))
    return marker() if callable(marker) else marker


def _new_version() -> str:
    """A version never given before (a time, for people, and random bits, for uniqueness)."""
    return f"{_now()}-{secrets.token_hex(4)}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _updated_record(
    record: Mapping[str, Any],
    outcome: StageOutcome,
    settings: Mapping[str, Any],
    source: str,
    input_version: str = "",
) -> dict[str, Any]:
    """The record with ``outcome`` entered (pure).

    The stage's version (what the stages after it compare) changes when it changed its
    output, and also whenever its last entry is not a clean finish of the same settings on the
    same input — a run killed after writing but before recording left a ``running`` entry, so
    what it wrote counts as a change.
    """
    stages = dict(record.get("stages") or {})
    previous = stages.get(outcome.stage) or {}
    # the entry this run found: under the ``running`` mark this run wrote, the status before it
    status = (
        previous.get("previous_status")
        if previous.get("status") == "running"
        else (previous.get("status"))
    )
    same = (
        status == "done"
        and previous.get("fingerprint") == fingerprint(settings)
        and previous.get("input_version", "") == input_version
        and bool(previous.get("version"))
    )
    version = previous["version"] if same and not outcome.changed else _new_version()
    stages[outcome.stage] = {
        **outcome.as_dict(),
        "fingerprint": fingerprint(settings),
        "input_version": input_version,
        "version": version,
        "finished_at": _now(),
    }
    written = sorted({*record.get("written", ()), outcome.output})
    return {
        "format": RECORD_FORMAT,
        "config": source,
        "stages": stages,
        "written": written,
        "updated_at": _now(),
    }


def _running_record(record: Mapping[str, Any], stage: str, output: str) -> dict[str, Any]:
    """The record with ``stage`` marked as running (written before the stage starts)."""
    stages = dict(record.get("stages") or {})
    entry = stages.get(stage) or {}
    stages[stage] = {
        **entry,
        "status": "running",
        "previous_status": entry.get("status", ""),  # "running": an earlier run was killed
        "started_at": _now(),
    }
    written = sorted({*record.get("written", ()), output})
    return {**record, "format": RECORD_FORMAT, "stages": stages, "written": written}


def _write_record(url: str, record: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    write_bytes(url, json.dumps(record, indent=1, default=str).encode(), options)


# ---------------------------------------------------------------- checks before anything


def check_run(run: RunConfig) -> None:
    """Refuse, before any cluster starts or anything is written, a pipeline that cannot run.

    Raises
    ------
    ConfigError
        For a train stage without labels, a model kind whose libraries are not installed, an
        artefact URL of a scheme that cannot be written.
    StoreError
        For a workdir that is a file.
    """
    stages = run.pipeline.stages
    if "train" in stages:
        if not run.train.labels:
            raise ConfigError(
                "the pipeline trains but train.labels is not set: give truth:SIM_URL, "
                "koi:CSV, toi:CSV, k2:CSV or csv:URL in the train section"
            )
        from starskope_dask.train.pipeline import check_training_extra

        check_training_extra(run.train)
    for name in ("workdir", *{STAGE_OUTPUTS[s] for s in stages}):
        url = run.pipeline.workdir if name == "workdir" else run.pipeline.artefact(name)
        try:
            writable_protocol(url)
        except Exception as exc:
            raise ConfigError(f"pipeline.{name} {url}: {exc}") from exc
    workdir = run.pipeline.workdir
    if url_protocol(workdir) == "file":
        from starskope_dask.fetch import local_path, writable_folder

        writable_folder(local_path(workdir), "the pipeline's workdir", "set pipeline.workdir")


def _check_overwrite(url: str, record: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """A file artefact (manifest, candidates) is written only where nothing is, or where this
    pipeline wrote it before: the tool never overwrites what it did not write.
    """
    if url in record.get("written", ()):
        return
    fs = filesystem(url_protocol(url), options)
    try:
        exists = fs.exists(url)
    except Exception as exc:
        raise StoreError(f"cannot check {url}: {type(exc).__name__}: {exc}") from exc
    if exists:
        raise NotAStoreError(
            f"{url} exists and was not written by this pipeline (its run record does not list "
            "it); move it away or set another path in the pipeline section (nothing was "
            "overwritten)"
        )


# ---------------------------------------------------------------- the stages


def _discover(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.discover import discover_with_config, write_manifest
    from starskope_dask.pipeline import store_options_for

    url = run.pipeline.artefact("manifest")
    manifest, problems = discover_with_config(run.discover, run.storage)
    for problem in problems:
        logger.warning("discover: %s", problem)
    if manifest.empty:
        raise StoreError(
            f"discover found no product ({len(problems)} problems: "
            f"{'; '.join(problems[:3]) or 'an empty archive'}); {url} was not written"
        )
    options = store_options_for(run.storage)
    changed = _manifest_digest(url, options) != _digest(manifest)
    if changed:  # an unchanged manifest keeps its version: the stages after it may skip
        write_manifest(manifest, url, options)
    return StageOutcome(
        "discover",
        "done",
        len(manifest),
        len(problems),
        0.0,
        changed,
        url,
        {"n_targets": int(manifest["target"].nunique()), "problems": problems[:20]},
    )


def _exists(url: str, options: Mapping[str, Any]) -> bool:
    try:
        return bool(filesystem(url_protocol(url), options).exists(url))
    except Exception:
        return False


#: The file whose content identifies an artefact's version when no stage of this pipeline
#: made it (a cube, features store or model made by the stage's own command).
_MARKER_FILES = {
    "manifest": "",
    "cube": "zarr.json",
    "features": "zarr.json",
    "model": "model.json",
}


def _artefact_marker(url: str, kind: str, options: Mapping[str, Any]) -> str:
    """A digest of the artefact's marker file ("" when there is none)."""
    from starskope_dask.store import read_bytes

    name = _MARKER_FILES.get(kind, "")
    target = f"{url.rstrip('/')}/{name}" if name else url
    try:
        data = read_bytes(target, options)
    except Exception:
        return ""
    return "external:" + hashlib.sha256(data).hexdigest()[:16] if data is not None else ""


def _digest(frame: Any) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _manifest_digest(url: str, options: Mapping[str, Any]) -> str:
    """The digest of the manifest at ``url`` ("" when there is none or it cannot be read)."""
    from starskope_dask.discover import read_manifest
    from starskope_dask.errors import StarskopeError

    try:
        return _digest(read_manifest(url, options))
    except (StarskopeError, OSError, ValueError):
        return ""


def _ingest(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.pipeline import run_with_client

    summary = run_with_client(run.ingest, client_of(), progress=progress)
    details = summary.as_dict()
    details["failures"] = details["failures"][:20]
    return StageOutcome(
        "ingest",
        "done",
        summary.n_products,
        summary.n_failed,
        0.0,
        summary.n_chunks_written > 0,
        summary.store,
        details,
    )


def _features(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.features.pipeline import run_with_client

    summary = run_with_client(run.features, client_of(), progress=progress)
    details = summary.as_dict()
    failed = [r for r in details["reasons"] if r["status"] == 2]
    details["reasons"] = details["reasons"][:20]
    return StageOutcome(
        "features",
        "done",
        summary.n_stars,
        len(failed),
        0.0,
        summary.n_chunks_computed > 0,
        summary.out,
        details,
    )


def _train(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.train.pipeline import run_with_client

    summary = run_with_client(run.train, client_of())
    return StageOutcome(
        "train",
        "done",
        summary.n_labelled,
        0,
        0.0,
        True,
        summary.out,
        summary.as_dict(),
    )


def _evaluate(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.train.evaluate import jsonable
    from starskope_dask.train.pipeline import EvaluateConfig, evaluate

    metrics = evaluate(
        EvaluateConfig(
            model=run.pipeline.artefact("model"), period_tolerance=run.train.period_tolerance
        ),
        run.storage,
    )
    keep = ("n", "n_positive", "roc_auc", "average_precision", "threshold", "out", "files")
    return StageOutcome(
        "evaluate",
        "done",
        int(metrics.get("n") or 0),
        0,
        0.0,
        True,
        str(metrics.get("out", "")),
        jsonable({k: metrics.get(k) for k in keep}),
    )


def _predict(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> StageOutcome:
    from starskope_dask.train.pipeline import predict

    out = run.pipeline.artefact("candidates")
    ranked = predict(
        run.pipeline.artefact("model"), run.pipeline.artefact("features"), out, run.storage
    )
    top = ranked.head(5)[["rank", "star", "period", "snr", "score"]].to_dict("records")
    return StageOutcome(
        "predict",
        "done",
        len(ranked),
        0,
        0.0,
        True,
        out,
        {"n_candidates": int(ranked["candidate"].sum()), "top": top},
    )


_STAGE_FUNCTIONS: dict[str, Callable[[RunConfig, Callable[[], Any], bool], StageOutcome]] = {
    "discover": _discover,
    "ingest": _ingest,
    "features": _features,
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
}
assert tuple(_STAGE_FUNCTIONS) == STAGES


# ---------------------------------------------------------------- entry points


def _run(run: RunConfig, client_of: Callable[[], Any], progress: bool) -> RunSummary:
    from starskope_dask.pipeline import store_options_for

    start = time.perf_counter()
    options = store_options_for(run.storage)
    url = run.pipeline.record_url
    record = read_record(url, options)
    outcomes: list[StageOutcome] = []
    stages = run.pipeline.stages
    for stage in stages:
        settings = stage_settings(run, stage)
        output = run.pipeline.artefact(STAGE_OUTPUTS[stage])
        source = STAGE_INPUTS[stage]
        version = input_version(
            record,
            stage,
            stages,
            functools.partial(_artefact_marker, run.pipeline.artefact(source), source, options)
            if source
            else "",
        )
        previous = (record.get("stages") or {}).get(stage) or {}
        if should_skip(record, stage, settings, version) and _exists(
            str(previous.get("output") or output), options
        ):
            logger.info("%s: finished before with these settings on this input; skipped", stage)
            outcomes.append(
                StageOutcome(
                    stage,
                    "skipped",
                    int(previous.get("items", 0)),
                    0,
                    0.0,
                    False,
                    str(previous.get("output", "")),
                    {},
                )
            )
            continue
        if stage in ("discover", "train", "predict"):
            _check_overwrite(output, record, options)
        record = _running_record(record, stage, output)
        _write_record(url, record, options)  # a kill from here on counts as a change
        logger.info("%s: starting", stage)
        began = time.perf_counter()
        outcome = _STAGE_FUNCTIONS[stage](run, client_of, progress)
        outcome = dataclasses.replace(outcome, seconds=round(time.perf_counter() - began, 3))
        logger.info(
            "%s: %d items, %d failures in %.1f s -> %s",
            stage,
            outcome.items,
            outcome.failures,
            outcome.seconds,
            outcome.output,
        )
        record = _updated_record(record, outcome, settings, run.source, version)
        _write_record(url, record, options)  # after every stage: a kill loses one stage
        outcomes.append(outcome)
    summary = RunSummary(url, tuple(outcomes), round(time.perf_counter() - start, 3))
    record = {**record, "last_run": summary.as_dict()}
    _write_record(url, record, options)
    return summary


def run_pipeline_with_client(run: RunConfig, client: Any, *, progress: bool = True) -> RunSummary:
    """Run ``run.pipeline.stages`` on an existing Dask client.

    Parameters
    ----------
    run : RunConfig
        From :func:`~starskope_dask.config.load_run_config`.
    client : distributed.Client
        Where the stages' tasks run.
    progress : bool
        Progress bars (and the dashboard link in the log).

    Returns
    -------
    RunSummary
        Per stage: status, items, failures, seconds; also written to ``WORKDIR/pipeline.json``.

    Raises
    ------
    ConfigError, StoreError, NotAStoreError, and each stage's own errors
        Before anything is written for a config that cannot run; a stage that fails stops the
        run (its record keeps the stages that finished: a rerun resumes there).
    """
    check_run(run)
    return _run(run, lambda: client, progress)


def run_pipeline(run: RunConfig, *, progress: bool = True) -> RunSummary:
    """Run ``run.pipeline.stages`` on a client of its own: the scheduler at
    ``pipeline.scheduler_address`` or ``DASK_SCHEDULER_ADDRESS`` (a DaskJob's runner), a
    Slurm/PBS cluster (``pipeline.cluster``), else a LocalCluster — started only if a stage
    needs it, and closed at the end.
    """
    from starskope_dask.cluster import with_own_client

    check_run(run)  # before any cluster starts
    return with_own_client(run, lambda get_client: _run(run, get_client, progress))
