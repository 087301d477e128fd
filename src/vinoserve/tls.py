"""TLS material for both ports: checked once at start-up, then handed to gRPC and aiohttp.

``--tls_cert``/``--tls_key`` make both ports serve TLS; ``--tls_client_ca`` also demands a client
certificate signed by that CA (mutual TLS). The files are loaded with the ``ssl`` module at start-up,
so an unreadable, malformed or mismatched file is one clear line and exit code 1 rather than a
failure on the first connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from .errors import StartupError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key, and the CA bundle for client certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, key, client CA) as bytes, the form gRPC takes them in."""
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return self.cert.read_bytes(), self.key.read_bytes(), ca


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise StartupError("encrypted private keys are not supported")


def _read(path: Path, flag: str, marker: bytes) -> None:
    """The file must be readable and hold a PEM block whose label ends in ``marker``."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"Cannot read {flag} file {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in text or marker + b"-----" not in text:
        what = "private key" if marker == b"PRIVATE KEY" else "certificate"
        raise StartupError(f"Invalid {flag} file {path}: not a PEM {what}")


def _why(exc: ssl.SSLError) -> str:
    reason = exc.reason or ""
    if reason == "KEY_VALUES_MISMATCH":
        return "the key does not match the certificate"
    if reason in ("NO_START_LINE", "PEM_LIB", "BAD_END_LINE", "BAD_BASE64_DECODE") or "PEM lib" in str(exc):
        return "not a valid PEM file"
    return str(exc.args[1] if len(exc.args) > 1 else exc)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The HTTPS server context: TLS 1.2+, and client certificates required with a client CA.

    Raises :class:`StartupError` naming the flag and the file when something cannot be loaded.
    """
    for path, flag, marker in (
        (files.cert, "--tls_cert", b"CERTIFICATE"),
        (files.key, "--tls_key", b"PRIVATE KEY"),
        (files.client_ca, "--tls_client_ca", b"CERTIFICATE"),
    ):
        if path is not None:
            _read(path, flag, marker)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert, files.key, password=_no_password)
    except ssl.SSLError as exc:
        raise StartupError(f"Invalid --tls_cert {files.cert} / --tls_key {files.key}: {_why(exc)}") from None
    if files.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=files.client_ca)
        except ssl.SSLError as exc:
            raise StartupError(f"Invalid --tls_client_ca {files.client_ca}: {_why(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_files(cert: str | None, key: str | None, client_ca: str | None) -> TlsFiles | None:
    """The flags as :class:`TlsFiles` (None: no TLS), checked by loading them."""
    if (cert is None) != (key is None):
        raise StartupError("--tls_cert and --tls_key go together (give both or neither)")
    if cert is None or key is None:
        if client_ca is not None:
            raise StartupError("--tls_client_ca needs --tls_cert and --tls_key")
        return None
    files = TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca is not None else None)
    server_context(files)
    return files
