"""PNG plots of what people look at (Agg backend; no display needed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MISSION_COLOURS = {"Kepler": "tab:blue", "K2": "tab:orange", "TESS": "tab:red"}


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


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
