"""Hyper-parameter search: one Dask task per trial, and a trials table.

dask-ml's adaptive searches (Hyperband, SuccessiveHalving) fail on current dask (dask-ml#1016),
and a trial here is a whole training run (a CNN, a gradient-boosted model) rather than a
scikit-learn ``fit``, so the search is plain: propose parameter sets (:func:`grid`,
:func:`random_search`), run each as one task (``client.map(..., pure=False)``) with its own
seed, gather the results as they finish into a table (:func:`run_trials`), and pick the best by
*validation* ROC-AUC (:func:`best_params`). The test set is never seen here.

A trial function is ``trial_fn(params: dict, seed: int) -> dict`` returning at least
``val_auc`` and ``val_ap`` (plus anything else: extra scalar keys become columns). It must be
picklable (module-level, or a closure cloudpickle can ship) and should load its own data on the
worker (from the features store) rather than close over large arrays.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask.errors import ConfigError, StarskopeError

logger = logging.getLogger(__name__)

TrialFn = Callable[[dict[str, Any], int], Mapping[str, Any]]

COLUMNS = ("trial", "params", "val_auc", "val_ap", "seconds", "worker", "error")
"""The columns every trials table starts with (extra result keys follow)."""

DISTRIBUTIONS = ("log", "uniform", "int", "logint")
"""Kinds of ``(kind, low, high)`` tuples :func:`random_search` samples."""


class NoSuccessfulTrialError(StarskopeError, RuntimeError):
    """Every trial of a search failed (or none returned a finite validation AUC)."""


def run_trials(
    client: Any,
    trial_fn: TrialFn,
    params_list: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Run one Dask task per parameter set and collect a trials table.

    Parameters
    ----------
    client : distributed.Client
        Where the trials run (one task each, spread over the workers by the scheduler).
    trial_fn : callable
        ``trial_fn(params, seed) -> {"val_auc": ..., "val_ap": ..., ...}``.
    params_list : sequence of mapping
        One JSON-serialisable parameter dict per trial.
    seed : int
        Master seed; trial ``i`` gets the ``i``-th seed spawned from it (independent of which
        worker runs it, so a rerun gives the same seeds).
    progress : bool
        Log each trial as it finishes (INFO).

    Returns
    -------
    pandas.DataFrame
        Columns ``trial`` (index in ``params_list``), ``params`` (JSON string, keys sorted),
        ``val_auc``, ``val_ap``, ``seconds`` (time inside ``trial_fn``), ``worker`` (address
        it ran on), ``error`` (``None``, or ``"Type: message"`` for a trial that raised — a
        failing trial never stops the search), then any extra scalar keys the trials returned.
        Sorted by ``val_auc`` descending (failed trials last), then ``trial``.
    """
    from distributed import as_completed

    params_json = [_params_json(p, i) for i, p in enumerate(params_list)]
    seeds = trial_seeds(seed, len(params_json))
    if not params_json:
        return pd.DataFrame(columns=list(COLUMNS))
    token = uuid.uuid4().hex[:8]
    keys = [f"trial-{i}-{token}" for i in range(len(params_json))]
    futures = client.map(
        _run_one,
        [trial_fn] * len(params_json),
        [json.loads(p) for p in params_json],
        seeds,
        key=keys,
        pure=False,
    )
    index_of = {f.key: i for i, f in enumerate(futures)}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for future in as_completed(futures):
        i = index_of[future.key]
        try:
            result = future.result()
        except Exception as exc:  # the task itself died (KilledWorker, cancelled, ...)
            result = {"error": _error_text(exc), "worker": None, "seconds": None}
        rows.append(_row(i, params_json[i], seeds[i], result))
        if progress:
            logger.info(
                "trial %d/%d done (%d finished, %.1f s): val_auc=%s%s",
                i,
                len(params_json),
                len(rows),
                time.perf_counter() - started,
                rows[-1]["val_auc"],
                f" error={rows[-1]['error']}" if rows[-1]["error"] else "",
            )
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in COLUMNS]
    table = table[list(COLUMNS) + extra]
    table = table.sort_values(
        ["val_auc", "trial"], ascending=[False, True], na_position="last"
    ).reset_index(drop=True)
    failed = int(table["error"].notna().sum())
    logger.info(
        "%d trials in %.1f s on %d workers (%d failed); best val_auc %s",
        len(table),
        time.perf_counter() - started,
        table["worker"].nunique(),
        failed,
        table["val_auc"].iloc[0],
    )
    return table


def trial_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 31-bit seeds spawned from ``seed`` (``numpy.random.SeedSequence``)."""
    return [int(s.generate_state(1)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(n)]


def _run_one(trial_fn: TrialFn, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run on a worker: the trial, its time, the worker's address; an exception becomes data."""
    worker = _worker_address()
    started = time.perf_counter()
    try:
        result = trial_fn(dict(params), int(seed))
        if not isinstance(result, Mapping):
            raise TypeError(f"trial function returned {type(result).__name__}, not a mapping")
        out = dict(result)
        if "val_auc" not in out:
            raise KeyError("trial function returned no 'val_auc'")
        out["error"] = None
    except Exception as exc:
        logger.warning("trial %s failed: %s", params, exc, exc_info=True)
        out = {"error": _error_text(exc)}
    out["seconds"] = time.perf_counter() - started
    out["worker"] = worker
    return out


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _row(i: int, params_json: str, seed: int, result: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trial": i,
        "params": params_json,
        "val_auc": _finite_or_none(result.get("val_auc")),
        "val_ap": _finite_or_none(result.get("val_ap")),
        "seconds": result.get("seconds"),
        "worker": result.get("worker"),
        "error": result.get("error"),
        "seed": seed,
    }
    for key, value in result.items():
        if key in row or key in COLUMNS:
            continue
        if isinstance(value, str | int | float | bool | np.integer | np.floating) or value is None:
            row[key] = value.item() if isinstance(value, np.generic) else value
        else:  # lists, dicts (a history), arrays: keep them readable in a Parquet/CSV table
            if hasattr(value, "tolist"):
                value = value.tolist()
            row[key] = json.dumps(value, default=str)
    return row


def _finite_or_none(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _params_json(params: Mapping[str, Any], i: int) -> str:
    try:
        return json.dumps(dict(params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameters of trial {i} are not JSON-serialisable: {exc}") from exc


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a space of choices (keys vary slowest first, in the given order).

    Parameters
    ----------
    space : mapping of name to sequence
        Each value a list of choices (a ``(kind, low, high)`` distribution tuple is refused:
        use :func:`random_search` for those).

    Returns
    -------
    list of dict
    """
    names = list(space)
    choices = []
    for name in names:
        values = space[name]
        if _is_distribution(values):
            raise ConfigError(
                f"grid: {name!r} is a distribution {values!r}; give a list of choices "
                "or use random_search"
            )
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"grid: {name!r} must be a non-empty list of choices, not {values!r}")
        choices.append(list(values))
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def random_search(space: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` parameter sets drawn at random from a space.

    Parameters
    ----------
    space : mapping of name to choices or distribution
        A list of choices (drawn uniformly), or a tuple ``("log", low, high)`` (log-uniform
        float), ``("uniform", low, high)``, ``("int", low, high)`` (uniform integer, both ends
        included) or ``("logint", low, high)`` (log-uniform integer).
    n : int
        How many sets.
    seed : int
        Seed (the same seed gives the same sets).

    Returns
    -------
    list of dict
        Plain Python values (JSON-serialisable).
    """
    if n < 0:
        raise ConfigError(f"random_search: n must be >= 0, got {n}")
    for name, values in space.items():
        _check_dimension(name, values)
    rng = np.random.default_rng(seed)
    return [{name: _draw(rng, values) for name, values in space.items()} for _ in range(n)]


def _is_distribution(values: Any) -> bool:
    return (
        isinstance(values, tuple)
        and len(values) == 3
        and isinstance(values[0], str)
        and values[0] in DISTRIBUTIONS
    )


def _check_dimension(name: str, values: Any) -> None:
    if _is_distribution(values):
        kind, low, high = values
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name!r}: bounds of {values!r} must be numbers") from exc
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ConfigError(f"{name!r}: need finite low <= high, got {values!r}")
        if kind in ("log", "logint") and low <= 0:
            raise ConfigError(f"{name!r}: a log range needs low > 0, got {values!r}")
        return
    if isinstance(values, tuple) and values and isinstance(values[0], str) and len(values) == 3:
        raise ConfigError(
            f"{name!r}: unknown distribution {values[0]!r} (known: {', '.join(DISTRIBUTIONS)}); "
            "give a list for choices"
        )
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ConfigError(f"{name!r} must be a non-empty list of choices or a distribution")


def _draw(rng: np.random.Generator, values: Any) -> Any:
    if _is_distribution(values):
        kind, low, high = values[0], float(values[1]), float(values[2])
        if kind == "uniform":
            return float(rng.uniform(low, high))
        if kind == "log":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if kind == "int":
            return int(rng.integers(math.ceil(low), math.floor(high) + 1))
        value = math.exp(rng.uniform(math.log(low), math.log(high + 1)))  # logint
        return int(min(max(math.floor(value), math.ceil(low)), math.floor(high)))
    choice = values[int(rng.integers(len(values)))]
    return choice.item() if isinstance(choice, np.generic) else choice


def best_params(trials: pd.DataFrame) -> dict[str, Any]:
    """The parameters of the trial with the highest validation ROC-AUC (ties: lowest trial).

    Raises
    ------
    NoSuccessfulTrialError
        No trial succeeded with a finite ``val_auc`` (the message lists the first errors).
    """
    ok = trials[trials["error"].isna() & trials["val_auc"].notna()]
    if ok.empty:
        errors = [str(e) for e in trials["error"].dropna().unique()[:3]]
        raise NoSuccessfulTrialError(
            f"none of {len(trials)} trials succeeded"
            + (f"; first errors: {'; '.join(errors)}" if errors else "")
        )
    best = ok.sort_values(["val_auc", "trial"], ascending=[False, True]).iloc[0]
    params: dict[str, Any] = json.loads(best["params"])
    return params
