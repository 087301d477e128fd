"""The example client's TLS flags against a small TLS server with known answers (helpers.tls).

vinoserve serves no TLS yet; this checks the client's side: server certificates, mutual TLS, refusals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ...helpers.example_client import LABELS, NAMES, accuracy, check_output, run_client
from ...helpers.tls import tls_server


def test_tls_with_server_certificate(certs: dict[str, Path], data: Path) -> None:
    """--tls --server_cert: 100 %, and class names come from the server's metadata."""
    server, port = tls_server(certs["server_cert"], certs["server_key"])
    try:
        res = run_client(port, data, "--tls", "--server_cert", str(certs["server_cert"]), "--batchsize", "8",
                         "--labels_numpy_path", str(data / "lbs.npy"))
    finally:
        server.stop(0)
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 8, 1, 10, str(data / "imgs.npy"))
    assert [n for _, n, _, _ in results] == [NAMES[k] for k in LABELS[:8]]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_mutual_tls(certs: dict[str, Path], data: Path) -> None:
    """A server that demands a client certificate takes ours and refuses a client without one."""
    server, port = tls_server(certs["server_cert"], certs["server_key"], client_ca=certs["client_cert"])
    try:
        ok = run_client(port, data, "--tls", "--server_cert", str(certs["server_cert"]),
                        "--client_cert", str(certs["client_cert"]), "--client_key", str(certs["client_key"]),
                        "--labels_numpy_path", str(data / "lbs.npy"))
        refused = run_client(port, data, "--tls", "--server_cert", str(certs["server_cert"]))
    finally:
        server.stop(0)
    assert ok.returncode == 0, ok.stderr
    assert accuracy(ok.stdout) == "Classification accuracy: 100.00"
    assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("flags", [["--tls", "--server_cert", "other_cert"], []])
def test_untrusted_or_plain_client_is_refused(certs: dict[str, Path], data: Path, flags: list[str]) -> None:
    """A server certificate the client does not trust, or no TLS at all, fails on one line."""
    server, port = tls_server(certs["server_cert"], certs["server_key"])
    try:
        res = run_client(port, data, *[str(certs[f]) if f in certs else f for f in flags])
    finally:
        server.stop(0)
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
