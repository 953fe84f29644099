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

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from starskope_dask.config import RunConfig, load_run_config
from starskope_dask.errors import LabelError
from starskope_dask.features.pipeline import open_features
from starskope_dask.features.stellar import default_catalog_url
from starskope_dask.fetch import writable_folder
from starskope_dask.plots import plot_cube_stars, plot_star_page
from starskope_dask.runner import RunSummary, run_pipeline
from starskope_dask.s3server import local_s3_server
from starskope_dask.simulate import SimulationConfig, simulate_archive
from starskope_dask.store import open_cube, read_json

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
        ffi_cubes=1,  # one TESS FFI cube with some of the stars in it, for the cutouts
    )
    out_dir = Path(out)
    run = load_run_config(sections=demo_sections(out_dir, n_workers, model))
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
        # the pipeline inside the server's lifetime: the stellar catalogue and the labels
        # (the simulator's truth) are in the simulated archive
        summary = _run_demo_pipeline(run)
        stamps = _cut_demo_stamps(out_dir, n_workers)
    stages = {s.stage: s for s in summary.stages}
    store = run.pipeline.artefact("cube")
    features_store = run.pipeline.artefact("features")
    cube = open_cube(store)
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
    if "features" in stages:
        features = open_features(features_store)
        snr = np.nan_to_num(features["snr"].values[:, 0], nan=-1.0)
        for row in np.argsort(-snr)[: min(3, int((snr > 0).sum()))]:
            path = out_dir / f"star-{int(row):06d}.png"
            pages.append(str(plot_star_page(features, int(row), path)))
    record = read_json(run.pipeline.record_url) or {}
    done = record.get("stages", {})
    learnt = _learnt(done, run)
    (out_dir / "summary.json").write_text(
        json.dumps({**summary.as_dict(), "test": learnt.get("test")}, indent=1, default=str)
    )
    return {
        "run": summary,
        "summary": done["ingest"]["details"] if "ingest" in done else {},
        "features_summary": done.get("features", {}).get("details"),
        "manifest": run.pipeline.artefact("manifest"),
        "store": store,
        "features": features_store if "features" in done else "",
        "plot": plot,
        "pages": pages,
        "stamps": stamps,
        "train_summary": done.get("train", {}).get("details") if "train" in stages else None,
        **learnt,
    }


def demo_sections(out_dir: Path, n_workers: int, model: str) -> dict[str, Any]:
    """The demo's pipeline config: the whole simulated archive on a LocalCluster, into
    ``out_dir`` (what ``jobs/pipeline.yaml`` spells out as a file).
    """
    return {
        "pipeline": {
            "workdir": str(out_dir),
            "cluster": "local",
            "n_workers": n_workers,
        },
        "discover": {"archive": "s3://stpubdata/"},
        "ingest": {"star_chunk": 8},
        "features": {"stellar": default_catalog_url("s3://stpubdata")},
        "train": {
            "labels": "truth:s3://stpubdata",
            "model": model,
            "val_fraction": 0.2,
            "test_fraction": 0.25,
        },
    }


def _run_demo_pipeline(run: RunConfig) -> RunSummary:
    """The pipeline; with too few signals of one class to learn from, the stages before
    training still count (the demo goes on to plot what it has).
    """
    try:
        return run_pipeline(run)
    except LabelError as exc:
        logger.warning("no model trained: %s", exc)
        before = run.pipeline.stages[: run.pipeline.stages.index("train")]
        return run_pipeline(
            dataclasses.replace(run, pipeline=dataclasses.replace(run.pipeline, stages=before))
        )


def _cut_demo_stamps(out_dir: Path, n_workers: int) -> dict[str, Any]:
    """Postage stamps of the catalogued stars on the simulated FFI cube (ranged reads from the
    local S3 server), and a PNG of them: ``{}`` when the archive holds no cube.
    """
    from starskope_dask.config import load_storage_config
    from starskope_dask.ffi import CutoutConfig, open_cutouts
    from starskope_dask.ffi import run as cut
    from starskope_dask.plots import plot_stamps
    from starskope_dask.store import read_table

    storage = load_storage_config()
    truth = read_table("s3://stpubdata/truth/ffi_stars.parquet", storage.storage_options())
    if truth is None or truth.empty:
        return {}
    on_cube = truth[truth["kind"] == "catalogue"].sort_values("mag").head(6)
    if on_cube.empty:
        return {}
    config = CutoutConfig(
        targets=tuple(f"TIC {int(tic)}" for tic in on_cube["tic"]),
        store=str(out_dir / "stamps.zarr"),
        sectors=(int(on_cube["sector"].iloc[0]),),
        size=11,
        archive="s3://stpubdata",
        storage=storage,
        n_workers=n_workers,
    )
    summary = cut(config, progress=False)
    png = (
        plot_stamps(open_cutouts(config.store), out_dir / "stamps.png") if summary.n_stamps else ""
    )
    return {**dataclasses.asdict(summary), "png": str(png)}


def _learnt(done: Mapping[str, Any], run: RunConfig) -> dict[str, Any]:
    """The test metrics and the top candidates, from the run record."""
    if "evaluate" not in done or "predict" not in done:
        return {"test": None, "roc": "", "candidates": "", "top": []}
    metrics = done["evaluate"]["details"]
    test = {k: metrics.get(k) for k in ("n", "n_positive", "roc_auc", "average_precision")}
    return {
        "test": test,
        "roc": f"{metrics['out']}/roc.png",
        "candidates": run.pipeline.artefact("candidates"),
        "top": done["predict"]["details"]["top"],
    }
