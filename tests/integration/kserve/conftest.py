"""The server of the KServe v2 tests, shared by the package, and a stock tritonclient of each protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from ...helpers.kserve import DTYPES
from ...helpers.management import write_config
from ...helpers.models import write_affine, write_bool, write_strings, write_two_inputs
from ...helpers.server import F32, RunningServer


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the package: affine models of several dtypes, bool, strings, two inputs, auto."""
    root = tmp_path_factory.mktemp("kserve")
    paths = {name: write_affine(root / name, dtype=dt) for name, dt in DTYPES.items()}
    paths["auto"] = write_affine(root / "auto")
    paths["bool"] = write_bool(root / "bool")
    paths["str"] = write_strings(root / "str")
    paths["two"] = write_two_inputs(root / "two")
    entries = [
        {
            "name": n,
            "base_path": str(p),
            "plugin_config": json.loads(F32),
            **({"batch_size": "auto"} if n == "auto" else {}),
        }
        for n, p in paths.items()
    ]
    s = RunningServer(["--config_path", str(write_config(root / "config.json", entries))], rest=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> thttp.InferenceServerClient:
    """A tritonclient over HTTP."""
    return thttp.InferenceServerClient(f"localhost:{server.rest_port}")


@pytest.fixture(scope="module")
def grpc_client(server: RunningServer) -> tgrpc.InferenceServerClient:
    """A tritonclient over gRPC."""
    return tgrpc.InferenceServerClient(server.grpc_address)
