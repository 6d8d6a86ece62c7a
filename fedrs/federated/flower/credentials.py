"""Development credentials for a Flower deployment: a CA, the SuperLink's TLS certificate and key,
and SuperNode authentication key pairs, generated with the ``cryptography`` package (a Flower
dependency; no ``openssl`` binary needed).

What each party needs (``docs/flower.md``):

==================  ==========================================================================
``ca.crt``          the CA certificate: public; every SuperNode (``--root-certificates``) and
                    every ``flwr`` connection (``root-certificates``) trusts the SuperLink
                    through it
``ca.key``          the CA's private key: stays with the operator (signs new server certificates)
``server.pem``      the SuperLink's certificate (signed by the CA; subject alternative names
                    ``localhost``, ``127.0.0.1``, ``::1`` and the given host names / addresses)
``server.key``      the SuperLink's private key: never leaves the SuperLink's machine
``node-<i>.key``    SuperNode ``i``'s private key (OpenSSH format, EC P-384): never leaves that
                    machine
``node-<i>.pub``    its public key (OpenSSH format): registered on the SuperLink with
                    ``flwr supernode register``; an unregistered key is refused
==================  ==========================================================================

These are *development* credentials (a self-made CA, keys written unencrypted, files mode 0600):
fine for loopback tests and trusted pilots; an institution's production deployment uses
certificates from its own PKI and lets each site create its own node key
(:func:`write_node_key`, or ``ssh-keygen -t ecdsa -b 384``), sending only the public half.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedrs.errors import FedrsError

#: the SuperLink certificate always covers these (loopback deployments, the SuperLink's own
#: SuperExec, which connects to 127.0.0.1)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.pem", "server.key"


@dataclass(frozen=True)
class NodeKey:
    """One SuperNode's authentication key pair (OpenSSH files)."""

    private: Path
    public: Path


@dataclass(frozen=True)
class TLSFiles:
    """What a TLS SuperLink is started with (``--ssl-ca-certfile``, ``--ssl-certfile``,
    ``--ssl-keyfile``); clients need only :attr:`ca_cert`."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def check(self) -> TLSFiles:
        """Itself, after checking that every file exists (a readable error otherwise)."""
        for name, path in (("CA certificate", self.ca_cert), ("server certificate", self.server_cert),
                           ("server key", self.server_key)):
            if not Path(path).is_file():
                raise FedrsError(f"{name} {path} does not exist (fedrs flower certs OUT_DIR creates "
                                 f"development ones)")
        return self


@dataclass(frozen=True)
class DevCredentials:
    """Everything :func:`generate_dev_credentials` wrote."""

    folder: Path
    ca_key: Path
    tls: TLSFiles
    nodes: tuple[NodeKey, ...]


def _private_file(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _public_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)


def _refuse_existing(paths: Sequence[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FedrsError(f"{existing[0]} already exists: credentials are never overwritten "
                         f"(choose an empty folder)")


def _subject_names(hosts: Sequence[str]) -> list:
    from cryptography import x509

    names, seen = [], set()
    for host in (*LOOPBACK_NAMES, *hosts):
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def write_node_key(folder: str | Path, name: str) -> NodeKey:
    """A new SuperNode authentication key pair ``folder/name.key`` (private, 0600) and
    ``folder/name.pub`` (public), EC P-384 in OpenSSH format as ``flower-supernode
    --auth-supernode-private-key`` and ``flwr supernode register`` read them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(folder)
    key = NodeKey(folder / f"{name}.key", folder / f"{name}.pub")
    _refuse_existing([key.private, key.public])
    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP384R1())
    _private_file(key.private, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                     serialization.NoEncryption()))
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    _public_file(key.public, public + f" fedrs-{name}\n".encode())
    return key


def generate_dev_credentials(folder: str | Path, num_nodes: int = 0, hosts: Sequence[str] = (),
                             days: int = 365) -> DevCredentials:
    """A development CA, the SuperLink's certificate and key for ``hosts`` (plus
    :data:`LOOPBACK_NAMES`), and ``num_nodes`` SuperNode key pairs ``node-0`` ... in ``folder``.

    ``hosts`` are the names or IP addresses the SuperNodes and ``flwr`` will use to reach the
    SuperLink (TLS checks the address against the certificate). Existing files are never
    overwritten. ECDSA P-384 keys, SHA-384 signatures, valid for ``days`` days.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if num_nodes < 0 or days < 1:
        raise FedrsError(f"need nodes >= 0 and days >= 1, got nodes={num_nodes} days={days}")
    folder = Path(folder)
    tls = TLSFiles(folder / CA_CERT, folder / SERVER_CERT, folder / SERVER_KEY)
    nodes = tuple(NodeKey(folder / f"node-{i}.key", folder / f"node-{i}.pub") for i in range(num_nodes))
    _refuse_existing([folder / CA_KEY, *vars(tls).values(), *(p for n in nodes for p in (n.private, n.public))])
    folder.mkdir(parents=True, exist_ok=True)

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)  # clock skew
    pem = serialization.Encoding.PEM

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedrs development"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "fedrs development CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA384()))

    server_key = ec.generate_private_key(ec.SECP384R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedrs development"),
                             x509.NameAttribute(NameOID.COMMON_NAME, (list(hosts) or ["localhost"])[0])])
    server_cert = (x509.CertificateBuilder().subject_name(server_name).issuer_name(ca_name)
                   .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA384()))

    no_password = serialization.NoEncryption()
    _private_file(folder / CA_KEY, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, no_password))
    _public_file(tls.ca_cert, ca_cert.public_bytes(pem))
    _private_file(tls.server_key, server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, no_password))
    _public_file(tls.server_cert, server_cert.public_bytes(pem))
    for i in range(num_nodes):
        write_node_key(folder, f"node-{i}")
    return DevCredentials(folder, folder / CA_KEY, tls, nodes)


__all__ = ["LOOPBACK_NAMES", "NodeKey", "TLSFiles", "DevCredentials", "write_node_key", "generate_dev_credentials"]
