"""The notebooks run from top to bottom (with a tiny budget), and are stored without outputs."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# What each notebook must print when it ran through (besides raising no error). A notebook
# that trains must also have picked up STNLAB_NOTEBOOK_FAST=1 (a few batches, not epochs).
EXPECTED = {
    "01_tour.ipynb": [r"FAST=True", r"st_cnn  test acc \d\.\d{3}",
                      r"stnlab-eval: test acc \d\.\d{3}"],
    # reads the committed docs/example_sweep (16 jobs: 4 models x R, RTS x 2 seeds)
    "02_sweep_analysis.ipynb": [r"16 jobs: 16 finished, 0 failed, 0 missing",
                                r"ST-CNN Aff +55\.65 ± 10\.11 \(n=2\)",
                                r"ST model - baseline", r"last epoch, val/acc mean over seeds"],
}
# Seconds per cell, and whether the notebook trains (`slow`: only in `make test`, not test-fast).
# 02 only reads files: a kernel start and a few plots, well under a minute.
BUDGET = {"01_tour.ipynb": (300, True), "02_sweep_analysis.ipynb": (60, False)}


def notebook_param(path: Path):
    timeout, slow = BUDGET.get(path.name, (300, True))
    return pytest.param(path, timeout, id=path.name, marks=[pytest.mark.slow] if slow else [])


def test_notebooks_are_stored_without_outputs():
    assert NOTEBOOKS, "no notebooks found under notebooks/"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
                 and (cell.get("outputs") or cell.get("execution_count") is not None)]
        assert not dirty, (f"{path.name}: cells {dirty} have outputs; clear them before "
                           "committing (Jupyter: Edit > Clear Outputs of All Cells)")


def python_kernel(tmp_path: Path) -> Path:
    """A ``python3`` kernel spec that runs this interpreter (not whatever Jupyter finds first)."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (stnlab tests)", "language": "python",
    }))
    return spec.parent.parent


def outputs_text(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            elif "data" in out:
                text.append(out.data.get("text/plain", ""))
    return "".join(text)


@pytest.mark.parametrize(("path", "timeout"), [notebook_param(p) for p in NOTEBOOKS])
def test_notebook_runs(path, timeout, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STNLAB_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("STNLAB_DATA_DIR", str(data_dir))  # the session's shared data cache
    monkeypatch.setenv("JUPYTER_PATH", str(python_kernel(tmp_path)))  # searched first
    src = str(REPO / "src")  # the kernel imports this checkout's stnlab
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])))
    workdir = tmp_path / "work"
    workdir.mkdir()

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()

    text = outputs_text(nb)
    for pattern in EXPECTED.get(path.name, []):
        assert re.search(pattern, text), f"{path.name}: no output matching {pattern!r}"
    images = [out for cell in nb.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert images, f"{path.name}: drew no figure"
