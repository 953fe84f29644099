"""Run the pipeline on a Slurm or PBS cluster through dask-jobqueue, from a login node.

The Dask scheduler and the pipeline's driver run here (keep this process alive: inside
``tmux``/``screen``, or ``nohup``); the workers run as ``jobqueue.jobs`` batch jobs sized by
the pipeline YAML's ``jobqueue`` section (``pipeline.cluster: slurm`` or ``pbs``). Closing
(the end of the run, an error, Ctrl-C) cancels the jobs. Rerunning the same command resumes
where the run record (``WORKDIR/pipeline.json``) and the stores say it stopped.

    python jobs/submit_jobqueue.py my-pipeline.yaml --print-job-script   # review
    python jobs/submit_jobqueue.py my-pipeline.yaml                      # run

The workers use this process's Python: the virtual environment must be on a file system the
compute nodes share.
"""

from __future__ import annotations

import argparse
import logging
import sys

from starskope_dask.cli import _exit_code
from starskope_dask.cluster import JOBQUEUE_CLUSTERS, render_job_script
from starskope_dask.config import load_run_config
from starskope_dask.errors import StarskopeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pipeline", help="the pipeline YAML (as for `starskope run`)")
    parser.add_argument(
        "--cluster",
        choices=sorted(JOBQUEUE_CLUSTERS),
        default=None,
        help="batch system, overriding pipeline.cluster",
    )
    parser.add_argument(
        "--print-job-script",
        action="store_true",
        help="print the worker jobs' batch script and exit (submits nothing)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run = load_run_config(args.pipeline, cluster=args.cluster)
        kind = run.pipeline.cluster
        if kind not in JOBQUEUE_CLUSTERS:
            print(
                f"error: pipeline.cluster in {args.pipeline} is {kind!r}, not slurm or pbs: set "
                "it (or pass --cluster), or use `starskope run` / jobs/slurm/starskope.sbatch",
                file=sys.stderr,
            )
            return 2
        if args.print_job_script:
            print(render_job_script(kind, run.jobqueue, run.pipeline), end="")
            return 0
        # The runner is imported only to run: reviewing a script does not need it. run_pipeline
        # checks the config before any job is submitted, starts the cluster (make_run_client)
        # only when a stage needs it and closes it (cancelling the jobs) however the run ends.
        from starskope_dask.runner import run_pipeline

        summary = run_pipeline(run)
    except StarskopeError as exc:  # exit codes as `starskope`'s: 2 configuration, 3 the run
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return _exit_code(exc)
    except KeyboardInterrupt:
        print(
            "interrupted; the jobs are cancelled; rerun the same command to resume", file=sys.stderr
        )
        return 130
    logging.info("summary: %s", summary.as_dict())
    return 1 if summary.n_failures else 0


if __name__ == "__main__":
    sys.exit(main())
