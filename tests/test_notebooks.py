"""The notebooks run end to end with their default (tiny) parameters: nbval, as CI runs it.

Equivalent to ``pytest --nbval-lax --nbval-current-env notebooks/``: every cell must run without
error, and the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` must equal the committed ones.
Needs the shipped data (imported from ``$FEDRS_SOURCE`` on first use) and builds the tiny
backbone if it is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_default_parameters(notebook):
    source = Path(os.environ.get("FEDRS_SOURCE") or REPO.parent / "shared" / "data")
    if not any((REPO / "data").glob("*/fedrs_manifest.json")) and not source.exists():
        pytest.skip(f"no imported data in {REPO / 'data'} and no shipped data at {source} (set FEDRS_SOURCE)")
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "FEDRS_SOURCE": str(source)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         str(notebook.relative_to(REPO))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def _code_imports(notebook: Path) -> set[str]:
    """Modules the notebook's code cells import (IPython magics skipped)."""
    import ast
    import json

    names: set[str] = set()
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_the_library_not_its_command_line(notebook):
    """A notebook is a face like the CLI: it calls library functions, never a CLI module."""
    faces = sorted(n for n in _code_imports(notebook)
                   if n.split(".")[:2] == ["fedrs", "cli"] or "commands" in n.split("."))
    assert not faces, f"{notebook.name} imports {faces}: call the library function the command wraps"
