"""Recovery and false alarms of the features stage on a simulated archive, and the EB tells.

Simulates --stars stars (Kepler, K2, TESS; real segment lengths unless --segment-days, up to
--max-segments per mission; planets, eclipsing binaries and quiet stars with the simulator's
truth), then runs the real pipeline: ``list_archive`` → ingest → features
(``features.pipeline.run_with_client``, the simulator's stellar catalogue) on a LocalCluster of
--workers processes. From the features store and ``truth/stars.parquet`` it prints:

* planets recovered: a signal with the period within 0.1 % of the truth, for expected
  SNR ≥ --snr-min (12), 7.1–12 and all planets (target ≥ 95 % at SNR ≥ 12); of them, those
  whose t0 is within half a transit duration of a true transit, and those whose period is
  also coherent over the star's baseline (drifts less than half a duration from the true
  transits across it: with missions years apart, 0.1 % is far looser than that); signals at
  1/2 or 2× the period apart;
* false alarms: "none" stars (no planet, no EB) with any reported signal, and the signals of
  planet stars that are not the planet;
* eclipsing-binary tells, for the signal matching each planet's and each EB's truth (period or
  harmonic): quantiles of ``odd_even_sigma``, ``odd_even_ratio``, ``secondary_depth``,
  ``secondary_depth_err`` and ``secondary_depth / secondary_depth_err`` for planets vs EBs,
  and the share of each flagged by ``odd_even_sigma > 3`` or a secondary above 3σ;
  --plot-out writes their histograms as a PNG.

    python jobs/sim_recovery.py [--stars 300] [--workers 2] [--seed 5] [--plot-out tells.png]
                                [--json-out sim.json]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starskope_dask.cluster import make_client
from starskope_dask.config import load_features_config, load_ingest_config
from starskope_dask.discover import list_archive, write_manifest
from starskope_dask.features.pipeline import run_with_client as features
from starskope_dask.pipeline import run_with_client as ingest
from starskope_dask.simulate import SimulationConfig, simulate_archive
from starskope_dask.store import read_table, state_url

TELLS = ("odd_even_sigma", "odd_even_ratio", "secondary_depth", "secondary_depth_err")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TELL_SIGMA = 3.0


def run(workdir: Path, args: argparse.Namespace) -> tuple[Path, str, str, dict[str, float]]:
    """Simulate, ingest and compute features; return archive, cube, features, timings."""
    archive = workdir / "archive"
    for old in (archive, workdir / "cube.zarr", workdir / "features.zarr"):
        shutil.rmtree(old, ignore_errors=True)  # this job's own outputs of an earlier run
    start = time.perf_counter()
    config = SimulationConfig(
        n_stars=args.stars,
        seed=args.seed,
        max_segments=args.max_segments,
        segment_days=args.segment_days,
    )
    simulate_archive(str(archive), config, processes=args.workers)
    times = {"simulate_s": time.perf_counter() - start}
    manifest = str(workdir / "manifest.parquet")
    write_manifest(list_archive(str(archive)), manifest)
    cube, out = str(workdir / "cube.zarr"), str(workdir / "features.zarr")
    ingest_config = load_ingest_config(
        manifest, cube, n_workers=args.workers, star_chunk=args.star_chunk
    )
    features_config = load_features_config(
        cube, out, stellar=str(archive / "catalog" / "tic.parquet"), n_workers=args.workers
    )
    with make_client(ingest_config) as client, client.cluster:
        start = time.perf_counter()
        summary = ingest(ingest_config, client, progress=False)
        times["ingest_s"] = time.perf_counter() - start
        if summary.n_failed:
            print(f"warning: {summary.n_failed} products failed to ingest")
        start = time.perf_counter()
        result = features(features_config, client, progress=False)
        times["features_s"] = time.perf_counter() - start
    if result.n_stars_without_features:
        print(f"warning: {result.n_stars_without_features} stars without features:")
        for reason in result.reasons[:5]:
            print(f"  {reason}")
    return archive, cube, out, times


def truth_rows(truth: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """The truth table with each star's cube row (``row``; -1 when not in the cube)."""
    lookup: dict[tuple[str, int], int] = {}
    for name in ("kic", "epic", "tic"):
        for row, value in zip(stars["star"], stars[name], strict=True):
            if pd.notna(value) and int(value) > 0:
                lookup[(name, int(value))] = int(row)
    rows = []
    for _, star in truth.iterrows():
        found = -1
        for name in ("kic", "epic", "tic"):
            value = star[name]
            if pd.notna(value) and (name, int(value)) in lookup:
                found = lookup[(name, int(value))]
                break
        rows.append(found)
    return truth.assign(row=rows)


def classify(
    periods: np.ndarray,
    t0s: np.ndarray,
    period: float,
    epoch: float,
    duration: float,
    baseline: float,
) -> tuple[str, int, bool, bool]:
    """Best match of a star's signals to the truth.

    Returns (kind, signal index, t0 consistent, coherent): kind is ``"period"`` (within
    0.1 %), ``"harmonic"`` (1/2 or 2×) or ``""`` (index -1); t0 consistent: within half a
    duration of a true transit; coherent: the found period also drifts by less than half a
    duration from the true transits over the star's whole baseline (so it folds every
    mission's transits together).
    """
    best: tuple[str, int, bool, bool] = ("", -1, False, False)
    for factor, kind in ((1.0, "period"), (0.5, "harmonic"), (2.0, "harmonic")):
        for i, (p, t0) in enumerate(zip(periods, t0s, strict=True)):
            if not math.isfinite(p) or abs(p / (period * factor) - 1) >= 1e-3:
                continue
            modulo = period * min(factor, 1.0)  # the truth's: the found period drifts
            offset = (t0 - epoch + 0.5 * modulo) % modulo - 0.5 * modulo
            consistent = abs(offset) <= 0.5 * duration
            drift = abs(p - period * factor) * baseline / p
            coherent = consistent and drift <= 0.5 * duration
            if not best[0] or (consistent, coherent) > (best[2], best[3]):
                best = (kind, i, consistent, coherent)
        if best[0]:
            return best
    return best


def quantile_table(frame: pd.DataFrame, label: str) -> dict[str, list[float]]:
    print(f"\n  {label}: quantiles " + " ".join(f"{100 * q:>8.0f}%" for q in QUANTILES))
    out: dict[str, list[float]] = {}
    for name in (*TELLS, "secondary_snr"):
        values = frame[name].to_numpy(float)
        values = values[np.isfinite(values)]
        qs = np.quantile(values, QUANTILES).tolist() if values.size else [math.nan] * 5
        out[name] = qs
        scale, unit = (1e6, " ppm") if name.startswith("secondary_depth") else (1.0, "")
        shown = " ".join(f"{q * scale:9.3g}" for q in qs)
        print(f"    {name + unit:26s} {shown}   (n = {values.size})")
    return out


def plot(tells: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = (
        ("odd_even_sigma", "odd/even depth difference (σ)", np.geomspace(0.01, 1e3, 41), True),
        ("odd_even_ratio", "odd/even depth ratio", np.linspace(0, 3, 41), False),
        (
            "secondary_depth",
            "secondary depth (ppm; ≤ 1 shown at 1)",
            np.geomspace(1, 1e5, 41),
            True,
        ),
        ("secondary_snr", "secondary depth / error", np.linspace(-5, 30, 41), False),
    )
    for ax, (name, title, bins, log_x) in zip(axes.flat, panels, strict=True):
        values = tells[name].to_numpy(float) * (1e6 if name == "secondary_depth" else 1.0)
        for label, colour in (("planet", "tab:blue"), ("eb", "tab:red")):
            chosen = tells["label"].to_numpy() == label
            data = values[chosen & np.isfinite(values)]
            data = np.clip(data, bins[0], bins[-1])
            ax.hist(data, bins=bins, alpha=0.55, color=colour, label=f"{label} ({data.size})")
        if log_x:
            ax.set_xscale("log")
        if name in ("odd_even_sigma", "secondary_snr"):
            ax.axvline(TELL_SIGMA, color="k", lw=0.8, ls="--")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(
        "Eclipsing-binary tells of the matched signal: simulated planets vs EBs "
        "(values beyond the axes in the end bins)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def analyse(
    archive: Path, cube: str, out: str, args: argparse.Namespace
) -> tuple[dict[str, Any], pd.DataFrame]:
    import xarray as xr

    ds = xr.open_zarr(out, zarr_format=3)
    values = {name: ds[name].values for name in ("period", "t0", "snr", *TELLS)}
    status = ds["status"].values
    baseline = ds["baseline_days"].values
    truth = truth_rows(
        pd.read_parquet(archive / "truth" / "stars.parquet"),
        read_table(state_url(cube, "stars.parquet"), {}),
    )
    missing = int((truth["row"] < 0).sum())
    truth = truth[truth["row"] >= 0]
    records = []
    for _, star in truth.iterrows():
        row = int(star["row"])
        periods, t0s = values["period"][row], values["t0"][row]
        n_signals = int(np.isfinite(periods).sum())
        kind, index, consistent, coherent = "", -1, False, False
        if star["label"] in ("planet", "eb"):
            kind, index, consistent, coherent = classify(
                periods, t0s, float(star["period"]), float(star["epoch"]),
                float(star["duration_hours"]) / 24, float(baseline[row]),
            )  # fmt: skip
        record = {
            "index": int(star["index"]),
            "row": row,
            "label": star["label"],
            "missions": star["missions"],
            "period": float(star["period"]),
            "expected_snr": float(star["expected_snr"]),
            "status": int(status[row]),
            "n_signals": n_signals,
            "match": kind,
            "t0_consistent": consistent,
            "coherent": coherent,
            "signal": index,
            "found_periods": [float(p) for p in periods[np.isfinite(periods)]],
            "found_snr": [float(s) for s in values["snr"][row][np.isfinite(periods)]],
        }
        for name in TELLS:
            record[name] = float(values[name][row, index]) if index >= 0 else math.nan
        records.append(record)
    frame = pd.DataFrame(records)
    frame["secondary_snr"] = frame["secondary_depth"] / frame["secondary_depth_err"]
    return {"missing_from_cube": missing}, frame


def report(frame: pd.DataFrame, args: argparse.Namespace, times: dict[str, float]) -> dict:
    counts = ", ".join(f"{n} {label}" for label, n in frame["label"].value_counts().items())
    print(
        f"\n== {len(frame)} simulated stars (seed {args.seed}): {counts}; simulate "
        f"{times['simulate_s']:.0f} s, ingest {times['ingest_s']:.0f} s, features "
        f"{times['features_s']:.0f} s"
    )
    planets = frame[frame["label"] == "planet"]
    results: dict[str, Any] = {}
    print("\n  planets recovered (period within 0.1 %):")
    for label, chosen in (
        (f"expected SNR >= {args.snr_min:g}", planets[planets["expected_snr"] >= args.snr_min]),
        (f"7.1 <= SNR < {args.snr_min:g}", planets[planets["expected_snr"].between(
            7.1, args.snr_min, inclusive="left")]),
        ("all planets", planets),
    ):  # fmt: skip
        n = len(chosen)
        exact = int((chosen["match"] == "period").sum())
        timed = int(((chosen["match"] == "period") & chosen["t0_consistent"]).sum())
        coherent = int(((chosen["match"] == "period") & chosen["coherent"]).sum())
        harmonic = int((chosen["match"] == "harmonic").sum())
        share = 100 * exact / n if n else math.nan
        target = "  [target >= 95 %]" if label.startswith("expected") else ""
        print(
            f"    {label:24s} {exact:4d}/{n:<4d} ({share:5.1f} %), {timed} with t0 consistent, "
            f"{coherent} coherent over the baseline; +{harmonic} at a harmonic{target}"
        )
        results[label] = {
            "n": n, "period": exact, "t0_consistent": timed, "coherent": coherent,
            "harmonic": harmonic,
        }  # fmt: skip
    strong = planets[planets["expected_snr"] >= args.snr_min]
    missed = strong[strong["match"] != "period"]
    for _, star in missed.iterrows():
        found = ", ".join(
            f"{p:.4f} d (SNR {s:.1f})"
            for p, s in zip(star["found_periods"], star["found_snr"], strict=True)
        )  # fmt: skip
        print(
            f"      missed: sim star {star['index']} ({star['missions']}), P {star['period']:.4f}"
            f" d, expected SNR {star['expected_snr']:.1f}; found {found or 'nothing'}"
        )
    quiet = frame[frame["label"] == "none"]
    alarms = quiet[quiet["n_signals"] > 0]
    extra = int((planets["n_signals"] - (planets["match"] != "").astype(int)).clip(lower=0).sum())
    print(
        f"\n  false alarms: {len(alarms)}/{len(quiet)} 'none' stars "
        f"({100 * len(alarms) / max(len(quiet), 1):.1f} %) with a signal "
        f"({int(alarms['n_signals'].sum())} signals); {extra} signals on planet stars that are "
        "not the planet"
    )
    for _, star in alarms.head(10).iterrows():
        found = ", ".join(
            f"{p:.4f} d (SNR {s:.1f})"
            for p, s in zip(star["found_periods"], star["found_snr"], strict=True)
        )
        print(f"      sim star {star['index']} ({star['missions']}): {found}")
    ebs = frame[frame["label"] == "eb"]
    eb_kinds = ebs["match"].value_counts().to_dict()
    print(
        f"\n  eclipsing binaries found: {eb_kinds.get('period', 0)} at the period, "
        f"{eb_kinds.get('harmonic', 0)} at a harmonic, {eb_kinds.get('', 0)} not, of {len(ebs)}"
    )
    tells = frame[(frame["signal"] >= 0) & frame["label"].isin(["planet", "eb"])]
    quantiles = {}
    flagged = {}
    for label in ("planet", "eb"):
        part = tells[tells["label"] == label]
        quantiles[label] = quantile_table(part, f"{label}s ({len(part)} matched signals)")
        flag = (part["odd_even_sigma"] > TELL_SIGMA) | (part["secondary_snr"] > TELL_SIGMA)
        flagged[label] = float(flag.mean()) if len(part) else math.nan
    print(
        f"\n  flagged by odd_even_sigma > {TELL_SIGMA:g} or secondary > {TELL_SIGMA:g}σ: "
        f"EBs {100 * flagged['eb']:.0f} %, planets {100 * flagged['planet']:.0f} %"
    )
    if args.plot_out:
        plot(tells, args.plot_out)
    return {
        "stars": len(frame),
        "seed": args.seed,
        "times": times,
        "planets": results,
        "false_alarm_stars": len(alarms),
        "quiet_stars": len(quiet),
        "extra_signals_on_planet_stars": extra,
        "eb_matches": eb_kinds,
        "tell_quantiles": quantiles,
        "quantile_levels": list(QUANTILES),
        "flagged": flagged,
        "per_star": frame.to_dict(orient="records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stars", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-segments", type=int, default=3)
    parser.add_argument("--segment-days", type=float, help="cut segments (default: real lengths)")
    parser.add_argument("--star-chunk", type=int, default=64)
    parser.add_argument("--snr-min", type=float, default=12.0)
    parser.add_argument("--workdir", help="keep the archive, cube and features here")
    parser.add_argument("--plot-out")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sim-recovery-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        archive, cube, out, times = run(workdir, args)
        extra, frame = analyse(archive, cube, out, args)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if extra["missing_from_cube"]:
        print(f"warning: {extra['missing_from_cube']} simulated stars are not in the cube")
    summary = report(frame, args, times)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(json_ready({**summary, **extra}), indent=1, allow_nan=False)
        )
        print(f"wrote {args.json_out}")


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    main()
