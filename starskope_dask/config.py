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
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import dask.config
import yaml
from dask.utils import parse_bytes

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
    """How to reach object stores (S3) and web servers (HTTP(S)), with timeouts and retries.

    Attributes
    ----------
    anon : bool
        Anonymous access (the public ``stpubdata`` bucket needs no credentials).
    endpoint_url : str or None
        S3 endpoint; ``None`` uses ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or AWS itself.
    region : str
        AWS region of the bucket.
    connect_timeout_s : float
        Seconds to wait for a connection to a server (S3 or HTTP).
    read_timeout_s : float
        Seconds to wait for the next bytes of an answer; a server that accepts the connection
        and never answers fails after this long (per try).
    retries : int
        Further tries of a read that failed for a transient reason (timeout, connection
        refused or reset, HTTP 5xx), with exponential backoff.
    retry_backoff_s : float
        Wait before the first retry; doubled for each further one (with jitter).
    """

    anon: bool = True
    endpoint_url: str | None = None
    region: str = "us-east-1"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 3
    retry_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.anon, bool):
            raise ConfigError(f"storage.anon must be true or false, not {self.anon!r}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value <= 3600:
                raise ConfigError(f"storage.{name} must be in (0, 3600] seconds, not {value!r}")
        if not _is_number(self.retry_backoff_s) or not 0 <= self.retry_backoff_s <= 60:
            raise ConfigError(
                f"storage.retry_backoff_s must be in [0, 60] seconds, not {self.retry_backoff_s!r}"
            )
        if not _is_int(self.retries) or not 0 <= self.retries <= 20:
            raise ConfigError(
                f"storage.retries must be an integer in [0, 20], not {self.retries!r}"
            )
        if self.endpoint_url is not None and not (
            isinstance(self.endpoint_url, str)
            and self.endpoint_url.startswith(("http://", "https://"))
        ):
            raise ConfigError(
                f"storage.endpoint_url must be an http(s):// URL, not {self.endpoint_url!r}"
            )

    def resolved_endpoint(self) -> str | None:
        """The S3 endpoint: configured, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def storage_options(self) -> dict[str, Any]:
        """Return fsspec ``storage_options`` for ``s3://`` URLs."""
        options: dict[str, Any] = {"anon": self.anon}
        client_kwargs: dict[str, Any] = {"region_name": self.region}
        endpoint = self.resolved_endpoint()
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        options["client_kwargs"] = client_kwargs
        options["config_kwargs"] = {
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
            "retries": {"max_attempts": 1 + self.retries, "mode": "standard"},
        }
        return options

    def http_options(self) -> dict[str, Any]:
        """Return fsspec ``storage_options`` for ``http(s)://`` URLs (aiohttp timeouts)."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout_s, sock_read=self.read_timeout_s
        )
        return {"client_kwargs": {"timeout": timeout}}

    def options_for(self, protocol: str) -> dict[str, Any]:
        """Fsspec options for a URL protocol (``s3``, ``http``, ``https``, ``file``)."""
        if protocol == "s3":
            return self.storage_options()
        if protocol in ("http", "https"):
            return self.http_options()
        return {}

    def options_for_url(self, url: str) -> dict[str, Any]:
        """Fsspec options for ``url`` (by its protocol; local paths get none)."""
        from starskope_dask.fetch import url_protocol

        return self.options_for(url_protocol(url))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Largest integer quality bitmask: the QUALITY columns are 32-bit signed integers.
MAX_QUALITY_BITMASK = 2**31 - 1
#: Most grid steps: the cube stores time as int32 step numbers.
MAX_GRID_STEPS = 2**31 - 1
#: Largest Zarr chunk of float32 values (star_chunk x time_chunk x 4 bytes).
MAX_CHUNK_BYTES = 2**31 - 1


def _show(value: Any) -> str:
    """``repr`` of a bad value, short, with its type where the repr hides it."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, bool):
        return f"{text} (a boolean)"
    if isinstance(value, float):
        return f"{text} (a float)"
    if not isinstance(value, str | int | type(None)):
        return f"{text} (a {type(value).__name__})"
    return text


def _invalid(key: str, expected: str, value: Any, hint: str = "") -> ConfigError:
    """The error for a bad value: names the dotted key, what is expected and what was given."""
    return ConfigError(f"{key} must be {expected}, not {_show(value)}{hint}")


def _integer(value: Any) -> bool:
    """An integer (Python or NumPy), not a boolean and not a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    """A finite real number (an integer or float), not a boolean, not NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False


def _check_int(key: str, value: Any, low: int, high: int) -> None:
    if not _integer(value) or not low <= value <= high:
        raise _invalid(key, f"an integer in [{low}, {high}]", value)


def _check_real(key: str, value: Any, what: str) -> float:
    if not _real(value):
        raise _invalid(key, f"a finite number ({what})", value)
    return float(value)


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """How a product becomes a light curve.

    Attributes
    ----------
    flux : {"pdcsap", "sap"}
        Which flux to take from pipeline products.
    quality_bitmask : str or int
        ``"none"``, ``"default"``, ``"hard"``, ``"hardest"`` (lightkurve's meanings) or an
        integer in ``[0, 2**31 - 1]``.
    column_map : mapping or None
        Column names for products the reader does not know, keys ``time``, ``flux``,
        ``flux_err`` and ``quality``.
    max_product_bytes : int
        Largest product accepted, as downloaded and after decompression: a ``.gz`` that
        inflates past it (a decompression bomb) or a larger file is refused as corrupt
        without ever being held in memory whole. The largest real light curves (TESS 20-s)
        are about 30 MB.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range (the message names the key).
    """

    flux: FluxKind = "pdcsap"
    quality_bitmask: str | int = "default"
    column_map: Mapping[str, str] | None = None
    max_product_bytes: int = 512 * 2**20

    def __post_init__(self) -> None:
        if not isinstance(self.flux, str) or self.flux not in ("pdcsap", "sap"):
            text = self.flux.lower() if isinstance(self.flux, str) else ""
            hint = _suggest(text, ("pdcsap", "sap")) if text else ""
            raise _invalid("read.flux", "'pdcsap' or 'sap'", self.flux, hint)
        mask = self.quality_bitmask
        if isinstance(mask, str):
            if mask not in QUALITY_PRESETS:
                raise ConfigError(
                    f"read.quality_bitmask {mask!r} is not one of {QUALITY_PRESETS} or an integer"
                    + _suggest(mask, QUALITY_PRESETS)
                )
        elif not _integer(mask) or not 0 <= mask <= MAX_QUALITY_BITMASK:
            raise _invalid(
                "read.quality_bitmask",
                f"one of {QUALITY_PRESETS} or an integer in [0, 2**31 - 1]",
                mask,
            )
        if not _is_int(self.max_product_bytes) or not 2880 <= self.max_product_bytes <= 2**40:
            raise ConfigError(
                "read.max_product_bytes must be an integer number of bytes in [2880, 2**40], "
                f"not {self.max_product_bytes!r}"
            )
        if self.column_map is not None:
            expected = (
                "a mapping with keys 'time' and 'flux' (optionally 'flux_err', 'quality') to "
                "column names, e.g. {time: TIME, flux: CORR_FLUX}"
            )
            if not isinstance(self.column_map, Mapping):
                raise _invalid("read.column_map", expected, self.column_map)
            keys = list(self.column_map)
            unknown = set(keys) - {"time", "flux", "flux_err", "quality"}
            if unknown or "time" not in keys or "flux" not in keys:
                raise ConfigError(
                    "read.column_map needs keys 'time' and 'flux' (optionally 'flux_err', "
                    f"'quality'); got {sorted(map(str, keys))}"
                )
            for key, column in self.column_map.items():
                if not isinstance(column, str) or not column.strip():
                    raise _invalid(f"read.column_map.{key}", "a column name (a string)", column)


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The one global BJD_TDB time grid shared by every star and mission.

    Attributes
    ----------
    start_bjd, stop_bjd : float
        Grid span in BJD_TDB days (stop exclusive), finite.
    cadence_days : float
        Grid step in ``(0, 1)`` days; Kepler long cadence by default. The grid holds at most
        ``MAX_GRID_STEPS`` steps.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range (the message names the key).
    """

    start_bjd: float = 2454950.0
    stop_bjd: float = 2461500.0
    cadence_days: float = 0.02043359821692

    def __post_init__(self) -> None:
        start = _check_real("grid.start_bjd", self.start_bjd, "BJD_TDB days")
        stop = _check_real("grid.stop_bjd", self.stop_bjd, "BJD_TDB days")
        cadence = _check_real("grid.cadence_days", self.cadence_days, "days")
        for name, value in (("start_bjd", start), ("stop_bjd", stop), ("cadence_days", cadence)):
            object.__setattr__(self, name, value)  # ints from YAML become floats
        if not stop > start:
            raise ConfigError(f"grid.stop_bjd ({stop}) must be after grid.start_bjd ({start})")
        if not 0 < cadence < 1:
            raise _invalid("grid.cadence_days", "in (0, 1) days", self.cadence_days)
        steps = (stop - start) // cadence
        if not 1 <= steps <= MAX_GRID_STEPS:
            raise ConfigError(
                f"grid.cadence_days: the grid from grid.start_bjd {start} to grid.stop_bjd {stop} "
                f"in steps of {cadence} days has {steps:.0f} steps; it must have 1 to "
                f"{MAX_GRID_STEPS} (widen the span or change the cadence)"
            )

    @property
    def size(self) -> int:
        """Number of grid steps."""
        return int((self.stop_bjd - self.start_bjd) // self.cadence_days)


_INGEST_INT_RANGES = {
    "star_chunk": (1, 65536),
    "time_chunk": (1, 2**24),
    "fetch_concurrency": (1, 1024),
}


class _RunsOnACluster:
    """What the stages' configs share: where their cluster is (see ``cluster.ClusterSpec``)."""

    scheduler_address: str | None

    @property
    def resolved_scheduler_address(self) -> str | None:
        """Scheduler address from the config or ``DASK_SCHEDULER_ADDRESS`` (DaskJob sets it)."""
        return scheduler_address(self.scheduler_address)


@dataclasses.dataclass(frozen=True)
class IngestConfig(_RunsOnACluster):
    """Everything an ingest run needs.

    Attributes
    ----------
    manifest : str
        URL of the Parquet manifest (from ``starskope discover``).
    store : str
        URL of the Zarr store (local path or ``s3://``).
    star_chunk, time_chunk : int
        Zarr chunk shape along ``star`` (1 to 65536) and ``time`` (1 to 2**24); one write
        task owns whole star chunks, and one chunk of float32 stays under 2 GiB.
    match_radius_arcsec : float
        Cross-match tolerance between missions, in ``(0, 60]``.
    fetch_concurrency : int
        Objects fetched at once inside one partition (1 to 1024).
    n_workers, threads_per_worker : int
        LocalCluster shape (1 to 1024 each), when no scheduler address is given.
    memory_limit : str or int
        Memory limit per LocalCluster worker: bytes, a size such as ``"2GiB"``, or ``"auto"``.
    scheduler_address : str or None
        Existing scheduler; falls back to ``DASK_SCHEDULER_ADDRESS``.
    retry_failed : bool
        Read every product that failed in an earlier run again. Without it a rerun retries
        only transient failures (``FetchError``: timeouts, servers down); a product that is
        corrupt stays failed until the manifest or this flag says otherwise.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range (the message names the key).
    """

    manifest: str = ""
    store: str = ""
    star_chunk: int = 64
    time_chunk: int = 4096
    match_radius_arcsec: float = 2.0
    fetch_concurrency: int = 32
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int = "2GiB"
    scheduler_address: str | None = None
    retry_failed: bool = False
    read: ReadConfig = dataclasses.field(default_factory=ReadConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        for name in ("manifest", "store"):
            if not isinstance(getattr(self, name), str):
                raise _invalid(f"ingest.{name}", "a URL or path (a string)", getattr(self, name))
        for name, (low, high) in _INGEST_INT_RANGES.items():
            _check_int(f"ingest.{name}", getattr(self, name), low, high)
        chunk_bytes = 4 * self.star_chunk * self.time_chunk
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise ConfigError(
                f"ingest.star_chunk x ingest.time_chunk ({self.star_chunk} x {self.time_chunk}) "
                f"makes Zarr chunks of {chunk_bytes / 2**30:.1f} GiB; keep them under 2 GiB"
            )
        radius = _check_real("ingest.match_radius_arcsec", self.match_radius_arcsec, "arcsec")
        if not 0 < radius <= 60:
            raise _invalid("ingest.match_radius_arcsec", "in (0, 60] arcsec", radius)
        object.__setattr__(self, "match_radius_arcsec", radius)
        _check_cluster_fields("ingest", self)
        if not isinstance(self.retry_failed, bool):
            raise _invalid("ingest.retry_failed", "true or false", self.retry_failed)
        for name, cls in (("read", ReadConfig), ("grid", GridConfig), ("storage", StorageConfig)):
            if not isinstance(getattr(self, name), cls):
                raise _invalid(f"ingest.{name}", f"a {cls.__name__}", getattr(self, name))


#: Integer keys of ``features`` and their ranges.
_FEATURES_INT_RANGES = {
    "max_signals": (1, 10),
    "oversample": (1, 10),
    "nperseg": (16, 65536),
    "spectrogram_time": (1, 1024),
    "spectrogram_freq": (2, 4096),
    "global_bins": (11, 100001),
    "local_bins": (11, 10001),
    "min_points": (10, 10**7),
}
#: Real-valued keys of ``features`` and their open/closed ranges (low, high).
_FEATURES_REAL_RANGES = {
    "detrend_window_days": (0.05, 30.0),
    "long_detrend_window_days": (0.0, 30.0),
    "long_period_min_days": (0.1, 10000.0),
    "edge_days": (0.0, 10.0),
    "max_gap_days": (0.01, 100.0),
    "clip_sigma": (1.0, 100.0),
    "min_period_days": (0.1, 1000.0),
    "max_period_days": (0.2, 10000.0),
    "snr_threshold": (0.0, 1000.0),
    "sde_threshold": (0.0, 1000.0),
    "local_half_width_durations": (1.0, 50.0),
}


@dataclasses.dataclass(frozen=True)
class FeaturesConfig(_RunsOnACluster):
    """Everything a features run needs: the cube, the output, the science parameters.

    Attributes
    ----------
    store : str
        URL of the ingest cube (local path or ``s3://``).
    out : str
        URL of the features store to write (Zarr v3, local or ``s3://``).
    stars : tuple of str
        Only these stars (``"12"`` a star index, ``"kic:10666592"``, ``"tic:424865156"``,
        ``"epic:201367065"``); empty: every star.
    detrend_window_days : float
        Width of the biweight detrending window (days).
    long_detrend_window_days, long_period_min_days : float
        Periods from ``long_period_min_days`` up are searched again on flux detrended with
        this wider window (long transits lose depth to a short one); 0 turns it off.
    edge_days : float
        Points this close to a segment's start or end are left out of the search and the
        signals' measurement (ramps after gaps, detrending edges).
    max_gap_days : float
        A longer gap starts a new segment (detrended and searched on its own).
    clip_sigma : float
        Upward outliers beyond this many robust sigmas are clipped.
    min_period_days, max_period_days : float
        Period range of the transit search (the upper end is also limited by the data:
        at least two transits must fall in it).
    max_signals : int
        Most transit signals per star (search, mask, search again).
    snr_threshold : float
        Signals below this SNR are not reported.
    sde_threshold : float
        Nor those whose periodogram peak stands out less than this (signal detection
        efficiency): red noise and systematics make peaks of high SNR but low SDE.
    oversample : int
        Oversampling of the optimal (Ofir 2014) period grid.
    nperseg : int
        Grid steps per power-spectrum window (512 ≈ 10.5 d at Kepler long cadence).
    spectrogram_time, spectrogram_freq : int
        Shape of each star's spectrogram (windows × frequency bands).
    global_bins, local_bins : int
        Bins of the folded global and local views (AstroNet: 2001 and 201).
    local_half_width_durations : float
        The local view spans ± this many transit durations.
    min_points : int
        A star with fewer observed grid steps gets NaN features and a reason.
    stellar : str
        Source of stellar properties: ``"mast"`` (the TIC via astroquery, cached), ``"none"``,
        or the URL of a catalogue table (Parquet/CSV with TIC-named columns, as the simulator
        writes at ``catalog/tic.parquet``).
    ephemerides : str
        URL of a table (CSV or Parquet) of ephemerides to fold at instead of searching: a
        star column (``star``, ``tic``, ``kic`` or ``epic``) and ``period``, ``t0``
        (BJD_TDB) and ``duration`` (days); the stars it names get those signals, measured.
    n_workers, threads_per_worker, memory_limit, scheduler_address
        The cluster, as for ingest.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range (the message names the key).
    """

    store: str = ""
    out: str = ""
    stars: tuple[str, ...] = ()
    detrend_window_days: float = 0.75
    long_detrend_window_days: float = 0.0
    long_period_min_days: float = 20.0
    edge_days: float = 0.0
    max_gap_days: float = 0.5
    clip_sigma: float = 3.0
    min_period_days: float = 0.5
    max_period_days: float = 500.0
    max_signals: int = 3
    snr_threshold: float = 7.1
    sde_threshold: float = 5.0
    oversample: int = 3
    nperseg: int = 512
    spectrogram_time: int = 32
    spectrogram_freq: int = 64
    global_bins: int = 2001
    local_bins: int = 201
    local_half_width_durations: float = 4.0
    min_points: int = 100
    stellar: str = "mast"
    ephemerides: str = ""
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int = "2GiB"
    scheduler_address: str | None = None
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        for name in ("store", "out", "stellar", "ephemerides"):
            if not isinstance(getattr(self, name), str):
                raise _invalid(f"features.{name}", "a URL or path (a string)", getattr(self, name))
        stars = self.stars
        if isinstance(stars, str | int):
            stars = (stars,)
        if not isinstance(stars, Sequence) or not all(
            isinstance(s, str) or _integer(s) for s in stars
        ):
            raise _invalid(
                "features.stars", "a list of star indices or IDs such as 'tic:424865156'", stars
            )
        object.__setattr__(self, "stars", tuple(str(s).strip() for s in stars))
        _check_ranges("features", self, _FEATURES_INT_RANGES, _FEATURES_REAL_RANGES)
        if self.max_period_days <= self.min_period_days:
            raise ConfigError(
                f"features.max_period_days ({self.max_period_days}) must be above "
                f"features.min_period_days ({self.min_period_days})"
            )
        if self.local_bins % 2 == 0 or self.global_bins % 2 == 0:
            raise ConfigError(
                "features.global_bins and features.local_bins must be odd (a centre bin at the "
                f"transit), not {self.global_bins} and {self.local_bins}"
            )
        _check_cluster_fields("features", self)
        if not isinstance(self.storage, StorageConfig):
            raise _invalid("features.storage", "a StorageConfig", self.storage)

    def science_parameters(self) -> dict[str, Any]:
        """The parameters that decide the features' values (recorded in the store's attrs;
        a run with different ones recomputes every star).
        """
        skip = {"store", "out", "stars", *_RUN_KEYS}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


#: Keys that say where and how a stage runs, not what it computes.
_RUN_KEYS = frozenset(
    {"n_workers", "threads_per_worker", "memory_limit", "scheduler_address", "storage"}
)


def scheduler_address(configured: str | None) -> str | None:
    """The scheduler address configured, else ``DASK_SCHEDULER_ADDRESS`` (a DaskJob sets it)."""
    return configured or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def _check_ranges(
    section: str,
    config: Any,
    int_ranges: Mapping[str, tuple[int, int]],
    real_ranges: Mapping[str, tuple[float, float]],
) -> None:
    """Check a section's integer and real keys against their ranges (reals are stored as
    ``float``).
    """
    for name, (low, high) in int_ranges.items():
        _check_int(f"{section}.{name}", getattr(config, name), low, high)
    for name, (lower, upper) in real_ranges.items():
        value = _check_real(f"{section}.{name}", getattr(config, name), "")
        if not lower <= value <= upper:
            raise _invalid(f"{section}.{name}", f"in [{lower}, {upper}]", getattr(config, name))
        object.__setattr__(config, name, value)


def _check_memory_limit(key: str, value: Any) -> None:
    expected = "a positive number of bytes, a size such as '2GiB', or 'auto'"
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return
        try:
            size = parse_bytes(value)
        except (ValueError, TypeError):
            raise _invalid(key, expected, value) from None
    elif _integer(value):
        size = int(value)
    else:
        raise _invalid(key, expected, value)
    if size <= 0:
        raise _invalid(key, expected, value)


def _check_cluster_fields(section: str, config: Any) -> None:
    """Validate the cluster keys a stage shares (``n_workers``, ``threads_per_worker``,
    ``memory_limit``, ``scheduler_address``).
    """
    for name in ("n_workers", "threads_per_worker"):
        _check_int(f"{section}.{name}", getattr(config, name), 1, 1024)
    _check_memory_limit(f"{section}.memory_limit", config.memory_limit)
    address = config.scheduler_address
    if address is not None and (
        not isinstance(address, str) or not address.strip() or len(address.split()) != 1
    ):
        raise _invalid(
            f"{section}.scheduler_address",
            "null or a scheduler address such as 'tcp://10.0.0.5:8786'",
            address,
        )


#: Model kinds ``train`` builds.
MODEL_KINDS = ("cnn", "spectrogram-cnn", "gbt", "logistic")
#: Unsupervised spectrogram features the scalar models can add.
UNSUPERVISED_KINDS = ("none", "rbm", "autoencoder")
_TRAIN_INT_RANGES = {
    "search": (0, 10000),
    "seed": (0, 2**31 - 1),
    "epochs": (1, 10000),
    "batch_size": (1, 65536),
    "patience": (1, 1000),
    "filters": (1, 1024),
    "dense_units": (1, 8192),
    "gbt_max_iter": (1, 100000),
    "gbt_max_leaf_nodes": (2, 4096),
    "latent_dim": (1, 1024),
}
_TRAIN_REAL_RANGES = {
    "val_fraction": (0.01, 0.5),
    "test_fraction": (0.01, 0.5),
    "learning_rate": (1e-6, 1.0),
    "dropout": (0.0, 0.9),
    "l2": (0.0, 1.0),
    "gbt_learning_rate": (1e-4, 1.0),
    "logistic_c": (1e-6, 1e6),
    "period_tolerance": (1e-6, 0.2),
    "stellar_dropout": (0.0, 1.0),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig(_RunsOnACluster):
    """Everything a training run needs: features, labels, the model, the split, the cluster.

    Attributes
    ----------
    features : str
        URL of the features store.
    labels : str
        Label source: ``truth:SIM_URL``, ``koi:CSV``, ``toi:CSV``, ``k2:CSV``, ``csv:URL``.
    out : str
        URL of the model folder to write (local or ``s3://``).
    model : str
        One of :data:`MODEL_KINDS`.
    search : int
        Hyper-parameter trials (one Dask task each, scored on the validation split); 0 trains
        the configured hyper-parameters once.
    unsupervised : str
        Spectrogram features learnt without labels (``rbm``, ``autoencoder``) added to the
        scalar models' inputs; ``none``.
    val_fraction, test_fraction : float
        Shares of each class's stars in the validation and test splits.
    seed : int
        Seed of the split, the initialisation and the search.
    epochs, batch_size, learning_rate, patience, filters, dense_units, dropout, l2
        CNN training (early stopping on the validation ROC-AUC after ``patience`` epochs).
    gbt_max_iter, gbt_learning_rate, gbt_max_leaf_nodes, logistic_c
        The baselines' hyper-parameters.
    latent_dim : int
        Size of the unsupervised features.
    period_tolerance : float
        Relative period tolerance that matches a detected signal to a catalogue entry.
    stellar_dropout : float
        Share of the training examples whose stellar properties are hidden (as for a star
        the TIC does not describe), so that the model also works without them.
    distributed : str
        ``auto``: CNNs train data-parallel across the workers when there are two or more;
        ``off``: on one worker.
    n_workers, threads_per_worker, memory_limit, scheduler_address
        The cluster, as for ingest.
    """

    features: str = ""
    labels: str = ""
    out: str = ""
    model: str = "cnn"
    search: int = 0
    unsupervised: str = "none"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    filters: int = 16
    dense_units: int = 128
    dropout: float = 0.3
    l2: float = 1e-4
    gbt_max_iter: int = 300
    gbt_learning_rate: float = 0.05
    gbt_max_leaf_nodes: int = 31
    logistic_c: float = 1.0
    latent_dim: int = 16
    period_tolerance: float = 0.01
    stellar_dropout: float = 0.2
    distributed: str = "auto"
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int = "4GiB"
    scheduler_address: str | None = None
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        for name in ("features", "labels", "out"):
            if not isinstance(getattr(self, name), str):
                raise _invalid(f"train.{name}", "a URL or path (a string)", getattr(self, name))
        for name, choices in (
            ("model", MODEL_KINDS),
            ("unsupervised", UNSUPERVISED_KINDS),
            ("distributed", ("auto", "off")),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise _invalid(
                    f"train.{name}",
                    "one of " + ", ".join(choices),
                    value,
                    _suggest(str(value), choices),
                )
        _check_ranges("train", self, _TRAIN_INT_RANGES, _TRAIN_REAL_RANGES)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                "train.val_fraction + train.test_fraction must leave at least 10 % of the stars "
                f"to train on, not {self.val_fraction} + {self.test_fraction}"
            )
        _check_cluster_fields("train", self)
        if not isinstance(self.storage, StorageConfig):
            raise _invalid("train.storage", "a StorageConfig", self.storage)

    def hyper_parameters(self) -> dict[str, Any]:
        """The parameters recorded in the model card."""
        skip = {"features", "labels", "out", *_RUN_KEYS}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


_T = TypeVar("_T")
SECTIONS = (
    "pipeline",
    "discover",
    "read",
    "grid",
    "ingest",
    "features",
    "train",
    "storage",
    "jobqueue",
    "kubernetes",
)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One source of config values, in order of precedence (later wins)."""

    kind: str  # defaults | dask | env | file | overrides
    label: str
    tree: Mapping[str, Any]


def _env_variable(*path: str) -> str:
    """The ``DASK_*`` variable that set ``starskope.<path>`` (or the section holding it)."""
    dotted = [".".join(("starskope", *path[:n])) for n in range(len(path), -1, -1)]
    names = {
        name[5:].lower().replace("__", ".").replace("-", "_"): name
        for name in os.environ
        if name.startswith("DASK_")
    }
    for key in dotted:
        if key in names:
            return names[key]
    if "DASK_INTERNAL_INHERIT_CONFIG" in os.environ:
        return "DASK_INTERNAL_INHERIT_CONFIG"
    return "DASK_" + "__".join(("starskope", *path)).upper()


def _where(layer: _Layer, *path: str) -> str:
    """Where a value came from, for messages: ``set by DASK_STARSKOPE__...``, ...."""
    if layer.kind == "env":
        return f"set by the environment variable {_env_variable(*path)}"
    if layer.kind == "dask":
        return (
            f"set in dask.config at {'.'.join(('starskope', *path))} (a YAML file in "
            "~/.config/dask, DASK_* variables or dask.config.set)"
        )
    if layer.kind == "file":
        return f"set in {layer.label}"
    return layer.label


def _source_of(layers: Sequence[_Layer], section: str, key: str) -> str:
    for layer in reversed(layers):
        values = layer.tree.get(section)
        if isinstance(values, Mapping) and key in values:
            return "" if layer.kind == "defaults" else _where(layer, section, key)
    return ""


_KEY_IN_MESSAGE = re.compile(r"^(?:unknown config key )?([a-z_]+)\.([a-z_]+)")


def _build(
    cls: type[_T],
    section: str,
    values: Mapping[str, Any],
    layers: Sequence[_Layer] = (),
    **extra: Any,
) -> _T:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {section!r} must be a mapping, not {_show(values)}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in values if key not in names]
    try:
        if unknown:
            key = unknown[0]
            raise ConfigError(f"unknown config key {section}.{key}" + _suggest(str(key), names))
        try:
            return cls(**{**values, **extra})
        except ConfigError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(f"config section {section!r}: {exc}") from exc
    except ConfigError as exc:
        match = _KEY_IN_MESSAGE.match(str(exc))
        where = _source_of(layers, *match.groups()) if match else ""
        if where:
            raise ConfigError(f"{exc} ({where})") from exc
        raise


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _read_config_file(config_file: str | os.PathLike[str]) -> Mapping[str, Any]:
    path = Path(config_file)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path} is a folder; give a YAML file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        detail = (
            f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
            if mark is not None and problem
            else " ".join(str(exc).split())
        )
        raise ConfigError(f"config file {path} is not valid YAML: {detail}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections ({', '.join(SECTIONS)}), "
            f"not {type(loaded).__name__}"
        )
    if "starskope" in loaded:
        loaded = loaded["starskope"]
        if loaded is None:
            return {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(
                f"config file {path}: starskope must be a mapping of sections, not {_show(loaded)}"
            )
    return loaded


def _check_layer(layer: _Layer) -> None:
    """Every section of a layer is a known section and a mapping."""
    for section, values in layer.tree.items():
        if section not in SECTIONS:
            where = "" if layer.kind == "file" else f" ({_where(layer, str(section))})"
            prefix = f"{layer.label}: " if layer.kind == "file" else ""
            raise ConfigError(
                f"{prefix}unknown config section {section!r}; use {', '.join(SECTIONS)}"
                + _suggest(str(section), SECTIONS)
                + where
            )
        if not isinstance(values, Mapping):
            example = f"{section}: {{{next(iter(_defaults()[section]))}: ...}}"
            shown = "null (an empty section)" if values is None else _show(values)
            raise ConfigError(
                f"config section {section} must be a mapping of keys (e.g. `{example}`), not "
                f"{shown} ({_where(layer, section)})"
            )


def _layers(
    config_file: str | os.PathLike[str] | None = None, *, environment: bool = True
) -> list[_Layer]:
    """The config sources, lowest precedence first, each checked for shape (no side effects).

    ``environment=False`` leaves out ``dask.config`` and the ``DASK_*`` variables: the config
    as the file alone makes it (what a pod that gets only the file sees).
    """
    layers = [_Layer("defaults", "the package defaults", _defaults())]
    if not environment:
        if config_file is not None:
            layer = _Layer("file", f"config file {config_file}", _read_config_file(config_file))
            _check_layer(layer)
            layers.append(layer)
        return layers
    from_dask = dask.config.get("starskope", default=None)
    if from_dask is not None:
        if not isinstance(from_dask, Mapping):
            raise ConfigError(
                f"dask.config key starskope must be a mapping of sections, not {_show(from_dask)}"
            )
        layers.append(_Layer("dask", "dask.config", from_dask))
    # dask.config reads DASK_* variables when it is imported; read them again so variables
    # set later in the process (tests, job wrappers) count too.
    from_env = dask.config.collect_env(dict(os.environ)).get("starskope")
    if from_env is not None:
        if not isinstance(from_env, Mapping):
            raise ConfigError(
                f"{_env_variable()} must set a mapping of sections, not {_show(from_env)}; set "
                "single keys instead, e.g. DASK_STARSKOPE__INGEST__STAR_CHUNK=128"
            )
        layers.append(_Layer("env", "the environment", from_env))
    if config_file is not None:
        layers.append(_Layer("file", f"config file {config_file}", _read_config_file(config_file)))
    for layer in sorted(layers[1:], key=lambda lay: -layers.index(lay)):
        _check_layer(layer)
    return layers


def _tree(layers: Sequence[_Layer]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for layer in layers:
        tree = _merge(tree, layer.tree)
    return tree


def config_tree(config_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the merged config tree: package defaults < dask.config < env < ``config_file``.

    Parameters
    ----------
    config_file : path, optional
        A YAML file whose top level is either the ``starskope`` mapping or contains it.

    Returns
    -------
    dict
        The ``starskope`` tree.

    Raises
    ------
    ConfigError
        For a config file that is missing, a folder or not YAML, and for a section that is
        unknown or not a mapping (the message names the file or environment variable).
    """
    return _tree(_layers(config_file))


def _section(
    cls: type[_T],
    section: str,
    tree: Mapping[str, Any] | None,
    config_file: str | os.PathLike[str] | None,
) -> _T:
    layers: list[_Layer] = []
    if tree is None:
        layers = _layers(config_file)
        tree = _tree(layers)
    return _build(cls, section, tree.get(section, {}), layers)


def load_read_config(
    tree: Mapping[str, Any] | None = None, *, config_file: str | os.PathLike[str] | None = None
) -> ReadConfig:
    """Build the :class:`ReadConfig` from a config tree (defaults and environment when ``None``,
    plus ``config_file``).

    Raises
    ------
    ConfigError
        For a bad value; the message names the key and where it was set.
    """
    return _section(ReadConfig, "read", tree, config_file)


def load_storage_config(
    tree: Mapping[str, Any] | None = None, *, config_file: str | os.PathLike[str] | None = None
) -> StorageConfig:
    """Build the :class:`StorageConfig` from a config tree (defaults and environment when
    ``None``, plus ``config_file``).

    Raises
    ------
    ConfigError
        For a bad value; the message names the key and where it was set.
    """
    return _section(StorageConfig, "storage", tree, config_file)


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

    Raises
    ------
    ConfigError
        For a bad config file or value. The message names the dotted key (``ingest.n_workers``),
        what is expected, and where the value was set (the environment variable, the config
        file or the command line). Nothing is started or written.
    """
    layers = _layers(config_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        layers.append(_Layer("overrides", "given on the command line", {"ingest": given}))
    tree = _tree(layers)
    return _build(
        IngestConfig,
        "ingest",
        tree.get("ingest", {}),
        layers,
        manifest=manifest,
        store=store,
        read=_build(ReadConfig, "read", tree.get("read", {}), layers),
        grid=_build(GridConfig, "grid", tree.get("grid", {}), layers),
        storage=_build(StorageConfig, "storage", tree.get("storage", {}), layers),
    )


def load_features_config(
    store: str,
    out: str,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> FeaturesConfig:
    """Build a validated :class:`FeaturesConfig` (as :func:`load_ingest_config` does).

    Parameters
    ----------
    store, out : str
        Cube and features store URLs.
    config_file : path, optional
        User YAML merged over the defaults.
    **overrides
        Values for ``features.*`` keys that win over everything (``None`` values are ignored).

    Raises
    ------
    ConfigError
        For a bad config file or value (the message names the key and where it was set).
    """
    layers = _layers(config_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        layers.append(_Layer("overrides", "given on the command line", {"features": given}))
    tree = _tree(layers)
    return _build(
        FeaturesConfig,
        "features",
        tree.get("features", {}),
        layers,
        store=store,
        out=out,
        storage=_build(StorageConfig, "storage", tree.get("storage", {}), layers),
    )


def load_train_config(
    features: str = "",
    labels: str = "",
    out: str = "",
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Build a validated :class:`TrainConfig` (as :func:`load_ingest_config` does).

    Parameters
    ----------
    features, labels, out : str
        Features store URL, label source and model URL (empty: from the config).
    config_file : path, optional
        User YAML merged over the defaults.
    **overrides
        Values for ``train.*`` keys that win over everything (``None`` values are ignored).

    Raises
    ------
    ConfigError
        For a bad config file or value (the message names the key and where it was set).
    """
    layers = _layers(config_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    given.update({k: v for k, v in (("features", features), ("labels", labels), ("out", out)) if v})
    if given:
        layers.append(_Layer("overrides", "given on the command line", {"train": given}))
    tree = _tree(layers)
    return _build(
        TrainConfig,
        "train",
        tree.get("train", {}),
        layers,
        storage=_build(StorageConfig, "storage", tree.get("storage", {}), layers),
    )


# ------------------------------------------------------------------ the whole pipeline

#: The pipeline's stages, in order; ``pipeline.stages`` is a contiguous run of them.
STAGES = ("discover", "ingest", "features", "train", "evaluate", "predict")
#: Where the stages run: a LocalCluster, an existing scheduler, or a batch system.
CLUSTER_KINDS = ("local", "address", "slurm", "pbs")
#: Artefacts of a pipeline and their names inside ``pipeline.workdir``.
ARTEFACTS = {
    "manifest": "manifest.parquet",
    "cube": "cube.zarr",
    "features": "features.zarr",
    "model": "model",
    "candidates": "candidates.csv",
}


def _check_string(key: str, value: Any, expected: str = "a URL or path (a string)") -> None:
    if not isinstance(value, str):
        raise _invalid(key, expected, value)


def _check_strings(key: str, value: Any, expected: str) -> tuple[str, ...]:
    """A list of strings (a single string is one item), returned as a tuple."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise _invalid(key, expected, value)
    return tuple(v.strip() for v in value if v.strip())


@dataclasses.dataclass(frozen=True)
class PipelineConfig(_RunsOnACluster):
    """What ``starskope run`` runs, where its artefacts go and where it runs.

    Attributes
    ----------
    workdir : str
        Folder (local or ``s3://``) that holds every artefact not given a URL of its own, and
        the run record ``pipeline.json``.
    stages : tuple of str
        A contiguous run of :data:`STAGES`.
    manifest, cube, features, model, candidates : str
        Artefact URLs; empty: ``WORKDIR/`` + :data:`ARTEFACTS`.
    cluster : str
        One of :data:`CLUSTER_KINDS`. ``local`` with a scheduler address (or
        ``DASK_SCHEDULER_ADDRESS``, as a DaskJob sets it) connects there instead.
    n_workers, threads_per_worker, memory_limit, scheduler_address
        The LocalCluster (or the jobqueue cluster's worker count), as for ingest.
    """

    workdir: str = "starskope-run"
    stages: tuple[str, ...] = STAGES
    manifest: str = ""
    cube: str = ""
    features: str = ""
    model: str = ""
    candidates: str = ""
    cluster: str = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int = "4GiB"
    scheduler_address: str | None = None

    def __post_init__(self) -> None:
        _check_string("pipeline.workdir", self.workdir)
        if not self.workdir.strip():
            raise _invalid("pipeline.workdir", "a folder (local path or s3:// URL)", self.workdir)
        for name in ARTEFACTS:
            _check_string(f"pipeline.{name}", getattr(self, name))
        for name in ("workdir", *ARTEFACTS):  # local paths absolute: one name per place
            value = str(getattr(self, name)).strip()
            if value and ("://" not in value or value.startswith("file://")):
                path = value[len("file://") :] if value.startswith("file://") else value
                object.__setattr__(self, name, os.path.abspath(os.path.expanduser(path)))
        if self.workdir.rstrip("/").endswith("://") or self.workdir.rstrip("/") in ("s3:", ""):
            raise _invalid("pipeline.workdir", "a folder or s3://BUCKET/PREFIX", self.workdir)
        stages = _check_strings(
            "pipeline.stages", self.stages, f"a list of stages from {', '.join(STAGES)}"
        )
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise _invalid(
                "pipeline.stages",
                "stages from " + ", ".join(STAGES),
                unknown[0],
                _suggest(unknown[0], STAGES),
            )
        if not stages:
            raise _invalid("pipeline.stages", "at least one stage", list(self.stages))
        positions = [STAGES.index(s) for s in stages]
        if positions != list(range(positions[0], positions[0] + len(positions))):
            raise ConfigError(
                f"pipeline.stages must be a contiguous run in the order {', '.join(STAGES)}, "
                f"not {', '.join(stages)} (each stage reads what the one before wrote)"
            )
        object.__setattr__(self, "stages", stages)
        if self.cluster not in CLUSTER_KINDS:
            raise _invalid(
                "pipeline.cluster",
                "one of " + ", ".join(CLUSTER_KINDS),
                self.cluster,
                _suggest(str(self.cluster), CLUSTER_KINDS),
            )
        _check_cluster_fields("pipeline", self)
        if self.cluster == "address" and not self.resolved_scheduler_address:
            raise ConfigError(
                "pipeline.cluster is 'address' but no scheduler address is set: set "
                "pipeline.scheduler_address or DASK_SCHEDULER_ADDRESS"
            )

    def artefact(self, name: str) -> str:
        """The URL of artefact ``name`` (one of :data:`ARTEFACTS`)."""
        given = str(getattr(self, name))
        return given or f"{self.workdir.rstrip('/')}/{ARTEFACTS[name]}"

    @property
    def record_url(self) -> str:
        """Where the run record (per stage: done, items, failures, time) is kept."""
        return f"{self.workdir.rstrip('/')}/pipeline.json"


@dataclasses.dataclass(frozen=True)
class DiscoverConfig:
    """What the discover stage looks for (the options of ``starskope discover``).

    With no ``targets``, ``targets_file`` or ``prefixes``, every product of ``archive`` is
    listed.
    """

    targets: tuple[str, ...] = ()
    targets_file: str = ""
    archive: str = "s3://stpubdata"
    prefixes: tuple[str, ...] = ()
    via: str = "auto"
    missions: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    radius_arcsec: float = 10.0
    mast_cache: str = ""
    offline: bool = False

    def __post_init__(self) -> None:
        for name, expected in (
            ("targets", "a list of targets (KIC n, TIC n, RA,DEC[,R], hosts:k2, names)"),
            ("prefixes", "a list of s3:// prefixes"),
            ("missions", "a list of kepler, k2, tess"),
            ("products", "a list of product names (kepler-lc, tess-spoc-2min, hlsp, ...)"),
        ):
            object.__setattr__(
                self, name, _check_strings(f"discover.{name}", getattr(self, name), expected)
            )
        for name in ("targets_file", "archive", "mast_cache"):
            _check_string(f"discover.{name}", getattr(self, name))
        if not self.archive.strip():
            raise _invalid("discover.archive", "a bucket or folder (s3://stpubdata)", self.archive)
        if self.via not in ("auto", "mast", "archive"):
            raise _invalid("discover.via", "one of auto, mast, archive", self.via)
        radius = _check_real("discover.radius_arcsec", self.radius_arcsec, "arcsec")
        if not 0 < radius <= 3600:
            raise _invalid("discover.radius_arcsec", "in (0, 3600] arcsec", radius)
        object.__setattr__(self, "radius_arcsec", radius)
        if not isinstance(self.offline, bool):
            raise _invalid("discover.offline", "true or false", self.offline)


@dataclasses.dataclass(frozen=True)
class JobqueueConfig:
    """A Slurm or PBS cluster through dask-jobqueue (``pipeline.cluster: slurm | pbs``).

    Attributes
    ----------
    queue, account : str
        Partition/queue and project to charge (empty: the site's default).
    cores, processes : int
        Cores per job and Dask worker processes per job.
    memory : str
        Memory per job (``"16GiB"``).
    walltime : str
        ``HH:MM:SS``.
    jobs : int
        Batch jobs to start (workers = jobs x processes).
    interface : str
        Network interface of the workers (``ib0``); empty: the default route's.
    local_directory : str
        Node-local scratch for spilling (``$TMPDIR``); empty: the job's working folder.
    job_extra_directives, job_script_prologue : tuple of str
        Extra ``#SBATCH``/``#PBS`` lines and shell lines before the worker starts
        (``module load ...``, ``source .venv/bin/activate``).
    """

    queue: str = ""
    account: str = ""
    cores: int = 4
    processes: int = 2
    memory: str = "16GiB"
    walltime: str = "04:00:00"
    jobs: int = 2
    interface: str = ""
    local_directory: str = ""
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("queue", "account", "interface", "local_directory", "walltime"):
            _check_string(f"jobqueue.{name}", getattr(self, name), "a string")
            if any(c in getattr(self, name) for c in "\n\r\0"):
                raise _invalid(f"jobqueue.{name}", "one line", getattr(self, name))
        for name, (low, high) in {
            "cores": (1, 1024),
            "processes": (1, 1024),
            "jobs": (1, 10000),
        }.items():
            _check_int(f"jobqueue.{name}", getattr(self, name), low, high)
        if self.processes > self.cores:
            raise ConfigError(
                f"jobqueue.processes ({self.processes}) must not exceed jobqueue.cores "
                f"({self.cores}): each worker process needs a core"
            )
        _check_memory_limit("jobqueue.memory", self.memory)
        if not re.fullmatch(r"([0-9]+-)?[0-9]{1,3}:[0-5][0-9]:[0-5][0-9]", self.walltime):
            raise _invalid("jobqueue.walltime", "HH:MM:SS (or D-HH:MM:SS)", self.walltime)
        for name in ("job_extra_directives", "job_script_prologue"):
            object.__setattr__(
                self,
                name,
                _check_strings(f"jobqueue.{name}", getattr(self, name), "a list of lines"),
            )
            if any("\n" in line for line in getattr(self, name)):
                raise _invalid(f"jobqueue.{name}", "single lines", getattr(self, name))


_K8S_NAME = re.compile(r"[a-z]([-a-z0-9]{0,40}[a-z0-9])?", re.ASCII)
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


@dataclasses.dataclass(frozen=True)
class KubernetesConfig:
    """The Kubernetes resources ``starskope k8s render`` writes (dask-kubernetes operator).

    Attributes
    ----------
    name, namespace : str
        Resource names (DNS labels).
    image : str
        The container image (``Dockerfile``), pinned by tag or digest.
    service_account : str
        The pods' service account; with ``role_arn`` it carries the IRSA annotation that gives
        the pods store credentials (no secret in any manifest).
    role_arn : str
        IAM role for the store bucket (``arn:aws:iam::123456789012:role/starskope``); empty:
        no annotation (anonymous reads only, a local store).
    region : str
        AWS region of the cluster (us-east-1: next to the archive).
    workers : int
        Worker replicas of a DaskJob or DaskCluster.
    min_workers, max_workers : int
        The DaskAutoscaler's bounds.
    worker_cpu : str
        CPU request and limit per worker (``"2"``).
    worker_memory : str
        Memory request and limit per worker (sized from the measured peak RSS).
    worker_threads : int
        Threads per worker.
    config_map : str
        ConfigMap holding the pipeline YAML, mounted at ``/etc/starskope/pipeline.yaml``.
    """

    name: str = "starskope"
    namespace: str = "starskope"
    image: str = "ghcr.io/starskope/starskope-dask:0.1.0"
    service_account: str = "starskope"
    role_arn: str = ""
    region: str = "us-east-1"
    workers: int = 8
    min_workers: int = 1
    max_workers: int = 32
    worker_cpu: str = "2"
    worker_memory: str = "4GiB"
    worker_threads: int = 2
    config_map: str = "starskope-pipeline"

    def __post_init__(self) -> None:
        for name in ("name", "namespace", "service_account", "config_map"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _K8S_NAME.fullmatch(value):
                raise _invalid(
                    f"kubernetes.{name}",
                    "a DNS label: a lower-case letter, then letters, digits and '-' (at most 42)",
                    value,
                )
        _check_string("kubernetes.image", self.image, "an image reference")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", self.image, re.ASCII):
            raise _invalid("kubernetes.image", "an image reference (registry/name:tag)", self.image)
        _check_string("kubernetes.role_arn", self.role_arn, "an IAM role ARN")
        if self.role_arn and not _ROLE_ARN.fullmatch(self.role_arn):
            raise _invalid(
                "kubernetes.role_arn", "arn:aws:iam::ACCOUNT:role/NAME (or empty)", self.role_arn
            )
        _check_string("kubernetes.region", self.region, "an AWS region")
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", self.region, re.ASCII):
            raise _invalid("kubernetes.region", "an AWS region such as us-east-1", self.region)
        for name, (low, high) in {
            "workers": (1, 10000),
            "min_workers": (0, 10000),
            "max_workers": (1, 10000),
            "worker_threads": (1, 256),
        }.items():
            _check_int(f"kubernetes.{name}", getattr(self, name), low, high)
        if not self.min_workers <= self.max_workers:
            raise ConfigError(
                f"kubernetes.min_workers ({self.min_workers}) must not exceed "
                f"kubernetes.max_workers ({self.max_workers})"
            )
        if (
            isinstance(self.worker_cpu, bool)
            or not isinstance(self.worker_cpu, str | int)
            or not re.fullmatch(r"[0-9]+(\.[0-9]+)?m?", str(self.worker_cpu))
            or float(str(self.worker_cpu).rstrip("m")) <= 0
        ):
            raise _invalid(
                "kubernetes.worker_cpu", "a CPU quantity such as '2' or '1500m'", self.worker_cpu
            )
        object.__setattr__(self, "worker_cpu", str(self.worker_cpu))
        _check_memory_limit("kubernetes.worker_memory", self.worker_memory)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every stage's config of one pipeline run, read from one YAML file and the environment.

    The stage configs hold the pipeline's artefact URLs (the cube of ``ingest`` is the store of
    ``features``, ...); their own cluster keys are not used (the run has one cluster, set in
    ``pipeline``).
    """

    source: str
    pipeline: PipelineConfig
    discover: DiscoverConfig
    ingest: IngestConfig
    features: FeaturesConfig
    train: TrainConfig
    jobqueue: JobqueueConfig
    kubernetes: KubernetesConfig
    storage: StorageConfig

    @property
    def n_workers(self) -> int:
        """Workers of the run's LocalCluster (``cluster.ClusterSpec``)."""
        return self.pipeline.n_workers

    @property
    def threads_per_worker(self) -> int:
        """Threads per worker."""
        return self.pipeline.threads_per_worker

    @property
    def memory_limit(self) -> str | int:
        """Memory limit per worker."""
        return self.pipeline.memory_limit

    @property
    def resolved_scheduler_address(self) -> str | None:
        """The scheduler to connect to, if any."""
        return self.pipeline.resolved_scheduler_address


def load_run_config(
    config_file: str | os.PathLike[str] | None = None,
    *,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    environment: bool = True,
    **overrides: Any,
) -> RunConfig:
    """Build every stage's config of ``starskope run`` from one YAML file (and the defaults,
    ``dask.config`` and ``DASK_STARSKOPE__*`` variables, as each stage's command does).

    Parameters
    ----------
    config_file : path, optional
        The pipeline YAML: sections ``pipeline``, ``discover``, ``read``, ``grid``,
        ``ingest``, ``features``, ``train``, ``storage``, ``jobqueue``, ``kubernetes``.
    sections : mapping, optional
        Sections given by the caller (``starskope demo``'s settings), over the file.
    environment : bool
        ``False``: leave out ``dask.config`` and the ``DASK_STARSKOPE__*`` variables (what
        ``starskope k8s render`` validates: the pod gets the file alone).
    **overrides
        Values for ``pipeline.*`` keys that win over everything (``None`` values are ignored).

    Raises
    ------
    ConfigError
        For a bad file, section, key or value; the message names the key and where it was set.
        Nothing is started or written.
    """
    layers = _layers(config_file, environment=environment)
    if sections:
        layer = _Layer("overrides", "given by the caller", sections)
        _check_layer(layer)
        layers.append(layer)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        layers.append(_Layer("overrides", "given on the command line", {"pipeline": given}))
    tree = _tree(layers)

    def build(cls: type[_T], section: str, **extra: Any) -> _T:
        return _build(cls, section, tree.get(section, {}), layers, **extra)

    storage = build(StorageConfig, "storage")
    pipeline = build(PipelineConfig, "pipeline")
    cube, features, model = (pipeline.artefact(n) for n in ("cube", "features", "model"))
    train_section = dict(tree.get("train", {}) or {})
    if not train_section.get("features"):
        train_section["features"] = features
    if not train_section.get("out"):
        train_section["out"] = model
    return RunConfig(
        source=str(config_file)
        if config_file is not None
        else "settings given by the caller"
        if sections
        else "the defaults",
        pipeline=pipeline,
        discover=build(DiscoverConfig, "discover"),
        ingest=build(
            IngestConfig,
            "ingest",
            manifest=pipeline.artefact("manifest"),
            store=cube,
            read=build(ReadConfig, "read"),
            grid=build(GridConfig, "grid"),
            storage=storage,
        ),
        features=build(FeaturesConfig, "features", store=cube, out=features, storage=storage),
        train=_build(TrainConfig, "train", train_section, layers, storage=storage),
        jobqueue=build(JobqueueConfig, "jobqueue"),
        kubernetes=build(KubernetesConfig, "kubernetes"),
        storage=storage,
    )
