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
# What each notebook must print when it ran through (besides raising no error).
EXPECTED = {
    "01_tour.ipynb": [r"st_cnn  test acc \d\.\d{3}", r"stnlab-eval: test acc \d\.\d{3}"],
}


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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STNLAB_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("STNLAB_DATA_DIR", str(data_dir))  # the session's shared data cache
    monkeypatch.setenv("JUPYTER_PATH", str(python_kernel(tmp_path)))  # searched first
    src = str(REPO / "src")  # the kernel imports this checkout's stnlab
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])))
    workdir = tmp_path / "work"
    workdir.mkdir()

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()

    text = outputs_text(nb)
    assert "FAST=True" in text, "the notebook did not pick up STNLAB_NOTEBOOK_FAST=1"
    for pattern in EXPECTED.get(path.name, []):
        assert re.search(pattern, text), f"{path.name}: no output matching {pattern!r}"
    images = [out for cell in nb.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert images, f"{path.name}: drew no figure"
