"""Evaluation metrics on hand-made cases with known answers, and the evaluation plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from starskope_dask.errors import InputError
from starskope_dask.train.evaluate import (
    EvaluationInputError,
    classification_metrics,
    plot_evaluation,
    plot_gallery,
)

# A small ranking worked out by hand (predicted positive iff score >= threshold):
#   score   0.9  0.8  0.7  0.6  0.5  0.4  0.3  0.2
#   target   1    1    0    1    0    1    0    0
#   thr -> (tp, fp, precision, recall):
#   0.9 (1,0,1,.25) 0.8 (2,0,1,.5) 0.7 (2,1,.667,.5) 0.6 (3,1,.75,.75)
#   0.5 (3,2,.6,.75) 0.4 (4,2,.667,1) 0.3 (4,3,.571,1) 0.2 (4,4,.5,1)
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
TARGET = np.array([1, 1, 0, 1, 0, 1, 0, 0])
LABEL = np.array(["planet", "planet", "eb", "planet", "none", "planet", "eb", "fp"], dtype=object)
SNR = np.array([25.0, 12.0, 4.0, 11.0, 3.0, 5.0, np.nan, 15.0])


def metrics_of(*args: object, **kwargs: object) -> dict:
    metrics = classification_metrics(*args, **kwargs)
    json.dumps(metrics, allow_nan=False)  # plain JSON, no NaN, no numpy types
    return metrics


def test_perfect_reversed_and_random_auc() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    perfect = metrics_of(y, s)
    assert perfect["roc_auc"] == 1.0
    assert perfect["average_precision"] == 1.0
    assert perfect["recall_at_precision"]["0.99"]["recall"] == 1.0
    assert metrics_of(y, 1 - s)["roc_auc"] == 0.0
    rng = np.random.default_rng(1)
    random = metrics_of(rng.integers(0, 2, 20_000), rng.random(20_000))
    assert random["roc_auc"] == pytest.approx(0.5, abs=0.02)
    assert random["average_precision"] == pytest.approx(0.5, abs=0.02)


def test_recall_at_precision_by_hand() -> None:
    m = metrics_of(TARGET, SCORE)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (8, 4, 4)
    for p in ("0.9", "0.95", "0.99"):
        at = m["recall_at_precision"][p]
        assert at["reachable"]
        assert (at["recall"], at["precision"], at["threshold"]) == (0.5, 1.0, 0.8)
        assert (at["tp"], at["fp"]) == (2, 0)
    assert m["roc_auc"] == pytest.approx(13 / 16)  # positive-negative pairs ranked right
    assert m["threshold"] == 0.8
    assert m["threshold_method"] == "precision_0.95"
    assert m["confusion"] == {"tp": 2, "fp": 0, "tn": 4, "fn": 2}
    assert m["precision"] == 1.0
    assert m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)


def test_given_threshold_confusion_and_false_positives_by_class() -> None:
    m = metrics_of(TARGET, SCORE, threshold=0.45, label=LABEL)
    assert m["threshold_method"] == "given"
    # predicted: 0.9 0.8 0.7 0.6 0.5 -> tp 3 (0.9 0.8 0.6), fp 2 (0.7 eb, 0.5 none)
    assert m["confusion"] == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}
    assert m["precision"] == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(0.75)
    fp = m["false_positives_by_class"]
    assert fp["n_false_positive"] == 2
    assert fp["counts"] == {"eb": 1, "fp": 0, "none": 1}
    assert fp["negatives"] == {"eb": 2, "fp": 1, "none": 1}
    assert fp["rate"] == {"eb": 0.5, "fp": 0.0, "none": 1.0}


def test_unreachable_precision_falls_back_to_half() -> None:
    # the top-scored example is a negative: no threshold reaches precision 0.9
    y = np.array([0, 1, 0, 1])
    s = np.array([0.9, 0.6, 0.4, 0.3])
    m = metrics_of(y, s)
    at = m["recall_at_precision"]["0.95"]
    assert not at["reachable"]
    assert at["recall"] == 0.0 and at["threshold"] is None
    assert m["threshold"] == 0.5 and m["threshold_method"] == "default_0.5"
    assert m["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    assert any("not reachable" in note for note in m["notes"])


def test_eclipsing_binaries_dominate_false_positives() -> None:
    rng = np.random.default_rng(3)
    kinds = np.array(["planet"] * 300 + ["eb"] * 300 + ["none"] * 600 + ["fp"] * 100)
    y = (kinds == "planet").astype(int)
    centre = {"planet": 0.8, "eb": 0.55, "none": 0.15, "fp": 0.3}
    s = np.clip([rng.normal(centre[k], 0.12) for k in kinds], 0, 1)
    m = metrics_of(y, s, label=kinds, threshold=0.5)
    fp = m["false_positives_by_class"]
    assert fp["dominant"] == "eb"
    assert fp["counts"]["eb"] > fp["counts"]["none"] + fp["counts"]["fp"]
    assert 0.5 < fp["dominant_fraction"] <= 1
    assert "planet" not in fp["counts"]


def test_recall_by_snr_bins() -> None:
    m = metrics_of(TARGET, SCORE, snr=SNR)  # threshold 0.8: 0.9 and 0.8 detected
    bins = {row["bin"]: row for row in m["recall_by_snr"]}
    assert list(bins) == ["< 7.1", "7.1-10", "10-15", "15-20", ">= 20", "unknown"]
    assert (bins["< 7.1"]["n"], bins["< 7.1"]["recall"]) == (1, 0.0)  # 0.4, snr 5
    assert (bins["7.1-10"]["n"], bins["7.1-10"]["recall"]) == (0, None)
    assert (bins["10-15"]["n"], bins["10-15"]["n_detected"]) == (2, 1)  # 0.8 yes, 0.6 no
    assert bins["10-15"]["recall"] == 0.5
    assert bins["15-20"]["n_examples"] == 1 and bins["15-20"]["n"] == 0  # the fp at snr 15
    assert (bins[">= 20"]["n"], bins[">= 20"]["recall"]) == (1, 1.0)
    assert bins[">= 20"]["high"] is None  # inf is not JSON
    assert bins["unknown"]["n_examples"] == 1


def test_recall_at_precision_095_for_snr_ge_10_both_readings() -> None:
    strong = metrics_of(TARGET, SCORE, snr=SNR)["recall_at_precision_0.95_snr_ge_10"]
    # (a) the threshold where precision over everything reaches 0.95 is 0.8; of the three
    #     positives with SNR >= 10 (0.9, 0.8, 0.6) two pass it.
    overall = strong["overall_threshold"]
    assert overall["threshold"] == 0.8
    assert (overall["n_positive"], overall["n_detected"]) == (3, 2)
    assert overall["recall"] == pytest.approx(2 / 3)
    assert strong["value"] == overall["recall"]
    # (b) only the SNR >= 10 examples (0.9 0.8 0.6 planets, 0.2 fp at SNR 15): all three
    #     planets are found at precision 1 (threshold 0.6).
    subset = strong["subset"]
    assert (subset["n"], subset["n_positive"], subset["n_negative"]) == (4, 3, 1)
    assert subset["reachable"]
    assert (subset["recall"], subset["precision"], subset["threshold"]) == (1.0, 1.0, 0.6)


def test_calibration_bins_and_brier() -> None:
    y = np.array([1] + [0] * 9 + [1] * 9 + [0])
    s = np.array([0.1] * 10 + [0.9] * 10)
    cal = metrics_of(y, s)["calibration"]
    assert len(cal["bins"]) == 10
    low, high = cal["bins"][1], cal["bins"][9]
    assert (low["n"], low["mean_score"], low["fraction_positive"]) == (10, 0.1, 0.1)
    assert high["n"] == 10 and high["fraction_positive"] == pytest.approx(0.9)
    assert cal["bins"][5] == {
        "low": 0.5,
        "high": 0.6,
        "n": 0,
        "mean_score": None,
        "fraction_positive": None,
    }
    assert cal["brier"] == pytest.approx(0.09)
    assert cal["expected_calibration_error"] == pytest.approx(0.0, abs=1e-12)
    # logits are not probabilities: no calibration, a note instead
    m = metrics_of(np.array([0, 1]), np.array([-2.0, 3.0]))
    assert m["calibration"] is None
    assert any("calibration" in note for note in m["notes"])


def test_one_class_input_does_not_crash() -> None:
    m = metrics_of(np.zeros(5, int), np.linspace(0.1, 0.5, 5), snr=np.full(5, 12.0))
    assert m["roc_auc"] is None and "one class" in m["roc_auc_reason"]
    assert m["average_precision"] is None
    assert m["recall_at_precision"]["0.95"]["recall"] is None
    assert m["threshold"] == 0.5
    assert m["confusion"] == {"tp": 0, "fp": 1, "tn": 4, "fn": 0}  # 0.5 >= 0.5
    assert m["recall"] is None and m["precision"] == 0.0
    assert m["recall_at_precision_0.95_snr_ge_10"]["value"] is None
    only_planets = metrics_of(np.ones(4, int), np.array([0.2, 0.4, 0.6, 0.8]))
    assert only_planets["roc_auc"] is None
    assert only_planets["average_precision"] == 1.0


def test_weights_rates_weighted_counts_raw() -> None:
    w = np.where(TARGET == 1, 2.0, 1.0)
    m = metrics_of(TARGET, SCORE, weights=w, threshold=0.45)
    assert m["weighted"]
    assert m["roc_auc"] == pytest.approx(13 / 16)  # AUC does not move with class weights
    assert m["confusion"] == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}
    assert m["confusion_weighted"] == {"tp": 6.0, "fp": 2.0, "tn": 2.0, "fn": 2.0}
    assert m["precision"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"score": [0.1, np.nan, 0.3]}, "score"),
        ({"score": [0.1, 0.2]}, "score"),
        ({"target": [0, 2, 1]}, "target"),
        ({"snr": [1.0, 2.0]}, "snr"),
        ({"label": ["eb"]}, "label"),
        ({"weights": [1.0, -1.0, 1.0]}, "weights"),
        ({"score": [[0.1, 0.2, 0.3]]}, "score"),
    ],
)
def test_bad_inputs_name_what_is_wrong(kwargs: dict, name: str) -> None:
    args = {"target": [0, 1, 1], "score": [0.1, 0.2, 0.3], **kwargs}
    target, score = args.pop("target"), args.pop("score")
    with pytest.raises(EvaluationInputError) as info:
        classification_metrics(target, score, **args)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
    assert info.value.url == name
    assert name in str(info.value)


def _assert_png(path: Path, min_bytes: int = 8_000) -> None:
    import matplotlib.image

    assert path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_bytes
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert float(image[..., :3].std()) > 0.02  # something was drawn


def test_plot_evaluation_writes_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    s = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 400), 0, 1)
    m = classification_metrics(y, s)
    history = [
        {"epoch": e, "loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "val_auc": 0.8 + 0.02 * e}
        for e in range(6)
    ]
    history[2]["val_auc"] = None
    paths = plot_evaluation(y, s, m, tmp_path / "plots", history=history, title="hgb")
    assert [p.name for p in paths] == [
        "roc.png",
        "pr.png",
        "confusion.png",
        "calibration.png",
        "history.png",
    ]
    for path in paths:
        _assert_png(path)
    # degenerate input and no history: still the four plots
    one = classification_metrics(np.zeros(10, int), np.linspace(-1, 1, 10))
    paths = plot_evaluation(np.zeros(10, int), np.linspace(-1, 1, 10), one, tmp_path / "one")
    assert [p.name for p in paths] == ["roc.png", "pr.png", "confusion.png", "calibration.png"]
    for path in paths:
        _assert_png(path, min_bytes=4_000)


def test_plot_gallery(tmp_path: Path) -> None:
    phase = np.linspace(-0.5, 0.5, 2001)
    local = np.linspace(-4, 4, 201)
    transit = -1.0 * (np.abs(local) < 0.5)
    gappy = transit.copy()
    gappy[:60] = np.nan
    examples = [
        {
            "title": f"star {i}  KIC {1000 + i}  P=3.2 d  score 0.{i}",
            "global_view": -1.0 * (np.abs(phase) < 0.01),
            "local_view": view,
        }
        for i, view in enumerate([transit, gappy, np.full(201, np.nan)])
    ]
    path = plot_gallery(examples, tmp_path / "g" / "false_negatives.png", title="false negatives")
    _assert_png(path)
    empty = plot_gallery([], tmp_path / "none.png", title="false positives")
    assert empty.exists() and empty.stat().st_size > 1_000
    many = plot_gallery(examples * 10, tmp_path / "many.png", title="many", max_examples=4)
    import matplotlib.image

    assert matplotlib.image.imread(many).shape[0] < 1.2 * 100 * (1.9 * 4 + 0.6)
    assert not math.isnan(float(matplotlib.image.imread(path).mean()))
