"""Baselines on the scalar features and unsupervised spectrogram features.

- :func:`fit_logistic`: dask-ml ``LogisticRegression`` on Dask arrays chunked by rows (the
  L-BFGS solver of dask-glm; each iteration's loss and gradient are one Dask computation over
  the chunks, on the distributed client when one is given).
- :func:`fit_hgb`: scikit-learn ``HistGradientBoostingClassifier`` (single process; early
  stopping off, ``max_iter`` is a hyper-parameter chosen on *our* validation set).
- :func:`fit_rbm` / :func:`rbm_features`: scikit-learn ``BernoulliRBM`` on spectrograms scaled
  to [0, 1], for the "do unsupervised features help?" comparison.
- :func:`save_estimator` / :func:`load_estimator`: joblib through fsspec (local or ``s3://``).

Inputs are numpy arrays: ``X`` (n, k) float, NaN-free and standardised by the caller, ``y`` (n,)
0/1 and ``w`` (n,) sample weights (class weights for the imbalance).

Class imbalance and dask-ml: ``dask_ml.linear_model.LogisticRegression.fit(X, y)`` takes no
``sample_weight`` and ignores its ``class_weight`` parameter (dask-ml 2025.1, documented as
"Ignored"; the dask-glm solvers minimise the unweighted sum of the log-loss). Integer weights
are the same as repeating rows, so :func:`fit_logistic` resamples instead: row ``i`` appears
``w_i / min(w)`` times, the fractional part by a seeded Bernoulli draw (stochastic rounding,
unbiased), so every row is kept at least once and the minority class is replicated. With
class-balanced weights that at most doubles the rows. What was done is recorded on the returned
estimator as ``resampling_``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from starskope_dask.errors import ConfigError, ModelError
from starskope_dask.train.evaluate import EvaluationInputError

logger = logging.getLogger(__name__)

HGB_PARAMS = (
    "learning_rate",
    "max_iter",
    "max_leaf_nodes",
    "max_depth",
    "min_samples_leaf",
    "l2_regularization",
    "max_features",
    "max_bins",
    "seed",
)
"""Hyper-parameters :func:`fit_hgb` accepts (``seed`` becomes ``random_state``)."""

HGB_DEFAULTS: Mapping[str, Any] = {"learning_rate": 0.1, "max_iter": 200, "seed": 0}

DEFAULT_CHUNK_ROWS = 100_000
"""Rows per Dask chunk of the logistic regression's design matrix."""


def fit_logistic(
    X: Any,
    y: Any,
    w: Any = None,
    *,
    client: Any = None,
    C: float = 1.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_iter: int = 200,
    seed: int = 0,
    max_rows_factor: float = 4.0,
    blas_threads: int | None = 1,
) -> Any:
    """Fit dask-ml's ``LogisticRegression`` (L-BFGS, L2 penalty) on row-chunked Dask arrays.

    Parameters
    ----------
    X : ndarray, shape (n, k)
        Standardised, NaN-free features.
    y : ndarray, shape (n,)
        0/1 targets.
    w : ndarray, shape (n,), optional
        Sample weights; applied by resampling rows (see the module docstring).
    client : distributed.Client, optional
        Compute on this cluster (the chunks are persisted on its workers). Without one, dask's
        default scheduler is used (the current client if there is one, else threads).
    C : float
        Inverse regularisation strength (dask-glm's ``lamduh = 1 / C``; the penalty is on the
        *sum* of the per-row losses, so it weakens as rows are added).
    chunk_rows : int
        Rows per chunk.
    max_iter : int
        L-BFGS iterations.
    seed : int
        Seed of the weight resampling.
    max_rows_factor : float
        Cap on the resampled rows, as a multiple of ``n`` (weights are scaled down beyond it;
        rows may then be dropped at random).
    blas_threads : int or None
        Without a client: BLAS threads per chunk task during the fit (dask's threaded scheduler
        already runs one task per core; BLAS threads on top of it oversubscribe — 18 s instead
        of 1 s measured on a loaded 2-core machine). None leaves BLAS alone. Dask workers
        started by a nanny already run with one BLAS thread.

    Returns
    -------
    dask_ml.linear_model.LogisticRegression
        Fitted; ``coef_``/``intercept_`` are numpy, so it scores numpy arrays directly (use
        :func:`score`). ``resampling_`` records ``rows_in``, ``rows_out``, ``method``.
    """
    import dask
    import dask.array as da
    from dask_ml.linear_model import LogisticRegression

    X_, y_, w_ = _check_xyw(X, y, w)
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    index, resampling = _resample_by_weight(w_, seed, max_rows_factor)
    Xr, yr = X_[index], y_[index].astype(float)
    if len(np.unique(yr)) < 2:
        raise EvaluationInputError("y", "only one class present after resampling")
    Xd = da.from_array(Xr, chunks=(chunk_rows, Xr.shape[1]))
    yd = da.from_array(yr, chunks=chunk_rows)
    model = LogisticRegression(
        C=C,
        solver="lbfgs",
        max_iter=max_iter,
        # The caller standardised X; dask-glm's own normalisation refuses constant columns.
        solver_kwargs={"normalize": False},
    )
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        # dask-glm sets the deprecated ``fuse_ave_width`` key around every L-BFGS run and calls
        # SciPy's L-BFGS-B with the deprecated ``iprint``.
        warnings.filterwarnings("ignore", message=".*fuse_ave_width.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*iprint.*", category=DeprecationWarning)
        if client is not None:
            Xd, yd = client.persist([Xd, yd])
            stack.enter_context(client.as_current())
            stack.enter_context(dask.config.set(scheduler=client))
        elif blas_threads is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(blas_threads, user_api="blas"))
        model.fit(Xd, yd)
    model.resampling_ = resampling
    logger.info(
        "logistic regression: %d features, %d rows (%d after resampling), C=%g",
        X_.shape[1],
        resampling["rows_in"],
        resampling["rows_out"],
        C,
    )
    return model


def _resample_by_weight(
    w: npt.NDArray[np.float64], seed: int, max_rows_factor: float
) -> tuple[npt.NDArray[np.int64], dict[str, Any]]:
    n = len(w)
    positive = w > 0
    if not positive.any():
        raise EvaluationInputError("w", "all sample weights are zero")
    if np.allclose(w[positive], w[positive][0]) and positive.all():
        return np.arange(n), {"method": "none (equal weights)", "rows_in": n, "rows_out": n}
    repeats = np.where(positive, w / w[positive].min(), 0.0)
    cap = max_rows_factor * n
    scale = 1.0
    if repeats.sum() > cap:
        scale = cap / repeats.sum()
        repeats *= scale
    rng = np.random.default_rng(seed)
    whole = np.floor(repeats)
    counts = (whole + (rng.random(n) < repeats - whole)).astype(np.int64)
    index = np.repeat(np.arange(n), counts)
    rng.shuffle(index)
    return index, {
        "method": "stochastic-rounding row replication, repeats = w / min(w)",
        "rows_in": n,
        "rows_out": int(index.size),
        "scale": scale,
        "seed": seed,
    }


def fit_hgb(
    X: Any,
    y: Any,
    w: Any = None,
    *,
    params: Mapping[str, Any] | None = None,
    n_threads: int | None = None,
) -> Any:
    """Fit scikit-learn's ``HistGradientBoostingClassifier`` with sample weights.

    Early stopping is off: ``max_iter`` is a hyper-parameter picked on the validation set by the
    search (an internal validation fraction would select on rows of the training split and hide
    that choice from the trials table).

    Parameters
    ----------
    X : ndarray, shape (n, k)
        NaN-free features.
    y : ndarray, shape (n,)
        0/1 targets.
    w : ndarray, shape (n,), optional
        Sample weights (class weights for the imbalance).
    params : mapping, optional
        Any of :data:`HGB_PARAMS` (defaults :data:`HGB_DEFAULTS`).
    n_threads : int, optional
        OpenMP threads for the fit (default: scikit-learn's, one per core). Pass the cores you
        really have: OpenMP on busy cores spins (19 s instead of 0.2 s measured on a loaded
        2-core machine). Dask workers started by a nanny already run with one thread.

    Returns
    -------
    sklearn.ensemble.HistGradientBoostingClassifier
        Fitted.

    Raises
    ------
    ConfigError
        An unknown hyper-parameter (with the closest known name).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    X_, y_, w_ = _check_xyw(X, y, w)
    merged = {**HGB_DEFAULTS, **dict(params or {})}
    for key in merged:
        if key not in HGB_PARAMS:
            close = difflib.get_close_matches(key, HGB_PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown HistGradientBoosting parameter {key!r}{hint} "
                f"(known: {', '.join(HGB_PARAMS)})"
            )
    kwargs = {k: v for k, v in merged.items() if k != "seed"}
    model = HistGradientBoostingClassifier(
        early_stopping=False, random_state=int(merged["seed"]), **kwargs
    )
    with contextlib.ExitStack() as stack:
        if n_threads is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(n_threads, user_api="openmp"))
        model.fit(X_, y_, sample_weight=w_)
    logger.info("hist gradient boosting: %d rows, %d features, %s", *X_.shape, kwargs)
    return model


def score(model: Any, X: Any) -> npt.NDArray[np.float64]:
    """The positive-class probability of each row, as a numpy float64 array.

    Works for the estimators of this module (dask-ml or scikit-learn; a Dask result is
    computed).
    """
    proba = model.predict_proba(np.asarray(X, dtype=float))
    if hasattr(proba, "compute"):
        proba = proba.compute()
    proba = np.asarray(proba, dtype=float)
    return np.ascontiguousarray(proba[:, 1] if proba.ndim == 2 else proba)


def fit_rbm(
    X_spectrogram: Any,
    n_components: int,
    seed: int,
    *,
    learning_rate: float = 0.05,
    n_iter: int = 20,
    batch_size: int = 64,
) -> Any:
    """Train a ``BernoulliRBM`` on flattened spectrograms (unsupervised; labels unused).

    Parameters
    ----------
    X_spectrogram : ndarray, shape (n, T*F)
        Spectrograms flattened per example and scaled to [0, 1] (e.g. log power min-max
        scaled with the training split's range). NaN-free.
    n_components : int
        Hidden units (the feature count).
    seed : int
        ``random_state``.
    learning_rate, n_iter, batch_size
        Passed to ``BernoulliRBM``.

    Returns
    -------
    sklearn.neural_network.BernoulliRBM
        Fitted.
    """
    from sklearn.neural_network import BernoulliRBM

    X_ = _check_unit_interval(X_spectrogram)
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1, got {n_components}")
    rbm = BernoulliRBM(
        n_components=n_components,
        learning_rate=learning_rate,
        n_iter=n_iter,
        batch_size=batch_size,
        random_state=seed,
    )
    rbm.fit(X_)
    logger.info("RBM: %d examples x %d visible -> %d hidden", *X_.shape, n_components)
    return rbm


def rbm_features(rbm: Any, X_spectrogram: Any) -> npt.NDArray[np.float32]:
    """Hidden-unit activation probabilities of a fitted RBM, shape (n, n_components), float32."""
    X_ = _check_unit_interval(X_spectrogram)
    return np.asarray(rbm.transform(X_), dtype=np.float32)


def save_estimator(
    estimator: Any, url: str, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write an estimator with joblib to a local path or an fsspec URL (``s3://...``).

    Returns
    -------
    str
        The URL written.
    """
    import fsspec
    import joblib
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(fs._parent(path), exist_ok=True)
    try:
        with fs.open(path, "wb") as f:
            joblib.dump(estimator, f)
    except OSError as exc:
        raise ModelError(f"{url}: cannot write the estimator ({exc})") from exc
    logger.info("saved %s to %s", type(estimator).__name__, url)
    return url


def load_estimator(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read an estimator written by :func:`save_estimator`.

    joblib files are pickles: load only models you (or your pipeline) wrote.

    Raises
    ------
    ModelError
        Nothing at ``url``, or a file that is not a joblib pickle.
    """
    import fsspec
    import joblib

    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    try:
        with fs.open(path, "rb") as f:
            return joblib.load(f)
    except FileNotFoundError as exc:
        raise ModelError(
            f"{url}: no saved estimator there (train one first, or check the URL)"
        ) from exc
    except Exception as exc:  # unpickling garbage raises almost anything (KeyError, EOFError)
        raise ModelError(
            f"{url}: not a readable joblib estimator ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------------------------


def _check_xyw(
    X: Any, y: Any, w: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    X_ = np.asarray(X, dtype=float)
    if X_.ndim != 2 or X_.shape[0] == 0 or X_.shape[1] == 0:
        raise EvaluationInputError("X", f"must be a non-empty 2-D array, got shape {X_.shape}")
    if not np.all(np.isfinite(X_)):
        raise EvaluationInputError(
            "X", "contains NaN or infinite values", "impute and standardise before fitting"
        )
    n = X_.shape[0]
    y_ = np.asarray(y)
    if y_.shape != (n,):
        raise EvaluationInputError("y", f"must have shape ({n},), got {y_.shape}")
    if not np.isin(y_, (0, 1)).all():
        raise EvaluationInputError("y", "must be 0/1")
    y_ = y_.astype(np.int64)
    if len(np.unique(y_)) < 2:
        raise EvaluationInputError("y", "only one class present", "a classifier needs both")
    if w is None:
        w_ = np.ones(n)
    else:
        w_ = np.asarray(w, dtype=float)
        if w_.shape != (n,) or not np.all(np.isfinite(w_)) or np.any(w_ < 0):
            raise EvaluationInputError("w", f"must be {n} finite non-negative weights")
    return X_, y_, w_


def _check_unit_interval(X: Any) -> npt.NDArray[np.float64]:
    X_ = np.asarray(X, dtype=float)
    if X_.ndim != 2 or X_.shape[0] == 0:
        raise EvaluationInputError(
            "X_spectrogram", f"must be 2-D (n, T*F), got shape {X_.shape}", "flatten per example"
        )
    if not np.all(np.isfinite(X_)) or X_.min() < 0 or X_.max() > 1:
        raise EvaluationInputError(
            "X_spectrogram", "must be finite and within [0, 1]", "min-max scale the log power"
        )
    return X_
