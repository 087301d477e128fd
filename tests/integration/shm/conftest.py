"""Fixtures of the system shared memory tests: one server for the package, a stock client per
protocol, and the test's shared-memory objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from ...helpers.management import write_config
from ...helpers.models import write_affine, write_slow_affine, write_strings, write_two_inputs
from ...helpers.server import F32, RunningServer
from ...helpers.shm import WIDE, Regions


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server: affine [1,10], two inputs, strings, and a slow model for requests in flight."""
    root = tmp_path_factory.mktemp("shm")
    paths = {
        "aff": write_affine(root / "aff"),
        "two": write_two_inputs(root / "two"),
        "str": write_strings(root / "str"),
        "slow": write_slow_affine(root / "slow"),
        # one row of 16 KiB (read in place, not copied) and the work of a batch of 32 of "slow"
        "wide": write_slow_affine(root / "wide", rows_per_item=32 * 32, width=WIDE),
    }
    entries = [{"name": n, "base_path": str(p), "plugin_config": json.loads(F32)} for n, p in paths.items()]
    s = RunningServer(["--config_path", str(write_config(root / "config.json", entries))], rest=True)
    yield s
    s.stop()


@pytest.fixture(params=["grpc", "http"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    """A tritonclient of each protocol; every region is unregistered after the test."""
    if request.param == "grpc":
        c: Any = tgrpc.InferenceServerClient(server.grpc_address)
    else:
        c = thttp.InferenceServerClient(f"localhost:{server.rest_port}")
    yield c
    c.unregister_system_shared_memory()
    c.close()


@pytest.fixture
def regions() -> Iterator[Regions]:
    """The test's shared-memory objects; those left are destroyed after it."""
    r = Regions()
    yield r
    for h in list(r.handles):
        r.destroy(h)
