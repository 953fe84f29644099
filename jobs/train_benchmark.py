"""Training on a simulated archive, honest test figures, simulation → sky, and distribution.

Needs a simulated archive with its features store: ``jobs/sim_recovery.py --workdir DIR``
makes one (``--stars 2500 --seed 12``: simulate → ingest → features), this script reuses it.
Then, with the real pipeline (``starskope_dask.train.pipeline``) on a LocalCluster:

1. **Models** (``--models``): each trained on the training stars (search on the validation
   stars where ``--search``), then evaluated once on the test stars: ROC-AUC, average
   precision, recall at precision 0.9/0.95/0.99, recall at precision 0.95 for signals of
   truth SNR ≥ 10 (both ways: at the overall threshold, and on that subset alone), and the
   false positives by class (eclipsing binaries expected to dominate). ``gbt+rbm`` and
   ``gbt+autoencoder`` add unsupervised spectrogram features: the answer to "do they help?".
2. **Simulation → sky** (``--real``): the best simulated model run through ``evaluate`` on the
   real stars of ``../shared/data/real`` (the README's planet hosts vs the stars with no known
   planet; features computed here with ``--stellar none``): AUC and each host's rank.
3. **Distributed**: ``--trials`` (16) gbt search trials on 1 and 2 workers (speed-up), and the
   CNN trained on 1 worker vs data-parallel on 2 (validation AUC, examples/s).

    python jobs/train_benchmark.py --workdir /tmp/sim2500 [--models gbt,logistic,cnn,...]
        [--real ../shared/data/real] [--trials 16] [--json-out train.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask.cluster import make_client
from starskope_dask.config import (
    load_features_config,
    load_ingest_config,
    load_storage_config,
    load_train_config,
)
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.features.pipeline import run_with_client as features
from starskope_dask.pipeline import run_with_client as ingest
from starskope_dask.train.pipeline import EvaluateConfig, evaluate
from starskope_dask.train.pipeline import run_with_client as train

#: The real stars: planet hosts (ID column, ID, published period) and stars with no known
#: planet (../shared/data/real/README.md).
REAL_HOSTS = (
    ("kic", 10666592, 2.2047354, "HAT-P-7"),
    ("tic", 25155310, 3.2888, "WASP-126"),
    ("tic", 38846515, 2.8494, "WASP-100"),
    ("tic", 149603524, 4.4119, "WASP-62"),
    ("tic", 231663901, 1.4304, "WASP-46"),
    ("tic", 231670397, 4.0873, "WASP-73"),
    ("tic", 281459670, 3.1744, "TOI-110"),
)
REAL_QUIET = (
    *(("kic", k) for k in (2556081, 5899262, 7660594, 8374877, 8417738, 10002792, 10424789)),
    *(
        ("epic", e)
        for e in (
            211117077,
            211436265,
            211495446,
            211623711,
            211696659,
            211719918,
            211779126,
            211841249,
            211874609,
            212029094,
        )
    ),
    ("tic", 358108509),
)
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "gbt": {"model": "gbt"},
    "logistic": {"model": "logistic"},
    "cnn": {"model": "cnn"},
    "spectrogram-cnn": {"model": "spectrogram-cnn"},
    "gbt+rbm": {"model": "gbt", "unsupervised": "rbm"},
    "gbt+autoencoder": {"model": "gbt", "unsupervised": "autoencoder"},
}


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one evaluation."""
    rap = metrics.get("recall_at_precision") or {}
    strong = metrics.get("recall_at_precision_0.95_snr_ge_10") or {}
    return {
        "n": metrics.get("n"),
        "n_positive": metrics.get("n_positive"),
        "roc_auc": metrics.get("roc_auc"),
        "average_precision": metrics.get("average_precision"),
        "recall_at_precision": {k: (v or {}).get("recall") for k, v in rap.items()},
        "recall_at_precision_0.95_snr_ge_10": {
            "overall_threshold": (strong.get("overall_threshold") or {}).get("recall"),
            "subset": (strong.get("subset") or {}).get("recall"),
        },
        "recall_by_snr": metrics.get("recall_by_snr"),
        "false_positives_by_class": metrics.get("false_positives_by_class"),
        "confusion": metrics.get("confusion"),
        "threshold": metrics.get("threshold"),
    }


def train_models(args: argparse.Namespace, workdir: Path, client: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    archive, feats = workdir / "archive", str(workdir / "features.zarr")
    storage = load_storage_config()
    for name in args.models.split(","):
        out = workdir / "models" / name
        shutil.rmtree(out, ignore_errors=True)  # this job's own model of an earlier run
        options = {**MODEL_OPTIONS[name], "seed": args.seed, "n_workers": args.workers}
        if name in ("gbt", "logistic") and args.search:
            options["search"] = args.search
        config = load_train_config(feats, f"truth:{archive}", str(out), **options)
        start = time.perf_counter()
        summary = train(config, client)
        seconds = time.perf_counter() - start
        metrics = evaluate(EvaluateConfig(model=str(out)), storage)
        card = json.loads((out / "model.json").read_text())
        history = card["training"]["history"]
        results[name] = {
            "train_s": seconds,
            "validation_auc": summary.validation.get("roc_auc"),
            "test": figures(metrics),
            "counts": summary.counts,
            "epochs": len(history),
            "examples_per_s": (
                sum(h.get("examples_per_s", 0) for h in history) / len(history) if history else None
            ),
            "parallel": card["training"]["parallel"],
        }
        print(
            f"{name:16s} test ROC-AUC {metrics.get('roc_auc')}  AP {metrics.get('average_precision')}"
            f"  train {seconds:.0f} s"
        )
        if client.scheduler_info()["workers"] and name in ("cnn", "spectrogram-cnn"):
            client.restart()
    return results


def real_features(real: Path, workdir: Path, client: Any) -> str:
    """Ingest the real stars and compute their features (stellar: none)."""
    folder = workdir / "real"
    out = folder / "features.zarr"
    if out.exists():
        return str(out)
    shutil.rmtree(folder, ignore_errors=True)
    archive = folder / "archive"
    archive.mkdir(parents=True)
    for sub in ("kepler", "k2", "tess"):
        for path in sorted((real / sub).glob("*.fits")):
            (archive / path.name).symlink_to(path)
    manifest = str(folder / "manifest.parquet")
    write_manifest(list_archive(str(archive)), manifest)
    store = str(folder / "cube.zarr")
    ingest(load_ingest_config(manifest, store, star_chunk=8), client, progress=False)
    features(load_features_config(store, str(out), stellar="none"), client, progress=False)
    return str(out)


def real_labels(workdir: Path) -> str:
    """Label table of the real stars: each host's planet at its period; quiet stars none."""
    rows = [
        {"kic": None, "epic": None, "tic": None, name: ident, "label": "planet", "period": period}
        for name, ident, period, _ in REAL_HOSTS
    ]
    rows += [
        {"kic": None, "epic": None, "tic": None, name: ident, "label": "none", "period": None}
        for name, ident in REAL_QUIET
    ]
    path = workdir / "real" / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def sim_to_sky(model: Path, real: Path, workdir: Path, client: Any) -> dict[str, Any]:
    """The simulated model on the real stars: every detected signal scored (``predict``), each
    host's planet signal ranked among all of them, and the star-level AUC (a star's score is
    its best signal's; a star with no detected signal scores 0), hosts vs no-known-planet stars.
    """
    from sklearn.metrics import roc_auc_score

    from starskope_dask.train.pipeline import predict

    feats = real_features(real, workdir, client)
    labels = real_labels(workdir)
    out = workdir / "real" / f"evaluation-{model.name}"
    storage = load_storage_config()
    metrics = evaluate(
        EvaluateConfig(model=str(model), features=feats, labels=f"csv:{labels}", out=str(out)),
        storage,
    )
    ranked = predict(str(model), feats, str(out / "predictions.csv"), storage)
    hosts = []
    for name, ident, period, host in REAL_HOSTS:
        mine = ranked[(ranked[name] == ident) & ((ranked["period"] / period - 1).abs() < 0.01)]
        hosts.append(
            {
                "host": host,
                "period": period,
                "rank": int(mine["rank"].min()) if len(mine) else None,
                "score": float(mine["score"].max()) if len(mine) else None,
            }
        )
    stars = []
    for name, ident, *_ in REAL_HOSTS:
        stars.append((1, float(ranked.loc[ranked[name] == ident, "score"].max() or 0)))
    for name, ident in REAL_QUIET:
        mine = ranked.loc[ranked[name] == ident, "score"]
        stars.append((0, float(mine.max()) if len(mine) else 0.0))
    y, s = zip(*stars, strict=True)
    quiet_signals = sum(int((ranked[name] == ident).sum()) for name, ident in REAL_QUIET)
    return {
        "signals": figures(metrics),
        "n_signals_scored": len(ranked),
        "n_signals_on_quiet_stars": quiet_signals,
        "candidates": int(ranked["candidate"].sum()),
        "hosts": hosts,
        "star_level_auc": float(roc_auc_score(y, s)),
        "n_stars": {"hosts": len(REAL_HOSTS), "quiet": len(REAL_QUIET)},
    }


def search_speedup(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``--trials`` gbt trials (one Dask task each, one thread each) on 1 worker and on 2: the
    search alone (``run_trials``), on the same data and parameters.
    """
    from starskope_dask.train.dataset import class_weights, scalar_features
    from starskope_dask.train.pipeline import (
        SEARCH_SPACES,
        ScalarScaler,
        ScalarTrial,
        _part,
        _scalar_inputs,
        _weights,
        longest_first,
        prepare,
    )
    from starskope_dask.train.trials import random_search, run_trials

    archive, feats = workdir / "archive", str(workdir / "features.zarr")
    config = load_train_config(feats, f"truth:{archive}", "", model="gbt", seed=args.seed)
    prepared = prepare(config)
    parts = {name: _part(prepared, name) for name in ("train", "val")}
    scaler = ScalarScaler.fit(scalar_features(parts["train"]))
    x = {k: _scalar_inputs(v, scaler, np.zeros((len(v), 0), np.float32)) for k, v in parts.items()}
    y = {k: v["target"].to_numpy(np.int8) for k, v in parts.items()}
    trial = ScalarTrial(
        "gbt",
        x["train"],
        y["train"],
        _weights(y["train"], class_weights(y["train"])),
        x["val"],
        y["val"],
    )
    space = {**SEARCH_SPACES["gbt"], "gbt_max_iter": [400, 600]}
    candidates = longest_first(
        "gbt",
        [{**config.hyper_parameters(), **p} for p in random_search(space, args.trials, args.seed)],
    )
    seconds = {}
    for n in (1, 2):
        cluster_config = load_train_config(n_workers=n)
        with make_client(cluster_config) as client, client.cluster:
            client.run(lambda: __import__("sklearn.ensemble"))  # imports out of the timing
            start = time.perf_counter()
            trials = run_trials(client, trial, candidates, seed=args.seed)
            seconds[n] = time.perf_counter() - start
            assert trials["error"].isna().all()
    return {"trials": args.trials, "seconds": seconds, "speedup": seconds[1] / seconds[2]}


def cnn_parallel(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The CNN on 1 worker vs data-parallel on 2: validation AUC and examples/s."""
    archive, feats = workdir / "archive", str(workdir / "features.zarr")
    result = {}
    for n in (1, 2):
        out = workdir / "models" / f"cnn-{n}-workers"
        shutil.rmtree(out, ignore_errors=True)
        config = load_train_config(
            feats,
            f"truth:{archive}",
            str(out),
            model="cnn",
            n_workers=n,
            seed=args.seed,
            epochs=args.cnn_epochs,
        )
        with make_client(config) as client, client.cluster:
            start = time.perf_counter()
            summary = train(config, client)
            seconds = time.perf_counter() - start
        card = json.loads((out / "model.json").read_text())
        history = card["training"]["history"]
        result[n] = {
            "validation_auc": summary.validation.get("roc_auc"),
            "seconds": seconds,
            "epochs": len(history),
            "examples_per_s": sum(h.get("examples_per_s", 0) for h in history) / len(history),
            "parallel": card["training"]["parallel"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="made by jobs/sim_recovery.py --workdir")
    parser.add_argument(
        "--models", default="gbt,logistic,gbt+rbm,gbt+autoencoder,cnn,spectrogram-cnn"
    )
    parser.add_argument("--search", type=int, default=8, help="trials for gbt/logistic")
    parser.add_argument("--real", default=str(Path(__file__).parents[2] / "shared/data/real"))
    parser.add_argument(
        "--sky-model", default="", help="model for simulation → sky (default: best)"
    )
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--cnn-epochs", type=int, default=15)
    parser.add_argument("--skip", default="", help="comma-separated: models,sky,search,parallel")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    skip = set(args.skip.split(","))
    report: dict[str, Any] = {"workdir": str(workdir)}
    config = load_train_config(n_workers=args.workers)
    with make_client(config) as client, client.cluster:
        if "models" not in skip:
            report["models"] = train_models(args, workdir, client)
        if "sky" not in skip and Path(args.real).is_dir():
            models = report.get("models", {})
            # chosen by validation AUC: the test split chooses nothing
            best = args.sky_model or max(
                models, key=lambda m: models[m]["validation_auc"] or 0, default="gbt"
            )
            report["sim_to_sky"] = {
                "model": best,
                **sim_to_sky(workdir / "models" / best, Path(args.real), workdir, client),
            }
    if "search" not in skip:
        report["search"] = search_speedup(args, workdir)
    if "parallel" not in skip:
        report["cnn_parallel"] = cnn_parallel(args, workdir)
    print(json.dumps(report, indent=1, default=str))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
