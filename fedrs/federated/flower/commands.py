"""``fedrs flower ...``: one fedrs configuration through Flower, over TLS with authenticated
SuperNodes by default (the library: :mod:`fedrs.federated.flower.deploy`,
:mod:`fedrs.federated.flower.credentials`; the guide: ``docs/flower.md``).

* ``local PARAMS.yaml --out DIR``: a whole deployment on 127.0.0.1 (SuperLink, one SuperNode per
  client, ``flwr run``), TLS + SuperNode authentication with throw-away credentials unless
  ``--insecure``; every process it starts is stopped when it ends, fails or is killed;
  ``--node-data DIR1 DIR2 ...``: each SuperNode on its own data root, the server on none;
* ``certs OUT_DIR [--nodes N] [--host NAME ...]``: a development CA, the SuperLink's certificate
  and key, N SuperNode key pairs; ``node-key OUT_DIR --name NAME``: one SuperNode key pair (made
  on the SuperNode's own machine);
* ``superlink``, ``supernode``: start Flower's SuperLink / join as a SuperNode with those files
  (``supernode --data DIR [--dataset NAME]``: with the institution's own data);
* ``connection NAME``: a SuperLink connection for ``flwr`` in ``$FLWR_HOME/config.toml``;
  ``register KEY.pub --connection NAME``: admit a SuperNode's public key;
* ``submit PARAMS.yaml --out DIR --connection NAME``: ``flwr run`` on a running federation.

Every Flower process runs offline: no telemetry, no update check, no runtime dependency
installation.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from fedrs.errors import FedrsError
from fedrs.federated.flower.credentials import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    TLSFiles,
    generate_dev_credentials,
    write_node_key,
)
from fedrs.federated.flower.deploy import (
    APP_DIR,
    LOOPBACK,
    OwnData,
    flower_env,
    flower_home,
    node_data_config,
    register_node,
    require_flower,
    run_local,
    submit,
    superlink_command,
    supernode_command,
    write_connection,
)
from fedrs.federated.flower.own_data import load_node_dataset


def _print(metrics: dict, out: str) -> None:
    keys = ("engine", "method", "backbone", "dataset", "split", "personalised_accuracy", "global_accuracy",
            "upload_values_per_client_round", "wall_time_s")
    json.dump({k: metrics.get(k) for k in keys} | {"out": out}, sys.stdout, indent=2)
    print()


def _exec(cmd: list[str]) -> int:
    """Become ``cmd`` (a Flower binary) with the offline environment: signals reach it directly."""
    env = flower_env(flower_home())
    require_flower(env)
    print("fedrs: " + shlex.join(cmd), file=sys.stderr, flush=True)
    os.execvpe(cmd[0], cmd, env)
    return 1  # not reached


def _own_data(args: argparse.Namespace, own: bool) -> OwnData | None:
    """The server-side settings of a run whose SuperNodes bring their own data (``own``)."""
    given = [f for f, v in (("--classes", args.classes), ("--validation", args.validation),
                            ("--validation-dataset", args.validation_dataset)) if v]
    if not own:
        if given:
            raise FedrsError(f"{', '.join(given)} apply to SuperNodes with their own data "
                             f"({'--node-data' if hasattr(args, 'node_data') else '--own-data'})")
        return None
    return OwnData(args.classes, args.validation, args.validation_dataset or "")


def _cmd_local(args: argparse.Namespace) -> int:
    own = bool(args.node_data)
    _print(run_local(args.params, args.out, num_clients=args.clients, datasets=args.datasets, force=args.force,
                     insecure=args.insecure, node_data=args.node_data, node_datasets=args.node_dataset,
                     own_data=_own_data(args, own)), args.out)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    env = flower_env(flower_home())
    _print(submit(args.params, args.out, args.connection, env, app=args.app, datasets=args.datasets,
                  force=args.force, own_data=_own_data(args, args.own_data)), args.out)
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    creds = generate_dev_credentials(args.out_dir, args.nodes, args.host, args.days)
    print(f"development credentials in {creds.folder} (cryptography, ECDSA P-384):")
    print(f"  to every SuperNode and flwr user: {creds.tls.ca_cert.name}")
    print(f"  SuperLink only:                   {creds.tls.server_cert.name}, {creds.tls.server_key.name}")
    print(f"  operator only (signs):            {creds.ca_key.name}")
    for i, key in enumerate(creds.nodes):
        print(f"  SuperNode {i}: {key.private.name} (its machine only); register {key.public.name}")
    return 0


def _cmd_node_key(args: argparse.Namespace) -> int:
    key = write_node_key(args.out_dir, args.name)
    print(f"private key {key.private} (keep it on this machine: flower-supernode --auth-supernode-private-key)")
    print(f"public key  {key.public} (send it to the SuperLink's operator: flwr supernode register)")
    return 0


def _tls_files(args: argparse.Namespace) -> TLSFiles | None:
    if args.insecure:
        return None
    folder = Path(args.certs) if args.certs else None
    pick = {"ca": CA_CERT, "cert": SERVER_CERT, "key": SERVER_KEY}
    paths = {k: getattr(args, k) or (folder / name if folder else None) for k, name in pick.items()}
    missing = [f"--{k}" for k, v in paths.items() if v is None]
    if missing:
        raise FedrsError(f"the SuperLink needs {', '.join(missing)} (or --certs DIR holding {CA_CERT}, {SERVER_CERT}, "
                         f"{SERVER_KEY}); --insecure only for a local test")
    return TLSFiles(Path(paths["ca"]), Path(paths["cert"]), Path(paths["key"]))


def _cmd_superlink(args: argparse.Namespace) -> int:
    return _exec(superlink_command(host=args.host, port=args.port, tls=_tls_files(args),
                                   node_auth=not args.no_node_auth, insecure=args.insecure))


def _cmd_supernode(args: argparse.Namespace) -> int:
    if not args.insecure and args.key is None and not args.no_node_auth:
        raise FedrsError("a SuperNode authenticates with its private key: --key FILE (fedrs flower node-key), "
                         "or --no-node-auth if the SuperLink does not require it")
    config = {"partition-id": args.partition_id, "num-partitions": args.num_partitions}
    if args.data:
        entry = node_data_config([args.data], [args.dataset or ""])[0]
        dataset = load_node_dataset(entry["data-dir"], args.dataset)  # fail now, not at the first message
        print(f"fedrs: SuperNode data: {dataset.name} ({len(dataset)} images, {dataset.num_classes} classes) in "
              f"{entry['data-dir']}", file=sys.stderr)
        config.update(entry)
    elif args.dataset:
        raise FedrsError("--dataset names a dataset in this SuperNode's own data root: give the root with --data DIR")
    return _exec(supernode_command(superlink=args.superlink, node_config=config, ca_cert=args.ca,
                                   node_key=args.key, insecure=args.insecure, port=args.port))


def _cmd_connection(args: argparse.Namespace) -> int:
    if not args.insecure and args.ca is None and not args.system_cas:
        raise FedrsError("name the CA the SuperLink's certificate is signed by: --ca ca.crt "
                         "(--system-cas if a public CA signed it; --insecure only for a local test)")
    file = write_connection(flower_home(), args.name, args.address, ca_cert=None if args.system_cas else args.ca,
                            insecure=args.insecure, default=args.default)
    print(f"connection {args.name!r} -> {args.address} written to {file}")
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    env = flower_env(flower_home())
    require_flower(env)
    for key in args.public_keys:
        print(f"{key}: SuperNode {register_node(key, args.connection, env)} registered")
    return 0


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("params", metavar="PARAMS.yaml")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the run folder (absolute on the SuperLink's machine)")
    parser.add_argument("--datasets", default="", metavar="MODULE:FUNCTION",
                        help="function(data_cfg) -> datasets, importable on every machine (default: $FEDRS_DATA)")
    parser.add_argument("--force", action="store_true", help="start over even if DIR holds a finished run")
    parser.add_argument("--classes", metavar="FILE", help="own data: the run's classes, one per line (default: "
                                                          "the registry's classes of data.dataset)")
    parser.add_argument("--validation", metavar="DIR", help="own data: a data root on the server holding a "
                                                            "validation dataset (validation_acc)")
    parser.add_argument("--validation-dataset", metavar="NAME", help="its name (if DIR holds several)")


INSECURE_HELP = "plaintext, no SuperNode authentication: local tests on 127.0.0.1 only"


def register(subparsers: argparse._SubParsersAction) -> None:
    flower = subparsers.add_parser(
        "flower", help="run a configuration with Flower (SuperLink + one SuperNode per client, TLS)",
        description="Run PARAMS.yaml through Flower's deployment runtime into the same run folder as "
                    "`fedrs run` (metrics.json says engine: flower), over TLS with authenticated "
                    "SuperNodes. See docs/flower.md.")
    sub = flower.add_subparsers(dest="flower_command", metavar="COMMAND")
    sub.required = True

    local = sub.add_parser("local", help="on this machine: loopback SuperLink + SuperNodes (TLS + node auth), "
                                         "all stopped afterwards")
    _run_options(local)
    local.add_argument("--clients", type=int, default=None, help="SuperNodes to start (default: data.num_clients)")
    local.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    local.add_argument("--node-data", nargs="+", metavar="DIR",
                       help="SuperNode i on its own data: the data root DIR_i (fedrs data import PATH --name NAME "
                            "--root DIR_i), one per client; the server loads no data")
    local.add_argument("--node-dataset", nargs="+", metavar="NAME",
                       help="the dataset's name in each --node-data root (if a root holds several)")
    local.set_defaults(func=_cmd_local)

    remote = sub.add_parser("submit", help="to a running federation (flwr run APP CONNECTION)")
    _run_options(remote)
    remote.add_argument("--connection", required=True,
                        help="a SuperLink connection of $FLWR_HOME/config.toml (fedrs flower connection)")
    remote.add_argument("--app", default=str(APP_DIR), help=f"the Flower app folder (default: {APP_DIR})")
    remote.add_argument("--own-data", action="store_true",
                        help="the SuperNodes bring their own data (fedrs flower supernode --data); "
                             "the server loads none")
    remote.set_defaults(func=_cmd_submit)

    certs = sub.add_parser("certs", help="development CA, SuperLink certificate + key, SuperNode key pairs",
                           description="Write a development CA (ca.crt, ca.key), the SuperLink's certificate and "
                                       "key (server.pem, server.key; valid for localhost, 127.0.0.1, ::1 and each "
                                       "--host) and --nodes SuperNode key pairs (node-i.key, node-i.pub), with the "
                                       "cryptography package. Never overwrites.")
    certs.add_argument("out_dir", metavar="OUT_DIR")
    certs.add_argument("--nodes", type=int, default=0, help="SuperNode key pairs to create (default 0)")
    certs.add_argument("--host", action="append", default=[], metavar="NAME",
                       help="a name or IP address the SuperNodes use to reach the SuperLink (repeatable)")
    certs.add_argument("--days", type=int, default=365, help="validity (default 365)")
    certs.set_defaults(func=_cmd_certs)

    node_key = sub.add_parser("node-key", help="one SuperNode key pair (on the SuperNode's machine)")
    node_key.add_argument("out_dir", metavar="OUT_DIR")
    node_key.add_argument("--name", default="supernode", help="file names NAME.key, NAME.pub (default supernode)")
    node_key.set_defaults(func=_cmd_node_key)

    link = sub.add_parser("superlink", help="start flower-superlink with TLS and SuperNode authentication")
    link.add_argument("--certs", metavar="DIR", help=f"folder with {CA_CERT}, {SERVER_CERT}, {SERVER_KEY}")
    link.add_argument("--ca", help="CA certificate (overrides --certs)")
    link.add_argument("--cert", help="the SuperLink's certificate (overrides --certs)")
    link.add_argument("--key", help="the SuperLink's private key (overrides --certs)")
    link.add_argument("--host", default=LOOPBACK, help=f"address to listen on (default {LOOPBACK})")
    link.add_argument("--port", type=int, default=None,
                      help="port of the Fleet/Control/Runtime API (Flower's default: 8000)")
    link.add_argument("--no-node-auth", action="store_true", help="accept any SuperNode (TLS only)")
    link.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    link.set_defaults(func=_cmd_superlink)

    node = sub.add_parser("supernode", help="join a SuperLink as client PARTITION_ID (flower-supernode, TLS)")
    node.add_argument("--superlink", required=True, metavar="HOST:PORT")
    node.add_argument("--ca", help="CA certificate that signed the SuperLink's certificate (default: the system's CAs)")
    node.add_argument("--key", help="this SuperNode's private key (its .pub registered on the SuperLink)")
    node.add_argument("--partition-id", type=int, required=True)
    node.add_argument("--num-partitions", type=int, required=True)
    node.add_argument("--data", metavar="DIR", help="this institution's own data: the data root its dataset was "
                                                    "imported into (fedrs data import PATH --name NAME --root DIR)")
    node.add_argument("--dataset", metavar="NAME", help="the dataset's name in --data (if it holds several)")
    node.add_argument("--port", type=int, default=None,
                      help="this SuperNode's local Runtime API port (distinct per SuperNode on one machine)")
    node.add_argument("--no-node-auth", action="store_true", help="no key (the SuperLink accepts any SuperNode)")
    node.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    node.set_defaults(func=_cmd_supernode)

    conn = sub.add_parser("connection", help="add a SuperLink connection to $FLWR_HOME/config.toml for flwr")
    conn.add_argument("name")
    conn.add_argument("--address", required=True, metavar="HOST:PORT")
    conn.add_argument("--ca", help="CA certificate that signed the SuperLink's certificate")
    conn.add_argument("--system-cas", action="store_true", help="trust the system's CAs instead of --ca")
    conn.add_argument("--default", action="store_true", help="make it flwr's default connection")
    conn.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    conn.set_defaults(func=_cmd_connection)

    reg = sub.add_parser("register", help="admit SuperNode public keys (flwr supernode register)")
    reg.add_argument("public_keys", nargs="+", metavar="KEY.pub")
    reg.add_argument("--connection", required=True, help="the SuperLink connection (fedrs flower connection)")
    reg.set_defaults(func=_cmd_register)


__all__ = ["register"]
