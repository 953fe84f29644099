"""Write the MAST answers the discovery tests replay (``tests/data/mast/*.json``).

The answers are shaped like MAST's: observation rows with ``Observations.query_criteria``'s
columns, product rows with ``Observations.get_product_list``'s (column names and values as
in the MAST tutorial notebooks in ../shared/data/real/mast-examples), for real stars and
real file names. They go through :class:`starskope_dask.mast.MastClient`, so the files are
named by the same hash of the call that a live run would cache them under.

    python tests/data/make_mast_recordings.py
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starskope_dask.discover import discover_mast, parse_target
from starskope_dask.mast import MastClient, MastSettings

HERE = Path(__file__).resolve().parent / "mast"

HAT_P_7 = (292.247, 47.970)
OBSERVATIONS = [
    # obsid, collection, obs_id, target_name, ra, dec, sequence
    ("9000210988", "Kepler", "kplr010666592_sc_Q000000000000000000", "kplr010666592", *HAT_P_7, 0),
    ("9000210990", "Kepler", "kplr010666592_lc_Q111111111111111111", "kplr010666592", *HAT_P_7, 1),
    (
        "27092573",
        "TESS",
        "tess2019198215352-s0014-0000000424865156-0150-s",
        "424865156",
        *HAT_P_7,
        14,
    ),
    (
        "27192845",
        "TESS",
        "tess2019226182529-s0015-0000000424865156-0151-s",
        "424865156",
        *HAT_P_7,
        15,
    ),
    (
        "9000178374",
        "Kepler",
        "kplr002556081_lc_Q111111111111111111",
        "kplr002556081",
        291.5,
        37.8,
        1,
    ),
    ("9500105126", "K2", "ktwo211117077-c04_lc", "ktwo211117077", 57.5, 22.1, 4),
    (
        "17000000913",
        "TESS",
        "tess2018206045859-s0001-0000000025155310-0120-s",
        "25155310",
        61.2,
        -69.1,
        1,
    ),
    ("9500012345", "K2", "ktwo201367065-c01_lc", "ktwo201367065", 172.33, -1.45, 1),
    # HLSPs are observations of their own (obs_collection HLSP), found by position
    ("30000001", "HLSP", "hlsp_k2sc_k2_llc_211117077-c04", "211117077", 57.5, 22.1, 4),
    (
        "30000002",
        "HLSP",
        "hlsp_tess-data-alerts_tess_phot_00025155310-s01",
        "25155310",
        61.2,
        -69.1,
        1,
    ),
]
PRODUCTS = {
    "9000210988": [
        "kplr010666592-2009131110544_slc.fits",
        "kplr010666592-2009131110544_spd-targ.fits.gz",
    ],
    "9000210990": [
        "kplr010666592-2009166043257_llc.fits",
        "kplr010666592-2009259160929_llc.fits",
        "kplr010666592-2009166043257_lpd-targ.fits.gz",
    ],
    "27092573": [
        "tess2019198215352-s0014-0000000424865156-0150-s_lc.fits",
        "tess2019198215352-s0014-0000000424865156-0150-s_tp.fits",
        "tess2019198215352-s0014-0000000424865156-0150-s_dvr.pdf",
    ],
    "27192845": [
        "tess2019226182529-s0015-0000000424865156-0151-s_lc.fits",
        "tess2019226182529-s0015-0000000424865156-0151-s_tp.fits",
    ],
    "9000178374": ["kplr002556081-2009166043257_llc.fits", "kplr002556081-2009259160929_llc.fits"],
    "9500105126": [
        "ktwo211117077-c04_llc.fits",
        "ktwo211117077-c04_lpd-targ.fits.gz",
    ],
    "17000000913": ["tess2018206045859-s0001-0000000025155310-0120-s_lc.fits"],
    "30000001": ["hlsp_k2sc_k2_llc_211117077-c04_kepler_v2_lc.fits"],
    "30000002": ["hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits"],
    "9500012345": ["ktwo201367065-c01_llc.fits"],
}
DESCRIPTIONS = {
    "lc": "Light curves",
    "tp": "Target pixel files",
    "dvr": "full data validation report",
}
PLANET_HOSTS = {
    "K2": [
        {"epic_host": "EPIC 201367065", "k2_name": "K2-3 b", "pl_name": "K2-3 b"},
        {"epic_host": "EPIC 201367065", "k2_name": "K2-3 c", "pl_name": "K2-3 c"},
        {"epic_host": "EPIC 211117077", "k2_name": None, "pl_name": "example b"},
    ]
}


def _data_uri(collection: str, name: str) -> str:
    if name.startswith("hlsp_"):
        project = name.split("_")[1]
        return f"mast:HLSP/{project}/{name}"
    if collection == "TESS":
        return f"mast:TESS/product/{name}"
    from starskope_dask.discover import layout_key

    key = layout_key(name) or f"{collection.lower()}/public/lightcurves/{name}"
    return f"mast:{collection}/url/missions/{key.replace('/public/', '/', 1)}"


def _product_rows(obsid: str) -> list[dict[str, Any]]:
    obs = next(o for o in OBSERVATIONS if o[0] == obsid)
    rows = []
    for name in PRODUCTS[obsid]:
        stem = name.rsplit("_", 1)[-1].split(".")[0]
        sub = {"llc": "LLC", "slc": "SLC", "lc": "LC"}.get(stem, stem.upper())
        rows.append(
            {
                "obsID": obsid,
                "obs_collection": "HLSP" if name.startswith("hlsp_") else obs[1],
                "obs_id": obs[2],
                "description": DESCRIPTIONS.get(stem, "Lightcurve"),
                "dataURI": _data_uri(obs[1], name),
                "productType": "SCIENCE",
                "productSubGroupDescription": sub,
                "productFilename": name,
                "size": 2039040 if obs[1] == "TESS" else 1457280,
                "parent_obsid": obsid,
            }
        )
    return rows


class SpecBackend:
    """Answers MAST calls from the tables above."""

    def query_criteria(self, criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
        names = criteria.get("target_name")
        collections = criteria["obs_collection"]
        collections = [collections] if isinstance(collections, str) else list(collections)
        if names is not None:
            chosen = [o for o in OBSERVATIONS if o[3] in names and o[1] in collections]
        else:
            ra, dec = (float(v) for v in criteria["coordinates"].split())
            chosen = [
                o
                for o in OBSERVATIONS
                if abs(o[4] - ra) < 0.01 and abs(o[5] - dec) < 0.01 and o[1] in collections
            ]
        return [
            {
                "obsid": o[0],
                "obs_collection": o[1],
                "obs_id": o[2],
                "target_name": o[3],
                "s_ra": o[4],
                "s_dec": o[5],
                "dataproduct_type": "timeseries",
                "provenance_name": "SPOC" if o[1] == "TESS" else o[1],
                "sequence_number": o[6],
                "t_exptime": 120.0 if o[1] == "TESS" else 1765.5,
            }
            for o in chosen
        ]

    def product_list(self, obsids: Sequence[str]) -> list[dict[str, Any]]:
        rows = [row for obsid in obsids for row in _product_rows(obsid)]
        # MAST lists a product once per observation it belongs to: repeat one, as it does
        return rows + rows[:1]

    def resolve_name(self, name: str) -> list[float]:
        known = {"hat-p-7": list(HAT_P_7), "kepler-2": list(HAT_P_7)}
        return known[name.strip().lower()]

    def relative_paths(self, data_uris: Sequence[str]) -> list[str | None]:
        return [
            "mast/hlsp/" + uri.split("/", 1)[1] if uri.startswith("mast:HLSP/") else None
            for uri in data_uris
        ]

    def planet_hosts(self, mission: str) -> list[dict[str, Any]]:
        return PLANET_HOSTS[mission]


RECORDED_TARGETS = [
    ["HAT-P-7"],
    ["KIC 2556081", "EPIC 211117077", "TIC 25155310"],
    ["hosts:k2"],
    ["57.5,22.1,5", "61.2,-69.1"],
]


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    client = MastClient(MastSettings(cache_dir=HERE), SpecBackend())
    for texts in RECORDED_TARGETS:
        for products in (None, ("kepler-lc", "kepler-sc", "k2-lc", "tess-spoc-2min", "hlsp")):
            kwargs = {"products": products} if products else {}
            discover_mast([parse_target(t) for t in texts], client, **kwargs)
    print(f"{len(list(HERE.glob('*.json')))} recordings in {HERE}")


if __name__ == "__main__":
    main()
