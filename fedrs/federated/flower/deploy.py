"""Starting, joining and submitting to Flower deployments, securely by default.

* :func:`superlink_command` / :func:`supernode_command`: the ``flower-superlink`` /
  ``flower-supernode`` command lines, with TLS (the SuperLink: CA, certificate and key; a
  SuperNode: the CA it trusts) and SuperNode authentication (the SuperLink accepts only registered
  public keys; a SuperNode signs its requests with its private key). ``insecure`` (plaintext, no
  authentication) is a local-testing option and is refused on anything but a loopback address.
* :func:`write_connection`: a SuperLink connection in ``$FLWR_HOME/config.toml`` for ``flwr``
  (``root-certificates`` = the CA); :func:`register_node`: ``flwr supernode register``.
* :func:`submit`: ``flwr run`` of one fedrs configuration (:class:`OwnData`: SuperNodes with their
  own data, the server without any); :func:`run_local` / :class:`LocalFederation`: a whole
  deployment on 127.0.0.1, with TLS and authentication unless ``insecure``, optionally each
  SuperNode on its own data root (``node_data``), whose processes are all stopped when it ends,
  fails or is killed (:mod:`fedrs.federated.flower.reaper`).

Every Flower process fedrs starts runs offline (:data:`OFFLINE_ENV`). ``docs/flower.md`` walks
through a deployment on many machines.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fedrs.errors import FedrsError
from fedrs.federated.flower.credentials import TLSFiles, generate_dev_credentials
from fedrs.federated.flower.own_data import DATA_DIR, DATASET, OWN
from fedrs.federated.flower.reaper import MARKER_VAR, Watchdog
from fedrs.runs import RunFolder, load_run_config

logger = logging.getLogger(__name__)

#: set for every Flower process fedrs starts
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
               "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
#: the Flower app folder of a source checkout (``flwr run`` packages it)
APP_DIR = Path(__file__).resolve().parents[3] / "flower_app"
LOCAL_CONNECTION = "fedrs-local"
LOOPBACK = "127.0.0.1"
#: where the SuperLink's certificate and key, the CA and the node keys go in a local deployment's home
LOCAL_CERTS = "certs"


def flower_home() -> Path:
    """``$FLWR_HOME``, else ``~/.flwr`` (where ``flwr`` keeps its config.toml)."""
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")


def flower_env(home: str | Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, offline, with ``FLWR_HOME=home`` and this interpreter's scripts
    (``flwr``, ``flower-superlink``, ...) first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(home), "PATH": path, **(extra or {})}


def require_flower(env: Mapping[str, str]) -> None:
    """A readable error when Flower's commands are not installed."""
    if shutil.which("flwr", path=env["PATH"]) is None:
        raise FedrsError("Flower is not installed in this environment: pip install 'fedrs[flower]'")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_of(address: str) -> str:
    return address.rsplit(":", 1)[0] if ":" in address else address


def _refuse_public_insecure(host: str, what: str) -> None:
    if not is_loopback(host):
        raise FedrsError(f"{what} --insecure (no TLS, no authentication) is for local tests on 127.0.0.1 "
                         f"only, not {host}: create credentials with `fedrs flower certs` (docs/flower.md)")


# --- command lines -------------------------------------------------------------------------------

def superlink_command(*, host: str = LOOPBACK, port: int | None = None, tls: TLSFiles | None = None,
                      node_auth: bool = True, insecure: bool = False) -> list[str]:
    """``flower-superlink`` serving the Fleet, Control and Runtime APIs on ``host:port`` (one
    HTTPS port), with ``tls`` and, if ``node_auth``, only registered SuperNodes
    (``--enable-supernode-auth``). ``insecure``: plaintext, no authentication, loopback only."""
    cmd = ["flower-superlink", "--host", host, *(["--port", str(port)] if port else []),
           "--disable-runtime-dependency-installation"]
    if insecure:
        _refuse_public_insecure(host, "flower-superlink")
        return cmd + ["--insecure"]
    if tls is None:
        raise FedrsError("the SuperLink needs a CA certificate, its certificate and its key (or --insecure for "
                         "a local test): fedrs flower certs OUT_DIR creates development ones")
    tls.check()
    cmd += ["--ssl-ca-certfile", str(tls.ca_cert), "--ssl-certfile", str(tls.server_cert),
            "--ssl-keyfile", str(tls.server_key)]
    return cmd + (["--enable-supernode-auth"] if node_auth else [])


def node_config_arg(node_config: Mapping[str, int | float | str]) -> str:
    """``--node-config`` value: ``key=value`` pairs, strings quoted."""
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in node_config.items())


def supernode_command(*, superlink: str, node_config: Mapping[str, int | float | str],
                      ca_cert: str | Path | None = None, node_key: str | Path | None = None,
                      insecure: bool = False, port: int | None = None) -> list[str]:
    """``flower-supernode`` joining the SuperLink at ``superlink`` (``host:port``) over TLS,
    trusting ``ca_cert`` (``None``: the system's CAs), authenticated with ``node_key`` (an
    OpenSSH EC private key whose public half is registered on the SuperLink). ``port``: the
    SuperNode's own Runtime API port on 127.0.0.1 (distinct per SuperNode on one machine)."""
    cmd = ["flower-supernode", "--superlink", superlink, "--node-config", node_config_arg(node_config)]
    cmd += ["--port", str(port)] if port else []
    if insecure:
        if node_key is not None:
            raise FedrsError("SuperNode authentication needs TLS: drop --insecure or the node key")
        _refuse_public_insecure(_host_of(superlink), "flower-supernode")
        return cmd + ["--insecure"]
    for name, path in (("CA certificate", ca_cert), ("node key", node_key)):
        if path is not None and not Path(path).is_file():
            raise FedrsError(f"{name} {path} does not exist")
    cmd += ["--root-certificates", str(ca_cert)] if ca_cert else []
    return cmd + (["--auth-supernode-private-key", str(node_key)] if node_key else [])


def write_connection(home: str | Path, name: str, address: str, *, ca_cert: str | Path | None = None,
                     insecure: bool = False, default: bool = False) -> Path:
    """Add (or replace) the SuperLink connection ``name`` in ``home/config.toml``, the file
    ``flwr run``, ``flwr supernode register`` and :func:`submit` read: ``address``, and either the
    CA it trusts (``root-certificates``; ``None``: the system's CAs) or ``insecure = true``
    (loopback only). Other connections are kept. Returns the file."""
    import tomllib

    import tomli_w  # a Flower dependency

    if insecure:
        _refuse_public_insecure(_host_of(address), "a connection with")
    file = Path(home) / "config.toml"
    data = tomllib.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    links = data.setdefault("superlink", {})
    entry: dict[str, object] = {"address": address}
    if insecure:
        entry["insecure"] = True
    elif ca_cert is not None:
        if not Path(ca_cert).is_file():
            raise FedrsError(f"CA certificate {ca_cert} does not exist")
        entry["root-certificates"] = str(Path(ca_cert).resolve())
    links[name] = entry
    if default:
        links["default"] = name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    return file


def register_node(public_key: str | Path, connection: str, env: Mapping[str, str],
                  process_group: int | None = None, timeout: float = 120.0) -> int:
    """``flwr supernode register PUBLIC_KEY CONNECTION``: allow the SuperNode holding the private
    half of ``public_key`` (OpenSSH EC public key) to join; its node id."""
    cmd = ["flwr", "supernode", "register", str(public_key), connection, "--format", "json"]
    done = subprocess.run(cmd, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, process_group=process_group, check=False)
    start = done.stdout.find("{")
    try:
        reply = json.loads(done.stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        reply = {}
    if done.returncode != 0 or not reply.get("success"):
        detail = (done.stdout + done.stderr).strip().splitlines()
        raise FedrsError(f"could not register SuperNode key {public_key} on {connection}: "
                         f"{detail[-1] if detail else 'no output'}")
    return int(reply["node-id"])


# --- submitting a run ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OwnData:
    """A run whose SuperNodes bring their own data (app config ``client-data = "own"``):
    ``classes``, the run's classes file on the server (default: the registry's classes of
    ``data.dataset``); ``validation_dir`` / ``validation_dataset``, an optional validation
    dataset in a data root on the server."""

    classes: str | Path | None = None
    validation_dir: str | Path | None = None
    validation_dataset: str = ""

    def run_config(self) -> dict[str, str]:
        """The app config entries (absolute paths)."""
        items = {"client-data": OWN}
        for key, path in (("classes", self.classes), ("validation-dir", self.validation_dir)):
            if path:
                if not Path(path).exists():
                    raise FedrsError(f"{key} {path} does not exist")
                items[key] = str(Path(path).resolve())
        if self.validation_dataset:
            items["validation-dataset"] = self.validation_dataset
        return items


def run_config_arg(params: str | Path, out: str | Path, datasets: str = "", force: bool = False,
                   own_data: OwnData | None = None) -> str:
    """``flwr run --run-config`` value: absolute paths as TOML strings (``own_data``: the
    SuperNodes' own data, see :class:`OwnData`)."""
    items = {"params-file": str(Path(params).resolve()), "out-dir": str(Path(out).resolve()),
             **(own_data.run_config() if own_data else {}), "datasets": datasets}
    quoted = [k for k, v in items.items() if '"' in v]
    if quoted:
        raise FedrsError(f"{quoted[0]} contains a double quote, which flwr run --run-config cannot pass")
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in items.items())
    return text + (" force=true" if force else "")


def submit(params: str | Path, out: str | Path, connection: str, env: Mapping[str, str], *,
           app: str | Path = APP_DIR, datasets: str = "", force: bool = False, own_data: OwnData | None = None,
           stdout: IO | None = None, timeout: float | None = None, process_group: int | None = None) -> dict:
    """``flwr run APP CONNECTION --stream`` for one configuration; the run folder's metrics.
    ``own_data``: the SuperNodes bring their own data (each names it in its node config)."""
    app = Path(app)
    if not (app / "pyproject.toml").is_file():
        raise FedrsError(f"no Flower app at {app}: pass the fedrs checkout's flower_app/ folder (--app)")
    require_flower(env)
    cfg = load_run_config(params)
    cmd = ["flwr", "run", str(app), connection, "--stream", "--run-config",
           run_config_arg(params, out, datasets, force, own_data)]
    subprocess.run(cmd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                   stderr=subprocess.STDOUT if stdout else None, timeout=timeout, check=False,
                   process_group=process_group)
    folder = RunFolder(out)
    if folder.status != "finished" or not folder.same_params(cfg):
        raise FedrsError(f"the Flower run did not finish {out}: see the ServerApp's log (flwr run --stream output)")
    return folder.read_metrics()


# --- a deployment on this machine ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class _SignalsAsExit:
    """While active (main thread only), SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` so
    that ``with`` blocks unwind and stop what they started, as Ctrl-C (KeyboardInterrupt) does."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.previous: dict[int, object] = {}

    @staticmethod
    def _raise(signum, frame) -> None:
        raise SystemExit(128 + signum)

    def __enter__(self) -> _SignalsAsExit:
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._raise) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


class LocalFederation:
    """A SuperLink and ``num_clients`` SuperNodes (``partition-id=i``) on 127.0.0.1, as a context
    manager; ``node_config[i]``: more node config of SuperNode ``i`` (its own data: ``data-dir``,
    ``dataset``).

    By default the connections use TLS and SuperNode authentication, as a real deployment does:
    development credentials are generated in ``home/certs`` (a CA, the SuperLink's certificate
    for 127.0.0.1, one key pair per SuperNode), the SuperLink runs with
    ``--enable-supernode-auth`` and each SuperNode's public key is registered before it starts.
    ``insecure=True`` runs plaintext without authentication (a local-testing option).

    ``home`` is the ``FLWR_HOME``: the connection ``fedrs-local`` (the default) in its
    config.toml, logs in ``home/logs/<name>.log``; ``remove_home`` deletes it at the end.

    Every process of the deployment (those started here, and everything Flower starts from them)
    is stopped when the block ends, raises, or this process gets SIGINT, SIGTERM or SIGHUP; if
    this process is killed outright, its :class:`~fedrs.federated.flower.reaper.Watchdog` does it
    (and removes ``home`` if ``remove_home``). Use it from the main thread to get the signals.
    """

    def __init__(self, num_clients: int, home: str | Path, extra_env: Mapping[str, str] | None = None, *,
                 insecure: bool = False, remove_home: bool = False, startup_timeout: float = 60.0,
                 grace: float = 10.0, node_config: Sequence[Mapping[str, str]] | None = None):
        if num_clients < 1:
            raise FedrsError(f"a federation needs at least one SuperNode, got {num_clients}")
        if node_config is not None and len(node_config) != num_clients:
            raise FedrsError(f"{len(node_config)} node configs for {num_clients} SuperNodes")
        self.node_config = [dict(c) for c in node_config] if node_config is not None else [{}] * num_clients
        self.num_clients, self.home, self.insecure = num_clients, Path(home), insecure
        self.token = secrets.token_hex(12)
        self.env = flower_env(self.home, {**(extra_env or {}), MARKER_VAR: self.token})
        self.logs = self.home / "logs"
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.remove_home, self.startup_timeout, self.grace = remove_home, startup_timeout, grace
        self.processes: dict[str, subprocess.Popen] = {}
        self.watchdog: Watchdog | None = None
        self.node_ids: list[int] = []  # registered SuperNodes (authenticated deployments)
        self._signals = _SignalsAsExit()

    @property
    def group(self) -> int | None:
        """The process group of the deployment (pass it to every process started for it)."""
        return self.watchdog.group if self.watchdog else None

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """Start ``cmd`` as part of the deployment, logging to ``logs/<name>.log``."""
        with open(self.logs / f"{name}.log", "w") as log:
            proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=self.group)
        self.processes[name] = proc
        return proc

    def __enter__(self) -> LocalFederation:
        require_flower(self.env)
        self._signals.__enter__()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.watchdog = Watchdog(self.token, [self.home] if self.remove_home else [], self.grace)
            self.logs.mkdir(parents=True, exist_ok=True)
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        tls, keys = None, []
        if not self.insecure:
            creds = generate_dev_credentials(self.home / LOCAL_CERTS, self.num_clients)
            tls, keys = creds.tls, [k for k in creds.nodes]
        write_connection(self.home, LOCAL_CONNECTION, self.address, ca_cert=tls.ca_cert if tls else None,
                         insecure=self.insecure, default=True)
        link = self.start("superlink", superlink_command(host=LOOPBACK, port=self.port, tls=tls,
                                                         node_auth=not self.insecure, insecure=self.insecure))
        deadline = time.monotonic() + self.startup_timeout
        while not self._listening():
            if link.poll() is not None or time.monotonic() > deadline:
                raise FedrsError(f"the SuperLink did not start: {self.log_tail('superlink')}")
            time.sleep(0.3)
        self.node_ids = [register_node(k.public, LOCAL_CONNECTION, self.env, self.group) for k in keys]
        for i in range(self.num_clients):
            self.start(f"supernode{i}", supernode_command(
                superlink=self.address, node_config={"partition-id": i, "num-partitions": self.num_clients,
                                                     **self.node_config[i]},
                ca_cert=tls.ca_cert if tls else None, node_key=keys[i].private if keys else None,
                insecure=self.insecure, port=free_port()))

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listening(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log_tail(self, name: str, chars: int = 3000) -> str:
        file = self.logs / f"{name}.log"
        return file.read_text(errors="replace")[-chars:] if file.is_file() else "(no log)"

    def keep_logs(self, folder: str | Path) -> Path:
        """Copy the deployment's logs to ``folder`` (they go with ``home`` otherwise)."""
        folder = Path(folder)
        shutil.copytree(self.logs, folder, dirs_exist_ok=True)
        return folder

    def stop(self) -> None:
        """Stop every process of the deployment (SIGTERM, SIGKILL after ``grace`` seconds) and,
        if ``remove_home``, remove ``home``; idempotent."""
        self._signals.__exit__()  # a second signal now takes its usual course; the watchdog still cleans up
        try:
            if self.watchdog is not None:
                self.watchdog.close()
            for proc in self.processes.values():
                try:
                    proc.wait(timeout=self.grace + 10)
                except subprocess.TimeoutExpired:  # only if the watchdog failed
                    proc.kill()
                    proc.wait()
        finally:
            self.watchdog = None
            if self.remove_home:
                shutil.rmtree(self.home, ignore_errors=True)


def node_data_config(node_data: Sequence[str | Path], node_datasets: Sequence[str] | None = None
                     ) -> list[dict[str, str]]:
    """The node configs (``data-dir``, ``dataset``) of SuperNodes with their own data: one data
    root each (absolute), and optionally the dataset's name in it."""
    names = list(node_datasets or [])
    if names and len(names) != len(node_data):
        raise FedrsError(f"{len(names)} dataset names for {len(node_data)} node data folders: give one per folder")
    out = []
    for i, folder in enumerate(node_data):
        if not Path(folder).is_dir():
            raise FedrsError(f"node data folder {folder} is not a folder (a data root: fedrs data import PATH "
                             f"--name NAME --root {folder})")
        entry = {DATA_DIR: str(Path(folder).resolve())}
        if names and names[i]:
            entry[DATASET] = names[i]
        out.append(entry)
    return out


def run_local(params: str | Path, out: str | Path, *, num_clients: int | None = None, datasets: str = "",
              force: bool = False, insecure: bool = False, home: str | Path | None = None,
              extra_env: Mapping[str, str] | None = None, stdout: IO | None = None,
              timeout: float | None = None, node_data: Sequence[str | Path] | None = None,
              node_datasets: Sequence[str] | None = None, own_data: OwnData | None = None) -> dict:
    """Run a configuration as a loopback Flower deployment (TLS + SuperNode authentication unless
    ``insecure``); its metrics.

    ``num_clients`` defaults to the config's ``data.num_clients``. ``node_data``: SuperNode ``i``
    brings its own data, the dataset imported in the data root ``node_data[i]`` (named
    ``node_datasets[i]`` if the root holds several), and the server loads none (``own_data``:
    its classes file and validation dataset, if any). ``home`` (``FLWR_HOME``: Flower's state,
    credentials, logs) is kept if given; by default it is a temporary folder that is always
    removed, also when this process is killed. When the run fails, the logs are copied to
    ``OUT/flower-logs`` first and the error names them.
    """
    cfg = load_run_config(params)
    n = num_clients or cfg.data.num_clients
    nodes = None
    if node_data:
        if len(node_data) != cfg.data.num_clients or (num_clients and num_clients != len(node_data)):
            raise FedrsError(f"{len(node_data)} node data folders but the run has data.num_clients="
                             f"{cfg.data.num_clients}: give one folder per client")
        nodes, n, own_data = node_data_config(node_data, node_datasets), len(node_data), own_data or OwnData()
    elif own_data is not None or node_datasets:
        raise FedrsError("own data needs --node-data DIR ... (one data root per SuperNode)")
    temporary = home is None
    home = Path(tempfile.mkdtemp(prefix="fedrs-flower-")) if temporary else Path(home)
    with LocalFederation(n, home, extra_env, insecure=insecure, remove_home=temporary, node_config=nodes) as fed:
        try:
            return submit(params, out, LOCAL_CONNECTION, fed.env, datasets=datasets, force=force, stdout=stdout,
                          timeout=timeout, process_group=fed.group, own_data=own_data)
        except (FedrsError, subprocess.TimeoutExpired) as exc:
            logs = fed.keep_logs(Path(out) / "flower-logs") if temporary else fed.logs
            raise FedrsError(f"{exc} (Flower logs: {logs})") from exc


__all__ = [
    "OFFLINE_ENV", "APP_DIR", "LOCAL_CONNECTION", "flower_home", "flower_env", "require_flower", "is_loopback",
    "superlink_command", "node_config_arg", "supernode_command", "write_connection", "register_node",
    "OwnData", "run_config_arg", "submit", "free_port", "LocalFederation", "node_data_config", "run_local",
]
