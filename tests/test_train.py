"""The training stage end to end: a simulated archive → features → train → evaluate → predict.

The archive is small (short segments, a third of the stars with planets, a sixth with
eclipsing binaries) so that the suite stays quick; the figures the issue asks for (≥ 2 000 stars,
ROC-AUC ≥ 0.99) are measured by ``jobs/train_benchmark.py``. Here the model must beat chance by a
wide margin on stars it never saw, and every artefact must be there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from starskope_dask.cli import main
from starskope_dask.config import load_features_config, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.errors import ConfigError
from starskope_dask.features.pipeline import run_with_client as features
from starskope_dask.pipeline import run_with_client as ingest
from starskope_dask.simulate import SimulationConfig, simulate_archive
from starskope_dask.train.dataset import (
    ScalarScaler,
    load_examples,
    make_source,
    scalar_features,
    split_stars,
    star_groups,
)
from tests.conftest import two_worker_client

#: The suite's training sky (see the module docstring).
SKY = SimulationConfig(
    n_stars=240,
    seed=21,
    missions=("kepler", "tess"),
    max_segments=2,
    segment_days=14.0,
    planet_fraction=0.4,
    eb_fraction=0.25,
)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with two_worker_client() as c:
        yield c


@pytest.fixture(scope="module")
def sky(client: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(archive root, features store) of the training sky."""
    folder = tmp_path_factory.mktemp("train-sky")
    archive = folder / "archive"
    simulate_archive(str(archive), SKY, processes=2)
    manifest = str(folder / "manifest.parquet")
    write_manifest(list_archive(str(archive)), manifest)
    store = str(folder / "cube.zarr")
    ingest(load_ingest_config(manifest, store, star_chunk=16), client, progress=False)
    out = str(folder / "features.zarr")
    config = load_features_config(
        store,
        out,
        stellar=str(archive / "catalog" / "tic.parquet"),
        max_signals=2,
        max_period_days=7.0,
    )
    features(config, client, progress=False)
    return archive, out


# ------------------------------------------------------------------------------ the split


def _examples(ids: list[tuple[int, int | None]], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "star": [s for s, _ in ids],
            "signal": 0,
            "kic": pd.array([None] * len(ids), dtype="Int64"),
            "epic": pd.array([None] * len(ids), dtype="Int64"),
            "tic": pd.array([t for _, t in ids], dtype="Int64"),
            "label": labels,
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["planet", "eb", "none"])),
        min_size=6,
        max_size=60,
    ),
    st.integers(0, 2**16),
)
def test_split_never_leaks_a_star_or_a_shared_id(rows: list[tuple[int, str]], seed: int) -> None:
    """No star, and no group of stars sharing a TIC, is in two splits; the split is seeded."""
    ids = [(i, tic) for i, (tic, _) in enumerate(rows)]
    frame = _examples(ids, [label for _, label in rows])
    split = split_stars(frame, seed=seed)
    where = split.assignment()
    assert set(where) == set(frame["star"])
    assert not set(split.train) & set(split.val) | set(split.train) & set(split.test)
    groups = star_groups(frame)
    for group in set(groups.values()):
        members = [s for s, g in groups.items() if g == group]
        assert len({where[s] for s in members}) == 1
    assert split_stars(frame, seed=seed) == split


def test_split_is_stratified() -> None:
    labels = ["planet"] * 40 + ["eb"] * 20 + ["none"] * 140
    frame = _examples([(i, None) for i in range(200)], labels)
    split = split_stars(frame, val_fraction=0.15, test_fraction=0.15, seed=3)
    for name, n in (("planet", 40), ("eb", 20), ("none", 140)):
        stars = set(frame.loc[frame["label"] == name, "star"])
        assert len(stars & set(split.test)) == round(0.15 * n)
        assert len(stars & set(split.val)) == round(0.15 * n)
    with pytest.raises(ConfigError, match="fractions"):
        split_stars(frame, val_fraction=0.6, test_fraction=0.5)


# ------------------------------------------------------------------------------ batches


def test_batches_stream_every_example_once(sky: tuple[Path, str]) -> None:
    _, out = sky
    dataset = xr.open_zarr(out, zarr_format=3)
    examples = load_examples(dataset)
    assert len(examples) > 40
    scaler = ScalarScaler.fit(scalar_features(examples), dataset["spectrogram"].values[:10])
    source = make_source(
        out,
        examples,
        scaler,
        inputs=("global_view", "local_view", "spectrogram"),
        target=np.zeros(len(examples)),
        batch_size=16,
        shuffle=True,
        augment=True,
    )
    seen = [(int(s), int(g)) for b in source() for s, g in zip(b["star"], b["signal"], strict=True)]
    assert sorted(seen) == sorted(zip(examples["star"], examples["signal"], strict=True))
    second = [
        (int(s), int(g)) for b in source() for s, g in zip(b["star"], b["signal"], strict=True)
    ]
    assert second != seen  # a new order each epoch
    shards = [
        {
            (int(s), int(g))
            for b in source.shard(i, 2)()
            for s, g in zip(b["star"], b["signal"], strict=True)
        }
        for i in range(2)
    ]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == len(seen)
    assert [len(source.shard(i, 2)) for i in range(2)] == [len(s) for s in shards]
    batch = next(iter(dataclass_copy(source)()))
    assert batch["global_view"].shape[1:] == (dataset.sizes["global_bin"],)
    assert batch["spectrogram"].shape[1:] == (32, 64)
    for name in ("global_view", "local_view", "spectrogram", "scalars"):
        assert np.isfinite(batch[name]).all()
    # the local view is never augmented: it equals the stored one (NaN → 0)
    row = dataset["local_view"].isel(star=int(batch["star"][0]), signal=int(batch["signal"][0]))
    assert np.allclose(batch["local_view"][0], np.nan_to_num(row.values.clip(-10, 10)))


def dataclass_copy(source: object) -> object:
    import dataclasses

    return dataclasses.replace(source, shuffle=False, augment=False, _epochs=[0])  # type: ignore[type-var]


# ------------------------------------------------------------------------------ train → predict


def test_gbt_train_evaluate_predict(sky: tuple[Path, str], tmp_path: Path) -> None:
    """`starskope train` with a 4-trial search on two workers, `evaluate` on the held-out test
    stars, `predict` on every signal; the model beats chance by a wide margin.
    """
    archive, out = sky
    model = tmp_path / "model"
    config = tmp_path / "starskope.yaml"  # a larger test split: a steadier AUC on a small sky
    config.write_text("train:\n  val_fraction: 0.2\n  test_fraction: 0.3\n")
    code = main(
        [
            "train",
            out,
            "--labels",
            f"truth:{archive}",
            "--out",
            str(model),
            "--model",
            "gbt",
            "--search",
            "4",
            "--workers",
            "2",
            "--config",
            str(config),
        ]
    )
    assert code == 0
    card = json.loads((model / "model.json").read_text())
    assert card["split"]["counts"]["test"]["stars"] >= 20
    assert card["threshold"]["chosen_on"] == "validation"
    trials = pd.read_parquet(model / "trials.parquet")
    assert len(trials) == 4 and trials["error"].isna().all()
    split = pd.read_parquet(model / "split.parquet")
    assert split.groupby("star")["split"].nunique().max() == 1

    assert main(["evaluate", str(model)]) == 0
    metrics = json.loads((model / "evaluation" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "the test split"
    # chance is 0.5; measured 0.74, 0.82, 0.85 for seeds 0, 1, 2 (blended binaries at planet
    # depths, ~60 training signals; at 2 000 stars see jobs/train_benchmark.py)
    assert metrics["roc_auc"] >= 0.7, metrics["roc_auc"]
    test_stars = set(split.loc[split["split"] == "test", "star"])
    assert metrics["n"] <= int((load_examples(xr.open_zarr(out))["star"].isin(test_stars)).sum())
    for png in ("roc.png", "pr.png", "confusion.png", "calibration.png"):
        assert (model / "evaluation" / png).stat().st_size > 5000

    scores = tmp_path / "scores.csv"
    assert main(["predict", str(model), out, "-o", str(scores)]) == 0
    ranked = pd.read_csv(scores)
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["score"].is_monotonic_decreasing
    for column in ("star", "kic", "tic", "ra", "dec", "period", "score", "candidate"):
        assert column in ranked


def test_predict_refuses_features_of_another_grid(
    sky: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, out = sky
    model = tmp_path / "model"
    assert (
        main(["train", out, "--labels", f"truth:{archive}", "--out", str(model), "--model", "gbt"])
        == 0
    )
    other = xr.open_zarr(out, zarr_format=3).isel(global_bin=slice(0, 1001)).load()
    parameters = json.loads(other.attrs["parameters"])
    parameters["global_bins"] = 1001
    other.attrs["parameters"] = json.dumps(parameters)
    for variable in other.variables.values():
        variable.encoding.clear()
    other.to_zarr(tmp_path / "other.zarr", zarr_format=3)
    capsys.readouterr()
    code = main(["predict", str(model), str(tmp_path / "other.zarr"), "-o", str(tmp_path / "s")])
    assert code == 2
    err = capsys.readouterr().err
    assert "ModelMismatchError" in err and "global_bin" in err
    assert main(["predict", str(tmp_path / "nothing"), out, "-o", str(tmp_path / "s")]) == 3
    assert "no starskope model" in capsys.readouterr().err


def test_cnn_trains_data_parallel_on_the_workers(sky: tuple[Path, str], tmp_path: Path) -> None:
    """The AstroNet-style CNN trains under MultiWorkerMirroredStrategy on both workers through
    the pipeline: the workers end with identical weights, the card, history and evaluation are
    written. (Its quality is measured by jobs/train_benchmark.py: a few dozen training signals
    are too few for a CNN; tests/test_train_models.py checks that it learns, and that
    multi-worker training matches one worker, on controlled data.)
    """
    pytest.importorskip("tensorflow")
    archive, out = sky
    model = tmp_path / "cnn"
    code = main(
        [
            "train",
            out,
            "--labels",
            f"truth:{archive}",
            "--out",
            str(model),
            "--model",
            "cnn",
            "--epochs",
            "6",
            "--workers",
            "2",
        ]
    )
    assert code == 0
    card = json.loads((model / "model.json").read_text())
    parallel = card["training"]["parallel"]
    assert parallel["strategy"] == "MultiWorkerMirroredStrategy" and parallel["workers"] == 2
    assert parallel["identical_weights"] is True
    assert (model / "history.png").stat().st_size > 5000
    assert main(["evaluate", str(model)]) == 0
    metrics = json.loads((model / "evaluation" / "metrics.json").read_text())
    assert 0 <= metrics["roc_auc"] <= 1 and metrics["n"] >= 5


def test_simulated_eclipsing_binaries_have_their_tells(sky: tuple[Path, str]) -> None:
    """On-target binaries (detached or grazing) the search can reach are found at their period
    or half of it and told apart by a secondary eclipse or odd/even depths; blended ones are
    diluted to planet-like depths (the false positives a classifier must learn).
    """
    archive, out = sky
    features = xr.open_zarr(out, zarr_format=3)
    truth = pd.read_parquet(archive / "truth" / "stars.parquet")
    binaries = truth[truth["label"] == "eb"]
    assert set(binaries["eb_kind"]) == {"detached", "blended", "grazing"}
    blended = binaries[binaries["eb_kind"] == "blended"]
    assert (blended["depth_ppm"] < 0.3 * 0.6**2 * 1e6).all()
    assert (blended["dilution"] < 1).all() and (binaries["dilution"] <= 1).all()
    on_target = binaries[
        (binaries["dilution"] == 1) & (binaries["expected_snr"] >= 30) & (binaries["period"] < 7)
    ]
    assert len(on_target) >= 3
    stars = features[["kic", "epic", "tic"]].to_dataframe()
    for _, star in on_target.iterrows():
        row = next(
            int(np.flatnonzero(stars[name].to_numpy() == star[name])[0])
            for name in ("kic", "tic")
            if pd.notna(star[name]) and (stars[name].to_numpy() == star[name]).any()
        )
        periods = features["period"].values[row]
        match = np.flatnonzero(
            np.isclose(periods, star["period"], rtol=1e-3)
            | np.isclose(periods, star["period"] / 2, rtol=1e-3)
        )
        assert match.size, (star["period"], periods)
        i = int(match[0])
        secondary = (
            features["secondary_depth"].values[row, i]
            / features["secondary_depth_err"].values[row, i]
        )
        odd_even = features["odd_even_sigma"].values[row, i]
        assert secondary > 5 or odd_even > 5, (star["eb_kind"], secondary, odd_even)


def test_bad_training_inputs_are_refused_before_any_cluster(
    sky: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, out = sky
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("keep me")
    args = ["train", out, "--labels", f"truth:{archive}", "--model", "gbt", "--out"]
    assert main([*args, str(foreign)]) == 3
    assert "holds no starskope model" in capsys.readouterr().err
    assert (foreign / "chapter1.tex").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["chapter1.tex"]
    model = str(tmp_path / "m")
    assert main(["train", out, "--labels", "kepler:x.csv", "--out", model]) == 2
    assert "label source" in capsys.readouterr().err
    assert main(["train", out, "--labels", f"csv:{tmp_path / 'none.csv'}", "--out", model]) == 2
    assert "none.csv" in capsys.readouterr().err
    labels = tmp_path / "one-class.csv"
    pd.DataFrame({"tic": [1, 2], "label": ["none", "none"]}).to_csv(labels, index=False)
    assert main(["train", out, "--labels", f"csv:{labels}", "--out", model]) == 2
    assert "needs both" in capsys.readouterr().err
    assert main(["train", out, "--labels", f"truth:{archive}", "--out", model, "--model", "x"]) == 2
    assert not (tmp_path / "m").exists()


def test_search_trials_start_longest_first() -> None:
    from starskope_dask.train.pipeline import longest_first

    trials = [
        {"gbt_max_iter": 100, "gbt_max_leaf_nodes": 7},
        {"gbt_max_iter": 400, "gbt_max_leaf_nodes": 63},
        {"gbt_max_iter": 200, "gbt_max_leaf_nodes": 31},
    ]
    ordered = longest_first("gbt", trials)
    assert [t["gbt_max_iter"] for t in ordered] == [400, 200, 100]


def test_a_cube_or_a_missing_extra_is_a_clear_error(
    sky: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive, out = sky
    cube = str(Path(out).parent / "cube.zarr")
    model = str(tmp_path / "m")
    assert main(["train", cube, "--labels", f"truth:{archive}", "--out", model]) == 3
    assert "not a starskope features store" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name)
    )
    assert main(["train", out, "--labels", f"truth:{archive}", "--out", model]) == 2
    err = capsys.readouterr().err
    assert "tensorflow" in err and "train` extra" in err
    assert not Path(model).exists()
