"""``fedrs flower local|submit``: one fedrs configuration through Flower.

``fedrs flower local PARAMS.yaml --out DIR`` runs it on this machine as a real deployment on
loopback (a SuperLink, one SuperNode per client, ``flwr run``) and stops every process it started;
``fedrs flower submit PARAMS.yaml --out DIR --connection NAME`` sends it to a running federation
(SuperLink + SuperNodes on many machines, ``docs/flower.md``). Both write the same run folder as
``fedrs run`` (``"engine": "flower"`` in metrics.json) and run Flower offline: no telemetry, no
update check, no runtime dependency installation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from fedrs.errors import FedrsError
from fedrs.runs import RunFolder, load_run_config

#: set for every Flower process fedrs starts
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
               "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
#: the Flower app folder of a source checkout (``flwr run`` packages it)
APP_DIR = Path(__file__).resolve().parents[3] / "flower_app"
LOCAL_CONNECTION = "fedrs-local"


def flower_env(home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, offline, with ``FLWR_HOME=home`` and this interpreter's scripts
    (``flwr``, ``flower-superlink``, ...) first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(home), "PATH": path, **(extra or {})}


def require_flower(env: dict[str, str]) -> None:
    """A readable error when Flower's commands are not installed."""
    if shutil.which("flwr", path=env["PATH"]) is None:
        raise FedrsError("Flower is not installed in this environment: pip install 'fedrs[flower]'")


def run_config_arg(params: str | Path, out: str | Path, datasets: str = "", force: bool = False) -> str:
    """``flwr run --run-config`` value: absolute paths as TOML strings."""
    items = {"params-file": str(Path(params).resolve()), "out-dir": str(Path(out).resolve()), "datasets": datasets}
    quoted = [k for k, v in items.items() if '"' in v]
    if quoted:
        raise FedrsError(f"{quoted[0]} contains a double quote, which flwr run --run-config cannot pass")
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in items.items())
    return text + (" force=true" if force else "")


def submit(params: str | Path, out: str | Path, connection: str, env: dict[str, str], *, app: str | Path = APP_DIR,
           datasets: str = "", force: bool = False, stdout: IO | None = None, timeout: float | None = None) -> dict:
    """``flwr run APP CONNECTION --stream`` for one configuration; the run folder's metrics."""
    app = Path(app)
    if not (app / "pyproject.toml").is_file():
        raise FedrsError(f"no Flower app at {app}: pass the fedrs checkout's flower_app/ folder (--app)")
    require_flower(env)
    cfg = load_run_config(params)
    cmd = ["flwr", "run", str(app), connection, "--stream", "--run-config",
           run_config_arg(params, out, datasets, force)]
    subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.STDOUT if stdout else None, timeout=timeout,
                   check=False)
    folder = RunFolder(out)
    if folder.status != "finished" or not folder.same_params(cfg):
        raise FedrsError(f"the Flower run did not finish {out}: see the ServerApp's log (flwr run --stream output)")
    return folder.read_metrics()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalFederation:
    """A SuperLink and ``num_clients`` SuperNodes (``partition-id=i``) on 127.0.0.1, as a context
    manager: on exit every process started, and everything they spawned, is stopped by its id.

    ``home`` is the ``FLWR_HOME`` (a connection named ``fedrs-local`` is written to its
    config.toml); each process logs to ``home/logs/<name>.log``.
    """

    def __init__(self, num_clients: int, home: str | Path, extra_env: dict[str, str] | None = None,
                 startup_timeout: float = 60.0):
        self.num_clients, self.home = num_clients, Path(home)
        self.env = flower_env(self.home, extra_env)
        self.logs = self.home / "logs"
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.processes: list[subprocess.Popen] = []
        self.stopped: list[int] = []  # every pid stopped on exit (the started ones and their children)

    def _start(self, name: str, *cmd: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as log:
            proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(proc)
        return proc

    def __enter__(self) -> LocalFederation:
        require_flower(self.env)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{LOCAL_CONNECTION}"\n\n[superlink.{LOCAL_CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n', encoding="utf-8")
        try:
            link = self._start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1",
                               "--port", str(self.port), "--disable-runtime-dependency-installation")
            deadline = time.monotonic() + self.startup_timeout
            while not self._listening():
                if link.poll() is not None or time.monotonic() > deadline:
                    raise FedrsError(f"the SuperLink did not start: {self.log_tail('superlink')}")
                time.sleep(0.3)
            for i in range(self.num_clients):
                self._start(f"supernode{i}", "flower-supernode", "--insecure", "--superlink",
                            f"127.0.0.1:{self.port}", "--node-config",
                            f"partition-id={i} num-partitions={self.num_clients}", "--port", str(free_port()))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log_tail(self, name: str, chars: int = 3000) -> str:
        file = self.logs / f"{name}.log"
        return file.read_text(errors="replace")[-chars:] if file.is_file() else "(no log)"

    def stop(self) -> None:
        """Terminate the started processes and their descendants (SIGTERM, then SIGKILL after 15 s)."""
        import psutil

        tree = []
        for proc in self.processes:
            try:
                parent = psutil.Process(proc.pid)
                tree += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in tree:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for proc in self.processes:
            proc.wait(timeout=5)
        self.stopped += [p.pid for p in tree]
        self.processes = []


def run_local(params: str | Path, out: str | Path, *, num_clients: int | None = None, datasets: str = "",
              force: bool = False, home: str | Path | None = None, extra_env: dict[str, str] | None = None,
              stdout: IO | None = None, timeout: float | None = None) -> dict:
    """Run a configuration as a loopback Flower deployment; its metrics.

    ``num_clients`` defaults to the config's ``data.num_clients``; ``home`` (``FLWR_HOME``, logs)
    defaults to a temporary folder, removed after a successful run and kept (and named in the
    error) after a failed one.
    """
    n = num_clients or load_run_config(params).data.num_clients
    keep = home is not None
    home = Path(home) if keep else Path(tempfile.mkdtemp(prefix="fedrs-flower-"))
    try:
        with LocalFederation(n, home, extra_env) as fed:
            metrics = submit(params, out, LOCAL_CONNECTION, fed.env, datasets=datasets, force=force,
                             stdout=stdout, timeout=timeout)
    except (FedrsError, subprocess.TimeoutExpired) as exc:
        raise FedrsError(f"{exc} (Flower logs: {home / 'logs'})") from exc
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return metrics


def _print(metrics: dict, out: str) -> None:
    keys = ("engine", "method", "backbone", "dataset", "split", "personalised_accuracy", "global_accuracy",
            "upload_values_per_client_round", "wall_time_s")
    json.dump({k: metrics.get(k) for k in keys} | {"out": out}, sys.stdout, indent=2)
    print()


def _cmd_local(args: argparse.Namespace) -> int:
    _print(run_local(args.params, args.out, num_clients=args.clients, datasets=args.datasets, force=args.force),
           args.out)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    env = flower_env(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")
    _print(submit(args.params, args.out, args.connection, env, app=args.app, datasets=args.datasets,
                  force=args.force), args.out)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("params", metavar="PARAMS.yaml")
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder (absolute on the SuperLink's machine)")
    parser.add_argument("--datasets", default="", metavar="MODULE:FUNCTION",
                        help="function(data_cfg) -> datasets, importable on every machine (default: $FEDRS_DATA)")
    parser.add_argument("--force", action="store_true", help="start over even if DIR holds a finished run")


def register(subparsers: argparse._SubParsersAction) -> None:
    flower = subparsers.add_parser(
        "flower", help="run a configuration with Flower (SuperLink + one SuperNode per client)",
        description="Run PARAMS.yaml through Flower's deployment runtime into the same run folder as "
                    "`fedrs run` (metrics.json says engine: flower). See docs/flower.md.")
    sub = flower.add_subparsers(dest="flower_command", metavar="COMMAND")
    sub.required = True
    local = sub.add_parser("local", help="on this machine: loopback SuperLink + SuperNodes, stopped afterwards")
    _common(local)
    local.add_argument("--clients", type=int, default=None, help="SuperNodes to start (default: data.num_clients)")
    local.set_defaults(func=_cmd_local)
    remote = sub.add_parser("submit", help="to a running federation (flwr run APP CONNECTION)")
    _common(remote)
    remote.add_argument("--connection", required=True,
                        help="a SuperLink connection of $FLWR_HOME/config.toml (see docs/flower.md)")
    remote.add_argument("--app", default=str(APP_DIR), help=f"the Flower app folder (default: {APP_DIR})")
    remote.set_defaults(func=_cmd_submit)


__all__ = ["OFFLINE_ENV", "APP_DIR", "flower_env", "require_flower", "run_config_arg", "submit", "LocalFederation", "run_local",
           "register"]
