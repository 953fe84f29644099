"""The ``train``, ``evaluate`` and ``predict`` stages: wiring of the train modules over Dask.

``train``
    features store + labels → examples → split by star (seeded, stratified, recorded) →
    scalers fitted on the training stars → optional hyper-parameter search (one Dask task per
    trial, scored on the validation split) → the final model (CNNs data-parallel across the
    workers under ``MultiWorkerMirroredStrategy``; baselines on the workers) → the threshold
    chosen on the validation split → the model folder (model, card, split, trials, history).
``evaluate``
    the model's test split — touched here and only here — or all labelled signals of other
    features (simulation → sky) → ``metrics.json``, ROC/PR/confusion/calibration/history PNGs
    and the gallery of false negatives and false positives.
``predict``
    every detected signal of a features store → scores, ranked, as Parquet or CSV.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from distributed import Client

from starskope_dask.cluster import with_own_client
from starskope_dask.config import TrainConfig
from starskope_dask.errors import (
    ConfigError,
    InputError,
    LabelError,
    ModelError,
    NotAStoreError,
    StoreError,
)
from starskope_dask.features.pipeline import open_features
from starskope_dask.fetch import local_path, url_protocol
from starskope_dask.store import read_table, write_bytes, write_table
from starskope_dask.train.card import (
    check_features,
    features_grid,
    features_parameters,
    library_versions,
    model_file,
    new_card,
    read_card,
    write_card,
)
from starskope_dask.train.dataset import (
    BatchSource,
    ScalarScaler,
    Split,
    class_weights,
    input_shapes,
    load_examples,
    make_source,
    scalar_features,
    split_counts,
    split_stars,
)
from starskope_dask.train.evaluate import jsonable, score_text

logger = logging.getLogger(__name__)

CNN_KINDS = ("cnn", "spectrogram-cnn")
#: Precision at which ``train`` picks the operating threshold on the validation split.
TARGET_PRECISION = 0.95
#: Hyper-parameter spaces of ``--search`` (choices, or ("log"|"uniform", low, high)).
SEARCH_SPACES: dict[str, dict[str, Any]] = {
    "gbt": {
        "gbt_learning_rate": ("log", 0.01, 0.3),
        "gbt_max_leaf_nodes": [7, 15, 31, 63],
        "gbt_max_iter": [100, 200, 400],
    },
    "logistic": {"logistic_c": ("log", 1e-3, 1e2)},
    "cnn": {
        "learning_rate": ("log", 1e-4, 3e-3),
        "filters": [8, 16, 32],
        "dropout": ("uniform", 0.0, 0.5),
        "dense_units": [64, 128, 256],
    },
    "spectrogram-cnn": {
        "learning_rate": ("log", 1e-4, 3e-3),
        "filters": [8, 16, 32],
        "dropout": ("uniform", 0.0, 0.5),
    },
}


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """What a training run did."""

    out: str
    model: str
    n_examples: int
    n_labelled: int
    counts: Mapping[str, Mapping[str, int]]
    validation: Mapping[str, Any]
    threshold: float
    n_trials: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Examples, labels and split of one training run (all on the driver; small tables)."""

    dataset: Any
    examples: pd.DataFrame
    labelled: pd.DataFrame
    report: Mapping[str, Any]
    split: Split


@dataclasses.dataclass(frozen=True)
class SplitSources:
    """Picklable factory of batch sources for data-parallel training:
    ``(shard_index, shard_count, split)`` → the training shard, or the whole validation set.
    """

    train: BatchSource
    val: BatchSource

    def __call__(self, shard_index: int, shard_count: int, split: str) -> BatchSource:
        """The source of ``split`` (``train`` sharded, ``val`` whole)."""
        if split == "train":
            return self.train.shard(shard_index, shard_count)
        return self.val


# ------------------------------------------------------------------------------ preparation


def labelled_examples(
    source: str, examples: pd.DataFrame, storage: Any, period_tolerance: float
) -> tuple[pd.DataFrame, Mapping[str, Any]]:
    """The examples that ``source`` labels (label columns joined, sorted by star and signal)
    and the label report.
    """
    from starskope_dask.train.labels import load_labels

    labels = load_labels(
        source,
        examples,
        storage_options=storage.options_for_url(_label_url(source)),
        period_tolerance=period_tolerance,
    )
    joined = examples.merge(labels.table, on=["star", "signal"], how="inner", validate="one_to_one")
    labelled = joined.sort_values(["star", "signal"]).reset_index(drop=True)
    return labelled, dataclasses.asdict(labels.report)


def prepare(config: TrainConfig) -> Prepared:
    """Open the features, join the labels and split the stars (no cluster needed).

    Raises
    ------
    LabelError
        If no signal gets a label, or one class is absent (nothing to learn).
    StoreError
        If the features store cannot be opened.
    """
    dataset = open_features(config.features, config.storage.options_for_url(config.features))
    examples = load_examples(dataset)
    labelled, report = labelled_examples(
        config.labels, examples, config.storage, config.period_tolerance
    )
    classes = labelled["target"].value_counts().to_dict() if len(labelled) else {}
    if not classes.get(1) or not classes.get(0):
        raise LabelError(
            config.labels,
            f"{classes.get(1, 0)} planet and {classes.get(0, 0)} other signals labelled among "
            f"the {len(examples)} detected signals of {config.features}; a classifier needs both",
            "check that the labels name these stars (IDs) and their periods",
        )
    split = split_stars(
        labelled,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    logger.info(
        "%d of %d signals labelled (%d planets); split %d/%d/%d stars (seed %d)",
        len(labelled),
        len(examples),
        int(classes.get(1, 0)),
        len(split.train),
        len(split.val),
        len(split.test),
        split.seed,
    )
    return Prepared(dataset, examples, labelled, report, split)


def _label_url(source: str) -> str:
    from starskope_dask.train.labels import parse_label_source

    try:
        return parse_label_source(source)[1]
    except InputError:
        return source


def _part(prepared: Prepared, name: str) -> pd.DataFrame:
    stars = set(prepared.split.of(name))
    part = prepared.labelled[prepared.labelled["star"].isin(stars)]
    return part.reset_index(drop=True)


def hide_stellar(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``frame`` with the stellar properties of a seeded ``share`` of its stars set to NaN.

    Real stars often lack TIC properties (and the features store of a run with
    ``--stellar none`` has none); a model that only ever saw them would meet such stars far
    off its training distribution. Whole stars are hidden, so all their signals agree.
    """
    if share <= 0 or not len(frame):
        return frame
    from starskope_dask.features.layout import STELLAR_VARIABLES

    stars = np.unique(frame["star"].to_numpy())
    rng = np.random.default_rng([seed, 0x57E1])
    hidden = set(rng.choice(stars, size=round(share * len(stars)), replace=False).tolist())
    out = frame.copy()
    rows = out["star"].isin(hidden)
    for name in STELLAR_VARIABLES:
        if name in out:
            out.loc[rows, name] = np.nan
    return out


def _weights(target: npt.NDArray[Any], weights: Mapping[int, float]) -> npt.NDArray[np.float64]:
    return np.where(np.asarray(target) == 1, weights[1], weights[0]).astype(np.float64)


def _spectrogram_sample(dataset: Any, stars: Sequence[int], most: int = 256) -> Any:
    chosen = np.asarray(sorted(set(stars)))[:most]
    return dataset["spectrogram"].isel(star=chosen).values if len(chosen) else None


# ------------------------------------------------------------------------------ scalar models


@dataclasses.dataclass(frozen=True)
class ScalarTrial:
    """One trial of a scalar model: fit on the training rows, score the validation rows.

    Carries its (small) data, so that it is one self-contained Dask task.
    """

    kind: str
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int8]
    w_train: npt.NDArray[np.float64]
    x_val: npt.NDArray[np.float32]
    y_val: npt.NDArray[np.int8]

    def __call__(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """Fit and score one set of hyper-parameters."""
        from sklearn.metrics import average_precision_score, roc_auc_score

        model = fit_scalar_model(
            self.kind, self.x_train, self.y_train, self.w_train, params, seed, n_threads=1
        )
        from starskope_dask.train.baselines import score

        predicted = score(model, self.x_val)
        return {
            "val_auc": float(roc_auc_score(self.y_val, predicted)),
            "val_ap": float(average_precision_score(self.y_val, predicted)),
        }


def fit_scalar_model(
    kind: str,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    w: npt.NDArray[Any],
    params: Mapping[str, Any],
    seed: int,
    client: Client | None = None,
    n_threads: int | None = None,
) -> Any:
    """Fit ``gbt`` (HistGradientBoosting) or ``logistic`` (dask-ml) with ``params``
    (``n_threads``: OpenMP threads of the boosting; a trial on a worker uses one).
    """
    from starskope_dask.train.baselines import fit_hgb, fit_logistic

    if kind == "gbt":
        return fit_hgb(
            x,
            y,
            w,
            params={
                "learning_rate": float(params["gbt_learning_rate"]),
                "max_leaf_nodes": int(params["gbt_max_leaf_nodes"]),
                "max_iter": int(params["gbt_max_iter"]),
                "seed": seed,
                # scikit-learn's 20 would forbid every split of a small training set
                "min_samples_leaf": max(2, min(20, len(y) // 20)),
            },
            n_threads=n_threads,
        )
    return fit_logistic(x, y, w, client=client, C=float(params["logistic_c"]), seed=seed)


def _unsupervised_features(
    config: TrainConfig,
    prepared: Prepared,
    scaler: ScalarScaler,
    frames: Mapping[str, pd.DataFrame],
    out: str,
) -> dict[str, npt.NDArray[np.float32]]:
    """Spectrogram features learnt on the training stars only, for every frame's rows."""
    if config.unsupervised == "none":
        return {name: np.zeros((len(frame), 0), np.float32) for name, frame in frames.items()}
    encoder = fit_encoder(config, prepared, scaler)
    save_encoder(encoder, config.unsupervised, out, config.storage.options_for_url(out))
    options = config.storage.options_for_url(config.features)
    return {
        name: encode_rows(
            encoder, config.unsupervised, prepared.dataset, frame, scaler, config.features, options
        )
        for name, frame in frames.items()
    }


def _spectrograms(
    dataset: Any, stars: npt.NDArray[Any], scaler: ScalarScaler
) -> npt.NDArray[np.float32]:
    """Standardised spectrograms of ``stars``, read one star chunk at a time."""
    unique, inverse = np.unique(np.asarray(stars, dtype=np.int64), return_inverse=True)
    rows = [
        scaler.transform_spectrogram(dataset["spectrogram"].isel(star=unique[i : i + 256]).values)
        for i in range(0, len(unique), 256)
    ]
    block = np.concatenate(rows) if rows else np.zeros((0, 1, 1), np.float32)
    return block[inverse]


def _rbm_input(spectra: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]]:
    """Standardised spectrograms flattened and squashed into (0, 1), as a Bernoulli RBM takes."""
    return 1.0 / (1.0 + np.exp(-spectra.reshape(len(spectra), -1)))


def _star_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per star (its first signal): the spectrogram is the star's."""
    return frame.drop_duplicates("star").sort_values("star").reset_index(drop=True)


def fit_encoder(config: TrainConfig, prepared: Prepared, scaler: ScalarScaler) -> Any:
    """Fit the unsupervised spectrogram model on the training stars' spectrograms only."""
    train_stars = np.asarray(sorted(set(prepared.split.train)))
    if config.unsupervised == "rbm":
        from starskope_dask.train.baselines import fit_rbm

        flat = _rbm_input(_spectrograms(prepared.dataset, train_stars, scaler))
        return fit_rbm(flat, n_components=config.latent_dim, seed=config.seed)
    from starskope_dask.train.models import CnnParams, train_autoencoder

    stars = _star_rows(prepared.examples[prepared.examples["star"].isin(set(train_stars))])
    held = _star_rows(prepared.examples[prepared.examples["star"].isin(set(prepared.split.val))])
    options = config.storage.options_for_url(config.features)
    sources = [
        make_source(
            config.features,
            frame,
            scaler,
            inputs=("spectrogram",),
            storage_options=options,
            batch_size=config.batch_size,
            shuffle=shuffle,
            seed=config.seed,
        )
        for frame, shuffle in ((stars, True), (held, False))
    ]
    params = CnnParams(
        kind="spectrogram-cnn",
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        epochs=min(config.epochs, 30),
        patience=config.patience,
        filters=config.filters,
        seed=config.seed,
    )
    shape = tuple(int(prepared.dataset.sizes[d]) for d in ("spectrogram_time", "spectrogram_band"))
    trained = train_autoencoder(shape, config.latent_dim, params, sources[0], sources[1])  # type: ignore[arg-type]
    return trained.encoder


def encode_rows(
    encoder: Any,
    kind: str,
    dataset: Any,
    frame: pd.DataFrame,
    scaler: ScalarScaler,
    features: str = "",
    options: Mapping[str, Any] | None = None,
) -> npt.NDArray[np.float32]:
    """Unsupervised features of each row's star, in row order."""
    if kind == "rbm":
        from starskope_dask.train.baselines import rbm_features

        flat = _rbm_input(_spectrograms(dataset, frame["star"].to_numpy(), scaler))
        return np.asarray(rbm_features(encoder, flat), dtype=np.float32)
    from starskope_dask.train.models import encode

    stars = _star_rows(frame)
    source = make_source(
        features, stars, scaler, inputs=("spectrogram",), storage_options=options, batch_size=256
    )
    latent = np.asarray(encode(encoder, source), dtype=np.float32)  # in star order
    index = np.searchsorted(stars["star"].to_numpy(), frame["star"].to_numpy())
    return latent[index]


def save_encoder(encoder: Any, kind: str, out: str, options: Mapping[str, Any]) -> None:
    """Write the unsupervised model into the model folder."""
    if kind == "rbm":
        from starskope_dask.train.baselines import save_estimator

        save_estimator(encoder, model_file(out, "encoder.joblib"), options)
    else:
        from starskope_dask.train.models import save_model

        save_model(encoder, model_file(out, "encoder.keras"), options)


def load_encoder(kind: str, url: str, options: Mapping[str, Any]) -> Any:
    """Read the unsupervised model of a model folder."""
    if kind == "rbm":
        from starskope_dask.train.baselines import load_estimator

        return load_estimator(model_file(url, "encoder.joblib"), options)
    from starskope_dask.train.models import load_model

    return load_model(model_file(url, "encoder.keras"), options)


def _search(
    config: TrainConfig,
    client: Client,
    trial: Callable[[Mapping[str, Any], int], dict[str, Any]],
    out: str,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Run ``config.search`` trials (one task each); the best parameters by validation AUC."""
    base = config.hyper_parameters()
    if not config.search:
        return base, None
    from starskope_dask.train.trials import best_params, random_search, run_trials

    space = SEARCH_SPACES[config.model]
    candidates = longest_first(
        config.model, [{**base, **p} for p in random_search(space, config.search, config.seed)]
    )
    trials = run_trials(client, trial, candidates, seed=config.seed)
    write_table(model_file(out, "trials.parquet"), trials, config.storage.options_for_url(out))
    best = best_params(trials)
    logger.info(
        "search: %d trials, best validation AUC %.4f with %s",
        len(trials),
        float(trials["val_auc"].max()),
        {k: best[k] for k in space},
    )
    return {**base, **best}, trials


def trial_cost(kind: str, params: Mapping[str, Any]) -> float:
    """A trial's relative cost: boosting rounds × leaves for ``gbt``, filters × units for the
    CNNs (epochs are cut by early stopping alike), 1 otherwise.
    """
    if kind == "gbt":
        return float(params["gbt_max_iter"]) * float(params["gbt_max_leaf_nodes"])
    if kind in CNN_KINDS:
        return float(params["filters"]) ** 2 * float(params.get("dense_units", 1))
    return 1.0


def longest_first(kind: str, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials ordered by descending cost: the scheduler starts tasks in submission order, and
    longest-first keeps the last worker from running the one long trial alone (LPT scheduling).
    """
    return sorted(candidates, key=lambda p: -trial_cost(kind, p))


def _threshold(target: npt.NDArray[Any], score: npt.NDArray[Any]) -> float:
    """Lowest threshold whose validation precision reaches :data:`TARGET_PRECISION` (0.5 when
    none does).
    """
    from sklearn.metrics import precision_recall_curve

    precision, _, thresholds = precision_recall_curve(target, score)
    reached = np.nonzero(precision[:-1] >= TARGET_PRECISION)[0]
    return float(thresholds[reached[0]]) if len(reached) else 0.5


# ------------------------------------------------------------------------------ train


def _cnn_params(kind: str, values: Mapping[str, Any], n_workers: int = 1) -> Any:
    """CNN hyper-parameters; the global batch ``batch_size`` is split over ``n_workers``."""
    from starskope_dask.train.models import CnnParams

    return CnnParams(
        kind=kind,
        learning_rate=float(values["learning_rate"]),
        batch_size=max(1, int(values["batch_size"]) // n_workers),
        epochs=int(values["epochs"]),
        patience=int(values["patience"]),
        dropout=float(values["dropout"]),
        filters=int(values["filters"]),
        dense_units=int(values["dense_units"]),
        l2=float(values["l2"]),
        seed=int(values["seed"]),
    )


@dataclasses.dataclass(frozen=True)
class CnnTrial:
    """One CNN trial: train on the training split in one worker, score the validation split."""

    kind: str
    shapes: Mapping[str, tuple[int, ...]]
    sources: SplitSources

    def __call__(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """Train and score one set of hyper-parameters."""
        from sklearn.metrics import average_precision_score

        from starskope_dask.train.models import predict_scores, train_model

        cnn = _cnn_params(self.kind, {**params, "seed": seed})
        trained = train_model(self.kind, self.shapes, cnn, self.sources.train, self.sources.val)
        score = predict_scores(trained.model, self.sources.val)
        target = np.asarray(self.sources.val.target)
        return {
            "val_auc": max(h["val_auc"] for h in trained.history),
            "val_ap": float(average_precision_score(target, score)),
            "epochs": len(trained.history),
        }


def _train_cnn(
    config: TrainConfig,
    client: Client,
    prepared: Prepared,
    scaler: ScalarScaler,
    parts: Mapping[str, pd.DataFrame],
    weights: Mapping[int, float],
) -> tuple[Any, list[dict[str, Any]], dict[str, Any], pd.DataFrame | None, dict[str, Any]]:
    inputs = _array_inputs(config.model)
    options = config.storage.options_for_url(config.features)
    train, val = parts["train"], parts["val"]
    common: dict[str, Any] = {
        "inputs": inputs,
        "storage_options": options,
        "batch_size": config.batch_size,
    }
    sources = SplitSources(
        train=make_source(
            config.features,
            train,
            scaler,
            target=train["target"].to_numpy(),
            weight=_weights(train["target"].to_numpy(), weights),
            shuffle=True,
            augment=True,
            seed=config.seed,
            **common,
        ),
        val=make_source(config.features, val, scaler, target=val["target"].to_numpy(), **common),
    )
    shapes = input_shapes(prepared.dataset, inputs, len(scaler.names))
    params, trials = _search(config, client, CnnTrial(config.model, shapes, sources), config.out)
    n_workers = len(client.scheduler_info()["workers"])
    parallel: dict[str, Any] = {"workers": 1, "strategy": "single worker"}
    if config.distributed == "auto" and n_workers >= 2:
        from starskope_dask.train.distributed import train_multiworker

        cnn = _cnn_params(config.model, params, n_workers)
        trained = train_multiworker(client, config.model, shapes, cnn, sources, n_workers)
        digests = sorted(set(trained.weights_digests))
        parallel = {
            "workers": trained.n_workers,
            "strategy": "MultiWorkerMirroredStrategy",
            "batch_per_worker": cnn.batch_size,
            "identical_weights": len(digests) == 1,
            "weights_sha256": digests[0] if len(digests) == 1 else digests,
        }
    else:
        from starskope_dask.train.models import train_model

        cnn = _cnn_params(config.model, params)
        trained = client.submit(
            train_model, config.model, shapes, cnn, sources.train, sources.val, pure=False
        ).result()
    model, history = trained.model, list(trained.history)
    parallel.update(device=trained.device, mixed_precision=trained.mixed_precision)
    return model, history, {**params, "cnn": cnn.to_dict()}, trials, parallel


def _scores_in_order(
    model: Any,
    features: str,
    frame: pd.DataFrame,
    scaler: ScalarScaler,
    kind: str,
    options: Mapping[str, Any],
) -> npt.NDArray[np.float64]:
    """CNN scores of ``frame``'s rows, in its row order (streamed in star-chunk order)."""
    from starskope_dask.train.models import predict_scores

    inputs = _array_inputs(kind)
    order = np.lexsort((frame["signal"].to_numpy(), frame["star"].to_numpy()))
    ordered = frame.iloc[order]
    source = make_source(
        features, ordered, scaler, inputs=inputs, storage_options=options, batch_size=256
    )
    scores = np.asarray(predict_scores(model, source), dtype=np.float64)
    result = np.empty(len(frame))
    result[order] = scores
    return result


def _scalar_inputs(
    frame: pd.DataFrame, scaler: ScalarScaler, extra: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    return np.hstack([scaler.transform(scalar_features(frame)), extra]).astype(np.float32)


def run_with_client(config: TrainConfig, client: Client) -> TrainSummary:
    """Train ``config.model`` on ``config.features`` with the cluster of ``client``.

    Returns
    -------
    TrainSummary
        The model folder is written at ``config.out``: the model, ``model.json``,
        ``split.parquet``, ``trials.parquet`` (with ``--search``) and ``history.png``.
    """
    start = time.perf_counter()
    _check_out(config)
    prepared = prepare(config)
    return _train(config, client, prepared, start)


def _check_out(config: TrainConfig) -> None:
    for name in ("features", "labels", "out"):
        if not getattr(config, name):
            raise ConfigError(f"train.{name} is not set (see `starskope train --help`)")
    check_training_extra(config)
    check_model_folder(config.out, config.storage.options_for_url(config.out))


def check_training_extra(config: TrainConfig) -> None:
    """Refuse, before anything starts, a model whose libraries are not installed.

    Raises
    ------
    ConfigError
        Naming the model, the missing modules and the extra that installs them.
    """
    import importlib.util

    needed: dict[str, tuple[str, ...]] = {
        "cnn": ("tensorflow", "keras"),
        "spectrogram-cnn": ("tensorflow", "keras"),
        "logistic": ("dask_ml",),
    }
    modules = list(needed.get(config.model, ()))
    if config.unsupervised == "autoencoder" and config.model not in CNN_KINDS:
        modules += ["tensorflow", "keras"]
    missing = [m for m in dict.fromkeys(modules) if importlib.util.find_spec(m) is None]
    if missing:
        what = f"--model {config.model}" + (
            " --unsupervised autoencoder" if config.unsupervised == "autoencoder" else ""
        )
        raise ConfigError(
            f"{what} needs {', '.join(missing)}, which are not installed: install the `train` "
            "extra (pip install 'starskope-dask[train]'), or use --model gbt"
        )


def check_model_folder(out: str, options: Mapping[str, Any]) -> None:
    """Refuse to write a model into a non-empty folder that does not hold one.

    A model folder is rewritten (a retrained model replaces the old one's files); any other
    folder with files in it is left alone: the tool never deletes or overwrites what it did
    not write.

    Raises
    ------
    NotAStoreError
        If ``out`` holds files but no ``model.json``.
    """
    from starskope_dask.fetch import filesystem

    fs = filesystem(url_protocol(out), options)
    path = str(local_path(out)) if url_protocol(out) == "file" else out.split("://", 1)[1]
    try:
        if not fs.exists(path) or fs.exists(f"{path.rstrip('/')}/model.json"):
            return
        entries = fs.ls(path, detail=False) if fs.isdir(path) else [path]
    except OSError as exc:
        raise StoreError(f"cannot check the model folder {out}: {exc}") from exc
    if entries:
        raise NotAStoreError(
            f"{out} is not empty and holds no starskope model (no model.json); choose another "
            "--out (nothing was written)"
        )


def _train(config: TrainConfig, client: Client, prepared: Prepared, start: float) -> TrainSummary:
    out = config.out.rstrip("/")
    options = config.storage.options_for_url(out)
    parts = {name: _part(prepared, name) for name in ("train", "val")}
    parts["train"] = hide_stellar(parts["train"], config.stellar_dropout, config.seed)
    train = parts["train"]
    weights = class_weights(train["target"].to_numpy())
    sample = _spectrogram_sample(prepared.dataset, prepared.split.train)
    scaler = ScalarScaler.fit(scalar_features(train), sample)
    logger.info("dashboard: %s", client.dashboard_link)
    history: list[dict[str, Any]] = []
    parallel: dict[str, Any] = {"workers": 1}
    if config.model in CNN_KINDS:
        model, history, params, trials, parallel = _train_cnn(
            config, client, prepared, scaler, parts, weights
        )
        from starskope_dask.train.models import save_model

        save_model(model, model_file(out, "model.keras"), options)
        val_score = _scores_in_order(
            model,
            config.features,
            parts["val"],
            scaler,
            config.model,
            config.storage.options_for_url(config.features),
        )
        model_name = "model.keras"
    else:
        extra = _unsupervised_features(config, prepared, scaler, parts, out)
        x = {name: _scalar_inputs(parts[name], scaler, extra[name]) for name in parts}
        y = {name: parts[name]["target"].to_numpy(np.int8) for name in parts}
        trial = ScalarTrial(
            config.model, x["train"], y["train"], _weights(y["train"], weights), x["val"], y["val"]
        )
        params, trials = _search(config, client, trial, out)
        model = fit_scalar_model(
            config.model, x["train"], y["train"], trial.w_train, params, config.seed, client
        )
        from starskope_dask.train.baselines import save_estimator, score

        save_estimator(model, model_file(out, "model.joblib"), options)
        val_score = np.asarray(score(model, x["val"]), dtype=np.float64)
        model_name = "model.joblib"
    from starskope_dask.train.evaluate import classification_metrics

    val_target = parts["val"]["target"].to_numpy()
    threshold = _threshold(val_target, val_score)
    validation = classification_metrics(
        val_target,
        val_score,
        snr=_snr(parts["val"]),
        label=parts["val"]["label"].to_numpy(),
        threshold=threshold,
    )
    counts = split_counts(prepared.labelled, prepared.split)
    write_table(model_file(out, "split.parquet"), prepared.split.as_table(), options)
    _write_history_plot(history, out, options)
    card = new_card(
        model={
            "kind": config.model,
            "file": model_name,
            "unsupervised": config.unsupervised,
            "inputs": list(_model_inputs(config.model)),
        },
        features={
            "url": config.features,
            "parameters_hash": prepared.dataset.attrs.get("parameters_hash"),
            "parameters": features_parameters(prepared.dataset.attrs),
            "grid": features_grid(prepared.dataset.attrs),
            "dims": {
                name: int(prepared.dataset.sizes[name])
                for name in (
                    "signal",
                    "global_bin",
                    "local_bin",
                    "spectrogram_time",
                    "spectrogram_band",
                )
            },
            "variables": sorted(_needed_variables(config.model)),
            "cube": prepared.dataset.attrs.get("cube"),
        },
        labels={"source": config.labels, "report": _short_report(prepared.report)},
        split={
            "seed": prepared.split.seed,
            "fractions": list(prepared.split.fractions),
            "by": "star, grouped by shared KIC/EPIC/TIC, stratified by class",
            "counts": counts,
            "file": "split.parquet",
        },
        class_weights={str(k): v for k, v in weights.items()},
        scaler=scaler.to_dict(),
        hyper_parameters=dict(params),
        training={
            "history": history,
            "parallel": parallel,
            "n_trials": 0 if trials is None else len(trials),
            "trials_file": None if trials is None else "trials.parquet",
            "augmentation": "global view rolled by up to 5 % of a period (cnn only); no flips",
            "class_imbalance": "per-example weights n / (2 n_class) of the training split",
        },
        threshold={"value": threshold, "chosen_on": "validation", "precision": TARGET_PRECISION},
        metrics={"validation": validation},
        versions=library_versions(("tensorflow", "tensorflow-cpu", "keras", "dask-ml")),
    )
    write_card(out, card, options)
    summary = TrainSummary(
        out=out,
        model=config.model,
        n_examples=len(prepared.examples),
        n_labelled=len(prepared.labelled),
        counts=counts,
        validation={
            k: validation.get(k) for k in ("roc_auc", "average_precision", "recall_at_precision")
        },
        threshold=threshold,
        n_trials=0 if trials is None else len(trials),
        seconds=time.perf_counter() - start,
    )
    logger.info(
        "trained %s: validation ROC-AUC %s, AP %s (model at %s)",
        config.model,
        validation.get("roc_auc"),
        validation.get("average_precision"),
        out,
    )
    return summary


def _model_inputs(kind: str) -> tuple[str, ...]:
    """The inputs of a model kind: the CNNs' (``models.model_inputs``), or the scalars."""
    from starskope_dask.train.models import model_inputs

    return model_inputs(kind) if kind in CNN_KINDS else ("scalars",)


def _array_inputs(kind: str) -> tuple[str, ...]:
    """The inputs a batch source reads from the store (the scalars travel with it)."""
    return tuple(i for i in _model_inputs(kind) if i != "scalars")


def _needed_variables(kind: str) -> set[str]:
    from starskope_dask.train.dataset import SIGNAL_COLUMNS, STAR_COLUMNS

    return {*SIGNAL_COLUMNS, *STAR_COLUMNS, *_array_inputs(kind), "spectrogram"}


def _short_report(report: Mapping[str, Any], most: int = 20) -> dict[str, Any]:
    short: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, list | tuple):
            short[f"n_{key}"] = len(value)
            short[key] = list(value)[:most]
        else:
            short[key] = value
    return short


def _snr(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The SNR bins' measure: the truth's expected SNR where known, else the measured one."""
    measured = frame["snr"].to_numpy(np.float64)
    if "truth_snr" not in frame:
        return measured
    truth = frame["truth_snr"].to_numpy(np.float64)
    return np.where(np.isfinite(truth), truth, measured)


def _write_history_plot(
    history: Sequence[Mapping[str, Any]], out: str, options: Mapping[str, Any]
) -> None:
    if not history:
        return
    from starskope_dask.train.evaluate import plot_history

    with tempfile.TemporaryDirectory() as tmp:
        _upload([plot_history(history, Path(tmp) / "history.png")], out, options)


def _upload(paths: Sequence[Path], out: str, options: Mapping[str, Any]) -> None:
    """Copy local files (plots made in a temporary folder) into the folder ``out``."""
    for path in paths:
        write_bytes(model_file(out, path.name), path.read_bytes(), options)


def run(config: TrainConfig) -> TrainSummary:
    """Train with a client of its own (a LocalCluster, or ``config``'s scheduler).

    The output folder, the features and the labels are checked and the split is made before
    any cluster starts: a bad input costs no worker.
    """
    start = time.perf_counter()
    _check_out(config)
    prepared = prepare(config)
    return with_own_client(config, lambda get_client: _train(config, get_client(), prepared, start))


# ------------------------------------------------------------------------------ scoring


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A saved model, read back: card, scaler and the estimator/Keras model."""

    url: str
    card: Mapping[str, Any]
    scaler: ScalarScaler
    model: Any
    encoder: Any


def load_trained(url: str, options: Mapping[str, Any]) -> LoadedModel:
    """Read a model folder written by ``train``.

    Raises
    ------
    ModelError
        If the folder, the card or the model file is missing or damaged.
    """
    card = read_card(url, options)
    kind = card["model"]["kind"]
    try:
        if kind in CNN_KINDS:
            from starskope_dask.train.models import load_model

            model = load_model(model_file(url, card["model"]["file"]), options)
        else:
            from starskope_dask.train.baselines import load_estimator

            model = load_estimator(model_file(url, card["model"]["file"]), options)
        unsupervised = card["model"].get("unsupervised", "none")
        encoder = None if unsupervised == "none" else load_encoder(unsupervised, url, options)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"cannot load the model {model_file(url, card['model']['file'])}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return LoadedModel(url, card, ScalarScaler.from_dict(card["scaler"]), model, encoder)


def _open_for(
    loaded: LoadedModel, features: str, storage: Any
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Open ``features`` for a model: checked against its card; the examples; fsspec options."""
    options = storage.options_for_url(features)
    dataset = open_features(features, options)
    check_features(loaded.card, dataset, features)
    return dataset, load_examples(dataset), options


def score_examples(
    loaded: LoadedModel,
    dataset: Any,
    features: str,
    frame: pd.DataFrame,
    options: Mapping[str, Any],
) -> npt.NDArray[np.float64]:
    """Scores (probability of a planet) of ``frame``'s signals, in row order."""
    if not len(frame):
        return np.zeros(0)
    kind = loaded.card["model"]["kind"]
    if kind in CNN_KINDS:
        return _scores_in_order(loaded.model, features, frame, loaded.scaler, kind, options)
    from starskope_dask.train.baselines import score

    unsupervised = loaded.card["model"].get("unsupervised", "none")
    extra = (
        np.zeros((len(frame), 0), np.float32)
        if loaded.encoder is None
        else encode_rows(
            loaded.encoder, unsupervised, dataset, frame, loaded.scaler, features, options
        )
    )
    return np.asarray(score(loaded.model, _scalar_inputs(frame, loaded.scaler, extra)), float)


# ------------------------------------------------------------------------------ evaluate


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What ``evaluate`` scores: the model's test split, or all labelled signals of other
    features (``features`` and ``labels`` given).
    """

    model: str
    features: str = ""
    labels: str = ""
    out: str = ""
    period_tolerance: float = 0.01
    gallery_size: int = 12


def evaluate(config: EvaluateConfig, storage: Any) -> dict[str, Any]:
    """Evaluate a trained model; write ``metrics.json`` and the PNGs.

    Parameters
    ----------
    config : EvaluateConfig
        The model, and other features and labels to evaluate on (else its test split).
    storage : StorageConfig
        fsspec options of the model, features and labels.

    Returns
    -------
    dict
        The metrics (as written to ``metrics.json``), with ``files`` listing what was written.

    Raises
    ------
    ModelError, ModelMismatchError, LabelError, StoreError
    """
    from starskope_dask.train.evaluate import classification_metrics, plot_evaluation

    model_url = config.model.rstrip("/")
    model_options = storage.options_for_url(model_url)
    loaded = load_trained(model_url, model_options)
    card = loaded.card
    external = bool(config.features)
    features = config.features or card["features"]["url"]
    labels_source = config.labels or card["labels"]["source"]
    if external and not config.labels:
        raise ConfigError("evaluate with other FEATURES needs --labels for them")
    dataset, examples, options = _open_for(loaded, features, storage)
    labelled, _ = labelled_examples(labels_source, examples, storage, config.period_tolerance)
    if external:
        frame, what = labelled, f"all labelled signals of {features}"
    else:
        split = read_table(model_file(model_url, "split.parquet"), model_options)
        if split is None:
            raise ModelError(f"the model at {model_url} has no split.parquet")
        test_stars = set(split.loc[split["split"] == "test", "star"].astype(int))
        frame, what = labelled[labelled["star"].isin(test_stars)], "the test split"
    frame = frame.reset_index(drop=True)
    if not len(frame):
        raise LabelError(labels_source, f"no labelled signals in {what}")
    scores = score_examples(loaded, dataset, features, frame, options)
    threshold = float(card["threshold"]["value"])
    metrics = classification_metrics(
        frame["target"].to_numpy(),
        scores,
        snr=_snr(frame),
        label=frame["label"].to_numpy(),
        threshold=threshold,
    )
    metrics["evaluated_on"] = what
    metrics["features"] = features
    metrics["labels"] = labels_source
    metrics["model"] = model_url
    out = (config.out or model_file(model_url, "evaluation")).rstrip("/")
    out_options = storage.options_for_url(out)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = plot_evaluation(
            frame["target"].to_numpy(),
            scores,
            metrics,
            folder,
            history=card.get("training", {}).get("history") or None,
            title=f"{card['model']['kind']} on {what}",
        )
        paths += _galleries(dataset, frame, scores, threshold, folder, config.gallery_size)
        _upload(paths, out, out_options)
    _write_scores(_ranked_table(frame, scores), model_file(out, "scores.csv"), out_options)
    metrics["files"] = [p.name for p in paths] + ["scores.csv", "metrics.json"]
    write_bytes(
        model_file(out, "metrics.json"),
        json.dumps(jsonable(metrics), indent=2).encode(),
        out_options,
    )
    metrics["out"] = out
    return metrics


def _galleries(
    dataset: Any,
    frame: pd.DataFrame,
    scores: npt.NDArray[np.float64],
    threshold: float,
    folder: Path,
    most: int,
) -> list[Path]:
    """FN and FP galleries (the views of the worst-scored signals)."""
    from starskope_dask.train.evaluate import plot_gallery

    target = frame["target"].to_numpy()
    paths = []
    for name, chosen in (
        ("false_negatives", np.nonzero((target == 1) & (scores < threshold))[0]),
        ("false_positives", np.nonzero((target == 0) & (scores >= threshold))[0]),
    ):
        worst = chosen[np.argsort(scores[chosen] if name == "false_negatives" else -scores[chosen])]
        rows = frame.iloc[worst[:most]]
        views = dataset[["global_view", "local_view"]].isel(  # one (vectorised) read
            star=xr.DataArray(rows["star"].to_numpy(), dims="example"),
            signal=xr.DataArray(rows["signal"].to_numpy(), dims="example"),
        )
        examples = [
            {
                "title": (
                    f"star {row.star} sig {row.signal} {row.label} P={row.period:.3f} d "
                    f"SNR={row.snr:.0f} score={score_text(scores[index])}"
                ),
                "global_view": views["global_view"].values[i],
                "local_view": views["local_view"].values[i],
            }
            for i, (index, row) in enumerate(zip(worst[:most], rows.itertuples(), strict=True))
        ]
        if examples:
            paths.append(
                plot_gallery(
                    examples,
                    folder / f"{name}.png",
                    title=f"{name.replace('_', ' ')} (threshold {score_text(threshold)})",
                )
            )
    return paths


# ------------------------------------------------------------------------------ predict

SCORE_COLUMNS = (
    "rank",
    "star",
    "signal",
    "kic",
    "epic",
    "tic",
    "ra",
    "dec",
    "period",
    "t0",
    "duration",
    "depth",
    "snr",
    "score",
    "candidate",
)


def _ranked_table(frame: pd.DataFrame, scores: npt.NDArray[np.float64]) -> pd.DataFrame:
    table = frame.copy()
    table["score"] = scores
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def predict(model: str, features: str, out: str, storage: Any) -> pd.DataFrame:
    """Score every detected signal of ``features``; write the ranked table to ``out``.

    ``out`` ending in ``.csv`` is written as CSV, anything else as Parquet. Columns:
    :data:`SCORE_COLUMNS` (``candidate``: score at or above the model's threshold).

    Raises
    ------
    ModelError, ModelMismatchError, StoreError
    """
    model_url = model.rstrip("/")
    loaded = load_trained(model_url, storage.options_for_url(model_url))
    dataset, examples, options = _open_for(loaded, features, storage)
    scores = score_examples(loaded, dataset, features, examples, options)
    ranked = _ranked_table(examples, scores)
    ranked["candidate"] = ranked["score"] >= float(loaded.card["threshold"]["value"])
    ranked = ranked[list(SCORE_COLUMNS)]
    _write_scores(ranked, out, storage.options_for_url(out))
    logger.info(
        "%d signals scored, %d candidates at threshold %.3f: %s",
        len(ranked),
        int(ranked["candidate"].sum()),
        float(loaded.card["threshold"]["value"]),
        out,
    )
    return ranked


def _write_scores(table: pd.DataFrame, out: str, options: Mapping[str, Any]) -> None:
    """Write ``table`` to ``out``: CSV for a ``.csv`` name, Parquet otherwise."""
    buffer = io.BytesIO()
    if out.lower().endswith(".csv"):
        table.to_csv(buffer, index=False)
    else:
        table.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    if url_protocol(out) == "file":
        path = local_path(out).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        out = str(path)
    write_bytes(out, data, options)
