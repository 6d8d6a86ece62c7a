"""Credentials and secure-by-default command lines for Flower deployments (no Flower process is
started here; the loopback deployment with TLS, SuperNode authentication and refused intruders is
``tests/test_flower.py::test_loopback_deployment_is_encrypted_authenticated_and_matches_the_inprocess_engine``).

* the development CA signs a SuperLink certificate that a TLS client checking ``127.0.0.1``
  against that CA accepts, and one trusting another CA refuses (a real handshake on loopback);
* node keys are EC P-384 in the OpenSSH formats ``flower-supernode`` and ``flwr supernode
  register`` read; secrets are 0600; nothing is ever overwritten;
* every command line is TLS + authentication unless ``--insecure``, which is refused on
  anything but a loopback address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fedrs.cli import build_parser, main
from fedrs.errors import FedrsError
from fedrs.federated.flower.credentials import generate_dev_credentials, write_node_key
from fedrs.federated.flower.deploy import (
    is_loopback,
    node_config_arg,
    superlink_command,
    supernode_command,
    write_connection,
)


@pytest.fixture(scope="module")
def creds(tmp_path_factory):
    return generate_dev_credentials(tmp_path_factory.mktemp("creds"), 2, hosts=["fl.example.org", "10.0.0.5"])


def test_dev_credentials_form_a_chain_for_the_named_hosts(creds):
    ca = x509.load_pem_x509_certificate(creds.tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(creds.tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "fl.example.org"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(a) for a in
                                                              ("127.0.0.1", "::1", "10.0.0.5")}
    for secret in (creds.ca_key, creds.tls.server_key, *(k.private for k in creds.nodes)):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_node_keys_are_openssh_ec_p384_pairs(creds, tmp_path):
    assert [k.private.name for k in creds.nodes] == ["node-0.key", "node-1.key"]
    for key in (*creds.nodes, write_node_key(tmp_path, "site-a")):
        private = load_ssh_private_key(key.private.read_bytes(), None)  # as flower-supernode reads it
        public = load_ssh_public_key(key.public.read_bytes())  # as flwr supernode register reads it
        assert isinstance(private.curve, ec.SECP384R1) and private.public_key() == public
    assert load_ssh_public_key(creds.nodes[0].public.read_bytes()) != load_ssh_public_key(
        creds.nodes[1].public.read_bytes())


def test_credentials_are_never_overwritten(creds):
    before = creds.tls.ca_cert.read_bytes()
    with pytest.raises(FedrsError, match="already exists"):
        generate_dev_credentials(creds.folder, 1)
    with pytest.raises(FedrsError, match="already exists"):
        write_node_key(creds.folder, "node-0")
    assert creds.tls.ca_cert.read_bytes() == before


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str = "127.0.0.1") -> None:
    """One TLS handshake on 127.0.0.1 (an ephemeral port); raises the client's SSL error."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"x")
        finally:
            thread.join(timeout=10)


def test_the_certificate_passes_a_tls_handshake_only_for_clients_trusting_the_ca(creds, tmp_path):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(creds.tls.server_cert, creds.tls.server_key)
    _handshake(server_ctx, ssl.create_default_context(cafile=creds.tls.ca_cert))
    _handshake(server_ctx, ssl.create_default_context(cafile=creds.tls.ca_cert), host="fl.example.org")
    other = generate_dev_credentials(tmp_path / "other").tls.ca_cert
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_ctx, ssl.create_default_context(cafile=other))
    with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate does not cover
        _handshake(server_ctx, ssl.create_default_context(cafile=creds.tls.ca_cert), host="elsewhere.org")


def test_superlink_command_is_tls_with_node_authentication_unless_insecure_on_loopback(creds):
    cmd = superlink_command(host="0.0.0.0", port=9092, tls=creds.tls)
    assert cmd[:5] == ["flower-superlink", "--host", "0.0.0.0", "--port", "9092"]
    for flag, value in (("--ssl-ca-certfile", creds.tls.ca_cert), ("--ssl-certfile", creds.tls.server_cert),
                        ("--ssl-keyfile", creds.tls.server_key)):
        assert cmd[cmd.index(flag) + 1] == str(value)
    assert "--enable-supernode-auth" in cmd and "--insecure" not in cmd
    assert "--enable-supernode-auth" not in superlink_command(tls=creds.tls, node_auth=False)
    assert superlink_command(host="127.0.0.1", insecure=True)[-1] == "--insecure"
    with pytest.raises(FedrsError, match="local tests on 127.0.0.1 only, not 0.0.0.0"):
        superlink_command(host="0.0.0.0", insecure=True)
    with pytest.raises(FedrsError, match="needs a CA certificate"):
        superlink_command(host="127.0.0.1")


def test_supernode_command_trusts_the_ca_and_signs_with_its_key(creds):
    cmd = supernode_command(superlink="fl.example.org:9092", node_config={"partition-id": 1, "num-partitions": 2},
                            ca_cert=creds.tls.ca_cert, node_key=creds.nodes[1].private, port=9101)
    assert cmd[cmd.index("--root-certificates") + 1] == str(creds.tls.ca_cert)
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == str(creds.nodes[1].private)
    assert cmd[cmd.index("--node-config") + 1] == "partition-id=1 num-partitions=2" and "--insecure" not in cmd
    assert node_config_arg({"data-dir": "/d e", "partition-id": 0}) == 'data-dir="/d e" partition-id=0'
    with pytest.raises(FedrsError, match="needs TLS"):
        supernode_command(superlink="127.0.0.1:9092", node_config={}, node_key=creds.nodes[0].private, insecure=True)
    with pytest.raises(FedrsError, match="local tests on 127.0.0.1 only, not fl.example.org"):
        supernode_command(superlink="fl.example.org:9092", node_config={}, insecure=True)
    with pytest.raises(FedrsError, match="does not exist"):
        supernode_command(superlink="127.0.0.1:9092", node_config={}, ca_cert=creds.folder / "missing.crt")
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_write_connection_adds_a_tls_entry_and_keeps_the_others(creds, tmp_path):
    write_connection(tmp_path, "study", "fl.example.org:9092", ca_cert=creds.tls.ca_cert, default=True)
    write_connection(tmp_path, "test", "127.0.0.1:9092", insecure=True)
    links = tomllib.loads((tmp_path / "config.toml").read_text())["superlink"]
    assert links == {"default": "study", "study": {"address": "fl.example.org:9092",
                                                   "root-certificates": str(creds.tls.ca_cert.resolve())},
                     "test": {"address": "127.0.0.1:9092", "insecure": True}}
    with pytest.raises(FedrsError, match="local tests on 127.0.0.1 only"):
        write_connection(tmp_path, "bad", "fl.example.org:9092", insecure=True)


def test_fedrs_flower_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    assert main(["flower", "certs", str(tmp_path / "c"), "--nodes", "1", "--host", "fl.example.org"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "ca.crt", "ca.key", "node-0.key", "node-0.pub", "server.key", "server.pem"]
    assert main(["flower", "certs", str(tmp_path / "c")]) == 2
    assert "fedrs: error:" in capsys.readouterr().err
    assert main(["flower", "node-key", str(tmp_path / "site"), "--name", "site-a"]) == 0
    assert (tmp_path / "site" / "site-a.pub").is_file()
    assert main(["flower", "connection", "study", "--address", "fl.example.org:9092",
                 "--ca", str(tmp_path / "c" / "ca.crt"), "--default"]) == 0
    assert "study" in tomllib.loads((tmp_path / "flwr-home" / "config.toml").read_text())["superlink"]
    # refused before anything is started
    assert main(["flower", "superlink", "--insecure", "--host", "0.0.0.0"]) == 2
    assert main(["flower", "superlink", "--host", "0.0.0.0"]) == 2
    assert main(["flower", "supernode", "--superlink", "fl.example.org:9092", "--ca", str(tmp_path / "c" / "ca.crt"),
                 "--partition-id", "0", "--num-partitions", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("fedrs: error:") == 3 and "--key FILE" in err
    args = build_parser().parse_args(["flower", "local", "p.yaml", "--out", "/runs/x", "--insecure"])
    assert args.insecure and build_parser().parse_args(["flower", "local", "p.yaml", "--out", "/x"]).insecure is False
