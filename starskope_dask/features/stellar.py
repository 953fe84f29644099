"""Stellar properties of the cube's stars, from the TESS Input Catalog (TIC v8.2) or a table.

:func:`stellar_properties` gives each star its effective temperature, surface gravity, radius,
mass, mean density, TESS magnitude and contamination ratio (:data:`STELLAR_COLUMNS`), from
one of three sources:

``"mast"``
    The TIC at MAST through astroquery (``Catalogs.query_criteria(catalog="TIC", ID=[...])``),
    by the :class:`~starskope_dask.mast.MastClient` that discovery uses: batched
    (``query_batch`` IDs a call, ``concurrency`` calls in flight), retried, every answer cached
    as JSON under ``cache_dir``, so a rerun (or an ``offline`` run) replays it.
a table URL or path
    Parquet or CSV (``.csv``, ``.csv.gz``), local, ``file://``, ``s3://`` or ``http(s)://``,
    with TIC-named columns: ``ID`` (the TIC ID), ``KIC``, ``EPIC``, ``ra``, ``dec`` and any of
    ``Teff``, ``logg``, ``rad``, ``mass``, ``rho``, ``Tmag``, ``contratio`` (names matched
    case-insensitively). The simulator writes one for its stars at
    ``<archive>/catalog/tic.parquet`` (:func:`default_catalog_url`).
``"none"``
    No lookup: every property NaN.

Joining. A star is matched by its TIC ID, else its KIC ID, else its EPIC ID, else to the
nearest catalogue row within 2″ (:data:`MATCH_RADIUS_ARCSEC`) whose own IDs do not contradict
the star's. Among rows with the same ID, one without a TIC ``disposition`` (``SPLIT``,
``DUPLICATE``, ``ARTIFACT``) is preferred. The TIC holds the KIC cross-ID (column ``KIC``) but
no EPIC column, so through MAST a star with only an EPIC ID (or whose IDs are not in the
TIC) is found by a cone search of 2″ around its position, one cached call per star.

Failures. Bad input (a ``stars`` table without its columns) always raises. A catalogue that is
missing, unreadable or has no ID column raises :class:`CatalogError`; a MAST failure (or a call
not in the cache when offline) raises :class:`~starskope_dask.errors.ArchiveError` naming the
call. With ``on_error="nan"`` neither raises: the stars concerned get NaN properties,
``stellar_source == "error"`` and the message in ``stellar_note``, and a warning is logged, so
the features stage never stops for a missing catalogue (it passes ``on_error="nan"``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from starskope_dask.errors import (
    ArchiveError,
    CatalogError,
    CatalogNotFoundError,
    ConfigError,
    UnsupportedSchemeError,
)
from starskope_dask.fetch import SourceOptions, check_protocol, filesystem, local_path
from starskope_dask.mast import MastClient, MastSettings

logger = logging.getLogger(__name__)

#: The properties :func:`stellar_properties` returns, in order, with their units.
#: ``rho`` is the mean density in solar units, ``tmag`` the TESS magnitude, ``contratio`` the
#: flux of neighbours over the star's in the TESS aperture (all as the TIC defines them).
STELLAR_COLUMNS: dict[str, str] = {
    "teff": "K",
    "logg": "log10(cm s-2)",
    "radius": "solRad",
    "mass": "solMass",
    "rho": "solRho",
    "tmag": "mag",
    "contratio": "1",
}
#: The TIC column of each property.
TIC_NAMES: dict[str, str] = {
    "teff": "Teff",
    "logg": "logg",
    "radius": "rad",
    "mass": "mass",
    "rho": "rho",
    "tmag": "Tmag",
    "contratio": "contratio",
}
#: Catalogue ID columns, in join order: TIC ID, KIC, EPIC (EPIC is not a TIC column).
CATALOG_ID_COLUMNS = ("ID", "KIC", "EPIC")
#: Other names accepted for the ID columns of a table (compared case-insensitively).
ID_ALIASES: dict[str, tuple[str, ...]] = {
    "ID": ("ID", "TIC", "TICID", "TIC_ID"),
    "KIC": ("KIC", "KICID", "KIC_ID", "KEPID"),
    "EPIC": ("EPIC", "EPICID", "EPIC_ID"),
}
#: Largest separation (arcsec) of a match by position.
MATCH_RADIUS_ARCSEC = 2.0
#: Values of the ``stellar_source`` column: how each star's row was found (or why not).
MATCH_KINDS = ("tic", "kic", "epic", "position", "missing", "none", "error")
#: Columns of the output besides :data:`STELLAR_COLUMNS`.
EXTRA_COLUMNS = ("stellar_tic", "stellar_source", "stellar_note")
#: Columns the ``stars`` table must have.
STAR_COLUMNS = ("star", "kic", "epic", "tic", "ra", "dec")

OnError = Literal["raise", "nan"]
Rows = list[dict[str, Any]]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


_HINT = (
    "give a Parquet or CSV table with TIC-named columns (ID, KIC, EPIC, ra, dec, Teff, logg, "
    "rad, mass, rho, Tmag, contratio), source 'mast' for the TIC, or 'none'"
)


def default_catalog_url(archive_url: str) -> str:
    """The stellar catalogue the simulator writes beside a simulated archive.

    Parameters
    ----------
    archive_url : str
        Root of the simulated archive (a folder or ``s3://bucket[/prefix]``).

    Returns
    -------
    str
        ``<archive_url>/catalog/tic.parquet``.
    """
    from starskope_dask.simulate import CATALOG_KEY

    return f"{archive_url.rstrip('/')}/{CATALOG_KEY}"


# ----------------------------------------------------------------------- catalogue tables


def read_catalog(url: str, storage_options: SourceOptions = None) -> pd.DataFrame:
    """Read a catalogue table into TIC-named columns.

    Parameters
    ----------
    url : str
        Parquet or CSV (``.csv``, ``.csv.gz``, ``.txt``), local or ``file://``, ``s3://``,
        ``http(s)://``.
    storage_options : StorageConfig or mapping, optional
        fsspec options for remote URLs (as :func:`starskope_dask.fetch.filesystem` takes).

    Returns
    -------
    DataFrame
        ``ID``, ``KIC``, ``EPIC`` (int64, -1 where unknown), ``ra``, ``dec`` and the
        :data:`TIC_NAMES` columns (float64, NaN where unknown), ``flagged`` (bool: the TIC
        marks the row ``SPLIT``, ``DUPLICATE`` or ``ARTIFACT``).

    Raises
    ------
    CatalogNotFoundError
        If nothing is at ``url``.
    CatalogError
        If it cannot be read as Parquet or CSV, or has no ID column or no property column.
    """
    try:
        protocol = check_protocol(url)
    except UnsupportedSchemeError as exc:
        raise CatalogError(str(url), exc.problem, exc.hint or _HINT) from exc
    name = url.lower().split("?", 1)[0]
    kind = "CSV" if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")) else "Parquet"
    try:
        if protocol == "file":
            path = local_path(url)
            if not path.exists():
                raise CatalogNotFoundError(
                    url, "no such file", "check the path, or run the simulator to write one"
                )
            frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
        else:
            fs = filesystem(protocol, storage_options)
            with fs.open(url, "rb") as handle:
                if kind == "CSV":
                    gz = "gzip" if name.endswith(".gz") else None
                    frame = pd.read_csv(handle, compression=gz)
                else:
                    frame = pd.read_parquet(handle)
    except CatalogError:
        raise
    except FileNotFoundError as exc:
        raise CatalogNotFoundError(url, "no such file or object", "check the URL") from exc
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise CatalogError(
            url, f"cannot be read as {kind}: {type(exc).__name__}: {text}", _HINT
        ) from exc
    return normalise_catalog(frame, url)


def _find_column(frame: pd.DataFrame, names: Sequence[str]) -> str | None:
    lower = {str(c).lower(): str(c) for c in frame.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _id_values(column: pd.Series) -> IntArray:
    """Positive integer IDs, -1 where unknown (NaN, 0, negative, or text without digits)."""
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        column = column.astype("string").str.extract(r"(\d+)(?:\.0*)?\s*$", expand=False)
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    ok = np.isfinite(values) & (values > 0)
    out = np.full(len(values), -1, dtype=np.int64)
    out[ok] = values[ok].astype(np.int64)
    return out


def normalise_catalog(frame: pd.DataFrame, url: str) -> pd.DataFrame:
    """TIC-named catalogue rows in the form :func:`read_catalog` returns.

    Parameters
    ----------
    frame : DataFrame
        Rows with TIC-named columns (case-insensitive; ID aliases in :data:`ID_ALIASES`).
    url : str
        Where they came from, for messages.

    Raises
    ------
    CatalogError
        If no ID column (``ID``, ``KIC``, ``EPIC``) or no property column is present.
    """
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    present = []
    for name in CATALOG_ID_COLUMNS:
        column = _find_column(frame, ID_ALIASES[name])
        out[name] = _id_values(frame[column]) if column else np.full(len(frame), -1, np.int64)
        if column:
            present.append(name)
    if not present:
        columns = ", ".join(str(c) for c in list(frame.columns)[:12]) or "none"
        raise CatalogError(
            url, f"has no ID column (ID, KIC or EPIC); its columns: {columns}", _HINT
        )
    properties = []
    for name in ("ra", "dec", *TIC_NAMES.values()):
        column = _find_column(frame, (name,))
        out[name] = (
            pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            if column
            else np.full(len(frame), np.nan)
        )
        if column and name not in ("ra", "dec"):
            properties.append(name)
    if not properties:
        raise CatalogError(
            url, f"has none of the property columns {', '.join(TIC_NAMES.values())}", _HINT
        )
    disposition = _find_column(frame, ("disposition",))
    out["flagged"] = (
        frame[disposition].fillna("").astype(str).str.strip().ne("").to_numpy(bool)
        if disposition
        else np.zeros(len(frame), bool)
    )
    return out


# ------------------------------------------------------------------------------ joining


def _unit_vectors(ra: FloatArray, dec: FloatArray) -> FloatArray:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def _first_by_key(keys: IntArray, flagged: npt.NDArray[np.bool_]) -> pd.Series:
    """Catalogue row of each known key: the first unflagged one, else the first."""
    rows = pd.DataFrame({"key": keys, "flagged": flagged, "row": np.arange(len(keys))})
    rows = rows[rows["key"] > 0].sort_values(["flagged", "row"], kind="stable")
    rows = rows.drop_duplicates("key", keep="first")
    return pd.Series(rows["row"].to_numpy(np.int64), index=rows["key"].to_numpy(np.int64))


def match_catalog(
    stars: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
    by_position: bool = True,
) -> tuple[IntArray, npt.NDArray[np.object_]]:
    """Which catalogue row is each star: by TIC, else KIC, else EPIC, else position.

    Parameters
    ----------
    stars : DataFrame
        ``tic``, ``kic``, ``epic`` (int64, unknown ≤ 0), ``ra``, ``dec`` per star.
    catalog : DataFrame
        As :func:`read_catalog` returns.
    radius_arcsec : float
        Largest separation of a match by position. A row found by position is refused when
        one of its IDs is known and differs from the star's ID of the same kind.
    by_position : bool
        Match the stars no ID finds by position (else they stay unmatched).

    Returns
    -------
    rows : ndarray of int64
        Catalogue row per star, -1 where none.
    kinds : ndarray of str
        ``tic``, ``kic``, ``epic``, ``position`` or ``missing`` per star.
    """
    n = len(stars)
    rows = np.full(n, -1, dtype=np.int64)
    kinds = np.full(n, "missing", dtype=object)
    if not n or not len(catalog):
        return rows, kinds
    flagged = catalog["flagged"].to_numpy(bool)
    for kind, column in zip(("tic", "kic", "epic"), CATALOG_ID_COLUMNS, strict=True):
        lookup = _first_by_key(catalog[column].to_numpy(np.int64), flagged)
        keys = stars[kind].to_numpy(np.int64)
        found = pd.Series(keys).map(lookup).to_numpy(np.float64, na_value=np.nan)
        take = (rows < 0) & (keys > 0) & np.isfinite(found)
        rows[take] = found[take].astype(np.int64)
        kinds[take] = kind
    ra, dec = catalog["ra"].to_numpy(np.float64), catalog["dec"].to_numpy(np.float64)
    placed = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    star_ra, star_dec = stars["ra"].to_numpy(np.float64), stars["dec"].to_numpy(np.float64)
    todo = np.flatnonzero((rows < 0) & np.isfinite(star_ra) & np.isfinite(star_dec))
    if not by_position or not len(placed) or not len(todo):
        return rows, kinds
    from scipy.spatial import cKDTree

    tree = cKDTree(_unit_vectors(ra[placed], dec[placed]))
    chord = 2 * math.sin(math.radians(radius_arcsec / 3600) / 2)
    k = min(4, len(placed))
    distance, neighbour = tree.query(
        _unit_vectors(star_ra[todo], star_dec[todo]), k=k, distance_upper_bound=chord
    )
    distance, neighbour = distance.reshape(len(todo), k), neighbour.reshape(len(todo), k)
    star_ids = [stars[c].to_numpy(np.int64)[todo] for c in ("tic", "kic", "epic")]
    cat_ids = [catalog[c].to_numpy(np.int64) for c in CATALOG_ID_COLUMNS]
    for i, star in enumerate(todo):
        best = -1
        for j in range(k):  # nearest first; the first unflagged one wins
            if not np.isfinite(distance[i, j]):
                break
            row = int(placed[neighbour[i, j]])
            pairs = zip(star_ids, cat_ids, strict=True)
            if any(s[i] > 0 and c[row] > 0 and s[i] != c[row] for s, c in pairs):
                continue  # another star: one of its IDs contradicts this star's
            if best < 0:
                best = row
            if not flagged[row]:
                best = row
                break
        if best >= 0:
            rows[star] = best
            kinds[star] = "position"
    return rows, kinds


# ---------------------------------------------------------------------------------- MAST


class _Mast:
    """The TIC lookups of one :func:`stellar_properties` call (errors kept per star)."""

    def __init__(self, client: MastClient, on_error: OnError) -> None:
        self.client = client
        self.on_error = on_error
        self.rows: list[dict[str, Any]] = []
        self.errors: dict[int, str] = {}  # star position → message
        self._stop = threading.Event()
        self._stop_message = ""
        self._lock = threading.Lock()

    def run(self, calls: Sequence[tuple[Sequence[int], Callable[[], Rows]]]) -> None:
        """Make ``calls`` (each for some star positions), ``concurrency`` at a time.

        After a failure nothing more is asked of MAST (it has failed its retries already),
        unless running offline, where each call is only a look into the cache.
        """
        stop_after_failure = self.on_error == "raise" or not self.client.settings.offline

        def guarded(call: Callable[[], Rows]) -> Rows:
            if self._stop.is_set():
                raise ArchiveError(self._stop_message)
            try:
                return call()
            except ArchiveError as exc:
                if stop_after_failure:
                    with self._lock:
                        if not self._stop.is_set():
                            self._stop_message = f"not asked after an earlier failure: {exc}"
                            self._stop.set()
                raise

        with ThreadPoolExecutor(max_workers=self.client.settings.concurrency) as pool:
            futures = [(stars, pool.submit(guarded, call)) for stars, call in calls]
            for stars, future in futures:
                try:
                    self.rows.extend(future.result())
                except ArchiveError as exc:
                    if self.on_error == "raise":
                        raise
                    for star in stars:
                        self.errors.setdefault(int(star), str(exc))

    def table(self) -> pd.DataFrame:
        """The rows found so far, as :func:`read_catalog` returns them."""
        frame = pd.DataFrame(self.rows)
        for column in ("ID", "KIC", "ra", "dec", *TIC_NAMES.values()):
            if column not in frame.columns:
                frame[column] = np.nan
        table = normalise_catalog(frame, "the TIC at MAST")
        return table.drop_duplicates(["ID"], keep="first").reset_index(drop=True)


def _from_mast(
    stars: pd.DataFrame, client: MastClient, on_error: OnError, radius_arcsec: float
) -> tuple[pd.DataFrame, dict[int, str]]:
    """TIC rows for ``stars``: by TIC ID, then KIC, then a cone per star still unmatched."""
    mast = _Mast(client, on_error)
    step = client.settings.query_batch
    for star_column, column in (("tic", "ID"), ("kic", "KIC")):
        rows, _ = match_catalog(stars, mast.table(), by_position=False)
        keys = stars[star_column].to_numpy(np.int64)
        todo = (rows < 0) & (keys > 0)
        ids = sorted({int(k) for k in keys[todo]})
        by_id: dict[int, list[int]] = {}
        for position in np.flatnonzero(todo):
            by_id.setdefault(int(keys[position]), []).append(int(position))
        calls = []
        for first in range(0, len(ids), step):
            batch = ids[first : first + step]
            label = "TIC ID" if column == "ID" else "KIC"
            what = f"TIC rows of {len(batch)} stars by {label} ({label} {batch[0]}...)"
            calls.append(
                (
                    [p for i in batch for p in by_id[i]],
                    lambda batch=batch, column=column, what=what: client.tic_rows(
                        column, batch, what
                    ),
                )
            )
        mast.run(calls)
    rows, _ = match_catalog(stars, mast.table(), radius_arcsec=radius_arcsec)
    ra, dec = stars["ra"].to_numpy(np.float64), stars["dec"].to_numpy(np.float64)
    cones = []
    for position in np.flatnonzero((rows < 0) & np.isfinite(ra) & np.isfinite(dec)):
        star = stars["star"].iloc[position]
        what = (
            f"TIC cone of {radius_arcsec:g} arcsec around star {star} "
            f"({ra[position]:.6f}, {dec[position]:+.6f})"
        )
        cones.append(
            (
                [int(position)],
                lambda r=ra[position], d=dec[position], what=what: client.tic_cone(
                    float(r), float(d), radius_arcsec, what
                ),
            )
        )
    mast.run(cones)
    return mast.table(), mast.errors


# --------------------------------------------------------------------------------- public


def _star_table(stars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(stars, pd.DataFrame):
        raise ConfigError(f"stars must be a DataFrame with columns {', '.join(STAR_COLUMNS)}")
    missing = [c for c in STAR_COLUMNS if c not in stars.columns]
    if missing:
        raise ConfigError(
            f"the stars table lacks the columns {', '.join(missing)} (it needs "
            f"{', '.join(STAR_COLUMNS)}; unknown IDs as -1, unknown positions as NaN)"
        )
    table = pd.DataFrame({"star": pd.to_numeric(stars["star"]).to_numpy(np.int64)})
    if table["star"].duplicated().any():
        raise ConfigError("the stars table has the same star more than once")
    for column in ("tic", "kic", "epic"):
        table[column] = _id_values(stars[column].reset_index(drop=True))
    for column in ("ra", "dec"):
        table[column] = pd.to_numeric(stars[column], errors="coerce").to_numpy(
            np.float64, na_value=np.nan
        )
    return table


def _empty_result(table: pd.DataFrame, kind: str, note: str = "") -> pd.DataFrame:
    n = len(table)
    result = pd.DataFrame(
        {name: np.full(n, np.nan) for name in STELLAR_COLUMNS},
        index=pd.Index(table["star"].to_numpy(np.int64), name="star"),
    )
    result["stellar_tic"] = np.full(n, -1, dtype=np.int64)
    result["stellar_source"] = np.full(n, kind, dtype=object)
    result["stellar_note"] = np.full(n, note, dtype=object)
    return result


def _fill(
    result: pd.DataFrame, catalog: pd.DataFrame, rows: IntArray, kinds: npt.NDArray[np.object_]
) -> None:
    found = rows >= 0
    for name, tic_name in TIC_NAMES.items():
        values = np.full(len(rows), np.nan)
        values[found] = catalog[tic_name].to_numpy(np.float64)[rows[found]]
        if name == "contratio":
            values[values < 0] = np.nan
        elif name not in ("logg", "tmag"):  # a zero or negative size or mass is no measurement
            values[values <= 0] = np.nan
        result[name] = values
    rho = result["rho"].to_numpy(np.float64, copy=True)
    mass, radius = result["mass"].to_numpy(np.float64), result["radius"].to_numpy(np.float64)
    derive = ~np.isfinite(rho) & np.isfinite(mass) & np.isfinite(radius)
    rho[derive] = mass[derive] / radius[derive] ** 3
    result["rho"] = rho
    ids = np.full(len(rows), -1, dtype=np.int64)
    ids[found] = catalog["ID"].to_numpy(np.int64)[rows[found]]
    result["stellar_tic"] = ids
    result["stellar_source"] = kinds


def stellar_properties(
    stars: pd.DataFrame,
    *,
    source: str,
    settings: MastSettings | None = None,
    storage_options: SourceOptions = None,
    mast: MastClient | None = None,
    on_error: OnError = "raise",
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> pd.DataFrame:
    """Stellar properties of each star, from the TIC at MAST, a catalogue table, or none.

    Parameters
    ----------
    stars : DataFrame
        One row per star: ``star`` (its index in the cube), ``kic``, ``epic``, ``tic``
        (unknown as -1, 0 or NaN) and ``ra``, ``dec`` (degrees; NaN where unknown), as the
        cube's star coordinates hold them.
    source : str
        ``"mast"``, ``"none"``, or the URL or path of a catalogue table (Parquet or CSV with
        TIC-named columns; see the module docstring and :func:`default_catalog_url`).
    settings : MastSettings, optional
        Cache folder, offline mode, retries and batching of the MAST lookups (the defaults
        of :class:`~starskope_dask.mast.MastSettings` when omitted). Ignored unless
        ``source == "mast"``.
    storage_options : StorageConfig or mapping, optional
        fsspec options for a remote catalogue table.
    mast : MastClient, optional
        The client for MAST lookups (tests pass one with a fake backend); made from
        ``settings`` when omitted.
    on_error : {"raise", "nan"}
        ``"raise"``: a bad catalogue or a MAST failure raises. ``"nan"``: the stars concerned
        get NaN properties, ``stellar_source == "error"`` and the message in
        ``stellar_note``; a warning is logged.
    radius_arcsec : float
        Largest separation of a match by position (2″).

    Returns
    -------
    DataFrame
        Indexed by ``star`` (the input's order): the :data:`STELLAR_COLUMNS` (float64, NaN
        where unknown; ``rho`` from ``mass / radius**3`` where the catalogue has none),
        ``stellar_tic`` (int64, TIC ID of the matched row, -1 when none), ``stellar_source``
        (one of :data:`MATCH_KINDS`: how the row was found, ``missing`` when not found,
        ``none`` when not looked up, ``error`` when the lookup failed) and ``stellar_note``
        (why a star has no row; empty otherwise). ``attrs["stellar_source"]`` is ``source``.

    Raises
    ------
    ConfigError
        For a ``stars`` table without the columns above, or a bad ``on_error``.
    CatalogError
        If the catalogue table is missing, unreadable or has no ID column (``on_error="raise"``).
    ArchiveError
        If MAST fails after its retries, or a call is not cached when offline, naming the
        call (``on_error="raise"``).
    """
    if on_error not in ("raise", "nan"):
        raise ConfigError(f"on_error must be 'raise' or 'nan', not {on_error!r}")
    if not (isinstance(radius_arcsec, int | float) and 0 < radius_arcsec <= 3600):
        raise ConfigError(f"radius_arcsec must be in (0, 3600], not {radius_arcsec!r}")
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"source must be 'mast', 'none' or a catalogue URL, not {source!r}")
    table = _star_table(stars)
    kind = source.strip().lower()
    if kind == "none":
        result = _empty_result(table, "none", "no stellar catalogue asked for")
        result.attrs["stellar_source"] = source
        return result
    result = _empty_result(table, "missing")
    errors: dict[int, str] = {}
    if kind == "mast":
        client = mast or MastClient(settings)
        catalog, errors = _from_mast(table, client, on_error, float(radius_arcsec))
        where = "the TIC at MAST"
    else:
        where = source
        try:
            catalog = read_catalog(source, storage_options)
        except CatalogError as exc:
            if on_error == "raise":
                raise
            logger.warning("no stellar properties: %s", exc)
            result = _empty_result(table, "error", str(exc))
            result.attrs["stellar_source"] = source
            return result
    rows, kinds = match_catalog(table, catalog, radius_arcsec=float(radius_arcsec))
    _fill(result, catalog, rows, kinds)
    notes = np.full(len(table), "", dtype=object)
    notes[rows < 0] = f"not in {where} by TIC, KIC, EPIC or within {radius_arcsec:g} arcsec"
    sources = result["stellar_source"].to_numpy(object, copy=True)
    for position, message in errors.items():
        if rows[position] < 0:
            sources[position] = "error"
            notes[position] = message
    result["stellar_source"] = sources
    result["stellar_note"] = notes
    if errors:
        failed = int(np.sum(sources == "error"))
        logger.warning(
            "no stellar properties for %d stars: %s", failed, next(iter(errors.values()))
        )
    counts = pd.Series(sources).value_counts().to_dict()
    logger.info("stellar properties from %s: %s", where, counts)
    result.attrs["stellar_source"] = source
    return result
