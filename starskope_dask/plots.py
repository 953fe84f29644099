"""PNG plots of what people look at (Agg backend; no display needed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MISSION_COLOURS = {"Kepler": "tab:blue", "K2": "tab:orange", "TESS": "tab:red"}


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write and close a matplotlib figure; the path written."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    logger.info("wrote %s", path)
    return Path(path)


def plot_cube_stars(cube: Any, stars: Sequence[int], path: str | Path, title: str = "") -> Path:
    """Plot the aligned multi-mission light curves of a few stars of a cube, one panel each.

    Parameters
    ----------
    cube : xarray.Dataset
        The store's Dataset (dims ``mission``, ``star``, ``time``).
    stars : sequence of int
        Star rows to plot.
    path : path
        PNG to write.
    title : str
        Figure title.

    Returns
    -------
    Path
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(stars), 1, figsize=(11, 2.4 * max(len(stars), 1)), squeeze=False)
    time = cube["time"].values
    for ax, star in zip(axes[:, 0], stars, strict=True):
        block = cube["flux"].sel(star=star).values  # (mission, time)
        label = _star_label(cube, star)
        for m, mission in enumerate(cube["mission"].values):
            good = np.isfinite(block[m])
            if good.any():
                ax.plot(
                    time[good] - 2454833.0,
                    block[m][good],
                    ".",
                    ms=1.2,
                    color=MISSION_COLOURS.get(str(mission), "k"),
                    label=str(mission),
                )
        ax.set_ylabel("norm. flux")
        ax.set_title(label, fontsize=9, loc="left")
        ax.legend(loc="upper right", fontsize=7, markerscale=6)
    axes[-1, 0].set_xlabel("BJD_TDB - 2454833 (days)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def _star_label(cube: Any, star: int) -> str:
    parts = [f"star {star}"]
    for name, prefix in (("kic", "KIC"), ("epic", "EPIC"), ("tic", "TIC")):
        value = int(cube[name].sel(star=star).values)
        if value >= 0:
            parts.append(f"{prefix} {value}")
    parts.append(
        f"RA {float(cube['ra'].sel(star=star)):.4f} Dec {float(cube['dec'].sel(star=star)):+.4f}"
    )
    return "  ".join(parts)


def plot_star_page(
    features: Any,
    star: int,
    path: str | Path,
    storage_options: Any = None,
) -> Path:
    """One page for one star: what its features were made from and what they are.

    Panels: the aligned light curve by mission (from the cube the features came from), the
    detrended curve with the transits of each signal marked, the power spectrum, the transit
    search periodogram with its peak, the global and local views (odd and even too) of the
    strongest signal, and the spectrogram.

    Parameters
    ----------
    features : xarray.Dataset
        The features store (``starskope features`` output).
    star : int
        Star row.
    path : path
        PNG to write.
    storage_options : mapping, optional
        fsspec options for an ``s3://`` cube.

    Returns
    -------
    Path
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from starskope_dask.config import FeaturesConfig
    from starskope_dask.features import search
    from starskope_dask.features.compute import analyse_star, periodogram
    from starskope_dask.features.series import star_series
    from starskope_dask.store import open_cube

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cube = open_cube(str(features.attrs["cube"]), storage_options)
    import json

    config = FeaturesConfig(**json.loads(features.attrs["parameters"]))
    block = cube.isel(star=star)
    series = star_series(
        block["flux"].values,
        block["flux_err"].values,
        cube["time"].values,
        float(cube.attrs["grid_cadence_days"]),
    )
    row = features.isel(star=star)
    fig = plt.figure(figsize=(12, 13))
    grid = fig.add_gridspec(5, 2, height_ratios=(1, 1, 1, 1, 1.1))
    ax_raw = fig.add_subplot(grid[0, :])
    ax_flat = fig.add_subplot(grid[1, :])
    ax_psd = fig.add_subplot(grid[2, 0])
    ax_bls = fig.add_subplot(grid[2, 1])
    ax_global = fig.add_subplot(grid[3, 0])
    ax_local = fig.add_subplot(grid[3, 1])
    ax_spec = fig.add_subplot(grid[4, :])
    offset = 2454833.0
    for m, mission in enumerate(cube["mission"].values):
        good = series.mission == m
        if good.any():
            ax_raw.plot(
                series.time[good] - offset,
                series.flux[good],
                ".",
                ms=1,
                color=MISSION_COLOURS.get(str(mission), "k"),
                label=str(mission),
            )
    ax_raw.set_ylabel("norm. flux")
    ax_raw.legend(loc="upper right", fontsize=7, markerscale=6)
    ax_raw.set_title(_star_label(features, star), fontsize=9, loc="left")
    periods = row["period"].values
    if series.size >= config.min_points:
        analysis = analyse_star(series, config)
        clean = analysis.clean
        ax_flat.plot(
            series.time[clean] - offset, analysis.detrended.flux[clean], ".", ms=1, color="0.3"
        )
        for i, signal in enumerate(analysis.signals):
            # mark the transits that have data (not the years between missions)
            observed = series.time[
                search.transit_mask(series.time, signal.period, signal.t0, signal.duration)
            ]
            mids = np.unique(
                signal.t0 + np.round((observed - signal.t0) / signal.period) * signal.period
            )
            ax_flat.plot(
                mids - offset,
                np.full(mids.size, np.nanmin(analysis.detrended.flux[clean])),
                "^",
                ms=4,
                color=f"C{i + 1}",
                label=f"P = {signal.period:.5f} d",
            )
        if analysis.signals:
            ax_flat.legend(loc="lower right", fontsize=7)
        trial, power = periodogram(analysis, config)
        if trial.size:
            ax_bls.plot(trial, power, lw=0.6, color="k")
            ax_bls.set_xscale("log")
            for i, period in enumerate(periods[np.isfinite(periods)]):
                ax_bls.axvline(period, color=f"C{i + 1}", lw=1, alpha=0.7)
    ax_flat.set_ylabel("detrended")
    ax_flat.set_xlabel("BJD_TDB - 2454833 (days)")
    ax_bls.set_xlabel("period (d)")
    ax_bls.set_ylabel("search power")
    freq, psd = features["frequency"].values, row["power_spectrum"].values
    if np.isfinite(psd).any():
        ax_psd.loglog(freq[1:], psd[1:], lw=0.7, color="k")
    ax_psd.set_xlabel("frequency (1/d)")
    ax_psd.set_ylabel("PSD")
    phase = features["global_phase"].values
    local_phase = features["local_phase"].values
    if np.isfinite(periods[0]):
        ax_global.plot(phase, row["global_view"].values[0], ".", ms=1.5, color="k")
        ax_local.plot(local_phase, row["local_view"].values[0], "-", color="k", label="all")
        ax_local.plot(
            local_phase, row["local_view_odd"].values[0], "-", lw=0.8, color="C1", label="odd"
        )
        ax_local.plot(
            local_phase, row["local_view_even"].values[0], "-", lw=0.8, color="C2", label="even"
        )
        ax_local.legend(fontsize=7)
        ax_global.set_title(
            f"P = {periods[0]:.5f} d, depth {1e6 * float(row['depth'].values[0]):.0f} ppm, "
            f"SNR {float(row['snr'].values[0]):.1f}",
            fontsize=8,
        )
    ax_global.set_xlabel("phase")
    ax_global.set_ylabel("global view")
    ax_local.set_xlabel("time from mid-transit (durations)")
    ax_local.set_ylabel("local view")
    spec = row["spectrogram"].values
    if np.isfinite(spec).any():
        bands = features["spectrogram_band"].values
        ax_spec.imshow(
            spec.T,
            aspect="auto",
            origin="lower",
            cmap="viridis",
            interpolation="nearest",
            extent=(0, spec.shape[0], 0, spec.shape[1]),
        )
        ticks = np.linspace(0, spec.shape[1] - 1, 5).astype(int)
        ax_spec.set_yticks(ticks + 0.5, [f"{bands[t]:.2g}" for t in ticks])
    ax_spec.set_xlabel("window (time order)")
    ax_spec.set_ylabel("frequency (1/d)")
    ax_spec.set_title("spectrogram (log10 PSD)", fontsize=8, loc="left")
    return save_figure(fig, path, dpi=90)


def plot_stamps(stamps: Any, path: str | Path, most: int = 6, aperture: int = 3) -> Path:
    """TESS FFI postage stamps (a cutout store): per stamp its median image with the target
    marked and the aperture light curve (the sum of the ``aperture`` x ``aperture`` pixels
    around the target, less the median of the stamp's border pixels per pixel).

    Parameters
    ----------
    stamps : xarray.Dataset
        From :func:`starskope_dask.ffi.open_cutouts` (dims star, time, y, x).
    path : path
        PNG to write.
    most : int
        Stamps to show.
    aperture : int
        Side of the square aperture, in pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(range(min(most, stamps.sizes["star"])))
    fig, axes = plt.subplots(
        len(rows) or 1, 2, figsize=(10, 2.4 * max(1, len(rows))), squeeze=False
    )
    for axis_row, star in zip(axes, rows, strict=False):
        flux = np.asarray(stamps["flux"].isel(star=star).values, dtype=np.float64)
        time = np.asarray(stamps["time"].isel(star=star).values, dtype=np.float64)
        image = np.nanmedian(flux, axis=0)
        axis_row[0].imshow(image, origin="lower", cmap="viridis")
        cy, cx = (round(float(v)) for v in _stamp_centre(stamps, star, image))
        axis_row[0].plot([cx], [cy], "r+", markersize=10)
        border = np.concatenate(
            [flux[:, 0, :], flux[:, -1, :], flux[:, :, 0], flux[:, :, -1]], axis=1
        )
        sky = np.nanmedian(border, axis=1)
        half = aperture // 2
        box = flux[:, max(0, cy - half) : cy + half + 1, max(0, cx - half) : cx + half + 1]
        light_curve = np.nansum(box, axis=(1, 2)) - sky * box.shape[1] * box.shape[2]
        axis_row[1].plot(time - 2457000.0, light_curve, ".", markersize=2)
        target = str(stamps["target"].values[star]) if "target" in stamps else f"stamp {star}"
        axis_row[0].set_title(target, fontsize=9)
        axis_row[1].set_title(f"{aperture}x{aperture} aperture, sky subtracted", fontsize=9)
        axis_row[1].set_xlabel("BJD_TDB - 2457000")
    return save_figure(fig, path)


def _stamp_centre(stamps: Any, star: int, image: Any) -> tuple[float, float]:
    """The target's (y, x) in the stamp: the store's position, else the brightest pixel."""
    for y_name, x_name in (("star_y", "star_x"),):
        if y_name in stamps and x_name in stamps:
            return float(stamps[y_name].values[star]), float(stamps[x_name].values[star])
    y, x = np.unravel_index(int(np.nanargmax(image)), image.shape)
    return float(y), float(x)
