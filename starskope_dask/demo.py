"""The embedded main job (``starskope demo``): everything on one machine, nothing fetched.

Starts a real S3 server on 127.0.0.1 (moto), writes a simulated archive into its public
``stpubdata`` bucket under the real key layout, discovers the products by listing the
bucket, ingests them with a LocalCluster of worker processes into a local Zarr cube,
computes every star's features (transit search, spectra, folded views, stellar properties from
the simulator's catalogue) into a features store, trains a classifier on the simulator's truth
(split by star; the test stars are scored once, by ``evaluate``), scores every detected signal
and writes the ranked candidates, the ROC curve, and plots a few stars seen by more than one
mission and one page for each of its strongest transit signals.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from starskope_dask.cluster import with_own_client
from starskope_dask.config import (
    load_features_config,
    load_ingest_config,
    load_storage_config,
    load_train_config,
)
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.errors import LabelError
from starskope_dask.features.pipeline import open_features
from starskope_dask.features.pipeline import run_with_client as run_features
from starskope_dask.features.stellar import default_catalog_url
from starskope_dask.fetch import writable_folder
from starskope_dask.pipeline import run_with_client
from starskope_dask.plots import plot_cube_stars, plot_star_page
from starskope_dask.s3server import local_s3_server
from starskope_dask.simulate import SimulationConfig, simulate_archive
from starskope_dask.store import open_cube
from starskope_dask.train.pipeline import EvaluateConfig, evaluate, predict
from starskope_dask.train.pipeline import run_with_client as run_train

logger = logging.getLogger(__name__)

#: The demo's sky: enough stars for a model to learn from, short segments to stay quick.
DEMO_STARS = 300
DEMO_SEGMENT_DAYS = 20.0


def prepare_output(out: str | os.PathLike[str]) -> Path:
    """Make the demo's output folder (and its parents) and check that it can be written.

    Raises
    ------
    StoreError
        If ``out`` is a file, lies under a file, or is not writable; the message names it.
    """
    return writable_folder(Path(out), "the demo's output", "choose another --out")


def run_demo(
    out: str | os.PathLike[str],
    *,
    n_stars: int = DEMO_STARS,
    seed: int = 7,
    n_workers: int = 2,
    model: str = "gbt",
) -> dict[str, Any]:
    """Run the demo; return the ingest summary and the paths written.

    Every argument and the output folder are checked before the S3 server starts.

    Parameters
    ----------
    out : path
        Output folder (manifest, cube, PNG).
    n_stars : int
        Stars to simulate.
    seed : int
        Simulation seed.
    n_workers : int
        LocalCluster worker processes.
    model : str
        Model kind to train (``gbt`` needs no TensorFlow; ``cnn`` needs the ``train`` extra).

    Returns
    -------
    dict
        ``summary`` (the ingest summary), ``manifest``, ``store`` and ``plot`` paths
        (``plot`` is ``""`` when no star was stored).

    Raises
    ------
    SimulationError, ConfigError
        For a bad ``n_stars``, ``seed`` or ``n_workers``.
    StoreError
        If ``out`` cannot be written.
    """
    simulation = SimulationConfig(
        n_stars=n_stars,
        seed=seed,
        max_segments=2,
        segment_days=DEMO_SEGMENT_DAYS,
        planet_fraction=0.35,
        eb_fraction=0.15,
    )
    out_dir = Path(out)
    manifest = out_dir / "manifest.parquet"
    store = out_dir / "cube.zarr"
    features_store = out_dir / "features.zarr"
    config = load_ingest_config(str(manifest), str(store), n_workers=n_workers, star_chunk=8)
    features_config = load_features_config(
        str(store),
        str(features_store),
        n_workers=n_workers,
        stellar=default_catalog_url("s3://stpubdata"),
    )
    train_config = load_train_config(
        str(features_store),
        "truth:s3://stpubdata",
        str(out_dir / "model"),
        model=model,
        n_workers=n_workers,
        val_fraction=0.2,
        test_fraction=0.25,
    )
    prepare_output(out_dir)
    with local_s3_server("stpubdata") as s3:
        logger.info("simulating %d stars into s3://stpubdata at %s", n_stars, s3.endpoint_url)
        simulate_archive(
            "s3://stpubdata",
            simulation,
            storage_options=s3.storage_options(anon=False),
            processes=max(1, min(n_workers, os.cpu_count() or 1)),
            progress=True,
        )
        frame = list_archive("s3://stpubdata/", s3.storage_options())
        write_manifest(frame, str(manifest))
        logger.info("discovered %d products", len(frame))
        # one LocalCluster for both stages; features run inside the server's lifetime (the
        # stellar catalogue is in the simulated archive)

        def stages(get_client: Any) -> tuple[Any, Any, Any]:
            ingested = run_with_client(config, get_client())
            if not ingested.n_stored:
                return ingested, None, None
            featured = run_features(features_config, get_client())
            try:
                trained = run_train(train_config, get_client())
            except LabelError as exc:  # too few signals of one class to learn from
                logger.warning("no model trained: %s", exc)
                trained = None
            return ingested, featured, trained

        summary, features_summary, train_summary = with_own_client(config, stages)
        learnt = _evaluate_and_rank(train_summary, out_dir, str(features_store))
    cube = open_cube(str(store))
    multi = [
        int(s)
        for s, m in zip(cube["star"].values, cube["missions"].values, strict=True)
        if "," in str(m)
    ][:4]
    stars = multi or [int(s) for s in cube["star"].values[:3]]
    plot = ""
    if stars:
        plot = str(
            plot_cube_stars(
                cube,
                stars,
                out_dir / "stars.png",
                title="starskope demo: aligned multi-mission light curves",
            )
        )
    else:
        logger.warning("no star was stored, so nothing to plot; see `starskope status %s`", store)
    pages: list[str] = []
    if features_summary is not None:
        features = open_features(str(features_store))
        snr = np.nan_to_num(features["snr"].values[:, 0], nan=-1.0)
        for row in np.argsort(-snr)[: min(3, int((snr > 0).sum()))]:
            path = out_dir / f"star-{int(row):06d}.png"
            pages.append(str(plot_star_page(features, int(row), path)))
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "ingest": summary.as_dict(),
                "features": features_summary.as_dict() if features_summary else None,
                "train": train_summary.as_dict() if train_summary else None,
                "test": learnt.get("test"),
            },
            indent=1,
            default=str,
        )
    )
    return {
        "summary": summary.as_dict(),
        "features_summary": features_summary.as_dict() if features_summary else None,
        "manifest": str(manifest),
        "store": str(store),
        "features": str(features_store) if features_summary else "",
        "plot": plot,
        "pages": pages,
        "train_summary": train_summary.as_dict() if train_summary else None,
        **learnt,
    }


def _evaluate_and_rank(train_summary: Any, out_dir: Path, features: str) -> dict[str, Any]:
    """Evaluate the demo's model on its test stars and rank every signal (inside the S3
    server's lifetime: the labels are the simulated archive's truth).
    """
    if train_summary is None:
        return {"test": None, "roc": "", "candidates": "", "top": []}
    storage = load_storage_config()
    metrics = evaluate(EvaluateConfig(model=train_summary.out), storage)
    candidates = out_dir / "candidates.csv"
    ranked = predict(train_summary.out, features, str(candidates), storage)
    test = {k: metrics.get(k) for k in ("n", "n_positive", "roc_auc", "average_precision")}
    return {
        "test": test,
        "roc": f"{metrics['out']}/roc.png",
        "candidates": str(candidates),
        "top": ranked.head(5).to_dict("records"),
    }
