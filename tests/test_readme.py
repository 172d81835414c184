"""The README's Python examples marked as tested run as written (from the repository root)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- tested: tests/test_readme.py runs this block -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*```python\n(.*?)```", re.DOTALL)


def _python_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_marks_its_api_example() -> None:
    assert _python_blocks(), f"no ```python block follows {MARKER!r} in README.md"


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(index: int, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the API caches unnamed sweeps
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        exec(compile(_python_blocks()[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    assert capsys.readouterr().out
