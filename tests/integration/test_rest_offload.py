"""A large JSON request does not stall other clients: its decoding and encoding leave the event loop."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests

from vinoserve.protocol.rest import tfs as rest_tfs
from vinoserve.protocol.rest.tfs_json import parse_predict

from ..helpers.models import write_affine
from ..helpers.server import RunningServer, serve_models

SMALL_CLIENT = """
import sys, time
import grpc
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
req = predict_pb2.PredictRequest()
req.model_spec.name = "aff"
t = req.inputs["b"]
t.dtype = 1
t.tensor_shape.dim.add().size = 1
t.tensor_shape.dim.add().size = 10
t.tensor_content = bytes(40)
predict = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(sys.argv[1])).Predict
predict(req, timeout=60)
print("ready", flush=True)
for _ in range(100_000):  # bounded; the test ends it long before
    predict(req, timeout=120)
    print(time.monotonic(), flush=True)
"""
ROWS = 300_000  # x 10 floats: a JSON body of about 60 MB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """aff (FP32 [1,10]) for the small requests, dyn (FP32 [-1,10]) for the large one."""
    root = tmp_path_factory.mktemp("offload")
    paths = {"aff": write_affine(root / "aff"), "dyn": write_affine(root / "dyn", shape=[-1, 10])}
    s = serve_models(root, paths)
    yield s
    s.stop()


def test_small_grpc_requests_complete_while_a_large_json_body_is_decoded(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    x = np.random.default_rng(0).random((ROWS, 10))
    body = orjson.dumps({"instances": x}, option=orjson.OPT_SERIALIZE_NUMPY)
    # Time the server's own decoding of the body, wherever it runs (the real function is called).
    decoding: list[float] = []

    def timed_parse(*args: Any) -> Any:
        decoding.append(time.monotonic())
        try:
            return parse_predict(*args)
        finally:
            decoding.append(time.monotonic())

    monkeypatch.setattr(rest_tfs, "parse_predict", timed_parse)
    # The small requests come from another process, so that only the server's threads share its GIL;
    # it logs to a file, which never fills as a pipe would.
    log = tmp_path / "small.log"
    with log.open("w") as sink:
        client = subprocess.Popen([sys.executable, "-c", SMALL_CLIENT, server.grpc_address], stdout=sink)
    try:
        deadline = time.monotonic() + 120
        while not log.read_text().startswith("ready\n"):
            assert client.poll() is None and time.monotonic() < deadline, "the small-request client did not start"
            time.sleep(0.05)
        r = requests.post(f"{server.rest_url}/v1/models/dyn:predict", data=body, timeout=300)
        time.sleep(0.1)
    finally:
        client.terminate()
        client.wait(60)
    done = [float(t) for t in log.read_text().split()[1:]]
    assert r.status_code == 200, r.text[:200]
    np.testing.assert_allclose(np.asarray(r.json()["predictions"], np.float32), x * 2 + 1, rtol=1e-6)
    start, end = decoding
    during = [t for t in done if start < t < end]
    # Decoded on the event loop, no gRPC call can complete until the decoding ends: at most one, whose
    # answer left just before it began. Off the loop they keep completing, except during the parse
    # itself (one C call holding the GIL); the conversion after it goes in slices.
    print(f"\ndecoding {end - start:.3f} s; {len(during)} small gRPC requests completed meanwhile")
    assert len(during) >= 2, (len(during), end - start)
