"""The features store's schema: every variable, its dims, dtype, fill value and meaning.

One place defines what ``xr.open_zarr(FEATURES_URL)`` holds, so the per-star functions, the
writer and the training stage agree. Sizes of the non-star dims come from the config
(``signal`` = ``max_signals``, ``frequency`` = ``nperseg // 2 + 1``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from starskope_dask.config import FeaturesConfig
from starskope_dask.records import MISSIONS

#: Star status codes (the ``status`` variable); reasons are in the chunk records.
STATUS_OK = 0
STATUS_TOO_LITTLE_DATA = 1
STATUS_FAILED = 2
STATUS_MEANINGS = "ok too_little_data failed"

#: Most single transits and allowed long periods kept per star.
MAX_SINGLE_TRANSITS = 4
MAX_ALLOWED_PERIODS = 8

#: Stellar properties (TIC names) and units, in the order they are stored.
STELLAR_VARIABLES: dict[str, str] = {
    "teff": "K",
    "logg": "log10(cm s-2)",
    "radius": "solRad",
    "mass": "solMass",
    "rho": "solRho",
    "tmag": "mag",
    "contratio": "1",
}


@dataclasses.dataclass(frozen=True)
class Variable:
    """One variable of the features store."""

    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str

    @property
    def fill(self) -> Any:
        """Fill value: NaN for floats, -1 for integers."""
        return np.nan if np.dtype(self.dtype).kind == "f" else -1


def dim_sizes(config: FeaturesConfig) -> dict[str, int]:
    """Sizes of every dim but ``star``."""
    return {
        "signal": config.max_signals,
        "frequency": config.nperseg // 2 + 1,
        "spectrogram_time": config.spectrogram_time,
        "spectrogram_band": config.spectrogram_freq,
        "global_bin": config.global_bins,
        "local_bin": config.local_bins,
        "single": MAX_SINGLE_TRANSITS,
        "allowed": MAX_ALLOWED_PERIODS,
    }


def _v(dims: tuple[str, ...], dtype: str, units: str, long_name: str) -> Variable:
    return Variable(("star", *dims), dtype, units, long_name)


_SIG = ("signal",)
VARIABLES: dict[str, Variable] = {
    # the star
    "status": _v((), "int8", "1", f"0 ok, 1 too little data, 2 failed ({STATUS_MEANINGS})"),
    "n_points": _v((), "int32", "1", "observed grid steps"),
    "baseline_days": _v((), "float32", "d", "last minus first observed time"),
    "missions_observed": _v((), "int8", "1", "bit i set: MISSIONS[i] has data"),
    "noise_ppm": _v((), "float32", "ppm", "robust point-to-point scatter of detrended flux"),
    "n_signals": _v((), "int8", "1", "transit signals above the SNR threshold"),
    "n_removed_sinusoids": _v(
        (), "int8", "1", "sinusoids (pulsation, rotation) that posed as transits, removed"
    ),
    # transit signals, strongest first
    "period": _v(_SIG, "float64", "d", "orbital period"),
    "t0": _v(_SIG, "float64", "d", "mid-transit time, BJD_TDB"),
    "duration": _v(_SIG, "float32", "d", "transit duration (box)"),
    "depth": _v(_SIG, "float32", "1", "transit depth, relative flux (re-detrended, masked)"),
    "depth_err": _v(_SIG, "float32", "1", "1-sigma error of depth"),
    "snr": _v(_SIG, "float32", "1", "depth / depth_err"),
    "sde": _v(_SIG, "float32", "1", "signal detection efficiency of the periodogram peak"),
    "n_transits": _v(_SIG, "int16", "1", "transits with data"),
    "missions_used": _v(_SIG, "int8", "1", "bit i set: MISSIONS[i] has in-transit data"),
    "harmonic_of": _v(
        _SIG, "int8", "1", "stronger signal whose period is a small-integer ratio of this one's"
    ),
    "odd_even_ratio": _v(_SIG, "float32", "1", "depth of odd transits / depth of even ones"),
    "odd_even_sigma": _v(_SIG, "float32", "1", "odd-even depth difference in sigmas"),
    "secondary_depth": _v(_SIG, "float32", "1", "eclipse depth near phase 0.5"),
    "secondary_depth_err": _v(_SIG, "float32", "1", "1-sigma error of secondary_depth"),
    "global_view": _v((*_SIG, "global_bin"), "float32", "1", "AstroNet global view"),
    "local_view": _v((*_SIG, "local_bin"), "float32", "1", "AstroNet local view"),
    "local_view_odd": _v((*_SIG, "local_bin"), "float32", "1", "local view, odd transits"),
    "local_view_even": _v((*_SIG, "local_bin"), "float32", "1", "local view, even transits"),
    # single transits and the long periods they allow
    "n_single_transits": _v((), "int8", "1", "single transit events not explained by a signal"),
    "single_t0": _v(("single",), "float64", "d", "single transit mid-time, BJD_TDB"),
    "single_duration": _v(("single",), "float32", "d", "single transit duration"),
    "single_depth": _v(("single",), "float32", "1", "single transit depth"),
    "single_snr": _v(("single",), "float32", "1", "single transit SNR"),
    "long_period": _v((), "float64", "d", "period determined by three or more single transits"),
    "long_period_allowed": _v(("allowed",), "float64", "d", "periods two singles allow"),
    # spectra and variability
    "power_spectrum": _v(("frequency",), "float32", "d", "Welch PSD of relative flux (1/c/d)"),
    "n_spectrum_windows": _v((), "int16", "1", "windows averaged into the power spectrum"),
    "spectrogram": _v(
        ("spectrogram_time", "spectrogram_band"), "float32", "1", "log10 PSD per window, band"
    ),
    "variability_amplitude": _v((), "float32", "1", "5-95 % range of relative flux"),
    "rotation_period": _v((), "float32", "d", "strongest Lomb-Scargle period (rotation)"),
    "rotation_power": _v((), "float32", "1", "Lomb-Scargle power of rotation_period"),
    "pulsation_period": _v((), "float32", "d", "strongest short period (pulsation)"),
    # stellar properties (TIC)
    **{
        name: _v((), "float32", unit, f"stellar {name} (TIC)")
        for name, unit in STELLAR_VARIABLES.items()
    },
}


def empty_block(config: FeaturesConfig, n_stars: int) -> dict[str, npt.NDArray[Any]]:
    """Every variable for ``n_stars`` stars, filled with its fill value."""
    sizes = {"star": n_stars, **dim_sizes(config)}
    return {
        name: np.full(tuple(sizes[d] for d in var.dims), var.fill, dtype=var.dtype)
        for name, var in VARIABLES.items()
    }


def mission_bits(names: Mapping[str, Any] | tuple[str, ...] | list[str]) -> int:
    """Bit mask of mission names (bit i = ``MISSIONS[i]``)."""
    return sum(1 << MISSIONS.index(name) for name in names if name in MISSIONS)
