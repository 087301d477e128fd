"""Graceful shutdown as Kubernetes needs it, with ``vinoserve`` as a process: on SIGTERM/SIGINT readiness
turns 503 at once, new requests are refused, in-flight ones finish (up to ``--shutdown_timeout_s``,
then UNAVAILABLE / 503), and the process exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc

from ..helpers.clients import tfs_request
from ..helpers.models import write_slow
from ..helpers.server import F32

CMD = [sys.executable, "-m", "vinoserve"]
SHUTTING_DOWN = "Server is shutting down"
CUT = "request cancelled after --shutdown_timeout_s 1"
DEPTH = 8  # write_slow's default: y = np.roll(x, 8, axis=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A running ``vinoserve`` with the slow model on both ports."""

    popen: subprocess.Popen[str]
    grpc_port: int
    rest_port: int

    def signal(self, sig: signal.Signals) -> float:
        """Send ``sig``; returns the time it was sent."""
        os.killpg(self.popen.pid, sig)
        return time.monotonic()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start(*flags, **model)`` runs vinoserve (``write_slow(**model)``) until ready; killed after the test
    if still running."""
    procs: list[subprocess.Popen[str]] = []

    def run(*flags: str, **model: int) -> Proc:
        base = write_slow(tmp_path / "slow", **model)
        grpc_port, rest_port = free_port(), free_port()
        popen = subprocess.Popen(
            [
                *CMD,
                "--model_name",
                "slow",
                "--model_path",
                str(base),
                "--port",
                str(grpc_port),
                "--rest_port",
                str(rest_port),
                "--plugin_config",
                F32,
                *flags,
            ],
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(popen)
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://localhost:{rest_port}/v2/health/ready", timeout=5).status_code == 200:
                    return Proc(popen, grpc_port, rest_port)
            except requests.ConnectionError:
                pass
            assert popen.poll() is None and time.monotonic() < deadline, "vinoserve did not start"
            time.sleep(0.1)

    yield run
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if p.stderr:
            p.stderr.close()


def data(batch: int, seed: int, width: int = 512) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, width), dtype=np.float32)


# --- one call per client kind; each returns the output, or raises Refused when shut out ---------


class Refused(Exception):
    """The server refused the request (connection refused/closed, or UNAVAILABLE / 503)."""


def tfs_grpc(proc: Proc, x: np.ndarray, channel: grpc.Channel) -> np.ndarray:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        y = stub.Predict(tfs_request({"x": x}, model="slow"), timeout=120).outputs["y"]
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            raise Refused(err.details()) from None
        raise
    return np.frombuffer(y.tensor_content, np.float32).reshape([d.size for d in y.tensor_shape.dim])


def kserve_grpc(proc: Proc, x: np.ndarray, client: tgrpc.InferenceServerClient) -> np.ndarray:
    inp = tgrpc.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    try:
        return np.asarray(client.infer("slow", [inp], client_timeout=120).as_numpy("y"))
    except tgrpc.InferenceServerException as err:
        if err.status() == "StatusCode.UNAVAILABLE":
            raise Refused(err.message()) from None
        raise


def rest(path: str, body: Callable[[np.ndarray], Any], answer: Callable[[Any], Any]) -> Callable[..., np.ndarray]:
    def call(proc: Proc, x: np.ndarray, session: requests.Session) -> np.ndarray:
        try:
            r = session.post(f"http://localhost:{proc.rest_port}{path}", json=body(x), timeout=120)
        except requests.ConnectionError as err:  # refused, or closed by the server
            raise Refused(str(err)) from None
        if r.status_code == 503:
            assert SHUTTING_DOWN in r.json()["error"], r.text
            raise Refused(r.text)
        assert r.status_code == 200, r.text
        return np.array(answer(r.json()), np.float32).reshape(x.shape)

    return call


kserve_rest = rest(
    "/v2/models/slow/infer",
    lambda x: {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]},
    lambda j: j["outputs"][0]["data"],
)
tfs_rest = rest("/v1/models/slow:predict", lambda x: {"instances": x.tolist()}, lambda j: j["predictions"])


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
