"""A simulated archive in the missions' real FITS format and public S3 key layout, with truth.

The sky holds stars in the Kepler field, in K2 campaign fields along the ecliptic and all
over the sky for TESS; a share of Kepler-field and K2 stars are observed again by TESS at the
same coordinates, as in the real archive. Each product is a MAST-shaped light-curve file
(primary header, ``LIGHTCURVE`` table with the pipeline's columns, ``APERTURE`` image) written
under the real key layout (``kepler/public/lightcurves/...``, ``k2/public/lightcurves/...``,
``tess/public/tid/...``). Light curves carry photon and red noise set by magnitude, spots or
pulsation, per-segment systematics, the missions' gaps and flagged cadences, occasional NaNs,
and limb-darkened transits from ``batman`` or eclipsing binaries (the look-alike false
positives). The truth table lands at ``truth/stars.parquet`` and ``truth/products.parquet``,
and the matching stellar catalogue (TIC-named columns: ``ID``, ``KIC``, ``EPIC``, ``ra``, ``dec``,
``Tmag``, ``Teff``, ``logg``, ``rad``, ``mass``, ``rho``, ``contratio``) at ``catalog/tic.parquet``.
When asked (``SimulationConfig.ffi_cubes``), small TESS full-frame-image cubes in the real cube
format are written too (:func:`simulate_ffi_cube`, ``tess/public/mast/tess-sSSSS-C-D-cube.fits``),
their stars' pixels and fluxes in ``truth/ffi_stars.parquet`` and ``truth/ffi_flux.parquet``.

Every star draws from its own generator seeded by ``(seed, star index)``, so the output is
byte-identical for a seed whatever the number of processes, and memory stays flat in N
(stars are generated and written one at a time, in a pool of worker processes).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from astropy.io import fits

from starskope_dask.discover import layout_key
from starskope_dask.errors import (
    SimulationError,
    StarskopeError,
    StoreError,
    UnsupportedSchemeError,
)
from starskope_dask.fetch import (
    filesystem,
    local_path,
    url_protocol,
    writable_folder,
    writable_protocol,
)

logger = logging.getLogger(__name__)

KEPLER_BJDREF = 2454833.0
TESS_BJDREF = 2457000.0
LONG_CADENCE = 0.02043359821692
TESS_2MIN = 2.0 / 1440.0
#: Where the simulated archive's stellar catalogue lies, relative to its root.
CATALOG_KEY = "catalog/tic.parquet"
#: Mean solar density (g/cm^3): the TIC gives ``rho`` in solar units.
RHO_SUN = 1.408
#: log10 of the Sun's surface gravity (cgs).
LOGG_SUN = 4.438

# Kepler quarters: (file timestamp, BJD_TDB start, BJD_TDB stop), from the real products.
KEPLER_QUARTERS: dict[int, tuple[str, float, float]] = {
    0: ("2009131105131", 2454953.539, 2454963.245),
    1: ("2009166043257", 2454964.513, 2454997.984),
    2: ("2009259160929", 2455002.521, 2455091.467),
    3: ("2009350155506", 2455093.225, 2455182.495),
    4: ("2010078095331", 2455185.376, 2455275.203),
    5: ("2010174085026", 2455276.490, 2455371.163),
    6: ("2010265121752", 2455372.451, 2455462.296),
    7: ("2010355172524", 2455463.175, 2455552.548),
    8: ("2011073133259", 2455568.363, 2455635.345),
    9: ("2011177032512", 2455641.516, 2455738.927),
    10: ("2011271113734", 2455739.847, 2455833.269),
    11: ("2012004120508", 2455834.208, 2455931.325),
    12: ("2012088054726", 2455932.408, 2456015.022),
    13: ("2012179063303", 2456015.737, 2456106.057),
    14: ("2012277125453", 2456107.140, 2456204.322),
    15: ("2013011073258", 2456206.488, 2456304.136),
    16: ("2013098041711", 2456305.096, 2456390.959),
    17: ("2013131215648", 2456392.226, 2456424.002),
}
# K2 campaigns: (BJD_TDB start, stop, field centre RA, Dec) (approximate, public K2 pages).
K2_CAMPAIGNS: dict[int, tuple[float, float, float, float]] = {
    1: (2456810.0, 2456890.0, 174.0, 1.4),
    2: (2456894.0, 2456970.0, 246.1, -22.4),
    3: (2456977.0, 2457046.0, 336.7, -11.1),
    4: (2457061.8, 2457132.7, 59.1, 18.7),
    5: (2457139.6, 2457214.4, 130.2, 16.8),
    6: (2457217.0, 2457300.0, 204.9, -11.3),
    7: (2457301.0, 2457382.0, 287.8, -23.4),
    8: (2457392.0, 2457470.0, 16.3, 5.3),
    10: (2457582.0, 2457651.0, 186.8, -4.0),
    11: (2457656.0, 2457736.0, 260.0, -23.9),
    12: (2457738.0, 2457818.0, 351.7, -5.1),
    13: (2457820.0, 2457898.0, 72.8, 20.8),
    14: (2457900.0, 2457981.0, 160.7, 6.8),
    15: (2457988.0, 2458070.0, 233.7, -20.1),
    16: (2458094.0, 2458175.0, 133.8, 18.5),
    17: (2458180.0, 2458250.0, 202.5, -7.7),
    18: (2458251.0, 2458302.0, 130.7, 16.8),
    19: (2458362.0, 2458390.0, 347.2, -4.2),
}
KEPLER_FIELD = (290.67, 44.5)
# TESS sectors that covered the Kepler field, and the ecliptic (K2 fields).
TESS_KEPLER_FIELD_SECTORS = (14, 15, 26, 40, 41, 53, 54, 55, 74, 75, 81, 82)
TESS_ECLIPTIC_SECTORS = (42, 43, 44, 45, 46, 70, 71, 72)
TESS_S1_START = 2458325.2936
TESS_SECTOR_DAYS = 27.4

KEPLER_FLAGS = {
    "attitude": 1,
    "cosmic": 128,
    "desat": 32,
    "argabrightening": 64,
    "no_fine_point": 32768,
    "thruster": 1048576,
    "maybe_thruster": 524288,
    "manual": 256,
    "outlier": 2048,
}
TESS_FLAGS = {
    "attitude": 1,
    "cosmic": 64,
    "desat": 32,
    "argabrightening": 16,
    "manual": 128,
    "outlier": 512,
    "straylight": 2048,
}


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated archive.

    Attributes
    ----------
    n_stars : int
        Number of stars.
    missions : tuple of str
        Missions to simulate (``kepler``, ``k2``, ``tess``).
    seed : int
        Seed; the same seed gives byte-identical output.
    max_segments : int
        Most quarters/campaigns/sectors one star gets from one mission.
    planet_fraction, eb_fraction : float
        Share of stars with a transiting planet, and with an eclipsing binary.
    multi_mission_fraction : float
        Share of Kepler and K2 stars that TESS observes again.
    tess_cadence_days : float
        TESS cadence (2-min by default; 20 s is ``20/86400``).
    segment_days : float or None
        Cut every segment to this many days (for fast, small archives); ``None`` keeps the
        real lengths.
    ffi_cubes : int
        Also write this many small TESS FFI cubes in the real cube format
        (:func:`simulate_ffi_cube`), each around one of the stars TESS observes, with their
        truth in ``truth/ffi_stars.parquet`` and ``truth/ffi_flux.parquet``. 0 (the default)
        writes none, and the archive is byte-identical to one made without the option.
    ffi_pixels : int
        Rows and columns of each FFI cube (a real CCD has 2048 x 2048 science pixels).
    ffi_times : int
        FFIs (cadences) in each cube.
    """

    n_stars: int = 20
    missions: tuple[str, ...] = ("kepler", "k2", "tess")
    seed: int = 0
    max_segments: int = 3
    planet_fraction: float = 0.3
    eb_fraction: float = 0.1
    multi_mission_fraction: float = 0.4
    tess_cadence_days: float = TESS_2MIN
    segment_days: float | None = None
    ffi_cubes: int = 0
    ffi_pixels: int = 64
    ffi_times: int = 300

    def __post_init__(self) -> None:
        missions = self.missions
        if isinstance(missions, str) or not all(isinstance(m, str) for m in missions):
            raise SimulationError(
                f"missions (--missions) must be a list of mission names, not {missions!r}"
            )
        unknown = sorted(set(missions) - set(SIM_MISSIONS))
        if unknown or not missions:
            raise SimulationError(
                f"missions (--missions) must be a non-empty subset of {','.join(SIM_MISSIONS)}; "
                f"unknown: {','.join(unknown) or '(none given)'}"
            )
        _check_int("n_stars (--stars)", self.n_stars, 1, MAX_STARS)
        _check_int("seed (--seed)", self.seed, 0, 2**64 - 1, "2**64 - 1")
        _check_int("max_segments (--max-segments)", self.max_segments, 1, 1000)
        _check_int("ffi_cubes", self.ffi_cubes, 0, MAX_FFI_CUBES)
        _check_int("ffi_pixels", self.ffi_pixels, MIN_FFI_PIXELS, 2048)
        _check_int("ffi_times", self.ffi_times, 2, 100_000)
        for name in ("planet_fraction", "eb_fraction", "multi_mission_fraction"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value <= 1:
                raise SimulationError(f"{name} must be a number in [0, 1], not {value!r}")
        if not self.planet_fraction + self.eb_fraction <= 1:
            raise SimulationError("planet_fraction + eb_fraction must be within [0, 1]")
        if not _finite(self.tess_cadence_days) or not 0 < self.tess_cadence_days < 1:
            raise SimulationError(
                f"tess_cadence_days must be in (0, 1) days, not {self.tess_cadence_days!r}"
            )
        days = self.segment_days
        if days is not None and (not _finite(days) or not MIN_SEGMENT_DAYS <= days <= 1e4):
            raise SimulationError(
                f"segment_days (--segment-days) must be a number of days in "
                f"[{MIN_SEGMENT_DAYS}, 10000] (or unset for the real lengths), not {days!r}"
            )


SIM_MISSIONS = ("kepler", "k2", "tess")
#: Most FFI cubes one simulated archive holds (16 CCDs in each of 89 sectors).
MAX_FFI_CUBES = 16 * 89
#: Fewest rows and columns of a simulated FFI cube (a stamp of a few pixels must fit).
MIN_FFI_PIXELS = 8
#: Most stars one simulated archive holds.
MAX_STARS = 10_000_000
#: Shortest segment (days): a few cadences of every mission.
MIN_SEGMENT_DAYS = 0.1


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_int(name: str, value: Any, low: int, high: int, high_text: str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not low <= value <= high
    ):
        raise SimulationError(
            f"{name} must be an integer in [{low}, {high_text or high}], not {value!r}"
        )


# ------------------------------------------------------------------------------ the sky


@dataclasses.dataclass(frozen=True)
class SimStar:
    """One simulated star and its truth."""

    index: int
    home: str  # kepler, k2 or tess
    ra: float
    dec: float
    kic: int | None
    epic: int | None
    tic: int | None
    mag: float
    label: str  # planet, eb, none
    period: float
    epoch: float
    rp_over_rs: float
    a_over_rs: float
    inc: float
    duration_hours: float
    depth_ppm: float
    rotation_period: float
    spot_amplitude: float
    pulsation_period: float
    pulsation_amplitude: float
    kepler_quarters: tuple[int, ...]
    k2_campaigns: tuple[int, ...]
    tess_sectors: tuple[int, ...]
    eb_kind: str = ""  # detached, blended, grazing (eclipsing binaries only)
    dilution: float = 1.0  # share of the light from the eclipsing system


#: Kinds of simulated eclipsing binaries and their shares. Detached binaries on the target
#: eclipse 6-36 % deep, far deeper than any planet: a classifier would tell them by depth
#: alone. The false positives that matter are (Kepler's false-positive population, Fressin et
#: al. 2013): background binaries blended with the target, whose eclipses the target's light
#: dilutes to planet depths, and grazing binaries, whose V-shaped eclipses are shallow.
EB_KINDS = {"detached": 0.35, "blended": 0.40, "grazing": 0.25}
#: Range of the blended binaries' share of the light (log-uniform): 0.2 %-30 %.
BLEND_DILUTION = (0.002, 0.3)


def _eb_geometry(seed: int, index: int, rp: float) -> tuple[str, float, float]:
    """Kind, impact parameter and dilution of eclipsing binary ``index`` (its own generator,
    so that adding binary kinds left every other star's draws as they were).
    """
    rng = np.random.default_rng([seed, index, 0xEB])
    kinds = list(EB_KINDS)
    kind = kinds[int(rng.choice(len(kinds), p=list(EB_KINDS.values())))]
    if kind == "grazing":
        return kind, float(rng.uniform(1.0 - 0.3 * rp, 1.0 + 0.6 * rp)), 1.0
    impact = float(rng.uniform(0, 0.7))
    if kind == "blended":
        low, high = BLEND_DILUTION
        return kind, impact, float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return kind, impact, 1.0


def _star_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 0x5354])


def _point_near(
    rng: np.random.Generator, ra0: float, dec0: float, radius: float
) -> tuple[float, float]:
    r = radius * math.sqrt(rng.uniform())
    theta = rng.uniform(0, 2 * math.pi)
    dec = float(np.clip(dec0 + r * math.sin(theta), -89.9, 89.9))
    ra = (ra0 + r * math.cos(theta) / max(math.cos(math.radians(dec)), 0.05)) % 360.0
    return round(ra, 6), round(dec, 6)


def _contiguous(rng: np.random.Generator, choices: Sequence[int], most: int) -> tuple[int, ...]:
    count = int(rng.integers(1, min(most, len(choices)) + 1))
    start = int(rng.integers(0, len(choices) - count + 1))
    return tuple(choices[start : start + count])


def make_star(config: SimulationConfig, index: int) -> SimStar:
    """Draw star ``index`` of the sky (pure: depends only on the config and the index)."""
    return _draw_star(config, index)[0]


def _draw_star(config: SimulationConfig, index: int) -> tuple[SimStar, float]:
    """Star ``index`` and the mean density (g/cm^3) that set its ``a_over_rs``."""
    rng = _star_rng(config.seed, index)
    home = config.missions[index % len(config.missions)]
    quarters: tuple[int, ...] = ()
    campaigns: tuple[int, ...] = ()
    sectors: tuple[int, ...] = ()
    kic = epic = None
    revisit = rng.uniform() < config.multi_mission_fraction and "tess" in config.missions
    if home == "kepler":
        ra, dec = _point_near(rng, *KEPLER_FIELD, 7.0)
        kic = 757000 + index * 1009 % 12_000_000
        quarters = _contiguous(rng, sorted(KEPLER_QUARTERS), config.max_segments)
        if revisit:
            sectors = _contiguous(rng, TESS_KEPLER_FIELD_SECTORS, config.max_segments)
    elif home == "k2":
        campaign = list(K2_CAMPAIGNS)[int(rng.integers(0, len(K2_CAMPAIGNS)))]
        _, _, ra0, dec0 = K2_CAMPAIGNS[campaign]
        ra, dec = _point_near(rng, ra0, dec0, 6.0)
        epic = 201_000_000 + campaign * 2_000_000 + index
        campaigns = (campaign,)
        if revisit:
            sectors = _contiguous(rng, TESS_ECLIPTIC_SECTORS, config.max_segments)
    else:
        ra = round(float(rng.uniform(0, 360)), 6)
        dec = round(math.degrees(math.asin(rng.uniform(-1, 1))), 6)
        sectors = _contiguous(rng, list(range(1, 90)), config.max_segments)
    tic = 10_000_000 + index * 7919 if sectors or home == "tess" else None
    mag = float(rng.uniform(9.0, 15.0))
    draw = rng.uniform()
    label = (
        "planet"
        if draw < config.planet_fraction
        else "eb"
        if draw < config.planet_fraction + config.eb_fraction
        else "none"
    )
    period = float(rng.uniform(0.8, 12.0))
    epoch = float(2454950.0 + rng.uniform(0, period))
    rho_star = float(rng.uniform(0.5, 2.0))  # g/cm^3
    a_over_rs = (6.674e-8 * rho_star * (period * 86400) ** 2 / (3 * math.pi)) ** (1 / 3)
    impact = float(rng.uniform(0, 0.7))
    inc = math.degrees(math.acos(min(impact / a_over_rs, 1.0)))
    eb_kind, dilution = "", 1.0
    if label == "planet":
        rp = float(math.exp(rng.uniform(math.log(0.01), math.log(0.15))))
    elif label == "eb":
        rp = float(rng.uniform(0.25, 0.6))
        eb_kind, impact, dilution = _eb_geometry(config.seed, index, rp)
        inc = math.degrees(math.acos(min(impact / a_over_rs, 1.0)))
    else:
        rp = 0.0
    duration = (
        period
        / math.pi
        * math.asin(min(math.sqrt((1 + rp) ** 2 - impact**2) / a_over_rs, 1.0))
        * 24
        if rp > 0
        else 0.0
    )
    star = SimStar(
        index=index,
        home=home,
        ra=ra,
        dec=dec,
        kic=kic,
        epic=epic,
        tic=tic,
        mag=mag,
        label=label,
        period=period if rp > 0 else math.nan,
        epoch=epoch if rp > 0 else math.nan,
        rp_over_rs=rp,
        a_over_rs=a_over_rs,
        inc=inc,
        duration_hours=duration,
        depth_ppm=_eclipse_depth(rp, impact) * dilution * 1e6,
        rotation_period=float(rng.uniform(1, 30)),
        spot_amplitude=float(rng.choice([0.0, rng.uniform(0.0005, 0.01)])),
        pulsation_period=float(rng.uniform(0.05, 0.5)),
        pulsation_amplitude=float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.0002, 0.002)])),
        kepler_quarters=quarters,
        k2_campaigns=campaigns,
        tess_sectors=sectors,
        eb_kind=eb_kind,
        dilution=dilution,
    )
    return star, rho_star


def _eclipse_depth(rp: float, impact: float) -> float:
    """Depth of a uniform-disk eclipse: ``rp²`` for a full one, the overlap area of the two
    disks (in units of the star's area) for a grazing one.
    """
    if rp <= 0:
        return 0.0
    if impact <= 1 - rp:
        return rp**2
    if impact >= 1 + rp:
        return 0.0
    d, r = impact, rp
    k0 = math.acos(min(max((d * d + r * r - 1) / (2 * d * r), -1.0), 1.0))
    k1 = math.acos(min(max((d * d + 1 - r * r) / (2 * d), -1.0), 1.0))
    root = math.sqrt(max(0.0, 4 * d * d - (1 + d * d - r * r) ** 2))
    return (r * r * k0 + k1 - 0.5 * root) / math.pi


def catalog_row(config: SimulationConfig, index: int) -> dict[str, Any]:
    """The TIC-like catalogue row of star ``index`` (pure, seeded per star).

    The density is the one the simulator used for the star's ``a_over_rs`` (so transit
    durations agree with it); mass is drawn, radius follows from mass and density, log g from
    both, Teff from a rough main-sequence mass relation with scatter, ``Tmag`` is the
    magnitude the light curves' noise was set by, ``contratio`` small (the simulated flux is
    not diluted; ``CROWDSAP`` is 0.99). Every star gets a TIC ``ID``, as in the real TIC (which
    covers the whole sky): the star's own when TESS observed it, else the one the simulator
    would give it; ``KIC`` and ``EPIC`` (not a TIC column; null when none) are the truth's.
    Values come from a generator of their own, so the light curves are unchanged.
    """
    star, rho_star = _draw_star(config, index)
    rng = np.random.default_rng([config.seed, index, 0x544943])
    rho = rho_star / RHO_SUN
    mass = float(rng.uniform(0.6, 1.4))
    radius = (mass / rho) ** (1 / 3)
    teff = 5772.0 * mass**0.6 * (1 + 0.02 * float(rng.standard_normal()))
    return {
        "ID": star.tic if star.tic is not None else 10_000_000 + index * 7919,
        "KIC": star.kic,
        "EPIC": star.epic,
        "ra": star.ra,
        "dec": star.dec,
        "Tmag": round(star.mag, 3),
        "Teff": round(teff),
        "logg": round(LOGG_SUN + math.log10(mass) - 2 * math.log10(radius), 4),
        "rad": round(radius, 5),
        "mass": round(mass, 4),
        "rho": round(rho, 5),
        "contratio": round(float(rng.uniform(0.0, 0.02)), 5),
        "objType": "STAR",
    }


def _catalog_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The catalogue's rows as a table; ``KIC`` and ``EPIC`` nullable int64, ``Teff`` float."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return table
    table["ID"] = table["ID"].astype("int64")
    for column in ("KIC", "EPIC"):
        table[column] = table[column].astype("Int64")
    table["Teff"] = table["Teff"].astype("float64")
    return table


# --------------------------------------------------------------------- light curves


@dataclasses.dataclass(frozen=True)
class Segment:
    """One product to write: mission, segment number and its time span."""

    mission: str
    number: int
    start: float
    stop: float
    cadence: float
    timestamp: str


def star_segments(star: SimStar, config: SimulationConfig) -> list[Segment]:
    """The products of one star."""
    segments = []
    for q in star.kepler_quarters:
        stamp, start, stop = KEPLER_QUARTERS[q]
        segments.append(Segment("Kepler", q, start, stop, LONG_CADENCE, stamp))
    for c in star.k2_campaigns:
        start, stop, _, _ = K2_CAMPAIGNS[c]
        segments.append(Segment("K2", c, start, stop, LONG_CADENCE, ""))
    for s in star.tess_sectors:
        start = TESS_S1_START + (s - 1) * TESS_SECTOR_DAYS
        moment = datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=start - 2400000.5 + 0.9)
        segments.append(
            Segment(
                "TESS",
                s,
                start,
                start + TESS_SECTOR_DAYS - 0.5,
                config.tess_cadence_days,
                moment.strftime("%Y%j%H%M%S"),
            )
        )
    if config.segment_days is not None:
        segments = [
            dataclasses.replace(s, stop=min(s.stop, s.start + config.segment_days))
            for s in segments
        ]
    return segments


def _red_noise(
    rng: np.random.Generator, n: int, cadence: float, sigma: float, tau: float
) -> npt.NDArray[np.float64]:
    """AR(1) noise with correlation time ``tau`` days and standard deviation ``sigma``."""
    phi = math.exp(-cadence / tau)
    scale = sigma * math.sqrt(1 - phi * phi)
    from scipy.signal import lfilter

    out: npt.NDArray[np.float64] = lfilter([scale], [1.0, -phi], rng.standard_normal(n))
    return out


def transit_model(
    star: SimStar, time: npt.NDArray[np.float64], cadence: float, mission: str
) -> npt.NDArray[np.float64]:
    """Relative flux of the star's planet or eclipsing binary (1 out of transit).

    Uses ``batman`` with quadratic limb darkening, integrated over the exposure for long
    cadences. Eclipsing binaries add a secondary eclipse at phase 0.5 and ellipsoidal variation.
    """
    if star.rp_over_rs <= 0:
        return np.ones_like(time)
    import batman

    finite = np.isfinite(time)
    out = np.ones_like(time)
    params = batman.TransitParams()
    params.t0 = star.epoch
    params.per = star.period
    params.rp = star.rp_over_rs
    params.a = star.a_over_rs
    params.inc = star.inc
    params.ecc = 0.0
    params.w = 90.0
    params.limb_dark = "quadratic"
    params.u = [0.40, 0.26] if mission != "TESS" else [0.32, 0.22]
    supersample = 7 if cadence > 0.01 else 1
    model = batman.TransitModel(
        params, time[finite], supersample_factor=supersample, exp_time=cadence
    )
    flux = model.light_curve(params)
    if star.label == "eb":
        params.fp = 0.3 * star.rp_over_rs**2
        params.t_secondary = star.epoch + star.period / 2
        secondary = batman.TransitModel(
            params,
            time[finite],
            transittype="secondary",
            supersample_factor=supersample,
            exp_time=cadence,
        )
        flux = flux + (secondary.light_curve(params) - (1 + params.fp))
        phase = 2 * np.pi * (time[finite] - star.epoch) / star.period
        flux = flux - 0.002 * star.rp_over_rs * np.cos(2 * phase)
        flux = 1.0 + star.dilution * (flux - 1.0)  # a blend: the target's light dilutes it
    out[finite] = flux
    return out


def noise_level(star: SimStar, segment: Segment) -> tuple[float, float]:
    """Flux scale (e-/s) and per-cadence relative photon + background noise of a product."""
    if segment.mission == "TESS":
        zero_point = 15000.0 * 10 ** (-0.4 * (star.mag - 10.0))
    else:
        zero_point = 1.74e5 * 10 ** (-0.4 * (star.mag - 12.0))
    exposure_s = segment.cadence * 86400 * 0.8
    sigma = math.sqrt(zero_point * exposure_s + 400.0 * exposure_s) / (zero_point * exposure_s)
    return zero_point, max(sigma, 2e-5)


def simulate_segment(star: SimStar, segment: Segment, seed: int) -> dict[str, npt.NDArray[Any]]:
    """The columns of one product (pure: the same star, segment and seed give the same arrays)."""
    mission_code = {"Kepler": 1, "K2": 2, "TESS": 3}[segment.mission]
    rng = np.random.default_rng([seed, star.index, segment.number, mission_code])
    n = round((segment.stop - segment.start) / segment.cadence)
    time = np.asarray(segment.start + segment.cadence * (np.arange(n) + 0.5), dtype=np.float64)
    tess = segment.mission == "TESS"
    flags = TESS_FLAGS if tess else KEPLER_FLAGS
    # Flux scale and photon noise from the magnitude.
    zero_point, sigma_rel = noise_level(star, segment)
    relative = transit_model(star, time, segment.cadence, segment.mission)
    relative *= 1 + star.spot_amplitude * np.sin(
        2 * np.pi * time / star.rotation_period + star.index
    ) * (1 + 0.3 * np.sin(2 * np.pi * time / (3.1 * star.rotation_period)))
    relative *= 1 + star.pulsation_amplitude * np.sin(2 * np.pi * time / star.pulsation_period)
    relative += _red_noise(rng, n, segment.cadence, 0.3 * sigma_rel + 5e-5, 0.8)
    pdcsap = zero_point * (relative + sigma_rel * rng.standard_normal(n))
    # Systematics (in SAP only): a thermal ramp at segment start, drift, K2 roll sawtooth,
    # TESS scattered light at orbit starts.
    elapsed = time - segment.start
    systematic = 1 - 0.004 * np.exp(-elapsed / 1.5) + 0.002 * elapsed / max(elapsed[-1], 1)
    quality = np.zeros(n, dtype=np.int32)
    if segment.mission == "K2":
        roll = (elapsed % 0.2452) / 0.2452
        systematic *= 1 + 0.003 * (roll - 0.5)
        firing = np.flatnonzero(np.diff(np.floor(elapsed / 0.2452)) > 0) + 1
        quality[firing] |= flags["thruster"]
        quality[np.clip(firing + 1, 0, n - 1)] |= flags["maybe_thruster"]
    if tess:
        orbit = np.where(
            elapsed < (segment.stop - segment.start) / 2,
            elapsed,
            elapsed - (segment.stop - segment.start) / 2,
        )
        systematic *= 1 + 0.01 * np.exp(-orbit / 0.7)
        dumps = np.flatnonzero(np.diff(np.floor(elapsed / 3.125)) > 0) + 1
        quality[dumps] |= flags["desat"]
    sap = pdcsap * systematic / 0.97
    # Flagged cadences with disturbed flux.
    hits = rng.random(n) < 0.004
    quality[hits] |= flags["cosmic"]
    sap[hits] *= 1 + 0.01 * rng.random(int(hits.sum()))
    pdcsap[hits] *= 1 + 0.01 * rng.random(int(hits.sum()))
    tweaks = rng.random(n) < 0.0015
    quality[tweaks] |= flags["attitude"]
    # Gaps: Kepler monthly downlinks, the TESS orbit gap; no data there.
    gap = np.zeros(n, dtype=bool)
    if segment.mission == "Kepler":
        for k in range(1, 4):
            start = k * 30.5
            gap |= (elapsed > start) & (elapsed < start + 1.0)
    if tess:
        middle = (segment.stop - segment.start) / 2
        gap |= (elapsed > middle - 0.5) & (elapsed < middle + 0.5)
    quality[gap] |= flags["manual"]
    sap[gap] = np.nan
    pdcsap[gap] = np.nan
    time_col = time - (TESS_BJDREF if tess else KEPLER_BJDREF)
    if tess:
        time_col = time_col.copy()
        time_col[gap & (rng.random(n) < 0.5)] = np.nan
    # Occasional NaNs in PDCSAP where SAP exists (PDC gapped them).
    pdcsap[rng.random(n) < 0.001] = np.nan
    err = zero_point * sigma_rel * np.ones(n)
    bkg = 50 + 5 * rng.standard_normal(n)
    centr1 = 500.0 + 0.01 * rng.standard_normal(n)
    centr2 = 300.0 + 0.01 * rng.standard_normal(n)
    cadence0 = {"Kepler": 1105, "K2": 90000, "TESS": 70000}[segment.mission] + int(
        (segment.start - 2454953.5) / segment.cadence
    )
    return {
        "TIME": time_col,
        "TIMECORR": np.full(n, 1e-3, np.float32),
        "CADENCENO": (cadence0 + np.arange(n)).astype(np.int32),
        "SAP_FLUX": sap.astype(np.float32),
        "SAP_FLUX_ERR": (err * 1.03).astype(np.float32),
        "SAP_BKG": bkg.astype(np.float32),
        "SAP_BKG_ERR": np.full(n, 1.5, np.float32),
        "PDCSAP_FLUX": pdcsap.astype(np.float32),
        "PDCSAP_FLUX_ERR": err.astype(np.float32),
        "QUALITY": quality,
        "PSF_CENTR1": np.full(n, np.nan),
        "PSF_CENTR1_ERR": np.full(n, np.nan, np.float32),
        "PSF_CENTR2": np.full(n, np.nan),
        "PSF_CENTR2_ERR": np.full(n, np.nan, np.float32),
        "MOM_CENTR1": centr1,
        "MOM_CENTR1_ERR": np.full(n, 0.01, np.float32),
        "MOM_CENTR2": centr2,
        "MOM_CENTR2_ERR": np.full(n, 0.01, np.float32),
        "POS_CORR1": (0.01 * rng.standard_normal(n)).astype(np.float32),
        "POS_CORR2": (0.01 * rng.standard_normal(n)).astype(np.float32),
    }


# ------------------------------------------------------------------------- FITS files

_COLUMN_FORMS = [
    ("TIME", "D", None, "D14.7"),
    ("TIMECORR", "E", "d", "E13.6"),
    ("CADENCENO", "J", None, "I10"),
    ("SAP_FLUX", "E", "e-/s", "E14.7"),
    ("SAP_FLUX_ERR", "E", "e-/s", "E14.7"),
    ("SAP_BKG", "E", "e-/s", "E14.7"),
    ("SAP_BKG_ERR", "E", "e-/s", "E14.7"),
    ("PDCSAP_FLUX", "E", "e-/s", "E14.7"),
    ("PDCSAP_FLUX_ERR", "E", "e-/s", "E14.7"),
    ("QUALITY", "J", None, "B16.16"),
    ("PSF_CENTR1", "D", "pixel", "F10.5"),
    ("PSF_CENTR1_ERR", "E", "pixel", "E14.7"),
    ("PSF_CENTR2", "D", "pixel", "F10.5"),
    ("PSF_CENTR2_ERR", "E", "pixel", "E14.7"),
    ("MOM_CENTR1", "D", "pixel", "F10.5"),
    ("MOM_CENTR1_ERR", "E", "pixel", "E14.7"),
    ("MOM_CENTR2", "D", "pixel", "F10.5"),
    ("MOM_CENTR2_ERR", "E", "pixel", "E14.7"),
    ("POS_CORR1", "E", "pixels", "E14.7"),
    ("POS_CORR2", "E", "pixels", "E14.7"),
]


def _bjd_to_iso(bjd: float) -> str:
    moment = datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=bjd - 2400000.5)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def product_fits(star: SimStar, segment: Segment, columns: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Serialise one product as MAST writes it: PRIMARY, LIGHTCURVE table, APERTURE image."""
    tess = segment.mission == "TESS"
    bjdref = TESS_BJDREF if tess else KEPLER_BJDREF
    primary = fits.Header()
    cards: list[tuple[str, Any, str]] = [
        ("NEXTEND", 2, "number of standard extensions"),
        ("EXTNAME", "PRIMARY", "name of extension"),
        ("EXTVER", 1, "extension version number (not format version)"),
        ("ORIGIN", "NASA/Ames", "institution responsible for creating this file"),
        ("DATE", _bjd_to_iso(segment.stop + 40)[:10], "file creation date."),
        ("SIMDATA", True, "file is based on simulated data"),
        (
            "CREATOR",
            "0 LightCurveExporterPipelineModule" if tess else "0 FluxExporter2PipelineModule",
            "pipeline job and program used",
        ),
        ("PROCVER", "spoc-5.0.0-sim" if tess else "svn+ssh://sim/release/9.3 r0", "SW version"),
        ("FILEVER", "1.0" if tess else "6.1", "file format version"),
        ("TIMVERSN", "OGIP/93-003", "OGIP memo number for file format"),
        ("TELESCOP", "TESS" if tess else "Kepler", "telescope"),
        ("INSTRUME", "TESS Photometer" if tess else "Kepler Photometer", "detector type"),
        (
            "OBJECT",
            f"TIC {star.tic}"
            if tess
            else (f"KIC {star.kic}" if segment.mission == "Kepler" else f"EPIC {star.epic}"),
            "string version of target id",
        ),
    ]
    if tess:
        cards += [
            ("TICID", star.tic, "unique tess target identifier"),
            ("SECTOR", segment.number, "Observing sector"),
            ("CAMERA", 1 + star.index % 4, "Camera number"),
            ("CCD", 1 + star.index % 4, "CCD chip number"),
        ]
    else:
        cards += [
            (
                "KEPLERID",
                star.kic if segment.mission == "Kepler" else star.epic,
                "unique Kepler target identifier",
            ),
            ("CHANNEL", 1 + star.index % 84, "CCD channel"),
        ]
        cards += (
            [("QUARTER", segment.number, "Observing quarter")]
            if segment.mission == "Kepler"
            else [("CAMPAIGN", segment.number, "Observing campaign")]
        )
    cards += [
        (
            "DATA_REL",
            25 if segment.mission == "Kepler" else (6 if segment.mission == "K2" else 1),
            "data release version number",
        ),
    ]
    if not tess:
        cards += [
            ("OBSMODE", "long cadence", "observing mode"),
            ("MISSION", segment.mission, "Mission name"),
        ]
    cards += [
        ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
        ("RA_OBJ", star.ra, "[deg] right ascension"),
        ("DEC_OBJ", star.dec, "[deg] declination"),
        ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
        ("PMRA", 0.0, "[arcsec/yr] RA proper motion"),
        ("PMDEC", 0.0, "[arcsec/yr] Dec proper motion"),
        ("TESSMAG" if tess else "KEPMAG", round(star.mag, 3), "[mag] magnitude"),
        ("TEFF", 5500, "[K] Effective temperature"),
        ("LOGG", 4.4, "[cm/s2] log10 surface gravity"),
        ("RADIUS", 1.0, "[solar radii] stellar radius"),
    ]
    for key, value, comment in cards:
        primary[key] = (value, comment)
    hdu0 = fits.PrimaryHDU(header=primary)

    quality_name = "QUALITY" if tess else "SAP_QUALITY"
    cols = []
    for name, form, unit, disp in _COLUMN_FORMS:
        if name == "TIME":
            unit = f"BJD - {int(bjdref)}" + (", days" if tess else "")
        cols.append(
            fits.Column(
                name=quality_name if name == "QUALITY" else name,
                format=form,
                unit=unit,
                disp=disp,
                array=columns[name],
            )
        )
    table = fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")
    header = table.header
    start_rel, stop_rel = segment.start - bjdref, segment.stop - bjdref
    for key, value, comment in [
        ("TELESCOP", "TESS" if tess else "Kepler", "telescope"),
        ("OBJECT", primary["OBJECT"], "string version of target id"),
        ("RA_OBJ", star.ra, "[deg] right ascension"),
        ("DEC_OBJ", star.dec, "[deg] declination"),
        ("TIMEREF", "SOLARSYSTEM", "barycentric correction applied to times"),
        ("TASSIGN", "SPACECRAFT", "where time is assigned"),
        ("TIMESYS", "TDB", "time system is barycentric JD"),
        (
            "BJDREFI",
            int(bjdref),
            "integer part of BTJD reference date" if tess else "integer part of BJD reference date",
        ),
        ("BJDREFF", 0.0, "fraction of the day in BJD reference date"),
        ("TIMEUNIT", "d", "time unit for TIME, TSTART and TSTOP"),
        ("TELAPSE", round(stop_rel - start_rel, 8), "[d] TSTOP - TSTART"),
        ("TSTART", start_rel, f"observation start time in BJD-{int(bjdref)}"),
        ("TSTOP", stop_rel, f"observation stop time in BJD-{int(bjdref)}"),
        ("DATE-OBS", _bjd_to_iso(segment.start), "TSTART as UTC calendar date"),
        ("DATE-END", _bjd_to_iso(segment.stop), "TSTOP as UTC calendar date"),
        ("TIMEPIXR", 0.5, "bin time beginning=0 middle=0.5 end=1"),
        ("TIMEDEL", segment.cadence, "[d] time resolution of data"),
        ("INT_TIME", 1.98 if tess else 6.01980290327, "[s] photon accumulation time per frame"),
        ("NUM_FRM", 60 if tess else 270, "number of frames per time stamp"),
        ("EXPOSURE", round((stop_rel - start_rel) * 0.8, 6), "[d] time on source"),
        ("CDPP0_5" if tess else "CDPP3_0", 100.0, "[ppm] RMS CDPP"),
        ("CROWDSAP", 0.99, "Ratio of target flux to total flux in op. ap."),
        ("FLFRCSAP", 0.98, "Frac. of target flux w/in the op. aperture"),
        ("PDCVAR", 1.0, "Target variability"),
        ("PDCMETHD", "msMAP", "PDC algorithm used for target"),
    ]:
        header[key] = (value, comment)
    aperture = fits.ImageHDU(data=np.full((11, 11), 3, dtype=np.int32), name="APERTURE")
    aperture.header["OBJECT"] = primary["OBJECT"]
    buffer = io.BytesIO()
    fits.HDUList([hdu0, table, aperture]).writeto(buffer)
    return buffer.getvalue()


def product_file_name(star: SimStar, segment: Segment) -> str:
    """The product's file name, as the mission pipelines name them."""
    if segment.mission == "Kepler":
        return f"kplr{star.kic:09d}-{segment.timestamp}_llc.fits"
    if segment.mission == "K2":
        return f"ktwo{int(star.epic or 0)}-c{segment.number:02d}_llc.fits"
    sector = f"s{segment.number:04d}"
    return f"tess{segment.timestamp}-{sector}-{star.tic:016d}-{120 + segment.number:04d}-s_lc.fits"


def product_key(star: SimStar, segment: Segment) -> str:
    """The product's key under the public archive layout (bucket-relative)."""
    key = layout_key(product_file_name(star, segment))
    if key is None:  # pragma: no cover - every simulated name follows the layout
        raise SimulationError(f"no archive key for {product_file_name(star, segment)}")
    return key


# --------------------------------------------------------------------------- writing


def _write_star(
    args: tuple[SimulationConfig, int, str, Mapping[str, Any] | None],
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    config, index, out_url, storage_options = args
    star = make_star(config, index)
    products = []
    protocol = url_protocol(out_url)
    fs = None if protocol == "file" else filesystem(protocol, storage_options)
    root = str(local_path(out_url)) if protocol == "file" else out_url.rstrip("/")
    for segment in star_segments(star, config):
        columns = simulate_segment(star, segment, config.seed)
        data = product_fits(star, segment, columns)
        key = product_key(star, segment)
        if fs is None:
            path = os.path.join(root, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
        else:
            fs.pipe_file(f"{root}/{key}", data)
        products.append(
            {
                "star": index,
                "mission": segment.mission,
                "segment": segment.number,
                "key": key,
                "size": len(data),
                "kic": star.kic,
                "epic": star.epic,
                "tic": star.tic,
                "ra": star.ra,
                "dec": star.dec,
            }
        )
    truth = dataclasses.asdict(star)
    truth["missions"] = ",".join(sorted({str(p["mission"]) for p in products}))
    truth["n_products"] = len(products)
    truth["expected_snr"] = expected_snr(star, config)
    for key in ("kepler_quarters", "k2_campaigns", "tess_sectors"):
        truth[key] = ",".join(str(v) for v in truth[key])
    return truth, products, catalog_row(config, index)


def expected_snr(star: SimStar, config: SimulationConfig) -> float:
    """Expected transit SNR: depth / per-point noise × sqrt(points in transit), all segments."""
    if star.rp_over_rs <= 0:
        return 0.0
    total = 0.0
    for segment in star_segments(star, config):
        _, sigma = noise_level(star, segment)
        n_transits = (segment.stop - segment.start) / star.period
        points = n_transits * (star.duration_hours / 24) / segment.cadence
        total += (star.depth_ppm * 1e-6 / sigma) ** 2 * points
    return round(math.sqrt(total), 2)


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What ``simulate_archive`` wrote."""

    out_url: str
    n_stars: int
    n_products: int
    n_bytes: int
    truth_url: str
    products_url: str
    catalog_url: str = ""
    ffi_cube_keys: tuple[str, ...] = ()


def _iter_results(
    config: SimulationConfig,
    out_url: str,
    storage_options: Mapping[str, Any] | None,
    processes: int,
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]]:
    jobs = ((config, i, out_url, storage_options) for i in range(config.n_stars))
    if processes <= 1:
        yield from map(_write_star, jobs)
        return
    with ProcessPoolExecutor(max_workers=processes) as pool:
        yield from pool.map(_write_star, jobs, chunksize=8)


def simulate_archive(
    out_url: str,
    config: SimulationConfig,
    *,
    storage_options: Mapping[str, Any] | None = None,
    processes: int = 1,
    progress: bool = False,
) -> SimulationResult:
    """Write a simulated archive, its truth tables and its stellar catalogue.

    Parameters
    ----------
    out_url : str
        Local folder or ``s3://bucket[/prefix]``; keys follow the public layout below it.
    config : SimulationConfig
        What to simulate.
    storage_options : mapping, optional
        fsspec options for S3 (writes need credentials or a writable local server).
    processes : int
        Worker processes (output is identical for any number).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SimulationResult
        What was written: the truth tables (``truth/``) and the stellar catalogue
        (``catalog/tic.parquet``, see :func:`catalog_row`) beside the products.

    Raises
    ------
    SimulationError
        For an output URL starskope cannot write to (``http(s)://``, ``ftp://``, ...).
    StoreError
        If the output cannot be written: a file where the folder should be, a read-only
        folder, an S3 endpoint that does not answer, missing credentials. Checked before
        anything is simulated; the message names ``out_url``.
    """
    check_simulation_output(out_url, storage_options)
    truths: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    catalog: list[dict[str, Any]] = []
    truth_url = f"{out_url.rstrip('/')}/truth/stars.parquet"
    products_url = f"{out_url.rstrip('/')}/truth/products.parquet"
    catalog_url = f"{out_url.rstrip('/')}/{CATALOG_KEY}"
    try:
        results = _iter_results(config, out_url, storage_options, processes)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=config.n_stars, unit="star", desc="simulate")
        for truth, rows, star_row in results:
            truths.append(truth)
            products.extend(rows)
            catalog.append(star_row)
        truth_table = pd.DataFrame(truths)
        product_table = pd.DataFrame(products)
        for table, url in (
            (truth_table, truth_url),
            (product_table, products_url),
            (_catalog_table(catalog), catalog_url),
        ):
            buffer = io.BytesIO()
            table.to_parquet(buffer, index=False)
            protocol = url_protocol(url)
            if protocol == "file":
                path = local_path(url)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(buffer.getvalue())
            else:
                filesystem(protocol, storage_options).pipe_file(url, buffer.getvalue())
        ffi_keys = _write_ffi_cubes(out_url, config, storage_options) if config.ffi_cubes else ()
    except Exception as exc:
        if isinstance(exc, StarskopeError) or not _is_io_error(exc):
            raise
        raise _output_error(out_url, exc) from exc
    n_bytes = int(product_table["size"].sum()) if len(product_table) else 0
    logger.info(
        "simulated %d stars, %d products, %.1f MB",
        config.n_stars,
        len(product_table),
        n_bytes / 1e6,
    )
    return SimulationResult(
        out_url,
        config.n_stars,
        len(product_table),
        n_bytes,
        truth_url,
        products_url,
        catalog_url,
        ffi_keys,
    )


def _is_io_error(exc: BaseException) -> bool:
    """An error of the transport (local disk, S3, HTTP), not of the simulation."""
    root = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or root in ("botocore", "aiobotocore", "aiohttp", "s3fs")


def _output_error(out_url: str, exc: BaseException) -> StoreError:
    text = " ".join(str(exc).split())[:300]
    hint = (
        "choose a folder you can write (OUT_URL)"
        if url_protocol(out_url) == "file"
        else "check the bucket, the endpoint (AWS_ENDPOINT_URL_S3) and the credentials"
    )
    return StoreError(
        f"cannot write the simulated archive to {out_url}: {type(exc).__name__}: {text}; {hint}"
    )


def check_simulation_output(out_url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Check that a simulated archive can be written at ``out_url``, before simulating.

    A local folder is made (with its parents) and must be writable; on S3 a small probe
    object is written under ``truth/`` and removed again.

    Raises
    ------
    SimulationError
        For a URL scheme starskope cannot write to.
    StoreError
        If the target cannot be written; the message names ``out_url``.
    """
    try:
        protocol = writable_protocol(out_url)
    except UnsupportedSchemeError as exc:
        raise SimulationError(f"OUT_URL {out_url}: {exc.problem}; {exc.hint}") from exc
    if protocol == "file":
        writable_folder(local_path(out_url), "the simulated archive", "choose a folder (OUT_URL)")
        return
    probe = f"{out_url.rstrip('/')}/truth/.starskope-write-probe"
    try:
        fs = filesystem(protocol, storage_options)
        fs.pipe_file(probe, b"")
    except Exception as exc:
        if isinstance(exc, StarskopeError):
            raise
        raise _output_error(out_url, exc) from exc
    try:
        fs.rm_file(probe)
    except Exception:  # the probe is empty and harmless; a bucket may refuse deletes
        logger.debug("could not remove %s", probe, exc_info=True)


# ------------------------------------------------------------------- TESS FFI cubes

#: The simulated FFIs' plate scale (arcsec per pixel), as TESS's.
FFI_PIXEL_ARCSEC = 21.0
#: Sigma of the simulated point-spread function (pixels): a TESS PSF's core.
FFI_PSF_SIGMA = 0.8
#: Sky background of the simulated FFIs (e-/s per pixel).
FFI_BACKGROUND = 40.0
#: Read noise per 2-s frame (e-).
FFI_READ_NOISE = 10.0
#: Rows of the cube generated (and written) at a time: memory stays flat in the cube's size.
FFI_BLOCK_ROWS = 16


def ffi_cadence_days(sector: int) -> float:
    """The FFI cadence of a sector: 30 min (1-26), 10 min (27-55), 200 s (56 on)."""
    seconds = 1800.0 if sector <= 26 else 600.0 if sector <= 55 else 200.0
    return seconds / 86400.0


@dataclasses.dataclass(frozen=True)
class FfiCube:
    """What :func:`simulate_ffi_cube` wrote.

    Attributes
    ----------
    key : str
        The cube's key below the archive root (``tess/public/mast/tess-sSSSS-C-D-cube.fits``).
    sector, camera, ccd : int
        Where the cube is.
    n_rows, n_cols, n_times : int
        Its shape.
    n_bytes : int
        The object's size.
    stars : DataFrame
        Truth, one row per star in the cube: ``key``, ``sector``, ``camera``, ``ccd``,
        ``star`` (index in the simulated sky, -1 for an uncatalogued field star), ``tic``,
        ``ra``, ``dec``, ``x`` and ``y`` (0-based column and row of its centre on the CCD),
        ``mag``, ``mean_flux`` (e-/s), ``psf_sigma_px``, ``kind`` (``catalogue`` or
        ``field``).
    flux : DataFrame
        Truth per cadence of the catalogued stars: ``key``, ``star``, ``tic``, ``cadence``,
        ``btjd`` (the FFI's mid-time, BJD_TDB - 2457000 at the CCD centre) and ``flux``
        (the star's total flux, e-/s, before the PSF and the noise).
    """

    key: str
    sector: int
    camera: int
    ccd: int
    n_rows: int
    n_cols: int
    n_times: int
    n_bytes: int
    stars: pd.DataFrame
    flux: pd.DataFrame


def _ffi_wcs(ra: float, dec: float, crpix: tuple[float, float], rotation_deg: float) -> fits.Header:
    """A TESS-like TAN-SIP WCS header: 21"/px, rotated, RA increasing to the left, a little
    SIP distortion (CD matrix, as in SPOC FFIs).
    """
    scale = FFI_PIXEL_ARCSEC / 3600.0
    theta = math.radians(rotation_deg)
    header = fits.Header()
    header["WCSAXES"] = 2
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"], header["CRPIX2"] = crpix
    header["CD1_1"] = -scale * math.cos(theta)
    header["CD1_2"] = scale * math.sin(theta)
    header["CD2_1"] = scale * math.sin(theta)
    header["CD2_2"] = scale * math.cos(theta)
    header["A_ORDER"], header["B_ORDER"] = 2, 2
    header["A_2_0"], header["A_1_1"], header["A_0_2"] = 2e-6, -1e-6, 1.5e-6
    header["B_2_0"], header["B_1_1"], header["B_0_2"] = -1e-6, 2e-6, 1e-6
    return header


def _pixel_profile(centre: float, n: int, sigma: float) -> tuple[int, npt.NDArray[np.float64]]:
    """First index and pixel-integrated Gaussian weights of a PSF along one axis (its core
    only: ±6 sigma, clipped to the CCD).
    """
    from scipy.special import erf

    half = math.ceil(6 * sigma) + 1
    first = max(0, math.floor(centre + 0.5) - half)
    last = min(n, math.floor(centre + 0.5) + half + 1)
    edges = np.arange(first, last + 1, dtype=np.float64) - 0.5
    cdf = 0.5 * (1 + erf((edges - centre) / (sigma * math.sqrt(2))))
    return first, np.diff(cdf)


def _star_relative_flux(star: SimStar, time_bjd: npt.NDArray[np.float64], cadence: float) -> Any:
    """The star's relative flux at ``time_bjd``: transit or eclipses, spots, pulsation (the
    light-curve products' astrophysics, without their noise and systematics).
    """
    relative = transit_model(star, time_bjd, cadence, "TESS")
    relative = relative * (
        1
        + star.spot_amplitude
        * np.sin(2 * np.pi * time_bjd / star.rotation_period + star.index)
        * (1 + 0.3 * np.sin(2 * np.pi * time_bjd / (3.1 * star.rotation_period)))
    )
    return relative * (
        1 + star.pulsation_amplitude * np.sin(2 * np.pi * time_bjd / star.pulsation_period)
    )


def _ffi_table(
    header: fits.Header,
    sector: int,
    camera: int,
    ccd: int,
    n_rows: int,
    n_cols: int,
    tstart: npt.NDArray[np.float64],
    tstop: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int32],
    barycorr: npt.NDArray[np.float64],
) -> fits.BinTableHDU:
    """The cube's table HDU as astrocut's CubeFactory writes it: one row per FFI, one column
    per keyword of the FFIs' image headers (floats ``D``, integers ``J``, strings ``A``),
    plus ``FFI_FILE``; each non-structural keyword repeated in the table's header with the
    FFI header's comment as its value.
    """
    n = len(tstart)
    names = []
    for value in tstart:
        moment = datetime(1858, 11, 17, tzinfo=UTC) + timedelta(
            days=float(value) + TESS_BJDREF - 2400000.5
        )
        names.append(
            f"tess{moment.strftime('%Y%j%H%M%S')}-s{sector:04d}-{camera}-{ccd}-0120-s_ffic.fits"
        )
    columns: list[tuple[str, str, Any, str]] = [
        ("XTENSION", "A", "IMAGE", "Image extension"),
        ("BITPIX", "J", -32, "array data type"),
        ("NAXIS", "J", 2, "number of array dimensions"),
        ("NAXIS1", "J", n_cols, "length of dimension 1"),
        ("NAXIS2", "J", n_rows, "length of dimension 2"),
        ("TIMEREF", "A", "SOLARSYSTEM", "barycentric correction applied to times"),
        ("TASSIGN", "A", "SPACECRAFT", "where time is assigned"),
        ("TIMESYS", "A", "TDB", "time system is Barycentric Dynamical Time (TDB)"),
        ("BJDREFI", "J", int(TESS_BJDREF), "integer part of BTJD reference date"),
        ("BJDREFF", "D", 0.0, "fraction of the day in BTJD reference date"),
        ("TIMEUNIT", "A", "d", "time unit for TIME, TSTART and TSTOP"),
        ("TSTART", "D", tstart, "observation start time in BTJD"),
        ("TSTOP", "D", tstop, "observation stop time in BTJD"),
        ("DATE-OBS", "A", [_bjd_to_iso(t + TESS_BJDREF) for t in tstart], "TSTART as UTC date"),
        ("DATE-END", "A", [_bjd_to_iso(t + TESS_BJDREF) for t in tstop], "TSTOP as UTC date"),
        ("BARYCORR", "D", barycorr, "[d] barycentric time correction"),
        ("TELAPSE", "D", tstop - tstart, "[d] TSTOP - TSTART"),
        ("EXPOSURE", "D", (tstop - tstart) * 0.8, "[d] time on source"),
        ("TIMEDEL", "D", tstop - tstart, "[d] time resolution of data"),
        ("INT_TIME", "D", 1.98, "[s] photon accumulation time per frame"),
        ("NUM_FRM", "J", round(float(tstop[0] - tstart[0]) * 86400 / 2.0), "frames per time"),
        ("CAMERA", "J", camera, "Camera number"),
        ("CCD", "J", ccd, "CCD chip number"),
        ("DQUALITY", "J", quality, "Data quality flags"),
        ("FFIINDEX", "J", np.arange(n, dtype=np.int32) + 1000 * sector, "FFI cadence index"),
        ("RADESYS", "A", "ICRS", "reference frame of celestial coordinates"),
        ("EQUINOX", "D", 2000.0, "equinox of celestial coordinate system"),
        ("WCSAXES", "J", 2, "Number of coordinate axes"),
    ]
    for key in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2"):
        columns.append((key, "A", str(header[key]), header.comments[key] or key))
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        columns.append((key, "D", float(header[key]), header.comments[key] or key))
    for key in ("A_ORDER", "B_ORDER"):
        columns.append((key, "J", int(header[key]), "polynomial order"))
    for key in ("A_2_0", "A_1_1", "A_0_2", "B_2_0", "B_1_1", "B_0_2"):
        columns.append((key, "D", float(header[key]), "distortion coefficient"))
    cols = []
    for name, form, value, _ in columns:
        array = np.asarray(value) if np.ndim(value) else np.full(n, value)
        if form == "A":
            width = max(1, max(len(str(v)) for v in array))
            cols.append(fits.Column(name=name, format=f"{width}A", array=array.astype(f"S{width}")))
        else:
            dtype = np.int32 if form == "J" else np.float64
            cols.append(fits.Column(name=name, format=form, array=array.astype(dtype)))
    width = max(len(v) for v in names)
    cols.append(
        fits.Column(name="FFI_FILE", format=f"{width}A", array=np.array(names, f"S{width}"))
    )
    table = fits.BinTableHDU.from_columns(cols)
    structural = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS"}
    for name, _, _, comment in columns:
        if name not in structural:
            table.header[name] = comment
    return table


def simulate_ffi_cube(
    out_url: str,
    config: SimulationConfig,
    star_index: int,
    *,
    sector: int | None = None,
    camera: int = 1,
    ccd: int = 1,
    n_rows: int | None = None,
    n_cols: int | None = None,
    n_times: int | None = None,
    star_pixel: tuple[float, float] | None = None,
    n_field_stars: int = 12,
    storage_options: Mapping[str, Any] | None = None,
) -> FfiCube:
    """Write a small TESS FFI cube in the real format, around star ``star_index``.

    The cube follows astrocut's ``CubeFactory`` layout, as the cubes of
    ``s3://stpubdata/tess/public/mast/`` do: a primary header (the FFIs' primary header with
    ``SECTOR``, ``CAMERA``, ``CCD``, ``TSTART`` of the first and ``TSTOP`` of the last FFI);
    HDU 1 a float32 image of ``NAXIS1 = 2`` (flux, uncertainty), ``NAXIS2`` FFIs,
    ``NAXIS3`` columns and ``NAXIS4`` rows (numpy order ``[row][column][time][plane]``);
    HDU 2 a table with one row per FFI and one column per keyword of the FFIs' image
    headers (``TSTART``, ``TSTOP``, ``DQUALITY``, ``BARYCORR``, the TAN-SIP WCS, ...) plus
    ``FFI_FILE``. See :mod:`starskope_dask.ffi` for the sources.

    The star sits at ``star_pixel`` (0-based column, row; by default near the centre, offset
    at random), its flux the simulated star's astrophysics (:func:`transit_model`, spots,
    pulsation) at the FFIs' mid-times, scaled by its magnitude as in :func:`noise_level`,
    spread by a pixel-integrated Gaussian PSF; around it ``n_field_stars`` uncatalogued
    stars of constant flux, a sky background, and photon and read noise (the uncertainty
    plane holds each pixel's noise sigma). Times are BTJD (BJD_TDB - 2457000) at the CCD's
    centre, as in SPOC FFIs; across a cube of a few hundred pixels the barycentric
    correction changes by under a few seconds, which the star's flux ignores.

    The cube is generated and written ``FFI_BLOCK_ROWS`` rows at a time (memory stays flat
    in its size); everything is seeded by ``(config.seed, sector, camera, ccd)``.

    Parameters
    ----------
    out_url : str
        The archive root (local folder or ``s3://bucket[/prefix]``).
    config : SimulationConfig
        The simulated sky (and the default shape: ``ffi_pixels``, ``ffi_times``).
    star_index : int
        The star the cube is centred on.
    sector : int, optional
        Default: the star's first TESS sector (or sector 1).
    camera, ccd : int
        Camera and CCD (1-4), which name the cube.
    n_rows, n_cols, n_times : int, optional
        Shape (default ``config.ffi_pixels`` square, ``config.ffi_times`` FFIs).
    star_pixel : (float, float), optional
        Where the star's centre falls (column, row), e.g. near an edge.
    n_field_stars : int
        Uncatalogued stars scattered over the cube.
    storage_options : mapping, optional
        fsspec options for S3 (writes need credentials or a writable local server).

    Returns
    -------
    FfiCube
        The cube's key, shape, size and truth.

    Raises
    ------
    SimulationError
        For a camera or CCD outside 1-4, a sector outside 1-999, a shape too small, or a
        star pixel off the CCD.
    """
    from starskope_dask.ffi import barycentric_delay_days, cube_key

    star = make_star(config, star_index)
    sector = int(sector if sector is not None else (star.tess_sectors or (1,))[0])
    n_rows = int(n_rows if n_rows is not None else config.ffi_pixels)
    n_cols = int(n_cols if n_cols is not None else config.ffi_pixels)
    n_times = int(n_times if n_times is not None else config.ffi_times)
    _check_int("camera", camera, 1, 4)
    _check_int("ccd", ccd, 1, 4)
    _check_int("sector", sector, 1, 999)
    for name, extent in (("n_rows", n_rows), ("n_cols", n_cols)):
        _check_int(name, extent, MIN_FFI_PIXELS, 4096)
    _check_int("n_times", n_times, 2, 100_000)
    rng = np.random.default_rng([config.seed, sector, camera, ccd, 0xFF1])
    if star_pixel is None:
        star_pixel = (
            (n_cols - 1) / 2 + float(rng.uniform(-0.2, 0.2)) * n_cols,
            (n_rows - 1) / 2 + float(rng.uniform(-0.2, 0.2)) * n_rows,
        )
    col0, row0 = float(star_pixel[0]), float(star_pixel[1])
    if not (0 <= col0 <= n_cols - 1 and 0 <= row0 <= n_rows - 1):
        raise SimulationError(f"star_pixel {star_pixel} is off a CCD of {n_cols} x {n_rows} pixels")
    # The WCS puts the star at its pixel: CRVAL is the star, CRPIX its (1-based) pixel.
    from astropy.wcs import WCS

    wcs_header = _ffi_wcs(star.ra, star.dec, (col0 + 1, row0 + 1), float(rng.uniform(0, 360)))
    wcs = WCS(wcs_header, relax=True)
    cadence = ffi_cadence_days(sector)
    start = TESS_S1_START + (sector - 1) * TESS_SECTOR_DAYS - TESS_BJDREF + 0.5
    tstart = start + cadence * np.arange(n_times, dtype=np.float64)
    tstop = tstart + cadence
    mid = 0.5 * (tstart + tstop)
    centre_ra, centre_dec = (
        float(v) for v in wcs.all_pix2world([[(n_cols - 1) / 2, (n_rows - 1) / 2]], 0)[0]
    )
    barycorr = barycentric_delay_days(mid + TESS_BJDREF, centre_ra, centre_dec)
    quality = np.zeros(n_times, dtype=np.int32)
    quality[np.flatnonzero(np.diff(np.floor((tstart - tstart[0]) / 3.125)) > 0) + 1] |= TESS_FLAGS[
        "desat"
    ]
    quality[rng.random(n_times) < 0.01] |= TESS_FLAGS["attitude"]
    quality[rng.random(n_times) < 0.005] |= TESS_FLAGS["straylight"]

    segment = Segment("TESS", sector, mid[0] + TESS_BJDREF, mid[-1] + TESS_BJDREF, cadence, "")
    zero_point, _ = noise_level(star, segment)
    star_flux = zero_point * _star_relative_flux(star, mid + TESS_BJDREF, cadence)
    # Field stars: fainter, anywhere on the CCD, constant.
    field_x = rng.uniform(0, n_cols - 1, n_field_stars)
    field_y = rng.uniform(0, n_rows - 1, n_field_stars)
    field_mag = rng.uniform(max(star.mag, 11.0), 16.5, n_field_stars)
    field_flux = 15000.0 * 10 ** (-0.4 * (field_mag - 10.0))
    field_sky = wcs.all_pix2world(np.column_stack([field_x, field_y]), 0)
    sources = [(col0, row0, star_flux)] + [
        (float(x), float(y), np.full(n_times, f))
        for x, y, f in zip(field_x, field_y, field_flux, strict=True)
    ]
    profiles = [
        (_pixel_profile(x, n_cols, FFI_PSF_SIGMA), _pixel_profile(y, n_rows, FFI_PSF_SIGMA), flux)
        for x, y, flux in sources
    ]
    background = FFI_BACKGROUND * (
        1
        + 0.1 * (np.arange(n_rows)[:, None] / n_rows)
        + 0.05 * (np.arange(n_cols)[None, :] / n_cols)
    )
    exposure_s = cadence * 86400 * 0.8
    read_var = FFI_READ_NOISE**2 * exposure_s / 2.0

    primary = fits.Header()
    for key, value, comment in [
        ("EXTEND", True, "file contains extensions"),
        ("NEXTEND", 2, "number of standard extensions"),
        ("EXTNAME", "PRIMARY", "name of extension"),
        ("ORIGIN", "STScI/MAST", "institution responsible for creating this file"),
        ("DATE", _bjd_to_iso(mid[-1] + TESS_BJDREF + 40)[:10], "file creation date."),
        ("SIMDATA", True, "file is based on simulated data"),
        ("TELESCOP", "TESS", "telescope"),
        ("INSTRUME", "TESS Photometer", "detector type"),
        ("CREATOR", "starskope_dask.simulate", "cube made by the starskope simulator"),
        ("PROCVER", "spoc-5.0.0-sim", "SW version"),
        ("FILEVER", "1.0", "file format version"),
        ("DATA_REL", 1, "data release version number"),
        ("SECTOR", sector, "Observing sector"),
        ("CAMERA", camera, "Camera number"),
        ("CCD", ccd, "CCD chip number"),
        ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
        ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
        ("TSTART", float(tstart[0]), "observation start time in BTJD of first FFI"),
        ("TSTOP", float(tstop[-1]), "observation stop time in BTJD of last FFI"),
        ("DATE-OBS", _bjd_to_iso(tstart[0] + TESS_BJDREF), "TSTART as UTC calendar date"),
        ("DATE-END", _bjd_to_iso(tstop[-1] + TESS_BJDREF), "TSTOP as UTC calendar date"),
        ("FFIINDEX", 1000 * sector, "number of FFI cadence interval of first FFI"),
    ]:
        primary[key] = (value, comment)
    head = fits.PrimaryHDU(header=primary).header.tostring().encode("ascii")
    image = fits.ImageHDU(data=np.zeros((1, 1, 1, 2), dtype=np.float32)).header
    image["NAXIS4"], image["NAXIS3"], image["NAXIS2"], image["NAXIS1"] = n_rows, n_cols, n_times, 2
    head += image.tostring().encode("ascii")
    table = _ffi_table(
        wcs_header, sector, camera, ccd, n_rows, n_cols, tstart, tstop, quality, barycorr
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    table_bytes = buffer.getvalue()[len(fits.PrimaryHDU().header.tostring()) :]

    key = cube_key(sector, camera, ccd)
    protocol = url_protocol(out_url)
    root = str(local_path(out_url)) if protocol == "file" else out_url.rstrip("/")
    path = os.path.join(root, key) if protocol == "file" else f"{root}/{key}"
    fs = filesystem("file") if protocol == "file" else filesystem(protocol, storage_options)
    if protocol == "file":
        os.makedirs(os.path.dirname(path), exist_ok=True)
    n_bytes = 0
    # Remote: multipart parts of 5 MiB, S3's smallest (a local S3 server keeps each part as
    # a chunk, and serves a range by reading its chunk: small parts keep ranged reads fast).
    with fs.open(path, "wb", **({} if protocol == "file" else {"block_size": 5 << 20})) as out:
        out.write(head)
        n_bytes += len(head)
        for block, first in enumerate(range(0, n_rows, FFI_BLOCK_ROWS)):
            last = min(n_rows, first + FFI_BLOCK_ROWS)
            signal = np.repeat(background[first:last, :, None], n_times, axis=2)
            for (x_first, x_weights), (y_first, y_weights), flux in profiles:
                lo, hi = max(first, y_first), min(last, y_first + len(y_weights))
                if lo >= hi:
                    continue
                window = np.multiply.outer(y_weights[lo - y_first : hi - y_first], x_weights)
                signal[lo - first : hi - first, x_first : x_first + len(x_weights)] += (
                    window[:, :, None] * flux[None, None, :]
                )
            block_rng = np.random.default_rng([config.seed, sector, camera, ccd, 0xFF1, block])
            sigma = np.sqrt(np.maximum(signal, 0) * exposure_s + read_var) / exposure_s
            cube = np.empty((last - first, n_cols, n_times, 2), dtype=">f4")
            cube[..., 0] = signal + sigma * block_rng.standard_normal(signal.shape)
            cube[..., 1] = sigma
            data = cube.tobytes()
            out.write(data)
            n_bytes += len(data)
        padding = -(n_bytes - len(head)) % 2880
        out.write(b"\0" * padding)
        out.write(table_bytes)
        n_bytes += padding + len(table_bytes)

    common = {"key": key, "sector": sector, "camera": camera, "ccd": ccd}
    stars = pd.DataFrame(
        [
            {
                **common,
                "star": star.index,
                "tic": star.tic if star.tic is not None else -1,
                "ra": star.ra,
                "dec": star.dec,
                "x": col0,
                "y": row0,
                "mag": round(star.mag, 3),
                "mean_flux": float(np.mean(star_flux)),
                "psf_sigma_px": FFI_PSF_SIGMA,
                "kind": "catalogue",
            }
        ]
        + [
            {
                **common,
                "star": -1,
                "tic": -1,
                "ra": float(field_sky[i, 0]),
                "dec": float(field_sky[i, 1]),
                "x": float(field_x[i]),
                "y": float(field_y[i]),
                "mag": round(float(field_mag[i]), 3),
                "mean_flux": float(field_flux[i]),
                "psf_sigma_px": FFI_PSF_SIGMA,
                "kind": "field",
            }
            for i in range(n_field_stars)
        ]
    )
    flux_table = pd.DataFrame(
        {
            "key": key,
            "star": star.index,
            "tic": star.tic if star.tic is not None else -1,
            "cadence": np.arange(n_times, dtype=np.int32),
            "btjd": mid,
            "flux": star_flux,
        }
    )
    logger.info(
        "simulated FFI cube %s: %d x %d x %d, %.1f MB", key, n_rows, n_cols, n_times, n_bytes / 1e6
    )
    return FfiCube(key, sector, camera, ccd, n_rows, n_cols, n_times, n_bytes, stars, flux_table)


def ffi_cube_plan(config: SimulationConfig) -> list[tuple[int, int, int, int]]:
    """Which cubes ``simulate_archive`` writes: ``(star, sector, camera, ccd)`` for the first
    ``config.ffi_cubes`` stars TESS observes, each in its first sector, on the next camera
    and CCD of that sector not yet taken (so that no two cubes share a key).
    """
    plan: list[tuple[int, int, int, int]] = []
    taken: dict[int, int] = {}
    for index in range(config.n_stars):
        if len(plan) >= config.ffi_cubes:
            break
        star = make_star(config, index)
        free = [s for s in star.tess_sectors if taken.get(s, 0) < 16]
        if not free:
            continue
        sector = free[0]
        slot = taken.get(sector, 0)
        taken[sector] = slot + 1
        plan.append((index, sector, 1 + slot // 4, 1 + slot % 4))
    return plan


def _write_ffi_cubes(
    out_url: str, config: SimulationConfig, storage_options: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """Write the cubes of :func:`ffi_cube_plan` and their truth tables; their keys."""
    cubes = [
        simulate_ffi_cube(
            out_url,
            config,
            index,
            sector=sector,
            camera=camera,
            ccd=ccd,
            storage_options=storage_options,
        )
        for index, sector, camera, ccd in ffi_cube_plan(config)
    ]
    if not cubes:
        logger.warning("ffi_cubes=%d, but no simulated star is observed by TESS", config.ffi_cubes)
        return ()
    root = out_url.rstrip("/")
    for name, table in (
        ("ffi_stars", pd.concat([c.stars for c in cubes], ignore_index=True)),
        ("ffi_flux", pd.concat([c.flux for c in cubes], ignore_index=True)),
    ):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        url = f"{root}/truth/{name}.parquet"
        if url_protocol(url) == "file":
            path = local_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buffer.getvalue())
        else:
            filesystem(url_protocol(url), storage_options).pipe_file(url, buffer.getvalue())
    return tuple(c.key for c in cubes)
