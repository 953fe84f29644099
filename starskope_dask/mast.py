"""The MAST edge of ``discover``: batched, retried, cached calls to MAST and the Exoplanet Archive.

Every answer is cached on disk as JSON (one file per call, named by a hash of the call), so
a rerun replays it and an ``offline`` run needs no network at all. The network side is a
small :class:`MastBackend` protocol; :class:`AstroqueryBackend` implements it with
astroquery (``Observations.query_criteria``, ``Observations.get_product_list``,
``Mast.resolve_object``, ``mast_relative_path``, ``NasaExoplanetArchive``, and
``Catalogs.query_criteria`` / ``Catalogs.query_region`` on the TESS Input Catalog). Tests and
benchmarks replay recorded answers through the same cache, or plug in their own backend.

Calls are retried with exponential backoff (MAST answers 503 and times out under load), and
the callers in :mod:`starskope_dask.discover` keep a bounded number in flight.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from starskope_dask.errors import ArchiveError, TargetNotFoundError

logger = logging.getLogger(__name__)

T = TypeVar("T")

OBSERVATION_COLUMNS = (
    "obsid",
    "obs_collection",
    "obs_id",
    "target_name",
    "s_ra",
    "s_dec",
    "dataproduct_type",
    "provenance_name",
    "sequence_number",
    "t_exptime",
)
PRODUCT_COLUMNS = (
    "obsID",
    "obs_collection",
    "obs_id",
    "description",
    "dataURI",
    "productType",
    "productSubGroupDescription",
    "productFilename",
    "size",
    "parent_obsid",
)
#: Columns kept from the TESS Input Catalog (TIC v8.2, MAST ``Catalogs`` ``catalog="TIC"``):
#: the TIC ID, the KIC cross-ID, position, stellar properties and the quality flags. The TIC
#: holds no EPIC column (K2 stars are found by position). ``dstArcSec`` comes with cones only.
TIC_COLUMNS = (
    "ID",
    "KIC",
    "ra",
    "dec",
    "Tmag",
    "Teff",
    "logg",
    "rad",
    "mass",
    "rho",
    "contratio",
    "objType",
    "disposition",
    "duplicate_id",
    "dstArcSec",
)
#: TIC columns that ``Catalogs.query_criteria`` can be asked for a list of IDs of.
TIC_ID_COLUMNS = ("ID", "KIC")
# Confirmed-planet host tables of the NASA Exoplanet Archive, per mission: table, the
# column holding the catalogue ID, and the TAP select / where clauses.
PLANET_HOST_TABLES = {
    "Kepler": ("keplernames", "kepid", "kepid,kepler_name,pl_name", None),
    "K2": ("k2names", "epic_host", "epic_host,k2_name,pl_name", None),
    "TESS": ("pscomppars", "tic_id", "tic_id,hostname,pl_name", "disc_facility like '%TESS%'"),
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/starskope/mast`` (``~/.cache/starskope/mast``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "starskope" / "mast"


@dataclasses.dataclass(frozen=True)
class MastSettings:
    """How discovery talks to MAST.

    Attributes
    ----------
    cache_dir : Path
        Where every answer is cached (JSON, one file per call).
    offline : bool
        Answer only from the cache; a call that is not cached raises :class:`ArchiveError`.
    retries : int
        Attempts after the first, with exponential backoff.
    backoff_seconds : float
        First backoff; doubled each attempt, with jitter.
    concurrency : int
        Calls in flight at once.
    query_batch : int
        Catalogue IDs per ``query_criteria`` call.
    product_batch : int
        Observations per ``get_product_list`` call.
    """

    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    offline: bool = False
    retries: int = 4
    backoff_seconds: float = 1.0
    concurrency: int = 4
    query_batch: int = 100
    product_batch: int = 50

    def __post_init__(self) -> None:
        for name in ("retries", "concurrency", "query_batch", "product_batch"):
            value = getattr(self, name)
            if value < (0 if name == "retries" else 1):
                raise ValueError(f"MastSettings.{name} must be positive, got {value}")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))


class MastBackend(Protocol):
    """The network side of MAST discovery (what :class:`AstroqueryBackend` implements)."""

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Observations matching ``criteria`` (``Observations.query_criteria``)."""
        ...

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        """Products of observations (``Observations.get_product_list``)."""
        ...

    def resolve_name(self, name: str) -> list[float]:
        """``[ra, dec]`` in degrees of an object name (MAST's name resolver)."""
        ...

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        """Cloud paths of MAST data URIs (MAST's batched ``path_lookup``)."""
        ...

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        """Confirmed planet hosts of a mission (NASA Exoplanet Archive)."""
        ...

    def tic_rows(self, column: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """TIC rows whose ``column`` (``ID`` or ``KIC``) is one of ``ids``
        (``Catalogs.query_criteria(catalog="TIC", ...)``), :data:`TIC_COLUMNS` only.
        """
        ...

    def tic_cone(self, ra: float, dec: float, radius_arcsec: float) -> list[dict[str, Any]]:
        """TIC rows within ``radius_arcsec`` of ``(ra, dec)`` in degrees
        (``Catalogs.query_region(catalog="TIC")``), :data:`TIC_COLUMNS` only.
        """
        ...


def _plain(value: Any) -> Any:
    """A JSON-ready Python value from an astropy table cell (masked → None)."""
    # A masked cell is numpy's MaskedConstant, whose ``mask`` is a 0-d array (not ``True``):
    # its ``item()`` would be 0, a false value.
    if value is None or np.ma.is_masked(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and value != value:
        return None
    return value


def _records(table: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
    names = [c for c in columns if c in table.colnames]
    return [{c: _plain(row[c]) for c in names} for row in table]


class AstroqueryBackend:
    """:class:`MastBackend` through astroquery (imported on first use)."""

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        """See :meth:`MastBackend.query_criteria`."""
        from astroquery.mast import Observations

        return _records(Observations.query_criteria(**dict(criteria)), OBSERVATION_COLUMNS)

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        """See :meth:`MastBackend.product_list`."""
        from astroquery.mast import Observations

        return _records(Observations.get_product_list(list(obsids)), PRODUCT_COLUMNS)

    def resolve_name(self, name: str) -> list[float]:
        """See :meth:`MastBackend.resolve_name`."""
        from astroquery.mast import Mast

        coord = Mast.resolve_object(name)
        return [float(coord.ra.deg), float(coord.dec.deg)]

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        """See :meth:`MastBackend.relative_paths`."""
        from astroquery.mast.utils import mast_relative_path

        paths = mast_relative_path(list(data_uris), verbose=False)
        return [paths] if isinstance(paths, str) else list(paths)

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        """See :meth:`MastBackend.planet_hosts`."""
        from astroquery.ipac.nexsci.nasa_exoplanet_archive import NasaExoplanetArchive

        table, _, select, where = PLANET_HOST_TABLES[mission]
        kwargs = {"table": table, "select": select}
        if where:
            kwargs["where"] = where
        result = NasaExoplanetArchive.query_criteria(**kwargs)
        return _records(result, select.split(","))

    def tic_rows(self, column: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """See :meth:`MastBackend.tic_rows`."""
        from astroquery.mast import Catalogs

        # Both are discrete (string) columns of the TIC: a list of values is an OR filter.
        criteria = {column: [str(int(i)) for i in ids]}
        return _records(Catalogs.query_criteria(catalog="TIC", **criteria), TIC_COLUMNS)

    def tic_cone(self, ra: float, dec: float, radius_arcsec: float) -> list[dict[str, Any]]:
        """See :meth:`MastBackend.tic_cone`."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord
        from astroquery.mast import Catalogs

        centre = SkyCoord(ra, dec, unit="deg", frame="icrs")
        table = Catalogs.query_region(centre, radius=radius_arcsec * u.arcsec, catalog="TIC")
        return _records(table, TIC_COLUMNS)


class MastClient:
    """Cached, retried calls to a :class:`MastBackend`.

    Parameters
    ----------
    settings : MastSettings
        Cache, offline mode, retries, batching.
    backend : MastBackend, optional
        The network side; :class:`AstroqueryBackend` by default.
    sleep : callable, optional
        Used between retries (tests pass a fake clock).
    """

    def __init__(
        self,
        settings: MastSettings | None = None,
        backend: MastBackend | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or MastSettings()
        self._backend = backend
        self._sleep = sleep
        self.calls: dict[str, int] = {}
        """Calls that reached the backend, by kind (cache hits not counted)."""

    @property
    def backend(self) -> MastBackend:
        """The network side (created on first use)."""
        if self._backend is None:
            self._backend = AstroqueryBackend()
        return self._backend

    def _cache_path(self, kind: str, params: Any) -> Path:
        blob = json.dumps([kind, params], sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
        return self.settings.cache_dir / f"{kind}-{digest}.json"

    def _call(self, kind: str, params: Any, what: str, call: Callable[[], T]) -> T:
        path = self._cache_path(kind, params)
        if path.exists():
            try:
                answer: T = json.loads(path.read_text())["answer"]
                return answer
            except (ValueError, KeyError):
                logger.warning("ignoring a damaged MAST cache file %s", path)
        if self.settings.offline:
            raise ArchiveError(
                f"{what}: not in the MAST cache at {self.settings.cache_dir} and running "
                "offline; run once online (or drop --offline) to record it"
            )
        attempt = 0
        while True:
            try:
                self.calls[kind] = self.calls.get(kind, 0) + 1
                answer = call()
                break
            except TargetNotFoundError:
                raise
            except Exception as exc:
                if attempt >= self.settings.retries:
                    raise ArchiveError(
                        f"{what}: MAST failed {attempt + 1} times, last with "
                        f"{type(exc).__name__}: {exc}; try again later (answers so far are "
                        "cached, so a rerun resumes)"
                    ) from exc
                delay = self.settings.backoff_seconds * 2**attempt * (0.5 + random.random())
                logger.info("%s: %s; retrying in %.1f s", what, type(exc).__name__, delay)
                self._sleep(delay)
                attempt += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{os.getpid()}-{random.getrandbits(32)}")
            record = {"kind": kind, "params": params, "answer": answer}
            tmp.write_text(json.dumps(record, default=str))
            tmp.replace(path)
        except OSError as exc:  # the answer is still good: use it, uncached
            logger.warning(
                "cannot cache MAST answers in %s (%s); check --mast-cache", path.parent, exc
            )
        return answer

    def query_criteria(self, criteria: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
        """Observations matching ``criteria`` (cached)."""
        params = {k: criteria[k] for k in sorted(criteria)}
        return self._call("observations", params, what, lambda: self.backend.query_criteria(params))

    def product_list(self, obsids: Sequence[str], what: str) -> list[dict[str, Any]]:
        """Products of a batch of observations (cached)."""
        ids = sorted({str(o) for o in obsids})
        return self._call("products", ids, what, lambda: self.backend.product_list(ids))

    def resolve_name(self, name: str) -> tuple[float, float]:
        """Coordinates of an object name (cached).

        Raises
        ------
        TargetNotFoundError
            If MAST cannot resolve the name.
        """

        def resolve() -> list[float]:
            try:
                return self.backend.resolve_name(name)
            except Exception as exc:
                # astroquery's ResolverError (or a LookupError) says the name is unknown;
                # anything else (the network, MAST itself) is retried as a failure of MAST.
                if isinstance(exc, LookupError) or type(exc).__name__ == "ResolverError":
                    raise TargetNotFoundError(
                        f"{name}: MAST cannot resolve this name ({exc}); check the spelling "
                        "or give KIC/EPIC/TIC n or 'ra,dec'"
                    ) from exc
                raise

        ra, dec = self._call("resolve", name.strip().lower(), name, resolve)
        return float(ra), float(dec)

    def relative_paths(self, data_uris: Sequence[str], what: str) -> list[str | None]:
        """Cloud paths of data URIs (cached)."""
        uris = list(data_uris)
        return self._call("paths", uris, what, lambda: self.backend.relative_paths(uris))

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        """Confirmed planet hosts of a mission (cached)."""
        return self._call(
            "planet_hosts",
            mission,
            f"{mission} planet hosts",
            lambda: self.backend.planet_hosts(mission),
        )

    def tic_rows(self, column: str, ids: Sequence[int], what: str) -> list[dict[str, Any]]:
        """TIC rows whose ``column`` (``ID`` or ``KIC``) is one of ``ids`` (cached).

        The IDs are de-duplicated and sorted, so the same set is one cache entry.

        Raises
        ------
        ValueError
            For a ``column`` not in :data:`TIC_ID_COLUMNS`.
        ArchiveError
            If MAST fails (after the retries), or the call is not cached and running offline.
        """
        if column not in TIC_ID_COLUMNS:
            raise ValueError(
                f"TIC rows are looked up by {' or '.join(TIC_ID_COLUMNS)}, not {column}"
            )
        values = sorted({int(i) for i in ids})
        return self._call(
            "tic",
            {"column": column, "ids": values},
            what,
            lambda: self.backend.tic_rows(column, values),
        )

    def tic_cone(
        self, ra: float, dec: float, radius_arcsec: float, what: str
    ) -> list[dict[str, Any]]:
        """TIC rows within ``radius_arcsec`` of ``(ra, dec)`` (cached; position to 1e-6 deg)."""
        centre = [round(float(ra), 6), round(float(dec), 6), float(radius_arcsec)]
        return self._call(
            "tic_cone",
            centre,
            what,
            lambda: self.backend.tic_cone(centre[0], centre[1], centre[2]),
        )
