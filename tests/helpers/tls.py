"""Certificates for TLS tests, made with ``cryptography``: a CA, a server and a client it signed, and a
client signed by an unrelated CA. Everything is a PEM file in one directory. Also a TLS client that
sends its first request together with the end of its handshake."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certs:
    """PEM files: ``ca`` signed ``server`` and ``client``; ``rogue_ca`` signed ``rogue`` (untrusted)."""

    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    rogue_ca: Path
    rogue: Path
    rogue_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _issue(
    path: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    ca: bool = False,
    server: bool = False,
) -> x509.Name:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return subject


def make_certs(directory: Path) -> Certs:
    """Write a fresh set of certificates and keys into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for ca_name, leaves in (("ca", (("server", True), ("client", False))), ("rogue_ca", (("rogue", False),))):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        paths[ca_name] = directory / f"{ca_name}.pem"
        ca_subject = _issue(paths[ca_name], f"vinoserve test {ca_name}", ca_key, None, None, ca=True)
        for leaf, server in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            paths[leaf] = directory / f"{leaf}.pem"
            paths[f"{leaf}_key"] = _write_key(directory / f"{leaf}.key", key)
            _issue(
                paths[leaf], "localhost" if server else f"vinoserve test {leaf}", key, ca_subject, ca_key, server=server
            )
    return Certs(**paths)


def request_with_handshake_end(port: int, ca: Path, request: bytes) -> bytes:
    """Send ``request`` over TLS to ``localhost:port`` in one TCP send with the client's last handshake
    message (its Finished under TLS 1.3), as clients often do; the answer, read until the server closes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=str(ca)).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("localhost", port), timeout=30) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection during the handshake"
                incoming.write(chunk)
        tls.write(request)
        sock.sendall(outgoing.read())
        answer = b""
        while True:
            try:
                got = tls.read(65536)
            except ssl.SSLWantReadError:
                chunk = sock.recv(65536)
                if not chunk:
                    return answer
                incoming.write(chunk)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return answer
            if not got:
                return answer
            answer += got
