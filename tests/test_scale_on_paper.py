"""jobs/scale_on_paper.py: the paper model of a whole-archive run behaves like one."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "jobs" / "scale_on_paper.py"


@pytest.fixture(scope="module")
def paper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_on_paper", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


COUNTS = [2**k for k in range(0, 11)]  # 1 … 1024


@pytest.mark.parametrize("stage", ["ingest", "features"])
def test_more_workers_take_less_time_until_a_limit_binds(paper: ModuleType, stage: str) -> None:
    for archive in paper.ARCHIVES:
        results = [getattr(paper, stage)(archive, w) for w in COUNTS]
        walls = [r.wall_s for r in results]
        # never slower with more workers (up to 1024)
        for smaller, larger in itertools.pairwise(walls):
            assert larger <= smaller * (1 + 1e-9), (archive.name, stage, walls)
        # strictly faster while worker CPU sets the time
        for before, after in itertools.pairwise(results):
            if after.binding.startswith("worker CPU"):
                assert after.wall_s < before.wall_s, (archive.name, stage, after.workers)
        # eight workers are nearly eight times one (without the serial catalogue lookup)
        kwargs = {"stellar": "table"} if stage == "features" else {}
        one, eight = (getattr(paper, stage)(archive, w, **kwargs).wall_s for w in (1, 8))
        assert one > 6 * eight, (archive.name, stage)


def test_the_binding_limit_is_reported(paper: ModuleType) -> None:
    names = {
        "worker CPU",
        "network/instance",
        "S3 GET/prefix (archive)",
        "S3 GET/prefix (store)",
        "S3 PUT/prefix (store)",
        "scheduler task rate",
        paper.SERIAL,
    }
    for result in paper.sweep(paper.ARCHIVES, [8, 64, 256, 1024]):
        limit, _, phase = result.binding.rpartition(" (")
        assert limit in names, result.binding
        assert phase.rstrip(")") in {p.name for p in result.phases}
        for p in result.phases:
            assert p.wall_s == pytest.approx(p.parallel_s + p.serial_s)
            if p.bounds and p.serial_s < p.parallel_s:
                assert p.bounds[p.binding] == max(p.bounds.values())
    # what the numbers say: eight workers are CPU-bound on Kepler, the K2 features stage waits
    # for one MAST cone per EPIC-only star, a thousand workers wait for the store's GETs
    assert paper.ingest(paper.KEPLER, 8).binding == "worker CPU (read)"
    assert paper.features(paper.K2, 1024).binding == f"{paper.SERIAL} (stellar lookup)"
    assert paper.features(paper.K2, 64, stellar="table").binding == "worker CPU (features)"
    assert paper.ingest(paper.KEPLER, 1024).binding == "S3 GET/prefix (store) (write)"
    # a slower S3 layout binds the read pass earlier
    single = paper.ingest_phases(paper.KEPLER, 256, paper.BENCH_RATES, paper.Limits(), "single")
    assert single[0].binding == "S3 GET/prefix (archive)"


def test_costs_are_positive_and_consistent(paper: ModuleType) -> None:
    limits = paper.Limits()
    for result in paper.sweep(paper.ARCHIVES, [8, 1024], paper.BENCH_RATES, limits):
        assert result.wall_s > 0 and result.worker_hours > 0
        assert result.compute_usd > 0 and result.driver_usd > 0 and result.requests_usd > 0
        assert result.compute_usd == pytest.approx(result.worker_hours * limits.price_per_vcpu_hour)
        billed = sum(p.wall_s for p in result.phases if p.workers_billed)
        assert result.worker_hours == pytest.approx(result.workers * billed / 3600)
        assert billed <= result.wall_s
        assert result.driver_usd == pytest.approx(
            result.wall_s / 3600 * limits.driver_vcpus * limits.price_per_vcpu_hour
        )
        assert result.total_usd == pytest.approx(
            result.compute_usd + result.driver_usd + result.requests_usd
        )
    # doubling the price doubles the workers' bill, nothing else
    dear = dataclasses.replace(limits, price_per_vcpu_hour=2 * limits.price_per_vcpu_hour)
    cheap, costly = paper.ingest(paper.TESS, 64), paper.ingest(paper.TESS, 64, limits=dear)
    assert costly.compute_usd == pytest.approx(2 * cheap.compute_usd)
    assert costly.wall_s == cheap.wall_s


def test_features_cost_grows_with_points_and_periods(paper: ModuleType) -> None:
    rates = paper.BENCH_RATES
    assert paper.ofir_periods(0.4) == 0
    assert paper.ofir_periods(2000) == pytest.approx(2 * paper.ofir_periods(1000))  # P ≤ 500 d
    kepler = paper.features_seconds_per_star(paper.KEPLER, rates)
    short = rates.features_floor_s_per_star + rates.features_overhead_s_per_star
    assert short < paper.features_seconds_per_star(paper.TESS, rates) < kepler
    assert kepler < rates.features_ref_s_per_star + rates.features_overhead_s_per_star
    full = dataclasses.replace(paper.KEPLER, classes=paper.KEPLER.classes[:1])
    assert paper.features_seconds_per_star(full, rates) == pytest.approx(
        rates.features_ref_s_per_star + rates.features_overhead_s_per_star
    )
    for archive in paper.ARCHIVES:
        assert sum(c.fraction for c in archive.classes) == pytest.approx(1)
        mean = sum(c.fraction * c.products_per_star for c in archive.classes)
        assert mean == pytest.approx(archive.products_per_star, rel=0.02)


def test_the_design_counts_are_the_codes(paper: ModuleType) -> None:
    from starskope_dask.config import GridConfig, IngestConfig
    from starskope_dask.features.layout import VARIABLES
    from starskope_dask.pipeline import PACK_PRODUCTS

    defaults = {f.name: f.default for f in dataclasses.fields(IngestConfig)}
    assert paper.DESIGN.star_chunk == defaults["star_chunk"]
    assert defaults["time_chunk"] == paper.TIME_CHUNK_STEPS
    assert GridConfig().cadence_days == paper.GRID_CADENCE_DAYS
    assert paper.DESIGN.pack_products == PACK_PRODUCTS
    assert paper.DESIGN.features_variables == len(VARIABLES)
    source = (ROOT / "starskope_dask" / "pipeline.py").read_text()
    assert "min(128, math.ceil(len(new_urls) / (8 * _n_workers(client()))))" in source
    assert paper.partition_size(10_000, 2) == 128
    assert paper.partition_size(100, 64) == 1


def test_rates_come_from_a_file(paper: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"read_products_per_s": 100.0, "source": "a new run"}))
    rates = paper.load_rates(str(path), "bench-ingest")
    assert rates.read_products_per_s == 100.0 and rates.source == "a new run"
    assert rates.read_mb_per_s == paper.BENCH_RATES.read_mb_per_s
    path.write_text(json.dumps({"read_products": 1}))
    with pytest.raises(SystemExit, match="unknown keys"):
        paper.load_rates(str(path), "bench-ingest")
    path.write_text(json.dumps({"read_mb_per_s": -1}))
    with pytest.raises(SystemExit, match="positive"):
        paper.load_rates(str(path), "bench-ingest")


def test_markdown_has_a_header_and_a_row_per_archive_and_stage(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"write_products_per_s": 400}))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--markdown", "--workers", "64", "--rates", str(rates)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Archive | Stage |"))
    assert set(lines[header + 1]) <= set("|-: ")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert len(rows) == 3 * 2
    assert {(r[0], r[1]) for r in rows} == {
        (a, s) for a in ("Kepler LC", "K2 LC", "TESS 2-min") for s in ("ingest", "features")
    }
    assert all(r[2] == "64" and r[5].startswith("$") for r in rows)
    assert "#### Where the design breaks first" in done.stdout
    assert done.stderr == ""
