"""The notebooks name the project's Jupyter kernel, and that kernel runs this project's fedrs.

``make setup`` registers the kernel ``fedrs`` (``ipykernel install --user``), so a notebook opened
in any JupyterLab of this user starts in the project's virtual environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = "fedrs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_names_the_project_kernel(notebook):
    spec = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
    assert spec["name"] == KERNEL, f"{notebook.name}: kernelspec {spec['name']!r}, expected {KERNEL!r}"


@pytest.mark.slow
def test_project_kernel_is_registered_and_imports_fedrs():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import start_new_kernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"Jupyter kernel {KERNEL!r} is not registered: run `make setup` "
                    f"(it runs `python -m ipykernel install --user --name {KERNEL}`)")
    argv0 = Path(KernelSpecManager().get_kernel_spec(KERNEL).argv[0])
    assert argv0.is_file(), (f"Jupyter kernel {KERNEL!r} points at {argv0}, which does not exist: "
                             f"run `make setup` in this checkout to register it again")
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=120)
    try:
        outputs = []
        reply = kc.execute_interactive(
            "import fedrs, open_clip, torch; print(fedrs.__version__, torch.__version__)",
            timeout=120, output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        import fedrs
        import torch

        assert text.split() == [fedrs.__version__, torch.__version__]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
