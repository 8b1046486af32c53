"""Every numbered notebook runs top to bottom on a small setting, and its .ipynb matches its .py."""

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_name.py found"


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_is_paired_and_stored_without_outputs(script):
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb} missing: run `jupytext --sync {script}`"
    stored = nbformat.read(ipynb, as_version=4)
    paired = jupytext.read(script)
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
    assert code(stored) == code(paired), f"{ipynb} is out of sync with {script}: run `jupytext --sync {script}`"
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), f"{ipynb} has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(script, tmp_path, monkeypatch):
    monkeypatch.setenv("SGLAB_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("SGLAB_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("PYTHONPATH", str(script.parents[1]))
    notebook = jupytext.read(script)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
