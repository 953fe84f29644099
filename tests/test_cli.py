"""The `starskope` command: inspect output and exit codes, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from starskope_dask.cli import main
from starskope_dask.config import load_ingest_config
from starskope_dask.errors import ConfigError

from .conftest import HAT_P_7_KEPLER


def test_inspect_prints_every_product_and_fails_if_one_fails(
    real_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = str(real_data / HAT_P_7_KEPLER)
    bad = str(real_data / "edge/test-lc-tess-pimen-corrupted.fits")
    assert main(["inspect", "--json", good, bad]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["kic"] == 10666592 and lines[0]["mission"] == "Kepler"
    assert lines[0]["n_cadences"] == 14280 and lines[0]["n_good"] <= 14280
    assert 2454953.5 < lines[0]["bjd_start"] < lines[0]["bjd_stop"] < 2454963.3
    assert lines[1]["error"] == "CorruptProductError" and bad in lines[1]["message"]
    assert main(["inspect", good]) == 0
    assert "KIC=10666592" in capsys.readouterr().out


def test_config_errors_suggest_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="did you mean 'star_chunk'"):
        load_ingest_config("m.parquet", "s.zarr", star_chunks=3)
    config = tmp_path / "c.yaml"
    config.write_text("read:\n  quality_bitmask: hardd\n")
    with pytest.raises(ConfigError, match="did you mean 'hard'"):
        load_ingest_config("m.parquet", "s.zarr", config)
    monkeypatch.setenv("DASK_STARSKOPE__INGEST__STAR_CHUNK", "16")
    assert load_ingest_config("m.parquet", "s.zarr").star_chunk == 16
    assert main(["status", str(tmp_path / "nothing.zarr")]) == 3


def test_unreachable_store_is_a_typed_error_before_any_cluster_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from starskope_dask.discover import manifest_frame, write_manifest

    manifest = str(tmp_path / "m.parquet")
    write_manifest(
        manifest_frame([{"s3_uri": "s3://stpubdata/x/kplr000000001-1_llc.fits"}]), manifest
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(
        "starskope_dask.cluster.make_client",
        lambda config: pytest.fail("a cluster was started for a store that cannot be reached"),
    )
    assert main(["ingest", manifest, "--store", "s3://no-such-bucket/cube.zarr", "-q"]) == 3
    out = capsys.readouterr().err
    assert "StoreError" in out and "s3://no-such-bucket/cube.zarr" in out
    assert main(["ingest", str(tmp_path / "missing.parquet"), "--store", "x.zarr", "-q"]) == 2
