"""Graceful shutdown past ``--shutdown_timeout_s``: requests still running (or a body still uploading)
are cut with UNAVAILABLE / 503 naming the timeout, and the process exits 0 without waiting for them,
on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import pytest
import requests

from ...helpers.shutdown import CUT, SHUTTING_DOWN, Refused, data, tfs_grpc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_requests_past_the_timeout_are_cancelled_with_unavailable(start, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    """--shutdown_timeout_s 1 with requests that run far longer (over 20 s each): gRPC gets UNAVAILABLE and
    REST 503 naming the timeout, and the process exits 0 without waiting for them."""
    proc = start("--shutdown_timeout_s", "1", size=2048, depth=64, repeat=8192)
    x = data(1, 7, width=2048)
    results: dict[str, str] = {}

    def grpc_call() -> None:
        with grpc.insecure_channel(f"localhost:{proc.grpc_port}") as channel:
            try:
                tfs_grpc(proc, x, channel)
                results["grpc"] = "served"
            except Refused as r:
                results["grpc"] = str(r)

    def rest_call() -> None:
        r = requests.post(
            f"http://localhost:{proc.rest_port}/v1/models/slow:predict", json={"instances": x.tolist()}, timeout=120
        )
        results["rest"] = f"{r.status_code} {r.text}"

    threads = [threading.Thread(target=f, daemon=True) for f in (grpc_call, rest_call)]
    for t in threads:
        t.start()
    time.sleep(3)  # both requests reach the server and start running (each takes over 20 s)
    assert not results, results
    signalled = proc.signal(sig)
    exit_code = proc.popen.wait(60)
    exited = time.monotonic() - signalled
    for t in threads:
        t.join(60)
    assert exit_code == 0
    assert results["grpc"] == f"{SHUTTING_DOWN} - {CUT}"
    assert results["rest"] == f'503 {{"error": "{SHUTTING_DOWN} - {CUT}"}}'
    assert exited < 30, f"the process took {exited:.1f} s to exit"


def test_slow_partial_upload_does_not_hold_the_exit(start) -> None:  # type: ignore[no-untyped-def]
    """A client uploading a huge body a trickle at a time: at the timeout it is answered 503 and the
    process exits; the upload does not keep it alive."""
    proc = start("--shutdown_timeout_s", "1")
    sock = socket.create_connection(("127.0.0.1", proc.rest_port), timeout=60)
    sock.sendall(
        b"POST /v1/models/slow:predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900000000\r\n\r\n" + b'{"instances": [' + b"[0.5]," * 1000
    )
    trickle = threading.Event()

    def upload() -> None:
        try:
            while not trickle.is_set():
                sock.sendall(b"[0.5]," * 100)
                time.sleep(0.1)
        except OSError:  # the server closed the connection
            pass

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    time.sleep(1)
    signalled = proc.signal(signal.SIGTERM)
    try:
        exit_code = proc.popen.wait(60)
        exited = time.monotonic() - signalled
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    finally:
        trickle.set()
        uploader.join(30)
        sock.close()
    assert exit_code == 0
    assert exited < 30, f"the process took {exited:.1f} s to exit"
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert CUT.encode() in answer
