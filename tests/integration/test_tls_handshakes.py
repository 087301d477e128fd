"""HTTPS connections that do not go by the book: garbage instead of a ClientHello, a client that leaves
in the middle of its handshake, many handshakes at once, pipelined requests on one connection (also
sent with the end of the handshake). The server answers every well-behaved client meanwhile, and
nothing it does for these connections ends in an error of its own (a failed upgrade task is logged by
asyncio at ERROR)."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from ..helpers.server import Serve
from ..helpers.tls import Certs, make_certs, request_with_handshake_end
from .test_tls import tls_args

LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"
LIVE_LAST = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """A CA and a server certificate it signed."""
    return make_certs(tmp_path / "certs")


def client_hello(ca: Path) -> bytes:
    """The first flight of a TLS client that trusts ``ca``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=str(ca)).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (it may send an alert first) within 30 s."""
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_hostile_and_departing_tls_clients_leave_the_server_serving(
    serve: Serve, tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage instead of a ClientHello is refused by closing the connection; a client gone during
    its handshake (closed or reset) costs nothing; HTTPS is answered before, between and after."""
    server = serve(tls_args(tmp_path, certs, mutual=False), rest=True)
    url = f"https://localhost:{server.rest_port}/v2/health/live"

    def live() -> int:
        return requests.get(url, verify=str(certs.ca), timeout=30).status_code

    assert live() == 200
    for garbage in (LIVE, os.urandom(512), b"\x16\x03\x01\x00\x05hello"):
        with socket.create_connection(("localhost", server.rest_port), timeout=30) as sock:
            sock.sendall(garbage)
            assert closed_by_server(sock), f"the server kept a connection that sent {garbage[:16]!r}"
    hello = client_hello(certs.ca)
    for reset in (False, True):
        sock = socket.create_connection(("localhost", server.rest_port), timeout=30)
        sock.sendall(hello)
        if reset:  # linger 0: close sends a reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with ThreadPoolExecutor(16) as pool:  # handshakes at once
        assert set(pool.map(lambda _: live(), range(64))) == {200}
    assert live() == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_pipelined_requests_on_one_tls_connection_are_all_answered(serve: Serve, tmp_path: Path, certs: Certs) -> None:
    """Keep-alive requests written at once, after the handshake or with its last message (then they
    reach the server before the HTTP layer has the connection), are answered in order."""
    server = serve(tls_args(tmp_path, certs, mutual=False), rest=True)
    pipelined = LIVE * 3 + LIVE_LAST
    context = ssl.create_default_context(cafile=str(certs.ca))
    with context.wrap_socket(
        socket.create_connection(("localhost", server.rest_port), timeout=30), server_hostname="localhost"
    ) as tls:
        tls.sendall(pipelined)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200") == 4, answer[:400]
    answer = request_with_handshake_end(server.rest_port, certs.ca, pipelined)
    assert answer.count(b"HTTP/1.1 200") == 4, answer[:400]
