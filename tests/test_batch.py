"""Slurm and PBS: dask-jobqueue job scripts from the pipeline config, and the batch scripts.

Nothing is submitted: the job scripts are rendered and checked, run by ``bash`` in place of
``sbatch`` (workers on 127.0.0.1), and the committed scripts run against a stub ``starskope``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import dask
import pytest
from distributed import Client, LocalCluster

from starskope_dask.cluster import (
    JOB_SCRIPT_SCHEDULER,
    WORKER_MALLOC_ENV,
    jobqueue_cluster_kwargs,
    make_run_client,
    render_job_script,
    with_own_client,
)
from starskope_dask.config import RunConfig, load_run_config
from starskope_dask.errors import ConfigError

pytest.importorskip("dask_jobqueue")

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "jobs" / "slurm" / "starskope.sbatch"
PBS = ROOT / "jobs" / "pbs" / "starskope.pbs"
SUBMIT = ROOT / "jobs" / "submit_jobqueue.py"
MALLOC_EXPORTS = [f"export {k}={v}" for k, v in WORKER_MALLOC_ENV.items()]


def write_pipeline(folder: Path, cluster: str, **jobqueue: Any) -> Path:
    """A pipeline YAML in ``folder`` (workdir inside it) with a ``jobqueue`` section."""
    section = {
        "queue": "short",
        "account": "astro42",
        "cores": 4,
        "processes": 2,
        "memory": "16GiB",
        "walltime": "1-02:00:00",
        "local_directory": "$TMPDIR",
        "job_extra_directives": ["--constraint=haswell"],
        "job_script_prologue": ["module load gcc", "echo prologue-ran"],
        **jobqueue,
    }
    lines = [
        "pipeline:",
        f"  workdir: {folder / 'run'}",
        f"  cluster: {cluster}",
        "jobqueue:",
    ]
    for key, value in section.items():
        if isinstance(value, list):
            lines.append(f"  {key}: [{', '.join(repr(v) for v in value)}]")
        else:
            lines.append(f"  {key}: {value!r}" if isinstance(value, str) else f"  {key}: {value}")
    path = folder / f"pipeline-{cluster}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def render(folder: Path, kind: str, **jobqueue: Any) -> str:
    run = load_run_config(write_pipeline(folder, kind, **jobqueue))
    return render_job_script(kind, run.jobqueue, run.pipeline)


def bash_syntax_ok(script: str | Path) -> None:
    args = ["bash", "-n", str(script)] if isinstance(script, Path) else ["bash", "-n"]
    text = None if isinstance(script, Path) else script
    done = subprocess.run(args, input=text, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def worker_command(script: str) -> str:
    (line,) = [ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln]
    return line


def test_slurm_job_script(tmp_path: Path) -> None:
    script = render(tmp_path, "slurm")
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    header = [ln for ln in lines if ln.startswith("#SBATCH")]
    logs = tmp_path / "run" / "jobqueue-logs"
    assert header == [
        "#SBATCH -J starskope-worker",
        f"#SBATCH -e {logs}/starskope-worker-%J.err",
        f"#SBATCH -o {logs}/starskope-worker-%J.out",
        "#SBATCH -p short",
        "#SBATCH -A astro42",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH -t 1-02:00:00",
        "#SBATCH --constraint=haswell",
    ]
    assert logs.is_dir()  # made, as the cluster would
    # The malloc exports first, then the configured prologue (which could override them),
    # then the worker.
    body = lines[lines.index(header[-1]) + 1 :]
    assert body[:4] == [*MALLOC_EXPORTS, "module load gcc", "echo prologue-ran"]
    command = worker_command(script)
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker ")
    assert f" {JOB_SCRIPT_SCHEDULER} " in command
    # 4 cores and 16 GiB per job, 2 processes: 2 workers of 2 threads and 8 GiB.
    assert " --nworkers 2 " in command and " --nthreads 2 " in command
    assert " --memory-limit 8.00GiB " in command and " --nanny" in command
    assert command.endswith(" --local-directory $TMPDIR")  # expanded on the compute node
    bash_syntax_ok(script)


def test_pbs_job_script(tmp_path: Path) -> None:
    script = render(tmp_path, "pbs", processes=4, cores=8, memory="32GiB")
    header = [ln for ln in script.splitlines() if ln.startswith("#PBS")]
    logs = tmp_path / "run" / "jobqueue-logs"
    assert header == [
        "#PBS -N starskope-worker",
        "#PBS -q short",
        "#PBS -A astro42",
        "#PBS -l select=1:ncpus=8:mem=32GB",
        "#PBS -l walltime=26:00:00",  # Slurm's 1-02:00:00, in the hours PBS reads
        f"#PBS -e {logs}/",
        f"#PBS -o {logs}/",
        "#PBS --constraint=haswell",
    ]
    assert all(line in script.splitlines() for line in MALLOC_EXPORTS)
    assert "echo prologue-ran" in script
    command = worker_command(script)
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker ")
    assert " --nworkers 4 " in command and " --nthreads 2 " in command
    assert " --memory-limit 8.00GiB " in command
    bash_syntax_ok(script)


def test_site_defaults_leave_directives_out(tmp_path: Path) -> None:
    script = render(
        tmp_path,
        "slurm",
        queue="",
        account="",
        cores=3,
        processes=1,
        memory="5GiB",
        walltime="00:30:00",
        local_directory="",
        interface="lo",
        job_extra_directives=[],
        job_script_prologue=[],
    )
    assert "#SBATCH -p" not in script and "#SBATCH -A" not in script
    assert "#SBATCH --mem=5G" in script and "#SBATCH -t 00:30:00" in script
    command = worker_command(script)
    assert " --nthreads 3 " in command and " --memory-limit 5.00GiB " in command
    assert " --nworkers" not in command and "--local-directory" not in command
    assert command.endswith(" --interface lo")
    bash_syntax_ok(script)


def test_kwargs_refuse_what_a_batch_job_cannot_ask_for(tmp_path: Path) -> None:
    run = load_run_config(write_pipeline(tmp_path, "slurm", memory="auto"))
    with pytest.raises(ConfigError, match=r"jobqueue\.memory .*not 'auto'"):
        jobqueue_cluster_kwargs("slurm", run.jobqueue, run.pipeline)
    with pytest.raises(ConfigError, match="slurm, pbs, not 'sge'"):
        render_job_script("sge", run.jobqueue, run.pipeline)


def test_s3_workdir_logs_go_to_the_submit_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_run_config(write_pipeline(tmp_path, "pbs"), workdir="s3://bucket/run")
    monkeypatch.chdir(tmp_path)
    kwargs = jobqueue_cluster_kwargs("pbs", run.jobqueue, run.pipeline)
    assert kwargs["log_directory"] == str(tmp_path / "starskope-jobqueue-logs")
    assert kwargs["python"] == sys.executable and kwargs["walltime"] == "26:00:00"


def test_committed_batch_scripts_parse() -> None:
    for script in (SBATCH, PBS):
        bash_syntax_ok(script)


def test_submit_script_prints_the_job_script(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, "pbs")
    done = subprocess.run(
        [sys.executable, str(SUBMIT), str(pipeline), "--print-job-script", "--cluster", "slurm"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#!/usr/bin/env bash\n")
    assert "#SBATCH -p short" in done.stdout and "#SBATCH -A astro42" in done.stdout
    bash_syntax_ok(done.stdout)
    local = write_pipeline(tmp_path, "local")
    refused = subprocess.run(
        [sys.executable, str(SUBMIT), str(local), "--print-job-script"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "not slurm or pbs" in refused.stderr


# --- the job script run for real: bash in place of sbatch, workers on 127.0.0.1 ------------


def bash_job_class() -> Any:
    """A ``SLURMJob`` whose 'submission' runs the job script with bash, in the background."""
    from dask_jobqueue.slurm import SLURMJob

    class BashJob(SLURMJob):
        submit_command = "bash"
        cancel_command = "kill"
        procs: ClassVar[dict[str, subprocess.Popen[bytes]]] = {}
        scripts: ClassVar[list[str]] = []

        async def _submit_job(self, script_filename: str) -> str:
            script = Path(script_filename).read_text()
            self.scripts.append(script)
            log = Path(self.log_directory) / f"bash-{len(self.scripts)}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["bash", "-c", script], stdout=out, stderr=out, start_new_session=True
                )
            self.procs[str(proc.pid)] = proc
            return str(proc.pid)

        @classmethod
        async def _close_job(cls, job_id: str | None, cancel_command: str) -> None:
            proc = cls.procs.get(job_id or "")
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    return BashJob


def test_jobqueue_workers_get_the_malloc_env_and_are_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask_jobqueue

    job_cls = bash_job_class()
    monkeypatch.setattr(dask_jobqueue.SLURMCluster, "job_cls", job_cls)
    # As Slurm's default --export=ALL would carry it from a login node: Dask's own setting.
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    pipeline = write_pipeline(
        tmp_path,
        "slurm",
        cores=2,
        processes=2,
        memory="2GiB",
        walltime="00:10:00",
        jobs=1,
        interface="lo",  # scheduler and workers on 127.0.0.1
        local_directory=str(tmp_path / "scratch"),
        job_script_prologue=[],
    )
    run = load_run_config(pipeline)

    def stage(get_client: Callable[[], Client]) -> dict[str, Any]:
        client = get_client()
        assert type(client.cluster).__name__ == "SLURMCluster"
        client.wait_for_workers(2, timeout=60)
        info = client.scheduler_info()["workers"]
        return {
            "addresses": list(info),
            "threads": sorted(w["nthreads"] for w in info.values()),
            "memory": sorted(w["memory_limit"] for w in info.values()),
            "env": {k: client.run(os.getenv, k) for k in WORKER_MALLOC_ENV},
        }

    with dask.config.set(
        {
            "jobqueue.slurm.scheduler-options": {"dashboard_address": "127.0.0.1:0"},
            "jobqueue.slurm.worker-extra-args": ["--no-dashboard"],  # Dask's config still counts
        }
    ):
        seen = with_own_client(run, stage)
    assert all(a.startswith("tcp://127.0.0.1:") for a in seen["addresses"])
    assert seen["threads"] == [1, 1] and seen["memory"] == [2**30, 2**30]
    for name, value in WORKER_MALLOC_ENV.items():
        assert set(seen["env"][name].values()) == {str(value)}, name
    (script,) = job_cls.scripts
    assert "--no-dashboard" in worker_command(script)
    # Closing the client closed the cluster, which cancelled the job.
    assert all(proc.poll() is not None for proc in job_cls.procs.values())


def test_refused_or_impossible_submission_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask_jobqueue
    from dask_jobqueue.slurm import SLURMJob

    run = load_run_config(write_pipeline(tmp_path, "slurm", interface="lo", jobs=1))
    if shutil.which("sbatch") is None:  # no batch system here: said before anything starts
        with pytest.raises(ConfigError, match="'sbatch' is not on PATH"):
            make_run_client(run)

    class RefusedJob(SLURMJob):
        submit_command = "bash"

        async def _submit_job(self, script_filename: str) -> str:
            raise RuntimeError("sbatch: error: invalid partition specified: short")

    monkeypatch.setattr(dask_jobqueue.SLURMCluster, "job_cls", RefusedJob)
    with (
        dask.config.set({"jobqueue.slurm.scheduler-options": {"dashboard_address": "127.0.0.1:0"}}),
        pytest.raises(ConfigError, match="refused the worker jobs"),
    ):
        make_run_client(run)


def test_run_client_for_a_local_pipeline_is_a_local_cluster(tmp_path: Path) -> None:
    run: RunConfig = load_run_config(write_pipeline(tmp_path, "local"), n_workers=1)

    def stage(get_client: Callable[[], Client]) -> tuple[bool, int, int]:
        client = get_client()
        return (
            isinstance(client.cluster, LocalCluster),
            len(client.scheduler_info()["workers"]),
            client.submit(sum, [1, 2, 3]).result(),
        )

    assert with_own_client(run, stage) == (True, 1, 6)


# --- the committed batch scripts, run against a stub `starskope` ----------------------------


def stub_venv(folder: Path) -> Path:
    """A 'venv' whose activate puts a stub ``starskope`` (prints env and args) before this
    Python's folder on PATH."""
    bin_ = folder / "venv" / "bin"
    bin_.mkdir(parents=True, exist_ok=True)
    stub = folder / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "starskope").write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env bash
            echo "stub-args: $*"
            env | grep -E '^(DASK_STARSKOPE__|MALLOC_)' | sort
            """
        )
    )
    (stub / "starskope").chmod(0o755)
    python_bin = Path(sys.executable).parent
    (bin_ / "activate").write_text(f'export PATH="{stub}:{python_bin}:$PATH"\n')
    return folder / "venv"


def run_batch_script(script: Path, folder: Path, env: dict[str, str], *args: str) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MALLOC_"))}
    return subprocess.run(
        ["bash", str(script), *args],
        env={**clean, "STARSKOPE_VENV": str(stub_venv(folder)), **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sbatch_script_runs_the_pipeline_with_the_allocation(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, "local")
    done = run_batch_script(
        SBATCH,
        tmp_path,
        {
            "SLURM_SUBMIT_DIR": str(tmp_path),
            "SLURM_CPUS_PER_TASK": "3",
            "SLURM_MEM_PER_NODE": "3000",
        },
        pipeline.name,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert f"starskope: 3 workers x 1 threads, 900MiB each, on {pipeline.name}" in out
    assert (
        f"stub-args: run {pipeline.name} --cluster local --workers 3 --memory-limit 900MiB" in out
    )
    for line in (f"{k}={v}" for k, v in WORKER_MALLOC_ENV.items()):
        assert line in out, line


def test_pbs_script_runs_the_pipeline_inside_its_allocation(tmp_path: Path) -> None:
    for kind in ("local", "slurm"):  # a jobqueue pipeline runs on the allocation's CPUs too
        pipeline = write_pipeline(tmp_path, kind)
        done = run_batch_script(
            PBS, tmp_path, {"PBS_O_WORKDIR": str(tmp_path), "NCPUS": "2", "PIPELINE": pipeline.name}
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout.splitlines()
        assert f"starskope: 2 workers x 1 threads, auto each, on {pipeline.name}" in out
        assert (
            f"stub-args: run {pipeline.name} --cluster local --workers 2 --memory-limit auto" in out
        )


def test_the_allocation_wins_over_the_worker_count_of_the_yaml(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, "local")
    pipeline.write_text(pipeline.read_text().replace("pipeline:\n", "pipeline:\n  n_workers: 5\n"))
    env = {"SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_CPUS_PER_TASK": "3"}
    done = run_batch_script(SBATCH, tmp_path, env, pipeline.name)
    assert done.returncode == 0, done.stderr
    assert f"starskope: 3 workers x 1 threads, auto each, on {pipeline.name}" in done.stdout
