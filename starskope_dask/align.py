"""The ``align`` stage (pure science, no I/O): cross-match stars, put light curves on the grid.

* :func:`cross_match` joins products into stars by catalogue ID and by sky position
  (astropy ``search_around_sky`` within a tolerance), keeping existing star rows stable.
* :func:`grid_cells` bins one light curve onto the global BJD_TDB grid: flux normalised by
  the median of its good cadences (per product = per segment), finer cadences averaged per
  grid step with their errors propagated (``sqrt(sum err^2) / n``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky

from starskope_dask.config import GridConfig
from starskope_dask.records import MISSIONS, LightCurve

ID_COLUMNS = ("kic", "epic", "tic")
STAR_COLUMNS = ("star", "ra", "dec", "kic", "epic", "tic", "missions")


def grid_times(grid: GridConfig) -> npt.NDArray[np.float64]:
    """The grid's BJD_TDB timestamps (start of each step plus half a step)."""
    return grid.start_bjd + grid.cadence_days * (np.arange(grid.size, dtype=np.float64) + 0.5)


def grid_index(time: npt.ArrayLike, grid: GridConfig) -> npt.NDArray[np.int64]:
    """Grid step of each BJD_TDB time (may fall outside ``[0, grid.size)``)."""
    steps = np.floor((np.asarray(time, dtype=np.float64) - grid.start_bjd) / grid.cadence_days)
    return steps.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class GriddedFlux:
    """A light curve on the global grid: occupied steps and their values."""

    index: npt.NDArray[np.int64]
    flux: npt.NDArray[np.float32]
    flux_err: npt.NDArray[np.float32]
    median: float


def grid_cells(lc: LightCurve, grid: GridConfig) -> GriddedFlux:
    """Normalise a light curve by its good-cadence median and bin it onto the grid.

    Parameters
    ----------
    lc : LightCurve
        One product (one segment).
    grid : GridConfig
        The global grid.

    Returns
    -------
    GriddedFlux
        Only grid steps holding at least one good cadence; flux in units of the median.
    """
    good = lc.good
    time, flux, err = lc.time[good], lc.flux[good], lc.flux_err[good]
    empty = GriddedFlux(
        np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), math.nan
    )
    if flux.size == 0:
        return empty
    median = float(np.median(flux))
    if not np.isfinite(median) or median == 0:
        return empty
    steps = grid_index(time, grid)
    inside = (steps >= 0) & (steps < grid.size)
    steps, flux, err = steps[inside], flux[inside] / median, err[inside] / abs(median)
    if steps.size == 0:
        return empty
    if steps.size > 1 and not np.all(steps[1:] >= steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, flux, err = steps[order], flux[order], err[order]
    # Time-sorted cadences: each grid step is one run of equal steps; sum per run.
    starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])
    cells = steps[starts]
    counts = np.diff(np.r_[starts, steps.size])
    mean = np.add.reduceat(flux, starts) / counts
    known = np.isfinite(err)
    err_sq = np.add.reduceat(np.where(known, err * err, 0.0), starts)
    binned_err = np.sqrt(err_sq) / counts
    binned_err[np.add.reduceat(known, starts) < counts] = np.nan
    return GriddedFlux(cells, mean.astype(np.float32), binned_err.astype(np.float32), median)


def empty_grid_reason(lc: LightCurve, grid: GridConfig) -> str:
    """Why :func:`grid_cells` gives a light curve no cell (for the failure it becomes)."""
    n_good = lc.n_good
    if n_good == 0:
        return (
            f"no usable cadence: none of its {len(lc)} has a finite time and flux and no "
            "flag of the quality bitmask"
        )
    flux = lc.flux[lc.good]
    median = float(np.median(flux))
    if not np.isfinite(median) or median == 0:
        return f"no usable cadence: the median flux of its {n_good} good cadences is {median:g}"
    start, stop = lc.time_range
    return (
        f"no usable cadence on the grid: its times (BJD_TDB {start:.2f}..{stop:.2f}) lie "
        f"outside grid.start_bjd..grid.stop_bjd ({grid.start_bjd:.1f}..{grid.stop_bjd:.1f})"
    )


# ----------------------------------------------------------------------- cross-match


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cross_match(
    products: pd.DataFrame,
    radius_arcsec: float,
    existing_stars: pd.DataFrame | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Group products into stars by catalogue ID and sky position.

    Two products are the same star when they share a KIC, EPIC or TIC ID, or lie within
    ``radius_arcsec`` of each other (what joins a star's KIC and TIC products). Existing stars
    keep their row numbers; new stars are appended in a deterministic order (by RA, Dec, IDs).

    Parameters
    ----------
    products : DataFrame
        Columns ``ra``, ``dec``, ``kic``, ``epic``, ``tic``, ``mission`` (IDs nullable).
    radius_arcsec : float
        Position tolerance.
    existing_stars : DataFrame, optional
        The store's star table (columns ``STAR_COLUMNS``).

    Returns
    -------
    star_of_product : Series
        Star row of each product (index aligned with ``products``).
    stars : DataFrame
        The full star table, existing rows first.
    """
    existing = (
        existing_stars.reset_index(drop=True)
        if existing_stars is not None
        else pd.DataFrame(columns=list(STAR_COLUMNS))
    )
    n_old, n_new = len(existing), len(products)
    ra = np.concatenate([existing["ra"].to_numpy(float), products["ra"].to_numpy(float)])
    dec = np.concatenate([existing["dec"].to_numpy(float), products["dec"].to_numpy(float)])
    finder = _UnionFind(n_old + n_new)
    # Shared catalogue IDs.
    for column in ID_COLUMNS:
        ids = pd.concat([existing[column], products[column]], ignore_index=True)
        ids = pd.to_numeric(ids, errors="coerce").astype("float64")
        ids = ids.where((ids >= 0) & (ids < 2**62))  # -1 marks "no such ID" in the star table
        first: dict[int, int] = {}
        for position, value in enumerate(ids.to_numpy()):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            key = int(value)
            if key in first:
                finder.union(first[key], position)
            else:
                first[key] = position
    # Sky position (the reader gives NaN for impossible ones; anything else is not trusted).
    known = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if known.size > 1:
        coords = SkyCoord(ra[known] * u.deg, dec[known] * u.deg)
        left, right, _, _ = search_around_sky(coords, coords, radius_arcsec * u.arcsec)
        for a, b in zip(known[left], known[right], strict=True):
            if a < b:
                finder.union(int(a), int(b))
    roots = np.array([finder.find(i) for i in range(n_old + n_new)], dtype=np.int64)
    # Existing stars that the new products join (two old stars merged stay two rows: the
    # lower row wins, so nothing already written moves).
    row_of_root: dict[int, int] = {}
    for row in range(n_old):
        row_of_root.setdefault(int(roots[row]), row)
    new_roots = _new_roots_in_sky_order(products, roots[n_old:], set(row_of_root))
    for offset, root in enumerate(new_roots):
        row_of_root[root] = n_old + offset
    star_rows = np.array([row_of_root[int(r)] for r in roots[n_old:]], dtype=np.int64)
    stars = _star_table(existing, products, star_rows, n_old + len(new_roots))
    return pd.Series(star_rows, index=products.index, name="star"), stars


def _new_roots_in_sky_order(
    products: pd.DataFrame, roots: npt.NDArray[np.int64], old_roots: set[int]
) -> list[int]:
    """Roots of new stars, ordered by their products' smallest RA, then Dec (one groupby)."""
    keys = (
        pd.DataFrame(
            {
                "root": roots,
                "ra": products["ra"].to_numpy(float),
                "dec": products["dec"].to_numpy(float),
            }
        )
        .groupby("root")
        .min()
        .fillna(np.inf)
    )
    keys = keys[~keys.index.isin(list(old_roots))]
    return [int(r) for r in keys.sort_values(["ra", "dec"], kind="stable").index]


def _star_table(
    existing: pd.DataFrame, products: pd.DataFrame, star_rows: npt.NDArray[np.int64], n_stars: int
) -> pd.DataFrame:
    table = pd.DataFrame({"star": np.arange(n_stars, dtype=np.int64)})
    for column in ("ra", "dec"):
        values = np.full(n_stars, np.nan)
        values[: len(existing)] = existing[column].to_numpy(float)
        table[column] = values
    for column in ID_COLUMNS:
        values = np.full(n_stars, -1, dtype=np.int64)
        if len(existing):
            values[: len(existing)] = pd.to_numeric(existing[column]).fillna(-1).to_numpy(np.int64)
        table[column] = values
    missions: list[set[str]] = [
        set(str(m).split(",")) - {""} for m in existing["missions"].tolist()
    ] + [set() for _ in range(n_stars - len(existing))]
    frame = products[["ra", "dec", "mission", *ID_COLUMNS]].assign(_star=star_rows)
    for column in (*ID_COLUMNS, "ra", "dec"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    groups = frame.groupby("_star", sort=True)
    rows = np.asarray(groups.size().index, dtype=np.int64)
    for column in ("ra", "dec"):  # new stars: the mean position of their products
        values = table[column].to_numpy(float, copy=True)
        unset = ~np.isfinite(values[rows])
        values[rows[unset]] = groups[column].mean().to_numpy(float)[unset]
        table[column] = values
    for column in ID_COLUMNS:  # an ID the star lacks: its products' first
        values = table[column].to_numpy(np.int64, copy=True)
        first = groups[column].first().to_numpy(float)
        take = np.isfinite(first) & (values[rows] < 0)
        values[rows[take]] = first[take].astype(np.int64)
        table[column] = values
    seen = frame[["_star", "mission"]].astype({"mission": str}).drop_duplicates()
    for star, mission in zip(seen["_star"].to_numpy(), seen["mission"].to_numpy(), strict=True):
        missions[int(star)].add(str(mission))
    order = {m: i for i, m in enumerate(MISSIONS)}
    table["missions"] = [",".join(sorted(m, key=lambda x: order.get(x, 9))) for m in missions]
    return table
