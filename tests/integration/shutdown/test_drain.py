"""Graceful shutdown as Kubernetes needs it: on SIGTERM readiness turns 503 at once, new requests are
refused (UNAVAILABLE / 503 "Server is shutting down"), in-flight ones finish with their results, and
the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc

from ...helpers.models import write_slow
from ...helpers.server import F32
from ...helpers.shutdown import (
    CUT,
    DEPTH,
    SHUTTING_DOWN,
    Proc,
    Refused,
    data,
    kserve_grpc,
    kserve_rest,
    tfs_grpc,
    tfs_rest,
)


@dataclass
class Outcome:
    sent: float
    done: float
    ok: bool
    detail: str = ""


def client_loop(proc: Proc, kind: str, stop: threading.Event, out: list[Outcome], seed: int) -> None:
    """Send requests one after another until ``stop``; record each outcome; a wrong answer is a failure."""
    if kind == "tfs_grpc":
        conn: Any = grpc.insecure_channel(f"localhost:{proc.grpc_port}")
        call: Callable[..., np.ndarray] = tfs_grpc
    elif kind == "kserve_grpc":
        conn, call = tgrpc.InferenceServerClient(f"localhost:{proc.grpc_port}"), kserve_grpc
    else:
        conn, call = requests.Session(), kserve_rest if kind == "kserve_rest" else tfs_rest
    try:
        i = 0
        while not stop.is_set():
            i += 1
            x = data(1 + i % 3, seed + i)
            sent = time.monotonic()
            try:
                y = call(proc, x, conn)
            except Refused as r:
                out.append(Outcome(sent, time.monotonic(), False, str(r)))
                time.sleep(0.05)
                continue
            except Exception as exc:  # anything else fails the test
                out.append(Outcome(sent, time.monotonic(), False, f"UNEXPECTED {kind}: {exc!r}"))
                continue
            same = np.array_equal(y, np.roll(x, DEPTH, axis=1))
            out.append(Outcome(sent, time.monotonic(), same, "" if same else f"WRONG RESULT {kind}"))
    finally:
        conn.close()


def test_rolling_restart_finishes_accepted_requests_and_refuses_new_ones(start) -> None:  # type: ignore[no-untyped-def]
    """Four clients (TFS/KServe over gRPC and REST) keep the slow model busy; SIGTERM: readiness is 503
    from then on, requests in flight finish with correct results, later ones are refused at once, exit 0."""
    proc = start()
    stop = threading.Event()
    kinds = ["tfs_grpc", "kserve_grpc", "kserve_rest", "tfs_rest"]
    outcomes: dict[str, list[Outcome]] = {k: [] for k in kinds}
    threads = [
        threading.Thread(target=client_loop, args=(proc, k, stop, outcomes[k], 1000 * n), daemon=True)
        for n, k in enumerate(kinds)
    ]
    probe = requests.Session()  # a readiness probe on a connection opened before the signal
    assert probe.get(f"http://localhost:{proc.rest_port}/v2/health/ready", timeout=30).status_code == 200
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while not all(sum(o.ok for o in outcomes[k]) >= 3 for k in kinds):  # every client has been served
        assert time.monotonic() < deadline, outcomes
        time.sleep(0.05)
    signalled = proc.signal(signal.SIGTERM)
    readiness: list[tuple[float, int | str]] = []
    while proc.popen.poll() is None and time.monotonic() < deadline:
        try:
            readiness.append(
                (
                    time.monotonic(),
                    probe.get(f"http://localhost:{proc.rest_port}/v2/health/ready", timeout=30).status_code,
                )
            )
        except requests.ConnectionError:
            readiness.append((time.monotonic(), "refused"))
        time.sleep(0.02)
    exit_code = proc.popen.wait(30)
    while not all(any(o.sent > signalled and not o.ok for o in outcomes[k]) for k in kinds):
        if time.monotonic() > deadline:  # each client tries again after the exit, and is refused
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(150)
    assert exit_code == 0
    assert readiness and 200 not in [r for _, r in readiness[1:]], readiness
    assert 503 in [r for _, r in readiness], "the open connection answers 503 before it is closed"
    not_ready = next(t for t, r in readiness if r != 200)
    for kind, outs in outcomes.items():
        problems = [o.detail for o in outs if o.detail.startswith(("UNEXPECTED", "WRONG"))]
        assert not problems, problems
        assert all(not o.ok for o in outs if o.sent > not_ready), f"{kind} served a request sent after readiness fell"
        assert any(not o.ok for o in outs if o.sent > signalled), f"{kind} was never refused"
        assert CUT not in " ".join(o.detail for o in outs), "nothing runs into the 30 s timeout"
    drained = [o for outs in outcomes.values() for o in outs if o.ok and o.sent < signalled < o.done]
    assert drained, "requests in flight at the signal finished with their results"


def test_draining_server_refuses_new_requests_and_is_not_ready(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """While draining, on connections that stay open: gRPC ServerReady is false and ServerLive true,
    REST ready is 503 and live 200, and inference is UNAVAILABLE / 503 "Server is shutting down"."""
    server = serve(
        ["--model_name", "slow", "--model_path", str(write_slow(tmp_path / "slow")), "--plugin_config", F32], rest=True
    )
    client = tgrpc.InferenceServerClient(server.grpc_address)
    session = requests.Session()
    x = data(1, 3)
    assert client.is_server_ready() and session.get(f"{server.rest_url}/v2/health/ready", timeout=30).ok
    server.server.dataplane.drain.close(30)  # what Server.stop does first
    assert client.is_server_live() and not client.is_server_ready()
    with pytest.raises(Refused, match=SHUTTING_DOWN):
        kserve_grpc(server, x, client)
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(Refused, match=SHUTTING_DOWN):
        tfs_grpc(server, x, channel)
    assert session.get(f"{server.rest_url}/v2/health/live", timeout=30).status_code == 200
    r = session.get(f"{server.rest_url}/v2/health/ready", timeout=30)
    assert r.status_code == 503 and r.headers["Connection"] == "close"
    r = requests.post(f"{server.rest_url}/v1/models/slow:predict", json={"instances": x.tolist()}, timeout=30)
    assert (r.status_code, r.json()) == (503, {"error": SHUTTING_DOWN})
    client.close()
