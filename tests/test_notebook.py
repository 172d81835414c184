"""The what-if notebook runs top to bottom (with nbclient when installed, else cell by cell)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "notebooks" / "what_if.ipynb"


def test_what_if_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the API caches unnamed sweeps in temporary folders
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    try:
        import nbclient
        import nbformat
    except ImportError:
        _exec_cells(tmp_path)
        return
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 3  # the figures render inline
    nbformat.write(notebook, tmp_path / "what_if.executed.ipynb")


def _exec_cells(tmp_path: Path) -> None:
    """Without nbclient: run the code cells in one namespace, skipping IPython magics."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {"__name__": "__notebook__"}
    cwd = os.getcwd()
    os.chdir(NOTEBOOK.parent)
    try:
        for cell in cells:
            if cell["cell_type"] == "code":
                source = "".join(line for line in cell["source"] if not line.lstrip().startswith("%"))
                exec(compile(source, f"{NOTEBOOK.name}", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    if not namespace.get("sweep"):
        pytest.fail("the notebook did not define its sweep")
