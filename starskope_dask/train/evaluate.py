"""Evaluation of a binary planet classifier: a JSON-ready metrics dict and the PNGs people read.

Everything here is a pure function of ``(target, score)`` (plus optional per-example SNR,
class label and weights); nothing reads or writes storage except the plots, which write local
PNGs for the caller to upload.

Conventions used throughout:

- An example is predicted positive iff ``score >= threshold``.
- An *operating point* is one distinct score value used as the threshold (the points of
  :func:`sklearn.metrics.precision_recall_curve`).
- ``recall_at_precision[p]`` is the highest recall among operating points whose precision is
  ``>= p``; among the thresholds reaching that recall the highest one is reported (it has the
  fewest false positives — lowering the threshold further only adds negatives). That threshold
  is therefore the *lowest threshold that reaches precision ``p`` without adding a false
  positive for nothing*.
- NaN and infinities become ``None``; every number is a plain ``float``/``int``, so
  ``json.dumps(metrics, allow_nan=False)`` works.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from starskope_dask.errors import InputError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

PRECISION_TARGETS = (0.9, 0.95, 0.99)
"""Precisions at which the best reachable recall is reported."""

THRESHOLD_PRECISION = 0.95
"""Precision whose operating point is the default threshold."""

DEFAULT_THRESHOLD = 0.5
"""Threshold used when none is given and precision 0.95 is not reachable."""

SNR_EDGES = (7.1, 10.0, 15.0, 20.0, math.inf)
"""Edges of the SNR bins of ``recall_by_snr`` (plus a ``< 7.1`` bin and, when present, NaN)."""

SNR_STRONG = 10.0
"""SNR above which the issue asks for recall >= 0.95 at precision 0.95."""

CALIBRATION_BINS = 10
"""Equal-width reliability bins on [0, 1]."""


class EvaluationInputError(InputError, ValueError):
    """Arrays given to the evaluation that cannot be used (shape, NaN, values).

    ``url`` is the argument's name (``"score"``, ``"target"``, ...).
    """

    what = "evaluation input "


@dataclasses.dataclass(frozen=True)
class _Curve:
    """Operating points in decreasing threshold order (cumulative weighted counts)."""

    thresholds: FloatArray
    tp: FloatArray
    fp: FloatArray
    positives: float
    negatives: float

    @property
    def precision(self) -> FloatArray:
        return self.tp / np.maximum(self.tp + self.fp, np.finfo(float).tiny)

    @property
    def recall(self) -> FloatArray:
        if self.positives <= 0:
            return np.full(self.tp.shape, np.nan)
        return self.tp / self.positives

    @property
    def fpr(self) -> FloatArray:
        if self.negatives <= 0:
            return np.full(self.fp.shape, np.nan)
        return self.fp / self.negatives


# --------------------------------------------------------------------------------------------
# metrics


def classification_metrics(
    target: Any,
    score: Any,
    *,
    snr: Any = None,
    label: Any = None,
    threshold: float | None = None,
    weights: Any = None,
) -> dict[str, Any]:
    """Everything that matters for a planet classifier, as a JSON-serialisable dict.

    Parameters
    ----------
    target : array-like of {0, 1} or bool, shape (n,)
        1 for a planet, 0 otherwise.
    score : array-like of float, shape (n,)
        The classifier's score (higher = more planet-like); finite. Calibration is reported only
        when every score lies in [0, 1].
    snr : array-like of float, shape (n,), optional
        Per-example signal-to-noise ratio for ``recall_by_snr`` and the SNR >= 10 figures (NaN
        = unknown). For simulated data pass the *injected* SNR (selecting on the measured SNR
        conditions on the noise).
    label : array-like of str, shape (n,), optional
        Per-example class (``planet``, ``eb``, ``fp``, ``none``, ...) for the false positives by
        class. Missing values count as ``"unknown"``.
    threshold : float, optional
        Operating threshold for the confusion matrix and the per-bin recalls. Default: the
        operating point of ``recall_at_precision["0.95"]``, else 0.5.
    weights : array-like of float, shape (n,), optional
        Per-example weights (e.g. to re-weight a simulated class mix to a target population).
        They weight every rate (AUC, AP, precision, recall, calibration, Brier); counts stay raw
        (weighted counts are added as ``confusion_weighted``). Do *not* pass class-balancing
        training weights here: precision under balanced weights is not the precision a
        follow-up programme would see.

    Returns
    -------
    dict
        Keys: ``n``, ``n_positive``, ``n_negative``, ``weighted``, ``roc_auc`` (+
        ``roc_auc_reason`` when None), ``average_precision`` (+ reason), ``prevalence``,
        ``recall_at_precision`` (``{"0.9": {...}, "0.95": ..., "0.99": ...}``, each with
        ``reachable``, ``recall``, ``precision``, ``threshold``, ``tp``, ``fp``),
        ``threshold`` and ``threshold_method`` (``given`` / ``precision_0.95`` /
        ``default_0.5``), ``confusion`` (``tp``, ``fp``, ``tn``, ``fn``), ``precision``,
        ``recall``, ``f1`` at the threshold, ``recall_by_snr`` (list of bins), the SNR >= 10
        figures ``recall_at_precision_0.95_snr_ge_10`` (see below), ``calibration``,
        ``false_positives_by_class`` and ``notes`` (every degenerate case met).

    Notes
    -----
    ``recall_at_precision_0.95_snr_ge_10`` answers the issue's "recall >= 0.95 at precision 0.95
    for signals with SNR >= 10", which can be read two ways; both are computed:

    ``overall_threshold`` (the reported ``value``; the conservative reading)
        One threshold for the whole catalogue — the operating point where precision over *all*
        examples reaches 0.95 — and the recall among the positives with SNR >= 10 at it. This is
        what a survey that cannot choose its SNR would get.
    ``subset``
        Only examples with SNR >= 10 (positives *and* negatives; NaN-SNR examples are left
        out), their own precision-recall curve, recall at precision 0.95 on it. When the
        negatives' SNR is unknown (NaN, e.g. no injected signal) they are excluded and the
        subset precision is optimistic; ``n_negative`` says how many took part.

    Raises
    ------
    EvaluationInputError
        Arrays of different lengths or not 1-D, NaN or infinite scores, targets other than
        0/1, negative or non-finite weights, an empty input.
    """
    y = _as_target(target)
    s = _as_vector(score, "score", len(y))
    if not np.all(np.isfinite(s)):
        bad = np.flatnonzero(~np.isfinite(s))
        raise EvaluationInputError(
            "score",
            f"{bad.size} non-finite values (first at index {int(bad[0])})",
            "score every example; drop the examples the model cannot score before evaluating",
        )
    w = _as_weights(weights, len(y))
    snr_values = None if snr is None else _as_vector(snr, "snr", len(y))
    labels = None if label is None else _as_labels(label, len(y))

    notes: list[str] = []
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    out: dict[str, Any] = {
        "n": len(y),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "weighted": weights is not None,
        "prevalence": n_pos / len(y),
        "score_min": float(s.min()),
        "score_max": float(s.max()),
    }
    out.update(_ranking_metrics(y, s, w, notes))

    curve = _curve(y, s, w)
    out["recall_at_precision"] = {
        _key(p): _recall_at_precision(curve, p, y, s) for p in PRECISION_TARGETS
    }
    at95 = out["recall_at_precision"][_key(THRESHOLD_PRECISION)]
    if threshold is not None:
        if not math.isfinite(threshold):
            raise EvaluationInputError("threshold", f"{threshold!r} is not finite")
        chosen, method = float(threshold), "given"
    elif at95["reachable"]:
        chosen, method = float(at95["threshold"]), f"precision_{_key(THRESHOLD_PRECISION)}"
    else:
        chosen, method = DEFAULT_THRESHOLD, f"default_{DEFAULT_THRESHOLD:g}"
        notes.append(
            f"precision {THRESHOLD_PRECISION} is not reachable; threshold {DEFAULT_THRESHOLD}"
        )
    out["threshold"] = chosen
    out["threshold_method"] = method

    predicted = s >= chosen
    out["confusion"] = _confusion(y, predicted, np.ones_like(s))
    if weights is not None:
        out["confusion_weighted"] = _confusion(y, predicted, w, counts=False)
    out.update(_rates(_confusion(y, predicted, w, counts=False)))

    if snr_values is not None:
        out["recall_by_snr"] = _recall_by_snr(y, predicted, snr_values, w)
        out["recall_at_precision_0.95_snr_ge_10"] = _strong_signal_recall(y, s, w, snr_values, at95)
    else:
        out["recall_by_snr"] = None
        out["recall_at_precision_0.95_snr_ge_10"] = None
    out["calibration"] = _calibration(y, s, w, notes)
    out["false_positives_by_class"] = (
        None if labels is None else _false_positives_by_class(y, predicted, labels)
    )
    out["notes"] = notes
    return jsonable(out)


def _ranking_metrics(
    y: npt.NDArray[np.int8], s: FloatArray, w: FloatArray, notes: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        reason = f"only one class present ({n_pos} positives, {n_neg} negatives)"
        out["roc_auc"] = None
        out["roc_auc_reason"] = reason
        notes.append(f"ROC-AUC undefined: {reason}")
    else:
        from sklearn.metrics import roc_auc_score

        out["roc_auc"] = float(roc_auc_score(y, s, sample_weight=w))
    if n_pos == 0:
        reason = "no positives"
        out["average_precision"] = None
        out["average_precision_reason"] = reason
        notes.append(f"average precision undefined: {reason}")
    else:
        from sklearn.metrics import average_precision_score

        out["average_precision"] = float(average_precision_score(y, s, sample_weight=w))
    return out


def _curve(y: npt.NDArray[np.int8], s: FloatArray, w: FloatArray) -> _Curve:
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order].astype(float)
    w_sorted = w[order]
    tp = np.cumsum(y_sorted * w_sorted)
    fp = np.cumsum((1.0 - y_sorted) * w_sorted)
    # Keep the last index of each run of equal scores (ties are predicted together).
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    return _Curve(
        thresholds=s_sorted[last],
        tp=tp[last],
        fp=fp[last],
        positives=float(np.sum(w * y)),
        negatives=float(np.sum(w * (1 - y))),
    )


def _recall_at_precision(
    curve: _Curve, p: float, y: npt.NDArray[np.int8], s: FloatArray
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "precision_target": p,
        "reachable": False,
        "recall": None,
        "precision": None,
        "threshold": None,
        "tp": None,
        "fp": None,
    }
    if curve.positives <= 0:
        return out
    ok = (curve.precision >= p - 1e-12) & (curve.tp > 0)
    if not ok.any():
        out["recall"] = 0.0  # only "predict nothing" has precision >= p
        return out
    recall = curve.recall
    best = float(recall[ok].max())
    i = int(np.flatnonzero(ok & (recall >= best - 1e-12))[0])
    threshold = float(curve.thresholds[i])
    predicted = s >= threshold
    out.update(
        reachable=True,
        recall=float(recall[i]),
        precision=float(curve.precision[i]),
        threshold=threshold,
        tp=int(np.sum(predicted & (y == 1))),
        fp=int(np.sum(predicted & (y == 0))),
    )
    return out


def _confusion(
    y: npt.NDArray[np.int8], predicted: npt.NDArray[np.bool_], w: FloatArray, counts: bool = True
) -> dict[str, Any]:
    pos = y == 1
    cells = {
        "tp": float(np.sum(w[predicted & pos])),
        "fp": float(np.sum(w[predicted & ~pos])),
        "tn": float(np.sum(w[~predicted & ~pos])),
        "fn": float(np.sum(w[~predicted & pos])),
    }
    if counts:
        return {k: round(v) for k, v in cells.items()}
    return cells


def _rates(cells: Mapping[str, float]) -> dict[str, float | None]:
    tp, fp, fn = cells["tp"], cells["fp"], cells["fn"]
    precision = tp / (tp + fp) if tp + fp > 0 else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    return {"precision": precision, "recall": recall, "f1": f1}


def _snr_bins() -> list[tuple[str, float, float]]:
    bins = [(f"< {SNR_EDGES[0]:g}", -math.inf, SNR_EDGES[0])]
    for low, high in itertools.pairwise(SNR_EDGES):
        name = f">= {low:g}" if math.isinf(high) else f"{low:g}-{high:g}"
        bins.append((name, low, high))
    return bins


def _recall_by_snr(
    y: npt.NDArray[np.int8],
    predicted: npt.NDArray[np.bool_],
    snr: FloatArray,
    w: FloatArray,
) -> list[dict[str, Any]]:
    rows = []
    pos = y == 1
    for name, low, high in _snr_bins():
        inside = (snr >= low) & (snr < high)
        rows.append(_bin_row(name, low, high, inside, pos, predicted, w))
    unknown = ~np.isfinite(snr)
    if unknown.any():
        rows.append(_bin_row("unknown", math.nan, math.nan, unknown, pos, predicted, w))
    return rows


def _bin_row(
    name: str,
    low: float,
    high: float,
    inside: npt.NDArray[np.bool_],
    pos: npt.NDArray[np.bool_],
    predicted: npt.NDArray[np.bool_],
    w: FloatArray,
) -> dict[str, Any]:
    members = inside & pos
    weight = float(np.sum(w[members]))
    return {
        "bin": name,
        "low": low,
        "high": high,
        "n_examples": int(inside.sum()),
        "n": int(members.sum()),
        "n_detected": int(np.sum(members & predicted)),
        "recall": float(np.sum(w[members & predicted])) / weight if weight > 0 else None,
        "n_false_positive": int(np.sum(inside & ~pos & predicted)),
    }


def _strong_signal_recall(
    y: npt.NDArray[np.int8],
    s: FloatArray,
    w: FloatArray,
    snr: FloatArray,
    at95: Mapping[str, Any],
) -> dict[str, Any]:
    strong = np.isfinite(snr) & (snr >= SNR_STRONG)
    strong_pos = strong & (y == 1)
    overall: dict[str, Any] = {
        "threshold": at95["threshold"],
        "overall_precision": at95["precision"],
        "n_positive": int(strong_pos.sum()),
        "n_detected": None,
        "recall": None,
    }
    if at95["reachable"] and strong_pos.any():
        detected = strong_pos & (s >= at95["threshold"])
        overall["n_detected"] = int(detected.sum())
        overall["recall"] = float(np.sum(w[detected]) / np.sum(w[strong_pos]))
    elif strong_pos.any():
        overall["recall"] = 0.0  # precision 0.95 is not reachable on the whole set
        overall["n_detected"] = 0
    sub_y, sub_s, sub_w = y[strong], s[strong], w[strong]
    subset: dict[str, Any] = {
        "n": int(strong.sum()),
        "n_positive": int(sub_y.sum()),
        "n_negative": int(strong.sum() - sub_y.sum()),
    }
    if strong.any():
        at = _recall_at_precision(_curve(sub_y, sub_s, sub_w), THRESHOLD_PRECISION, sub_y, sub_s)
        subset.update(
            reachable=at["reachable"],
            recall=at["recall"],
            precision=at["precision"],
            threshold=at["threshold"],
        )
    else:
        subset.update(reachable=False, recall=None, precision=None, threshold=None)
    return {
        "snr_min": SNR_STRONG,
        "precision_target": THRESHOLD_PRECISION,
        "value": overall["recall"],
        "overall_threshold": overall,
        "subset": subset,
        "definition": (
            "value = overall_threshold.recall: recall among positives with SNR >= 10 at the "
            "threshold where precision over all examples reaches 0.95; subset: precision and "
            "recall computed on the examples with SNR >= 10 only (NaN-SNR examples excluded)"
        ),
    }


def _calibration(
    y: npt.NDArray[np.int8], s: FloatArray, w: FloatArray, notes: list[str]
) -> dict[str, Any] | None:
    if s.min() < 0 or s.max() > 1:
        notes.append("calibration not computed: scores outside [0, 1] (not probabilities)")
        return None
    edges = [b / CALIBRATION_BINS for b in range(CALIBRATION_BINS + 1)]  # 0.6, not 0.6000…1
    index = np.minimum((s * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    bins = []
    total = float(w.sum())
    ece = 0.0
    for b in range(CALIBRATION_BINS):
        inside = index == b
        weight = float(w[inside].sum())
        mean_score = float(np.sum(w[inside] * s[inside]) / weight) if weight > 0 else None
        frac = float(np.sum(w[inside] * y[inside]) / weight) if weight > 0 else None
        if mean_score is not None and frac is not None and total > 0:
            ece += weight / total * abs(frac - mean_score)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": int(inside.sum()),
                "mean_score": mean_score,
                "fraction_positive": frac,
            }
        )
    brier = float(np.sum(w * (s - y) ** 2) / total) if total > 0 else None
    return {"bins": bins, "brier": brier, "expected_calibration_error": ece}


def _false_positives_by_class(
    y: npt.NDArray[np.int8], predicted: npt.NDArray[np.bool_], labels: npt.NDArray[np.object_]
) -> dict[str, Any]:
    negatives = y == 0
    fp = predicted & negatives
    classes = sorted({str(v) for v in labels[negatives]})
    counts = {c: int(np.sum(fp & (labels == c))) for c in classes}
    totals = {c: int(np.sum(negatives & (labels == c))) for c in classes}
    rate = {c: counts[c] / totals[c] if totals[c] else None for c in classes}
    n_fp = int(fp.sum())
    dominant = max(classes, key=lambda c: counts[c]) if n_fp else None
    return {
        "n_false_positive": n_fp,
        "counts": counts,
        "negatives": totals,
        "rate": rate,
        "dominant": dominant,
        "dominant_fraction": counts[dominant] / n_fp if dominant is not None else None,
    }


# --------------------------------------------------------------------------------------------
# input checks and JSON cleaning


def _as_vector(values: Any, name: str, n: int | None = None) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(name, f"not numeric ({exc})") from exc
    if arr.ndim != 1:
        raise EvaluationInputError(name, f"must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise EvaluationInputError(
            name, f"has {arr.shape[0]} values but target has {n}", "pass one value per example"
        )
    return arr


def _as_target(target: Any) -> npt.NDArray[np.int8]:
    arr = _as_vector(target, "target")
    if arr.size == 0:
        raise EvaluationInputError("target", "is empty", "evaluate at least one example")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EvaluationInputError(
            "target",
            f"{int(bad.sum())} values other than 0/1 (first {arr[first]!r} at index {first})",
            "1 = planet, 0 = anything else",
        )
    return arr.astype(np.int8)


def _as_weights(weights: Any, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = _as_vector(weights, "weights", n)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise EvaluationInputError("weights", "must be finite and >= 0")
    if w.sum() <= 0:
        raise EvaluationInputError("weights", "sum to zero")
    return w


def _as_labels(label: Any, n: int) -> npt.NDArray[np.object_]:
    raw = np.asarray(label, dtype=object)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise EvaluationInputError("label", f"must be 1-D with {n} values, got shape {raw.shape}")
    import pandas as pd

    missing = pd.isna(pd.Series(raw)).to_numpy()
    out = raw.astype(str).astype(object)
    out[missing] = "unknown"
    return out


def _key(p: float) -> str:
    return f"{p:g}"


def jsonable(value: Any) -> Any:
    """JSON-ready (``allow_nan=False``): numpy scalars → int/float, NaN/inf → None, tuples
    and arrays → lists.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


# --------------------------------------------------------------------------------------------
# plots


def plot_evaluation(
    target: Any,
    score: Any,
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    *,
    history: Sequence[Mapping[str, Any]] | None = None,
    title: str = "",
    weights: Any = None,
) -> list[Path]:
    """Write the evaluation PNGs: ROC, precision-recall, confusion matrix, calibration, history.

    Parameters
    ----------
    target, score : array-like, shape (n,)
        As given to :func:`classification_metrics`.
    metrics : mapping
        Its output (AUC, AP, threshold, confusion matrix and calibration are read from it).
    out_dir : path
        Local folder (created); the caller uploads the files.
    history : sequence of mapping, optional
        Training history, one dict per epoch with ``epoch``, ``loss``, ``val_loss``, ``val_auc``
        (missing or None values are skipped). ``history.png`` is written only when given.
    title : str
        Prefix of every figure title (the model's name).
    weights : array-like, optional
        The weights given to :func:`classification_metrics`, so that the curves match it.

    Returns
    -------
    list of Path
        ``roc.png``, ``pr.png``, ``confusion.png``, ``calibration.png`` and, with a history,
        ``history.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = _as_target(target)
    s = _as_vector(score, "score", len(y))
    w = _as_weights(weights, len(y))
    curve = _curve(y, s, w)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{title}: " if title else ""
    paths = []

    # ROC
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], "--", color="0.6", lw=1, label="chance (AUC 0.5)")
    auc = metrics.get("roc_auc")
    if auc is not None and curve.positives > 0 and curve.negatives > 0:
        ax.plot(
            np.r_[0.0, curve.fpr],
            np.r_[0.0, curve.recall],
            color="tab:blue",
            lw=1.6,
            label=f"model (AUC {auc:.4f})",
        )
        _mark_threshold(ax, metrics, curve, "roc")
    else:
        ax.text(
            0.5,
            0.55,
            f"ROC undefined:\n{metrics.get('roc_auc_reason', '')}",
            ha="center",
            va="center",
            fontsize=9,
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate (recall)",
        title=f"{prefix}ROC",
    )
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, out / "roc.png"))

    # Precision-recall
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ap = metrics.get("average_precision")
    if curve.positives > 0:
        ax.step(
            np.r_[0.0, curve.recall],
            np.r_[1.0, curve.precision],
            where="pre",
            color="tab:blue",
            lw=1.6,
            label="model" + (f" (AP {ap:.4f})" if ap is not None else ""),
        )
        _mark_threshold(ax, metrics, curve, "pr")
        ax.axhline(
            curve.positives / (curve.positives + curve.negatives),
            ls=":",
            color="0.6",
            lw=1,
            label="chance (prevalence)",
        )
    else:
        ax.text(0.5, 0.5, "no positives", ha="center", va="center")
    ax.axhline(
        THRESHOLD_PRECISION,
        ls="--",
        color="tab:red",
        lw=1,
        label=f"precision {THRESHOLD_PRECISION:g}",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="recall",
        ylabel="precision",
        title=f"{prefix}precision-recall",
    )
    ax.legend(loc="lower left", fontsize=8)
    paths.append(_save(fig, out / "pr.png"))

    # Confusion matrix
    cm = metrics.get("confusion") or _confusion(y, s >= DEFAULT_THRESHOLD, np.ones_like(s))
    table = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]], dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(table, cmap="Blues")
    for (i, j), v in np.ndenumerate(table):
        ax.text(
            j,
            i,
            f"{int(v)}",
            ha="center",
            va="center",
            fontsize=13,
            color="white" if v > table.max() / 2 else "black",
        )
    ax.set_xticks([0, 1], ["not planet", "planet"])
    ax.set_yticks([0, 1], ["not planet", "planet"])
    ax.set(xlabel="predicted", ylabel="true")
    thr = metrics.get("threshold")
    how = metrics.get("threshold_method", "")
    ax.set_title(
        f"{prefix}confusion" + (f" at {thr:.4g} ({how})" if thr is not None else ""), fontsize=9
    )
    paths.append(_save(fig, out / "confusion.png"))

    # Calibration
    fig, (ax, ax_hist) = plt.subplots(2, 1, figsize=(5.2, 6.4), height_ratios=(2, 1), sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="0.6", lw=1, label="perfectly calibrated")
    calibration = metrics.get("calibration")
    if calibration:
        rows = [b for b in calibration["bins"] if b["mean_score"] is not None]
        ax.plot(
            [b["mean_score"] for b in rows],
            [b["fraction_positive"] for b in rows],
            "o-",
            color="tab:blue",
            label=f"model (Brier {calibration['brier']:.4f})",
        )
    else:
        ax.text(0.5, 0.5, "scores not in [0, 1]", ha="center", va="center")
    ax.set(ylim=(-0.02, 1.02), ylabel="fraction of planets", title=f"{prefix}calibration")
    ax.legend(loc="upper left", fontsize=8)
    lo, hi = min(0.0, float(s.min())), max(1.0, float(s.max()))
    edges = np.linspace(lo, hi, 41)
    ax_hist.hist(s[y == 0], bins=edges, color="tab:orange", alpha=0.6, label="not planet")
    ax_hist.hist(s[y == 1], bins=edges, color="tab:blue", alpha=0.6, label="planet")
    ax_hist.set_yscale("log")
    ax_hist.set(xlabel="score", ylabel="examples")
    ax_hist.legend(fontsize=8)
    paths.append(_save(fig, out / "calibration.png"))

    if history:
        paths.append(_plot_history(history, out / "history.png", prefix))
    return paths


def _mark_threshold(ax: Any, metrics: Mapping[str, Any], curve: _Curve, kind: str) -> None:
    thr = metrics.get("threshold")
    if thr is None:
        return
    at = np.flatnonzero(curve.thresholds >= thr)
    if at.size == 0:
        return
    i = int(at[-1])
    if kind == "roc":
        x, y = curve.fpr[i], curve.recall[i]
    else:
        x, y = curve.recall[i], curve.precision[i]
    ax.plot([x], [y], "o", color="tab:red", ms=6, label=f"threshold {score_text(thr)}")


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training history PNG: loss and validation loss, validation ROC-AUC with the best epoch.

    Parameters
    ----------
    history : sequence of mapping
        One dict per epoch (``epoch``, ``loss``, ``val_loss``, ``val_auc``).
    path : path
        Local PNG path.
    title : str
        Prefix of the panel titles.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _plot_history(history, Path(path), f"{title}: " if title else "")


def _plot_history(history: Sequence[Mapping[str, Any]], path: Path, prefix: str) -> Path:
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for i, row in enumerate(history):
            value = row.get(key)
            if value is not None and math.isfinite(float(value)):
                xs.append(float(row.get("epoch", i)))
                ys.append(float(value))
        return xs, ys

    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, colour in (("loss", "tab:blue"), ("val_loss", "tab:orange")):
        xs, ys = series(key)
        if xs:
            ax_loss.plot(xs, ys, "o-", ms=3, color=colour, label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{prefix}loss")
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    xs, ys = series("val_auc")
    if xs:
        ax_auc.plot(xs, ys, "o-", ms=3, color="tab:green", label="val_auc")
        best = int(np.argmax(ys))
        ax_auc.plot(
            [xs[best]],
            [ys[best]],
            "*",
            ms=12,
            color="tab:red",
            label=f"best {ys[best]:.4f} (epoch {xs[best]:g})",
        )
        ax_auc.legend(fontsize=8)
    ax_auc.set(xlabel="epoch", ylabel="validation ROC-AUC", title=f"{prefix}validation AUC")
    return _save(fig, path)


def plot_gallery(
    examples: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    max_examples: int = 12,
    local_half_width: float = 4.0,
) -> Path:
    """A gallery of examples (the false negatives or false positives): global | local view.

    Parameters
    ----------
    examples : sequence of mapping
        Each with ``title`` (str: star, IDs, period, score, ...), ``global_view`` (1-D array over
        orbital phase -0.5 .. 0.5) and ``local_view`` (1-D array over ± ``local_half_width``
        transit durations). NaN (empty bins) leave gaps.
    path : path
        Local PNG to write.
    title : str
        Figure title.
    max_examples : int
        Only the first ``max_examples`` are drawn (the caller orders them, e.g. by score).
    local_half_width : float
        Span of the local view in transit durations (4 for the AstroNet views).

    Returns
    -------
    Path
        The PNG written (a figure saying "no examples" when there are none).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = list(examples)[:max_examples]
    if not shown:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.text(0.5, 0.5, "no examples", ha="center", va="center", fontsize=12)
        ax.set_axis_off()
        fig.suptitle(title)
        return _save(fig, path)
    fig, axes = plt.subplots(
        len(shown), 2, figsize=(11, 1.9 * len(shown) + 0.6), squeeze=False, width_ratios=(2, 1)
    )
    for row, example in zip(axes, shown, strict=True):
        for ax, key, span in (
            (row[0], "global_view", 0.5),
            (row[1], "local_view", local_half_width),
        ):
            view = np.asarray(example[key], dtype=float).ravel()
            x = np.linspace(-span, span, view.size) if view.size else view
            if np.isfinite(view).any():
                ax.plot(x, view, ".", ms=1.5 if key == "global_view" else 2.5, color="k")
            else:
                ax.text(0.5, 0.5, "empty view", ha="center", va="center", transform=ax.transAxes)
            ax.axvline(0.0, color="tab:red", lw=0.5, alpha=0.4)
            ax.set_xlim(-span, span)
            ax.tick_params(labelsize=7)
        row[0].set_title(str(example.get("title", "")), fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("phase (orbits)")
    axes[-1, 1].set_xlabel("time from transit (durations)")
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    from starskope_dask.plots import save_figure

    return save_figure(fig, path, dpi=100)


def score_text(value: float) -> str:
    """A score for people: 3 decimals, more near 0 and 1 where boosting saturates (0.99997
    is not 1, and a threshold there must not read as 1.000).
    """
    value = float(value)
    for digits in (3, 4, 5, 6):
        text = f"{value:.{digits}f}"
        if 0 < float(text) < 1 or value in (0.0, 1.0):
            return text
    return f"{value:.6f}"
