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
            "import fedrs, open_clip, torch; print(fedrs.__version__, torch.__version__, fedrs.__file__)",
            timeout=120, output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        import torch

        import fedrs

        version, torch_version, location = text.split()
        assert (version, torch_version) == (fedrs.__version__, torch.__version__)
        assert Path(location).resolve().is_relative_to(REPO), (
            f"the {KERNEL!r} kernel imports fedrs from {location}, not from this checkout {REPO}: "
            "run `make setup` here to register this checkout's venv")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_jupyterlab_serves_the_notebooks_with_the_project_kernel(tmp_path):
    """A headless JupyterLab on loopback lists the fedrs kernel and opens every notebook."""
    import json as _json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "fedrs-test"
    env = {**__import__("os").environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def get(path: str):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                status, body = get("/api/kernelspecs")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start (exit code {server.poll()})")
                time.sleep(0.5)
        assert KERNEL in _json.loads(body)["kernelspecs"], "the fedrs kernel is not offered: run `make setup`"
        assert get("/lab")[0] == 200
        for notebook in NOTEBOOKS:
            status, body = get(f"/api/contents/notebooks/{notebook.name}?content=1")
            model = _json.loads(body)["content"]
            assert status == 200 and model["metadata"]["kernelspec"]["name"] == KERNEL
            assert any("parameters" in c["metadata"].get("tags", []) for c in model["cells"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
