"""TLS and mutual TLS on both ports, judged by stock clients: tritonclient (gRPC and HTTP), the TF
Serving protos over ``grpc.secure_channel``, and ``requests`` over HTTPS."""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc
from vinoserve.protocol.rest import tls_site

from ..helpers.clients import tfs_request
from ..helpers.models import write_affine
from ..helpers.server import F32, RunningServer, Serve
from ..helpers.tls import Certs, make_certs, request_with_handshake_end

X = np.arange(10, dtype=np.float32).reshape(1, 10)
EXPECTED = X * 2 + 1


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """A CA with a server and a client certificate, and an untrusted client."""
    return make_certs(tmp_path / "certs")


def tls_args(tmp_path: Path, certs: Certs, mutual: bool) -> list[str]:
    """The affine model on both ports over TLS (demanding client certificates when ``mutual``)."""
    args = [
        "--model_name",
        "m",
        "--model_path",
        str(write_affine(tmp_path / "m")),
        "--plugin_config",
        F32,
        "--tls_cert",
        str(certs.server),
        "--tls_key",
        str(certs.server_key),
    ]
    if mutual:
        args += ["--tls_client_ca", str(certs.ca)]
    return args


def start(serve: Any, tmp_path: Path, certs: Certs, mutual: bool) -> Any:
    """A server started with :func:`tls_args`."""
    return serve(tls_args(tmp_path, certs, mutual), rest=True)


def client_files(certs: Certs, who: str) -> tuple[Path, Path] | None:
    """(certificate, key) the client presents: ``client`` (trusted), ``rogue`` (untrusted) or ``none``."""
    return {"client": (certs.client, certs.client_key), "rogue": (certs.rogue, certs.rogue_key), "none": None}[who]


def tfs_predict(port: int, certs: Certs, who: str) -> np.ndarray:
    """Predict through the TF Serving protos over a TLS channel."""
    pair = client_files(certs, who)
    creds = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), pair[1].read_bytes() if pair else None, pair[0].read_bytes() if pair else None
    )
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(tfs_request({"b": X}), timeout=30)
    y = response.outputs["y"]
    return np.frombuffer(y.tensor_content, np.float32).reshape([d.size for d in y.tensor_shape.dim])


def triton_grpc_infer(port: int, certs: Certs, who: str) -> np.ndarray:
    """KServe ModelInfer through tritonclient's gRPC client over TLS."""
    pair = client_files(certs, who)
    client = tgrpc.InferenceServerClient(
        f"localhost:{port}",
        ssl=True,
        root_certificates=str(certs.ca),
        private_key=str(pair[1]) if pair else None,
        certificate_chain=str(pair[0]) if pair else None,
    )
    try:
        inp = tgrpc.InferInput("b", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        return np.asarray(client.infer("m", [inp], client_timeout=30).as_numpy("y"))
    finally:
        client.close()


def triton_http_infer(port: int, certs: Certs, who: str) -> np.ndarray:
    """KServe REST infer through tritonclient's HTTP client over HTTPS."""
    pair = client_files(certs, who)
    options: dict[str, str] = {"ca_certs": str(certs.ca)}
    if pair:
        options |= {"certfile": str(pair[0]), "keyfile": str(pair[1])}
    client = thttp.InferenceServerClient(
        f"localhost:{port}", ssl=True, ssl_options=options, connection_timeout=30, network_timeout=30
    )
    try:
        inp = thttp.InferInput("b", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=True)
        return np.asarray(client.infer("m", [inp]).as_numpy("y"))
    finally:
        client.close()


def requests_predict(port: int, certs: Certs, who: str) -> np.ndarray:
    """TF Serving REST predict through ``requests`` over HTTPS."""
    pair = client_files(certs, who)
    r = requests.post(
        f"https://localhost:{port}/v1/models/m:predict",
        json={"instances": X.tolist()},
        verify=str(certs.ca),
        cert=(str(pair[0]), str(pair[1])) if pair else None,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return np.array(r.json()["predictions"], np.float32)


GRPC_CLIENTS = [tfs_predict, triton_grpc_infer]
HTTP_CLIENTS = [triton_http_infer, requests_predict]


def check_all_clients(server: Any, certs: Certs, who: str) -> None:
    """Every stock client, on its port, gets the right answer."""
    for call in GRPC_CLIENTS:
        np.testing.assert_array_equal(call(server.grpc_port, certs, who), EXPECTED, err_msg=call.__name__)
    for call in HTTP_CLIENTS:
        np.testing.assert_array_equal(call(server.rest_port, certs, who), EXPECTED, err_msg=call.__name__)


def assert_refused(server: Any, certs: Certs, who: str) -> None:
    """Every stock client is refused at the handshake: UNAVAILABLE on gRPC, a connection error on HTTPS."""
    for call in GRPC_CLIENTS:
        with pytest.raises(Exception) as err:  # grpc.RpcError or tritonclient's InferenceServerException
            call(server.grpc_port, certs, who)
        assert "UNAVAILABLE" in str(err.value) or "StatusCode.UNAVAILABLE" in repr(err.value), call.__name__
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests_predict(server.rest_port, certs, who)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, Exception)) as err:
        triton_http_infer(server.rest_port, certs, who)
    assert not isinstance(err.value, AssertionError)


def assert_plain_text_refused(server: Any) -> None:
    """A client speaking plain text to a TLS port gets no answer: UNAVAILABLE, or a broken connection."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(tfs_request({"b": X}), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://localhost:{server.rest_port}/v2/health/ready", timeout=30)


def test_tls_serves_every_client_and_refuses_plain_text(serve, tmp_path: Path, certs: Certs) -> None:  # type: ignore[no-untyped-def]
    """Server certificate only: clients that trust the CA are served on both ports, with or without a
    client certificate; plain text and a client that does not trust the server are refused."""
    server = start(serve, tmp_path, certs, mutual=False)
    check_all_clients(server, certs, "none")
    check_all_clients(server, certs, "client")  # a client certificate nobody asked for is fine
    r = requests.get(f"https://localhost:{server.rest_port}/v2/health/ready", verify=str(certs.ca), timeout=30)
    assert r.status_code == 200
    assert_plain_text_refused(server)
    with pytest.raises(requests.exceptions.SSLError):  # the client does not trust this server
        requests.get(f"https://localhost:{server.rest_port}/v2/health/ready", verify=str(certs.rogue_ca), timeout=30)
    check_all_clients(server, certs, "none")  # and the server keeps serving


def test_mutual_tls_takes_only_trusted_client_certificates(serve, tmp_path: Path, certs: Certs) -> None:  # type: ignore[no-untyped-def]
    """With --tls_client_ca: a client certificate signed by that CA is served on both ports; no
    certificate, an untrusted one, and plain text are refused; the server keeps serving."""
    server = start(serve, tmp_path, certs, mutual=True)
    check_all_clients(server, certs, "client")
    assert_refused(server, certs, "none")
    assert_refused(server, certs, "rogue")
    assert_plain_text_refused(server)
    check_all_clients(server, certs, "client")


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes its end (the stream ends or is reset) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_stop_closes_tls_connections_whose_clients_stay_silent(tmp_path: Path, certs: Certs) -> None:
    """An idle keep-alive HTTPS connection whose client never answers the server's close_notify (as a
    connection left in a ``requests`` pool) is closed by the time the server has stopped: a stopped
    server holds no socket, even when its event loop is closed right after."""
    server = RunningServer(tls_args(tmp_path, certs, mutual=False), rest=True)
    context = ssl.create_default_context(cafile=str(certs.ca))
    with context.wrap_socket(
        socket.create_connection(("localhost", server.rest_port), timeout=30), server_hostname="localhost"
    ) as tls:
        try:
            tls.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            server.stop()
        # Read the TCP stream under TLS: the server's close_notify, then its end once the server's
        # socket is closed. Nothing is answered, like a pooled connection nobody reads.
        with socket.socket(fileno=os.dup(tls.fileno())) as raw:
            assert closed_by_peer(raw, timeout=10), "the stopped server kept the connection open"


def https_live(server: Any, certs: Certs) -> int:
    """The status of ``GET /v2/health/live`` over HTTPS."""
    return requests.get(
        f"https://localhost:{server.rest_port}/v2/health/live", verify=str(certs.ca), timeout=30
    ).status_code


def test_a_client_stalled_in_its_tls_handshake_is_closed_at_the_handshake_timeout(
    serve: Serve, tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP connection to the HTTPS port that never sends its ClientHello is closed by the server once the
    handshake timeout passes (lowered here from 10 s), and the server keeps serving."""
    monkeypatch.setattr(tls_site, "HANDSHAKE_TIMEOUT_S", 0.5)
    server = start(serve, tmp_path, certs, mutual=False)
    with socket.create_connection(("localhost", server.rest_port), timeout=30) as stalled:
        assert closed_by_peer(stalled, timeout=30), "the server kept a connection with no TLS handshake open"
    assert https_live(server, certs) == 200


def test_stop_closes_a_connection_stalled_in_its_tls_handshake(tmp_path: Path, certs: Certs) -> None:
    """Stopping the server while a client holds a connection in its TLS handshake returns without waiting
    for the handshake timeout, and leaves no socket open, even when its event loop is closed right after."""
    server = RunningServer(tls_args(tmp_path, certs, mutual=False), rest=True)
    with socket.create_connection(("localhost", server.rest_port), timeout=30) as stalled:
        try:
            # connections are accepted in order: once this one is answered, the stalled one is accepted
            assert https_live(server, certs) == 200
        finally:
            began = time.monotonic()
            server.stop()
            took = time.monotonic() - began
        assert took < tls_site.HANDSHAKE_TIMEOUT_S, f"stop took {took:.1f} s"
        assert closed_by_peer(stalled, timeout=5), "the stopped server kept the half-open connection"


def test_a_request_sent_with_the_end_of_the_handshake_is_answered(serve: Serve, tmp_path: Path, certs: Certs) -> None:
    """The client's last handshake message and its request in one TCP segment: the request reaches the
    server before the connection is handed to the HTTP layer, and is answered all the same."""
    server = start(serve, tmp_path, certs, mutual=False)
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    for _ in range(3):
        answer = request_with_handshake_end(server.rest_port, certs.ca, request)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
