"""The example client's TLS flags against the real server serving TLS: server certificates, mutual TLS,
refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from ...helpers.example_client import LABELS, NAMES, accuracy, check_output, run_client, serve_quadrants
from ...helpers.server import RunningServer, Serve
from ...helpers.tls import Certs


def serve_tls(serve: Serve, tmp_path: Path, certs: Certs, mutual: bool) -> RunningServer:
    """The quadrant model over TLS; with ``mutual``, client certificates signed by ``certs.ca`` are required."""
    tls = ["--tls_cert", str(certs.server), "--tls_key", str(certs.server_key)]
    return serve_quadrants(serve, tmp_path, extra=[*tls, "--tls_client_ca", str(certs.ca)] if mutual else tls)


def test_tls_with_server_certificate(serve: Serve, tmp_path: Path, certs: Certs, data: Path) -> None:
    """--tls --server_cert (the CA that signed the server's certificate): 100 %, names from --labels_names."""
    server = serve_tls(serve, tmp_path, certs, mutual=False)
    res = run_client(
        server.grpc_port,
        data,
        "--tls",
        "--server_cert",
        str(certs.ca),
        "--batchsize",
        "8",
        "--labels_numpy_path",
        str(data / "lbs.npy"),
        "--labels_names",
        str(data / "names.txt"),
    )
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 8, 1, 10, str(data / "imgs.npy"))
    assert [n for _, n, _, _ in results] == [NAMES[k] for k in LABELS[:8]]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_mutual_tls(serve: Serve, tmp_path: Path, certs: Certs, data: Path) -> None:
    """A server that demands a client certificate takes ours, refuses a client without one or with an
    untrusted one, and keeps serving."""
    server = serve_tls(serve, tmp_path, certs, mutual=True)
    trusted = [
        "--tls",
        "--server_cert",
        str(certs.ca),
        "--client_cert",
        str(certs.client),
        "--client_key",
        str(certs.client_key),
        "--labels_numpy_path",
        str(data / "lbs.npy"),
    ]
    refused = [
        run_client(server.grpc_port, data, "--tls", "--server_cert", str(certs.ca)),
        run_client(
            server.grpc_port,
            data,
            "--tls",
            "--server_cert",
            str(certs.ca),
            "--client_cert",
            str(certs.rogue),
            "--client_key",
            str(certs.rogue_key),
        ),
    ]
    for res in refused:
        assert res.returncode == 1 and "UNAVAILABLE" in res.stderr and "Traceback" not in res.stderr
    ok = run_client(server.grpc_port, data, *trusted)
    assert ok.returncode == 0, ok.stderr
    assert accuracy(ok.stdout) == "Classification accuracy: 100.00"


@pytest.mark.parametrize("untrusted", [True, False])
def test_untrusted_or_plain_client_is_refused(
    serve: Serve, tmp_path: Path, certs: Certs, data: Path, untrusted: bool
) -> None:
    """A server certificate the client does not trust, or no TLS at all, fails on one line."""
    server = serve_tls(serve, tmp_path, certs, mutual=False)
    res = run_client(server.grpc_port, data, *(["--tls", "--server_cert", str(certs.rogue_ca)] if untrusted else []))
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
