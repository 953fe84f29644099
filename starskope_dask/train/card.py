"""The model card (``model.json``) and the checks that features fit a saved model.

A model folder (local or ``s3://``) holds the model (``model.keras`` or ``model.joblib``), the
split (``split.parquet``), the trials of a search (``trials.parquet``), the card and, once
``evaluate`` has run, ``evaluation/`` (``metrics.json`` and the PNGs). The card records what a
user needs to trust and reuse the model: the data and label sources, the split seed and the
star counts per class and split, the hyper-parameters, the scalers, the features' grid, the
library versions, the threshold chosen on the validation split and the metrics.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from starskope_dask import __version__
from starskope_dask.errors import ModelError, ModelMismatchError
from starskope_dask.store import read_bytes, write_bytes
from starskope_dask.train.evaluate import jsonable

logger = logging.getLogger(__name__)

CARD_NAME = "model.json"
CARD_FORMAT = "starskope-model/1"
#: Features parameters that fix what the model's inputs mean: a model trained on views of
#: other bins, another local-view width or spectrograms of another grid cannot score them.
GRID_PARAMETERS = (
    "global_bins",
    "local_bins",
    "local_half_width_durations",
    "nperseg",
    "spectrogram_time",
    "spectrogram_freq",
    "detrend_window_days",
)
#: Parameters that only change which signals are found (differences are logged, not refused).
_VERSIONED = ("numpy", "scipy", "pandas", "dask", "distributed", "xarray", "zarr", "scikit-learn")


def model_file(url: str, name: str) -> str:
    """URL of file ``name`` inside the model folder ``url``."""
    return f"{url.rstrip('/')}/{name}"


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries the model depends on (for the card)."""
    versions = {"starskope_dask": __version__}
    for name in (*_VERSIONED, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def features_grid(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The grid facts of a features store (from its attrs) a model depends on."""
    parameters = features_parameters(attrs)
    grid = {name: parameters.get(name) for name in GRID_PARAMETERS}
    cadence = attrs.get("cube_grid_cadence_days")
    grid["cube_grid_cadence_days"] = None if cadence is None else float(cadence)
    return grid


#: Differences a mismatch error lists before it counts the rest.
_MOST_PROBLEMS = 6


def check_features(card: Mapping[str, Any], dataset: Any, features_url: str) -> None:
    """Refuse features whose schema or grid differ from the model's.

    Raises
    ------
    ModelMismatchError
        Naming each difference (variable missing, dim size, grid parameter) and what to do.
    """
    problems = []
    for name, size in card["features"]["dims"].items():
        have = dataset.sizes.get(name)
        if have is None:
            problems.append(f"dim {name} is missing (the model has {size})")
        elif name != "signal" and int(have) != int(size):
            problems.append(f"dim {name} has {have} (the model's has {size})")
    for name in card["features"]["variables"]:
        if name not in dataset.variables:
            problems.append(f"variable {name} is missing")
    grid = features_grid(dataset.attrs)
    for name, value in card["features"]["grid"].items():
        theirs = grid.get(name)
        if value is None or theirs is None:
            continue
        if isinstance(value, float) or isinstance(theirs, float):
            same = math.isclose(float(value), float(theirs), rel_tol=1e-9)
        else:
            same = value == theirs
        if not same:
            problems.append(f"{name} is {theirs} (the model's is {value})")
    if len(problems) > _MOST_PROBLEMS:
        problems = [*problems[:_MOST_PROBLEMS], f"and {len(problems) - _MOST_PROBLEMS} more"]
    if problems:
        raise ModelMismatchError(
            features_url,
            f"these features do not fit the model: {'; '.join(problems)}",
            "compute the features with the model's parameters (its card lists them under "
            "features.grid) or train a model on these features",
        )
    theirs = features_parameters(dataset.attrs)
    mine = card["features"].get("parameters") or {}
    differ = sorted(
        k for k in set(mine) | set(theirs) if k not in _NOT_SEARCH and mine.get(k) != theirs.get(k)
    )
    if differ:
        logger.warning(
            "features %s were computed with other search parameters than the model's (%s): "
            "the grid agrees, so they are scored, but the signals found may differ in kind "
            "from the ones the model learnt",
            features_url,
            ", ".join(f"{k} {theirs.get(k)} vs {mine.get(k)}" for k in differ),
        )


#: Features parameters that do not change which signals are found and how they look.
_NOT_SEARCH = frozenset({"stellar", "ephemerides"})


def features_parameters(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The features parameters a store records (its ``parameters`` attr), or ``{}``."""
    try:
        parameters = json.loads(attrs.get("parameters", "{}"))
    except (TypeError, ValueError):
        return {}
    return parameters if isinstance(parameters, dict) else {}


def new_card(**sections: Any) -> dict[str, Any]:
    """A card with the format tag, the creation time and the library versions."""
    return {
        "format": CARD_FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **sections,
    }


def write_card(url: str, card: Mapping[str, Any], storage_options: Mapping[str, Any]) -> None:
    """Write ``model.json`` into the model folder (whole or not at all)."""
    text = json.dumps(jsonable(card), indent=2, sort_keys=False)
    write_bytes(model_file(url, CARD_NAME), text.encode(), storage_options)


def read_card(url: str, storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a model's card.

    Raises
    ------
    ModelError
        If there is no model at ``url``, or its card is damaged or of another format.
    """
    try:
        data = read_bytes(model_file(url, CARD_NAME), storage_options)
    except OSError as exc:
        raise ModelError(f"cannot read the model at {url}: {exc}") from exc
    if data is None:
        raise ModelError(
            f"no starskope model at {url} (no {CARD_NAME}); train one with `starskope train`"
        )
    try:
        card = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"the model card {model_file(url, CARD_NAME)} is damaged: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelError(
            f"{model_file(url, CARD_NAME)} is not a {CARD_FORMAT} model card (format {found!r})"
        )
    for key in ("model", "features", "labels", "split", "scaler"):
        if key not in card:
            raise ModelError(f"the model card {model_file(url, CARD_NAME)} lacks {key!r}")
    return card
