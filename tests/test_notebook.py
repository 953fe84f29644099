"""The cloud notebook (jobs/notebooks, a jupytext Markdown source) runs end to end on the
embedded default, executed by nbclient as CI does it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "jobs" / "notebooks" / "starskope-cloud.md"


@pytest.mark.slow
def test_the_cloud_notebook_runs_end_to_end_and_makes_its_figures(tmp_path: Path) -> None:
    jupytext = pytest.importorskip("jupytext", reason="the notebook extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
    notebook = jupytext.read(NOTEBOOK)
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,md"  # paired
    workdir = tmp_path / "work"
    saved = {
        k: os.environ.get(k) for k in ("STARSKOPE_NOTEBOOK_WORKDIR", "STARSKOPE_NOTEBOOK_STARS")
    }
    os.environ["STARSKOPE_NOTEBOOK_WORKDIR"] = str(workdir)
    os.environ["STARSKOPE_NOTEBOOK_STARS"] = "60"  # the kernel inherits them
    try:
        client = nbclient.NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "public internet:" in text and "dashboard: http://127.0.0.1:" in text
    assert "test split:" in text and "Traceback" not in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # light curves, a star page, the ROC curve
    for name in ("stars.png", "pipeline.json", "candidates.csv", "model/evaluation/roc.png"):
        assert (workdir / name).exists(), name
