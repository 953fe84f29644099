"""Configuration: frozen, validated dataclasses with defaults from YAML and ``dask.config``.

Defaults live in ``starskope.yaml`` beside this module and are merged into ``dask.config``
under the ``starskope`` key, so every Dask mechanism for overriding applies: a YAML file in
``~/.config/dask``, ``dask.config.set``, or environment variables such as
``DASK_STARSKOPE__INGEST__STAR_CHUNK=128``. ``load_config`` builds the dataclasses from that
tree (plus an optional user YAML file) and validates them without side effects; unknown keys
get a "did you mean" suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import dask.config
import yaml

from starskope_dask.errors import ConfigError

DEFAULTS_PATH = Path(__file__).with_name("starskope.yaml")

FluxKind = Literal["pdcsap", "sap"]
QUALITY_PRESETS = ("none", "default", "hard", "hardest")


def _defaults() -> dict[str, Any]:
    with DEFAULTS_PATH.open() as fh:
        tree: dict[str, Any] = yaml.safe_load(fh)["starskope"]
    return tree


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """How to reach object stores (S3).

    Attributes
    ----------
    anon : bool
        Anonymous access (the public ``stpubdata`` bucket needs no credentials).
    endpoint_url : str or None
        S3 endpoint; ``None`` uses ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or AWS itself.
    region : str
        AWS region of the bucket.
    """

    anon: bool = True
    endpoint_url: str | None = None
    region: str = "us-east-1"

    def storage_options(self) -> dict[str, Any]:
        """Return fsspec ``storage_options`` for ``s3://`` URLs."""
        endpoint = (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        options: dict[str, Any] = {"anon": self.anon}
        client_kwargs: dict[str, Any] = {"region_name": self.region}
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        options["client_kwargs"] = client_kwargs
        return options


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """How a product becomes a light curve.

    Attributes
    ----------
    flux : {"pdcsap", "sap"}
        Which flux to take from pipeline products.
    quality_bitmask : str or int
        ``"none"``, ``"default"``, ``"hard"``, ``"hardest"`` (lightkurve's meanings) or an int.
    column_map : mapping or None
        Column names for products the reader does not know, keys ``time``, ``flux``,
        ``flux_err`` and ``quality``.
    """

    flux: FluxKind = "pdcsap"
    quality_bitmask: str | int = "default"
    column_map: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.flux not in ("pdcsap", "sap"):
            raise ConfigError(f"read.flux must be 'pdcsap' or 'sap', not {self.flux!r}")
        mask = self.quality_bitmask
        if isinstance(mask, str) and mask not in QUALITY_PRESETS:
            raise ConfigError(
                f"read.quality_bitmask {mask!r} is not one of {QUALITY_PRESETS} or an integer"
                + _suggest(mask, QUALITY_PRESETS)
            )
        if isinstance(mask, int) and mask < 0:
            raise ConfigError(f"read.quality_bitmask must be >= 0, not {mask}")
        if self.column_map is not None:
            unknown = set(self.column_map) - {"time", "flux", "flux_err", "quality"}
            if unknown or "time" not in self.column_map or "flux" not in self.column_map:
                raise ConfigError(
                    "read.column_map needs keys 'time' and 'flux' (optionally 'flux_err', "
                    f"'quality'); got {sorted(self.column_map)}"
                )


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The one global BJD_TDB time grid shared by every star and mission.

    Attributes
    ----------
    start_bjd, stop_bjd : float
        Grid span in BJD_TDB days (stop exclusive).
    cadence_days : float
        Grid step; Kepler long cadence by default.
    """

    start_bjd: float = 2454950.0
    stop_bjd: float = 2461500.0
    cadence_days: float = 0.02043359821692

    def __post_init__(self) -> None:
        if not self.stop_bjd > self.start_bjd:
            raise ConfigError(
                f"grid.stop_bjd ({self.stop_bjd}) must be after grid.start_bjd ({self.start_bjd})"
            )
        if not 0 < self.cadence_days < 1:
            raise ConfigError(f"grid.cadence_days must be in (0, 1) days, not {self.cadence_days}")

    @property
    def size(self) -> int:
        """Number of grid steps."""
        return int((self.stop_bjd - self.start_bjd) // self.cadence_days)


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """Everything an ingest run needs.

    Attributes
    ----------
    manifest : str
        URL of the Parquet manifest (from ``starskope discover``).
    store : str
        URL of the Zarr store (local path or ``s3://``).
    star_chunk, time_chunk : int
        Zarr chunk shape along ``star`` and ``time``; one write task owns whole star chunks.
    match_radius_arcsec : float
        Cross-match tolerance between missions.
    fetch_concurrency : int
        Objects fetched at once inside one partition.
    n_workers, threads_per_worker : int
        LocalCluster shape, when no scheduler address is given.
    memory_limit : str
        Memory limit per LocalCluster worker.
    scheduler_address : str or None
        Existing scheduler; falls back to ``DASK_SCHEDULER_ADDRESS``.
    """

    manifest: str = ""
    store: str = ""
    star_chunk: int = 64
    time_chunk: int = 4096
    match_radius_arcsec: float = 2.0
    fetch_concurrency: int = 32
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "2GiB"
    scheduler_address: str | None = None
    read: ReadConfig = dataclasses.field(default_factory=ReadConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        for name in ("star_chunk", "time_chunk", "fetch_concurrency", "n_workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ingest.{name} must be a positive integer, not {value!r}")
        if not 0 < self.match_radius_arcsec <= 60:
            raise ConfigError(
                f"ingest.match_radius_arcsec must be in (0, 60], not {self.match_radius_arcsec}"
            )

    @property
    def resolved_scheduler_address(self) -> str | None:
        """Scheduler address from the config or ``DASK_SCHEDULER_ADDRESS`` (DaskJob sets it)."""
        return self.scheduler_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


_T = TypeVar("_T")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _build(cls: type[_T], section: str, values: Mapping[str, Any], **extra: Any) -> _T:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {section!r} must be a mapping, not {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in values if key not in names]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"unknown config key {section}.{key}" + _suggest(key, names))
    try:
        return cls(**{**values, **extra})
    except TypeError as exc:
        raise ConfigError(f"config section {section!r}: {exc}") from exc


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def config_tree(config_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the merged config tree: package defaults < dask.config/env < ``config_file``.

    Parameters
    ----------
    config_file : path, optional
        A YAML file whose top level is either the ``starskope`` mapping or contains it.

    Returns
    -------
    dict
        The ``starskope`` tree.
    """
    tree = _defaults()
    from_dask = dask.config.get("starskope", default=None)
    if isinstance(from_dask, Mapping):
        tree = _merge(tree, from_dask)
    # dask.config reads DASK_* variables when it is imported; read them again so variables
    # set later in the process (tests, job wrappers) count too.
    env_tree = dask.config.collect_env(dict(os.environ)).get("starskope")
    if isinstance(env_tree, Mapping):
        tree = _merge(tree, env_tree)
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(
                f"config file {path} must hold a mapping, not {type(loaded).__name__}"
            )
        loaded = loaded.get("starskope", loaded)
        unknown = [k for k in loaded if k not in tree]
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown section {unknown[0]!r}" + _suggest(unknown[0], tree)
            )
        tree = _merge(tree, loaded)
    return tree


def load_read_config(tree: Mapping[str, Any] | None = None) -> ReadConfig:
    """Build the :class:`ReadConfig` from a config tree (defaults when ``None``)."""
    tree = config_tree() if tree is None else tree
    return _build(ReadConfig, "read", tree.get("read", {}))


def load_storage_config(tree: Mapping[str, Any] | None = None) -> StorageConfig:
    """Build the :class:`StorageConfig` from a config tree (defaults when ``None``)."""
    tree = config_tree() if tree is None else tree
    return _build(StorageConfig, "storage", tree.get("storage", {}))


def load_ingest_config(
    manifest: str,
    store: str,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> IngestConfig:
    """Build a validated :class:`IngestConfig`.

    Parameters
    ----------
    manifest, store : str
        Manifest and store URLs.
    config_file : path, optional
        User YAML merged over the defaults.
    **overrides
        Values for ``ingest.*`` keys that win over everything (``None`` values are ignored).

    Returns
    -------
    IngestConfig
    """
    tree = config_tree(config_file)
    ingest = dict(tree.get("ingest", {}))
    ingest.update({k: v for k, v in overrides.items() if v is not None})
    return _build(
        IngestConfig,
        "ingest",
        ingest,
        manifest=manifest,
        store=store,
        read=load_read_config(tree),
        grid=_build(GridConfig, "grid", tree.get("grid", {})),
        storage=load_storage_config(tree),
    )
