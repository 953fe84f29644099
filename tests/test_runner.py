"""`starskope run PIPELINE.yaml`: one config, every stage, resumable; the DaskJob runner's
exact command against a local scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from starskope_dask.cli import main
from starskope_dask.config import load_run_config
from starskope_dask.errors import ConfigError, NotAStoreError
from starskope_dask.runner import (
    RECORD_FORMAT,
    _running_record,
    _updated_record,
    fingerprint,
    input_version,
    run_pipeline_with_client,
    should_skip,
    stage_settings,
)
from tests.conftest import two_worker_client

STARSKOPE = str(Path(sys.executable).with_name("starskope"))


def write_pipeline(path: Path, sim: Path, workdir: Path, **sections: Any) -> Path:
    """A pipeline YAML over a local simulated archive (labels: its truth)."""
    config: dict[str, Any] = {
        "pipeline": {"workdir": str(workdir), "n_workers": 2},
        "discover": {"archive": str(sim)},
        "ingest": {"star_chunk": 8},
        "features": {"stellar": str(sim / "catalog" / "tic.parquet")},
        "train": {
            "labels": f"truth:{sim}",
            "model": "gbt",
            "val_fraction": 0.2,
            "test_fraction": 0.25,
        },
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def sim60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive big enough to train on: 60 stars, two 20-day segments per mission."""
    from starskope_dask.simulate import SimulationConfig, simulate_archive

    out = tmp_path_factory.mktemp("sim60")
    simulate_archive(
        str(out),
        SimulationConfig(
            n_stars=60,
            seed=7,
            max_segments=2,
            segment_days=20.0,
            planet_fraction=0.35,
            eb_fraction=0.15,
        ),
        processes=2,
    )
    return out


def runner_args(config_path: Path) -> list[str]:
    """The committed DaskJob's runner command (k8s/daskjob.yaml), with our config path."""
    manifests = Path(__file__).parents[1] / "k8s" / "daskjob.yaml"
    (job,) = [d for d in yaml.safe_load_all(manifests.read_text()) if d["kind"] == "DaskJob"]
    container = job["spec"]["job"]["spec"]["containers"][0]
    args = [*container.get("command", []), *container.get("args", [])]
    assert args == ["starskope", "run", "--allow-failures", "/etc/starskope/pipeline.yaml"], args
    return [STARSKOPE, *args[1:-1], str(config_path)]


def stage_table(stdout: str) -> dict[str, str]:
    rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) >= 2 and row[1] in ("done", "skipped")}


@pytest.mark.slow
def test_the_runners_command_against_a_local_scheduler_runs_every_stage_and_resumes(
    sim60: Path, tmp_path: Path
) -> None:
    config = write_pipeline(tmp_path / "pipeline.yaml", sim60, tmp_path / "run")
    args = runner_args(config)
    with two_worker_client() as client:
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": client.scheduler.address}
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=540)
        assert done.returncode == 0, done.stderr[-3000:]
        stages = stage_table(done.stdout)
        assert stages == dict.fromkeys(
            ("discover", "ingest", "features", "train", "evaluate", "predict"), "done"
        ), done.stdout
        # the stages' tasks ran on this cluster's workers, not on a LocalCluster of the runner
        assert "started a LocalCluster" not in done.stderr
        assert f"connected to scheduler {client.scheduler.address}" in done.stderr
        record = json.loads((tmp_path / "run" / "pipeline.json").read_text())
        assert record["format"] == RECORD_FORMAT
        ingest = record["stages"]["ingest"]
        assert ingest["items"] == len(pd.read_parquet(tmp_path / "run" / "manifest.parquet"))
        assert ingest["failures"] == 0 and ingest["details"]["n_stored"] == ingest["items"]
        assert record["stages"]["features"]["items"] == 60
        for stage in record["last_run"]["stages"]:
            assert stage["seconds"] > 0
        candidates = pd.read_csv(tmp_path / "run" / "candidates.csv")
        assert len(candidates) == record["stages"]["predict"]["items"] > 0
        metrics = json.loads(
            (tmp_path / "run" / "model" / "evaluation" / "metrics.json").read_text()
        )
        assert metrics["n"] == record["stages"]["evaluate"]["items"] > 0

        # the runner restarts (a pod rescheduled, the job rerun): nothing is done again
        began = time.perf_counter()
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert stage_table(again.stdout) == {
            "discover": "done",  # listed again: the same manifest, so nothing after it reruns
            **dict.fromkeys(("ingest", "features", "train", "evaluate", "predict"), "skipped"),
        }, again.stdout
        rerun_seconds = time.perf_counter() - began
        stages_after = json.loads((tmp_path / "run" / "pipeline.json").read_text())["stages"]
        assert {k: v["version"] for k, v in stages_after.items()} == {
            k: v["version"] for k, v in record["stages"].items()
        }

    print(f"rerun of a finished pipeline: {rerun_seconds:.1f} s")


def test_stage_subsets_resume_where_the_last_run_stopped(sim_archive: Path, tmp_path: Path) -> None:
    config = write_pipeline(tmp_path / "p.yaml", sim_archive, tmp_path / "run")
    first = load_run_config(config, stages=("discover", "ingest"))
    with two_worker_client() as client:
        summary = run_pipeline_with_client(first, client, progress=False)
        assert [(s.stage, s.status) for s in summary.stages] == [
            ("discover", "done"),
            ("ingest", "done"),
        ]
        assert summary.stages[1].items == summary.stages[0].items > 0
        assert not (tmp_path / "run" / "features.zarr").exists()
        # the whole front half: what finished is skipped, features run
        second = load_run_config(config, stages=("discover", "ingest", "features"))
        summary = run_pipeline_with_client(second, client, progress=False)
        assert [(s.stage, s.status) for s in summary.stages] == [
            ("discover", "done"),  # always: the archive may have changed; it has not
            ("ingest", "skipped"),
            ("features", "done"),
        ]
        assert not summary.stages[0].changed
        assert (tmp_path / "run" / "features.zarr").is_dir()
        # a features setting changes: only features run again
        config = write_pipeline(
            tmp_path / "p.yaml", sim_archive, tmp_path / "run", features={"max_signals": 2}
        )
        third = load_run_config(config, stages=("discover", "ingest", "features"))
        statuses = [
            s.status for s in run_pipeline_with_client(third, client, progress=False).stages
        ]
        assert statuses == ["done", "skipped", "done"]


STAGES3 = ("discover", "ingest", "features")


def _record(record: dict[str, Any], run: Any, stage: str, **outcome: Any) -> dict[str, Any]:
    """The record after ``stage`` ran (as the runner enters it: running mark, then outcome)."""
    version = input_version(record, stage, STAGES3, "")
    record = _running_record(record, stage, f"/tmp/x/{stage}")
    return _updated_record(
        record, _outcome(stage, **outcome), stage_settings(run, stage), "test", version
    )


def _skips(record: dict[str, Any], run: Any, stage: str) -> bool:
    version = input_version(record, stage, STAGES3, "")
    return should_skip(record, stage, stage_settings(run, stage), version)


def test_a_changed_input_reruns_the_stages_after_it() -> None:
    run = load_run_config(sections={"pipeline": {"workdir": "/tmp/x"}})
    record: dict[str, Any] = {}
    for stage in STAGES3:
        record = _record(record, run, stage)
    assert [_skips(record, run, s) for s in STAGES3] == [False, True, True]  # discover: always
    # discover ran again and found the same manifest: nothing after it reruns
    time.sleep(0.002)
    record = _record(record, run, "discover", changed=False)
    assert _skips(record, run, "ingest") and _skips(record, run, "features")
    # ingest ran again and wrote new chunks (a product fetched now): features must run
    record = _record(record, run, "ingest", changed=True)
    assert not _skips(record, run, "features")
    record = _record(record, run, "features")
    # ingest ran and changed nothing: its version stays, features skip
    record = _record(record, run, "ingest", changed=False)
    assert _skips(record, run, "features")
    # a run killed after ingest wrote but before it was recorded: the running mark stays, and
    # the rerun (which finds nothing left to write) still counts as a change
    killed = _running_record(record, "ingest", "/tmp/x/ingest")
    record = _record(killed, run, "ingest", changed=False)
    assert not _skips(record, run, "features")
    record = _record(record, run, "features")
    # a stage that had failures runs again (each rerun retries transient failures)
    record = _record(record, run, "ingest", failures=2, changed=False)
    assert not _skips(record, run, "ingest")
    # settings that change what is computed count; where it runs does not
    other = load_run_config(
        sections={"pipeline": {"workdir": "/tmp/x", "n_workers": 7}, "ingest": {"n_workers": 9}}
    )
    assert fingerprint(stage_settings(other, "ingest")) == fingerprint(
        stage_settings(run, "ingest")
    )
    chunked = load_run_config(
        sections={"pipeline": {"workdir": "/tmp/x"}, "ingest": {"star_chunk": 9}}
    )
    assert fingerprint(stage_settings(chunked, "ingest")) != fingerprint(
        stage_settings(run, "ingest")
    )


def test_an_input_made_outside_the_pipeline_is_versioned_by_its_marker() -> None:
    run = load_run_config(sections={"pipeline": {"workdir": "/tmp/x"}})
    settings = stage_settings(run, "evaluate")
    entry = _outcome("evaluate")
    record = _updated_record({}, entry, settings, "test", "external:aaaa")
    assert input_version(record, "evaluate", ("evaluate",), "external:aaaa") == "external:aaaa"
    assert should_skip(record, "evaluate", settings, "external:aaaa")
    assert not should_skip(record, "evaluate", settings, "external:bbbb")  # retrained elsewhere


def _outcome(stage: str, changed: bool = True, failures: int = 0) -> Any:
    from starskope_dask.runner import StageOutcome

    return StageOutcome(stage, "done", 10, failures, 1.0, changed, f"/tmp/x/{stage}", {})


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"pipeline": {"stages": ["discover", "features"]}}, "contiguous run"),
        ({"pipeline": {"stages": ["ingest", "discover"]}}, "contiguous run"),
        ({"pipeline": {"stages": ["discover", "ingset"]}}, "did you mean 'ingest'"),
        ({"pipeline": {"stages": []}}, "at least one stage"),
        ({"pipeline": {"cluster": "slrum"}}, "did you mean 'slurm'"),
        ({"pipeline": {"workdir": ""}}, "pipeline.workdir"),
        ({"pipeline": {"n_workers": 0}}, "pipeline.n_workers"),
        ({"pipline": {}}, "did you mean 'pipeline'"),
        ({"discover": {"radius_arcsec": -1}}, "discover.radius_arcsec"),
        ({"discover": {"via": "satellite"}}, "discover.via"),
        ({"discover": {"targets": [1, 2]}}, "discover.targets"),
        ({"jobqueue": {"walltime": "four hours"}}, "jobqueue.walltime"),
        ({"jobqueue": {"processes": 8, "cores": 2}}, "jobqueue.processes"),
        ({"kubernetes": {"name": "Not_A_Label"}}, "kubernetes.name"),
        ({"kubernetes": {"role_arn": "my-role"}}, "kubernetes.role_arn"),
        ({"kubernetes": {"min_workers": 5, "max_workers": 2}}, "kubernetes.min_workers"),
        ({"kubernetes": {"name": "1star"}}, "kubernetes.name"),  # a Service needs a letter first
        ({"kubernetes": {"worker_cpu": "0"}}, "kubernetes.worker_cpu"),
        ({"kubernetes": {"worker_cpu": "\u0662"}}, "kubernetes.worker_cpu"),  # Arabic-Indic 2
        ({"kubernetes": {"region": ""}}, "kubernetes.region"),
        ({"kubernetes": {"image": "Bad Image"}}, "kubernetes.image"),
        ({"jobqueue": {"walltime": "99:99:99"}}, "jobqueue.walltime"),
        ({"jobqueue": {"queue": "a\n#SBATCH --x"}}, "jobqueue.queue"),  # no injected directive
        ({"discover": {"archive": ""}}, "discover.archive"),
        ({"pipeline": {"workdir": "s3://"}}, "pipeline.workdir"),
    ],
)
def test_a_bad_pipeline_config_is_a_config_error_naming_the_key(
    sections: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_run_config(sections=sections)


def test_bad_pipelines_fail_before_anything_runs_with_the_documented_codes(
    sim_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> tuple[int, str]:
        code = main(["run", *argv])
        return code, capsys.readouterr().err

    config = write_pipeline(tmp_path / "p.yaml", sim_archive, tmp_path / "run")
    code, err = run(str(config), "--stages", "discover,features")
    assert code == 2 and "contiguous" in err
    code, err = run(str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in err
    # training without labels: refused before any cluster starts
    no_labels = write_pipeline(
        tmp_path / "nl.yaml", sim_archive, tmp_path / "run", train={"labels": ""}
    )
    code, err = run(str(no_labels), "--stages", "train")
    assert code == 2 and "train.labels" in err
    assert not (tmp_path / "run").exists()
    # a workdir whose pipeline.json is someone else's file: exit 3, nothing touched
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "pipeline.json").write_text('{"name": "my notes"}')
    code, err = run(str(config), "--workdir", str(foreign), "--stages", "discover")
    assert code == 3 and "not a starskope run record" in err
    assert (foreign / "pipeline.json").read_text() == '{"name": "my notes"}'
    assert sorted(p.name for p in foreign.iterdir()) == ["pipeline.json"]
    # a manifest this pipeline did not write is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.parquet").write_bytes(b"my own table")
    code, err = run(str(config), "--workdir", str(mine), "--stages", "discover")
    assert code == 3 and "was not written by this pipeline" in err
    assert (mine / "manifest.parquet").read_bytes() == b"my own table"
    # a model this pipeline did not train (`starskope train` made it) is not retrained over
    (mine / "model").mkdir()
    (mine / "model" / "model.json").write_text('{"model": "theirs"}')
    code, err = run(str(config), "--workdir", str(mine), "--stages", "train")
    assert code == 3 and "was not written by this pipeline" in err
    assert (mine / "model" / "model.json").read_text() == '{"model": "theirs"}'
    # a workdir that is a file
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, err = run(str(config), "--workdir", str(a_file), "--stages", "discover")
    assert code == 3 and str(a_file) in err


def test_a_foreign_record_is_refused_in_the_library_too(tmp_path: Path) -> None:
    from starskope_dask.runner import read_record

    path = tmp_path / "pipeline.json"
    path.write_text("[1, 2]")
    with pytest.raises(NotAStoreError, match="not a starskope run record"):
        read_record(str(path), {})
    assert read_record(str(tmp_path / "none.json"), {}) == {}


def test_the_example_pipeline_config_is_valid() -> None:
    example = Path(__file__).parents[1] / "jobs" / "pipeline.yaml"
    run = load_run_config(example)
    assert run.pipeline.stages[0] == "discover" and run.pipeline.stages[-1] == "predict"
    assert run.train.labels.startswith("koi:")
    assert run.ingest.store.endswith("cube.zarr") and run.train.features.endswith("features.zarr")


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "starskope pipeline record", "stages": ["x"]}',
        '{"format": "starskope pipeline record", "stages": {"ingest": 3}}',
        '{"format": "starskope pipeline record", "stages": {"bogus": {}}}',
        '{"format": "starskope pipeline record", "written": "/tmp/x/manifest.parquet-not"}',
        '{"format": "starskope pipeline record", "written": [5]}',
    ],
)
def test_a_damaged_record_is_a_store_error_not_a_crash(text: str, tmp_path: Path) -> None:
    from starskope_dask.errors import StoreError
    from starskope_dask.runner import read_record

    path = tmp_path / "pipeline.json"
    path.write_text(text)
    with pytest.raises(StoreError, match="damaged"):
        read_record(str(path), {})


def test_a_deep_or_huge_record_is_refused_in_bounded_time(tmp_path: Path) -> None:
    from starskope_dask.errors import StoreError
    from starskope_dask.runner import MAX_RECORD_BYTES, read_record

    path = tmp_path / "pipeline.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(NotAStoreError):
        read_record(str(path), {})
    path.write_bytes(b" " * (MAX_RECORD_BYTES + 1))
    with pytest.raises(StoreError, match="at most"):
        read_record(str(path), {})


def test_relative_and_absolute_workdirs_are_one_place(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    relative = load_run_config(sections={"pipeline": {"workdir": "w"}})
    dotted = load_run_config(sections={"pipeline": {"workdir": "./w/"}})
    absolute = load_run_config(sections={"pipeline": {"workdir": str(tmp_path / "w")}})
    assert relative.pipeline.record_url == absolute.pipeline.record_url
    assert dotted.pipeline.artefact("cube") == absolute.pipeline.artefact("cube")
    assert relative.ingest.store == str(tmp_path / "w" / "cube.zarr")
