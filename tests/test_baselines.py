"""Baselines (dask-ml logistic regression, HGB, RBM features), saving them, and the trials."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from starskope_dask.errors import ConfigError, InputError, ModelError
from starskope_dask.train import baselines, trials
from tests.conftest import two_worker_client


def separable(n: int = 3000, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An imbalanced (≈ 12 % positive), nearly linearly separable problem, standardised."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    beta = np.linspace(1.5, -1.0, k)
    y = (X @ beta + 0.3 * rng.normal(size=n) > 2.4).astype(int)
    return X, y


def balanced_weights(y: np.ndarray) -> np.ndarray:
    n_pos = y.sum()
    return np.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * (len(y) - n_pos)))


def auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


@pytest.fixture(autouse=True, scope="module")
def one_thread_per_library() -> Iterator[None]:
    """One BLAS/OpenMP thread: on a busy 2-core machine more threads spin (HGB 19 s vs 0.2 s)."""
    import sklearn.ensemble  # noqa: F401  (loads OpenMP: threadpoolctl limits loaded libraries)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def problem() -> dict[str, np.ndarray]:
    X, y = separable()
    return {"X": X[:2000], "y": y[:2000], "X_test": X[2000:], "y_test": y[2000:]}


def test_logistic_on_dask_arrays_separates_held_out_rows(problem: dict[str, np.ndarray]) -> None:
    X, y = problem["X"], problem["y"]
    assert 0.05 < y.mean() < 0.25
    weighted = baselines.fit_logistic(X, y, balanced_weights(y), chunk_rows=500, seed=1)
    s = baselines.score(weighted, problem["X_test"])
    assert s.dtype == np.float64 and s.shape == (1000,)
    assert np.all((s >= 0) & (s <= 1))
    assert auc(problem["y_test"], s) > 0.95
    # the weights were applied by replicating the positives (dask-ml takes no sample_weight)
    resampling = weighted.resampling_
    assert resampling["rows_in"] == 2000
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    assert resampling["rows_out"] == pytest.approx(n_neg + n_pos * n_neg / n_pos, rel=0.02)
    plain = baselines.fit_logistic(X, y, None, chunk_rows=500)
    assert plain.resampling_["rows_out"] == 2000
    # class weights move the probabilities of the rare class up (the point of weighting)
    positives = problem["y_test"] == 1
    assert s[positives].mean() > baselines.score(plain, problem["X_test"])[positives].mean()


def test_logistic_accepts_a_constant_column(problem: dict[str, np.ndarray]) -> None:
    X = np.column_stack([problem["X"], np.zeros(len(problem["X"]))])
    model = baselines.fit_logistic(X, problem["y"], None, chunk_rows=1000)
    assert model.coef_.shape == (X.shape[1],)
    assert abs(float(model.coef_[-1])) < 1e-6


def test_hgb_separates_held_out_rows(problem: dict[str, np.ndarray]) -> None:
    params = {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15, "seed": 3}
    model = baselines.fit_hgb(
        problem["X"], problem["y"], balanced_weights(problem["y"]), params=params
    )
    assert model.n_iter_ == 60  # no early stopping: max_iter is the hyper-parameter
    assert auc(problem["y_test"], baselines.score(model, problem["X_test"])) > 0.95
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        baselines.fit_hgb(problem["X"], problem["y"], None, params={"learning_rte": 0.1})


def test_bad_training_inputs() -> None:
    X, y = separable(200)
    with pytest.raises(InputError, match="NaN"):
        baselines.fit_hgb(np.where(X > 2, np.nan, X), y, None)
    with pytest.raises(InputError, match="one class"):
        baselines.fit_logistic(X, np.zeros(200, int), None)
    with pytest.raises(InputError, match="shape"):
        baselines.fit_hgb(X, y[:-1], None)


def test_rbm_features_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    spectrograms = rng.random((120, 8 * 16))  # (n, T*F) in [0, 1]
    rbm = baselines.fit_rbm(spectrograms, n_components=12, seed=0, n_iter=3)
    features = baselines.rbm_features(rbm, spectrograms[:30])
    assert features.shape == (30, 12) and features.dtype == np.float32
    assert np.all((features >= 0) & (features <= 1))
    again = baselines.rbm_features(baselines.fit_rbm(spectrograms, 12, 0, n_iter=3), spectrograms)
    np.testing.assert_array_equal(baselines.rbm_features(rbm, spectrograms), again)  # seeded
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        baselines.fit_rbm(spectrograms * 3, n_components=4, seed=0)


def test_save_load_round_trip(problem: dict[str, np.ndarray], tmp_path: Path) -> None:
    X, y = problem["X"], problem["y"]
    models = {
        "logistic": baselines.fit_logistic(X, y, balanced_weights(y), chunk_rows=1000),
        "hgb": baselines.fit_hgb(X, y, None, params={"max_iter": 10}),
    }
    for name, model in models.items():
        for url in (str(tmp_path / "models" / name / "model.joblib"), f"memory://m/{name}.joblib"):
            assert baselines.save_estimator(model, url) == url
            loaded = baselines.load_estimator(url)
            np.testing.assert_array_equal(
                baselines.score(loaded, problem["X_test"]),
                baselines.score(model, problem["X_test"]),
            )
    with pytest.raises(ModelError, match="no saved estimator"):
        baselines.load_estimator(str(tmp_path / "absent.joblib"))
    (tmp_path / "junk.joblib").write_text("not a pickle")
    with pytest.raises(ModelError, match="not a readable"):
        baselines.load_estimator(str(tmp_path / "junk.joblib"))


# --------------------------------------------------------------------------------------------
# trials


def test_grid_and_random_search() -> None:
    space = {"learning_rate": [0.05, 0.1], "max_iter": [50, 100, 200]}
    combos = trials.grid(space)
    assert len(combos) == 6
    assert combos[0] == {"learning_rate": 0.05, "max_iter": 50}
    assert {json.dumps(c, sort_keys=True) for c in combos}.__len__() == 6
    random_space: dict[str, Any] = {
        "learning_rate": ("log", 1e-4, 1e-1),
        "dropout": ("uniform", 0.0, 0.5),
        "filters": [8, 16, 32],
        "max_iter": ("int", 20, 40),
        "max_leaf_nodes": ("logint", 4, 64),
    }
    drawn = trials.random_search(random_space, 50, seed=7)
    assert drawn == trials.random_search(random_space, 50, seed=7)
    assert drawn != trials.random_search(random_space, 50, seed=8)
    json.dumps(drawn)  # plain Python values
    lr = np.array([d["learning_rate"] for d in drawn])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    assert (lr < 1e-3).sum() > 5  # log-uniform: about a third below 1e-3
    assert all(0.0 <= d["dropout"] <= 0.5 for d in drawn)
    assert {d["filters"] for d in drawn} == {8, 16, 32}
    assert all(isinstance(d["max_iter"], int) and 20 <= d["max_iter"] <= 40 for d in drawn)
    assert all(4 <= d["max_leaf_nodes"] <= 64 for d in drawn)
    with pytest.raises(ConfigError, match="random_search"):
        trials.grid({"learning_rate": ("log", 1e-4, 1e-1)})
    with pytest.raises(ConfigError, match="unknown distribution"):
        trials.random_search({"x": ("normal", 0, 1)}, 3, seed=0)
    with pytest.raises(ConfigError, match="low > 0"):
        trials.random_search({"x": ("log", 0, 1)}, 3, seed=0)


def test_best_params() -> None:
    table = pd.DataFrame(
        {
            "trial": [0, 1, 2],
            "params": [json.dumps({"a": 1}), json.dumps({"a": 2}), json.dumps({"a": 3})],
            "val_auc": [0.7, None, 0.9],
            "error": [None, "ValueError: boom", None],
        }
    )
    assert trials.best_params(table) == {"a": 3}
    failed = table.assign(error="ValueError: boom", val_auc=None)
    with pytest.raises(trials.NoSuccessfulTrialError, match="boom"):
        trials.best_params(failed)


def sleepy_trial(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """A stand-in for a training run: a little work, an AUC that depends on the params."""
    time.sleep(0.4)
    if params.get("fail"):
        raise ValueError(f"deliberate failure (seed {seed})")
    rng = np.random.default_rng(seed)
    return {
        "val_auc": 0.5 + 0.1 * params["depth"],
        "val_ap": 0.4 + 0.1 * params["depth"],
        "n_epochs": int(rng.integers(1, 5)),
        "history": [{"epoch": 0, "loss": 1.0}],
    }


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The one LocalCluster of this file: 2 single-threaded worker processes."""
    with two_worker_client() as client:
        yield client


def test_run_trials_on_two_workers(client: Any) -> None:
    params_list = [{"depth": d} for d in (1, 2, 3, 4, 0)] + [{"depth": 2, "fail": True}]
    table = trials.run_trials(client, sleepy_trial, params_list, seed=42, progress=True)
    assert list(table.columns[:7]) == list(trials.COLUMNS)
    assert len(table) == 6 and sorted(table["trial"]) == list(range(6))
    assert list(table["val_auc"].iloc[:5]) == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert list(table["trial"].iloc[:5]) == [3, 2, 1, 0, 4]
    failed = table[table["error"].notna()]
    assert list(failed["trial"]) == [5] and table["trial"].iloc[-1] == 5  # failures last
    assert failed["error"].iloc[0].startswith("ValueError: deliberate failure")
    assert pd.isna(failed["val_auc"].iloc[0])
    assert table["worker"].nunique() == 2  # both workers ran trials
    assert set(table["worker"]) <= set(client.scheduler_info()["workers"])
    assert (table["seconds"] >= 0.4).all()
    assert json.loads(table["history"].iloc[0]) == [{"epoch": 0, "loss": 1.0}]
    assert table["seed"].tolist() == [trials.trial_seeds(42, 6)[i] for i in table["trial"]]
    assert trials.best_params(table) == {"depth": 4}
    assert json.loads(table["params"].iloc[0]) == {"depth": 4}


@pytest.mark.slow  # ≈ 30 s on 2 busy cores: each worker imports dask-ml (≈ 10 s CPU here)
def test_logistic_on_the_cluster(client: Any, problem: dict[str, np.ndarray]) -> None:
    X, y = problem["X"], problem["y"]
    w = balanced_weights(y)
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        distributed_fit = baselines.fit_logistic(
            X, y, w, client=client, chunk_rows=1000, seed=1, max_iter=15
        )
    assert len(stream.data) > 10  # the L-BFGS iterations ran as tasks on the workers
    local_fit = baselines.fit_logistic(X, y, w, chunk_rows=1000, seed=1, max_iter=15)
    s = baselines.score(distributed_fit, problem["X_test"])
    assert auc(problem["y_test"], s) > 0.95
    np.testing.assert_allclose(s, baselines.score(local_fit, problem["X_test"]), atol=1e-4)
