"""``GET /metrics`` through a real server: Prometheus text that moves with requests and reshapes."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc

from ..helpers.clients import tfs_request
from ..helpers.management import write_config
from ..helpers.models import write_affine
from ..helpers.server import F32, RunningServer, Serve


def _scrape(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = requests.get(server.rest_url + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels`` (0 when none yet)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= ls)


@pytest.fixture
def server(serve: Serve, tmp_path: Path) -> RunningServer:
    base = write_affine(tmp_path / "aff")
    return serve(
        [
            "--model_name",
            "aff",
            "--model_path",
            str(base),
            "--batch_size",
            "auto",
            "--plugin_config",
            F32,
            "--metrics_enable",
        ],
        rest=True,
    )


def _tfs_rest(server: RunningServer, batch: int) -> requests.Response:
    body = {"instances": [list(range(10))] * batch}
    return requests.post(server.rest_url + "/v1/models/aff:predict", data=json.dumps(body), timeout=60)


def test_counters_move_by_api_and_interface(server: RunningServer) -> None:
    before = _scrape(server)
    ok = "ovms_requests_success_total"
    assert _tfs_rest(server, 1).status_code == 200
    kserve = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}]}
    assert requests.post(server.rest_url + "/v2/models/aff/infer", data=json.dumps(kserve), timeout=60).ok
    client = tgrpc.InferenceServerClient(server.grpc_address)
    inp = tgrpc.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 10), np.float32))
    client.infer("aff", [inp])
    bad = requests.post(server.rest_url + "/v1/models/aff:predict", data='{"instances": [[1, 2]]}', timeout=60)
    assert bad.status_code == 400
    after = _scrape(server)
    for api, interface in (("TFS", "REST"), ("KServe", "REST"), ("KServe", "gRPC")):
        labels = {"name": "aff", "version": "1", "api": api, "interface": interface}
        assert _get(after, ok, **labels) - _get(before, ok, **labels) == 1, (api, interface)
    fail = "ovms_requests_fail_total"
    assert _get(after, fail, api="TFS", interface="REST") - _get(before, fail, api="TFS", interface="REST") == 1
    assert _get(after, "ovms_request_time_seconds_count", api="KServe", interface="gRPC") >= 1
    assert _get(after, "ovms_inference_time_seconds_count", name="aff") >= 3
    assert _get(after, "ovms_current_requests", name="aff") == 0


def test_reshape_and_variant_cache_metrics(server: RunningServer) -> None:
    before = _scrape(server)
    for batch in (1, 3, 3, 1):
        assert _tfs_rest(server, batch).status_code == 200
    after = _scrape(server)

    def delta(metric: str) -> float:
        return _get(after, metric, name="aff") - _get(before, metric, name="aff")

    assert delta("vinoserve_reshapes_total") == 1  # batch 3 once; 1 was compiled at load
    assert delta("vinoserve_variant_cache_misses_total") == 1
    assert delta("vinoserve_variant_cache_hits_total") == 3
    assert _get(after, "vinoserve_reshape_time_seconds_count", name="aff") >= 1
    assert _get(after, "vinoserve_variants_resident", name="aff") == 2


def _lines(server: RunningServer) -> int:
    return len(requests.get(server.rest_url + "/metrics", timeout=30).text.splitlines())


def test_unknown_models_and_versions_add_no_series(server: RunningServer) -> None:
    x = np.zeros((1, 10), np.float32)
    assert _tfs_rest(server, 1).status_code == 200  # the real model's series exist from here on
    bad = requests.post(server.rest_url + "/v1/models/aff:predict", data='{"instances": [[1, 2]]}', timeout=60)
    assert bad.status_code == 400
    before, lines = _scrape(server), _lines(server)
    triton = tgrpc.InferenceServerClient(server.grpc_address)
    kserve = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]}
    rounds = 40
    with grpc.insecure_channel(server.grpc_address) as ch:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict
        for i in range(rounds):
            ghost = f"ghost-{i}-" + "x" * 2000
            for model, version in ((ghost, None), ("aff", 1000 + i)):
                with pytest.raises(grpc.RpcError) as info:
                    predict(tfs_request({"b": x}, model, version), timeout=30)
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
                inp = tgrpc.InferInput("b", [1, 10], "FP32")
                inp.set_data_from_numpy(x)
                with pytest.raises(InferenceServerException):
                    triton.infer(model, [inp], model_version=str(version or ""))
                path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
                r = requests.post(server.rest_url + path + ":predict", data='{"instances": [[0]]}', timeout=30)
                assert r.status_code == 404
                path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
                r = requests.post(server.rest_url + path + "/infer", data=json.dumps(kserve), timeout=30)
                assert r.status_code == 404
    assert _tfs_rest(server, 1).status_code == 200
    bad = requests.post(server.rest_url + "/v1/models/aff:predict", data='{"instances": [[1, 2]]}', timeout=60)
    assert bad.status_code == 400
    after = _scrape(server)
    assert _lines(server) == lines
    assert {dict(ls).get("name") for (_, ls) in after} <= {None, "aff"}
    refused = "vinoserve_requests_refused_total"
    for reason in ("MODEL_NOT_FOUND", "VERSION_NOT_FOUND"):
        for api, interface in (("TFS", "gRPC"), ("KServe", "gRPC"), ("TFS", "REST"), ("KServe", "REST")):
            labels = {"reason": reason, "api": api, "interface": interface}
            assert _get(after, refused, **labels) - _get(before, refused, **labels) == rounds, labels
    # failures of the real model still count as its own
    fail = "ovms_requests_fail_total"
    labels = {"name": "aff", "version": "1", "api": "TFS", "interface": "REST"}
    assert _get(after, fail, **labels) - _get(before, fail, **labels) == 1
    ok = "ovms_requests_success_total"
    assert _get(after, ok, **labels) - _get(before, ok, **labels) == 1


def test_series_of_a_model_removed_from_the_config_go(serve: Serve, tmp_path: Path) -> None:
    models = [
        {
            "name": n,
            "base_path": str(write_affine(tmp_path / n)),
            "batch_size": "auto",
            "plugin_config": json.loads(F32),
        }
        for n in ("keep", "gone")
    ]
    config = write_config(tmp_path / "config.json", models)
    server = serve(["--config_path", str(config), "--metrics_enable"], rest=True)
    for name in ("keep", "gone"):
        body = {"instances": [list(range(10))] * 2}
        assert requests.post(f"{server.rest_url}/v1/models/{name}:predict", data=json.dumps(body), timeout=60).ok
    names = {dict(ls).get("name") for (_, ls) in _scrape(server)}
    assert {"keep", "gone"} <= names
    write_config(config, models[:1])
    assert requests.post(server.rest_url + "/v1/config/reload", timeout=60).status_code == 201
    after = _scrape(server)
    assert {dict(ls).get("name") for (_, ls) in after} == {None, "keep"}
    assert _get(after, "ovms_requests_success_total", name="keep") == 1


def test_fixed_shape_model_reports_no_shape_variants(serve: Serve, tmp_path: Path) -> None:
    # fixed batch and a -1 batch: one variant compiled at load serves everything, nothing is a reshape
    models = [
        {"name": "fixed", "base_path": str(write_affine(tmp_path / "fixed")), "plugin_config": json.loads(F32)},
        {
            "name": "any",
            "base_path": str(write_affine(tmp_path / "any")),
            "batch_size": "-1",
            "plugin_config": json.loads(F32),
        },
    ]
    server = serve(
        ["--config_path", str(write_config(tmp_path / "config.json", models)), "--metrics_enable"], rest=True
    )
    for name, batches in (("fixed", (1, 1)), ("any", (1, 3, 5, 3))):
        for batch in batches:
            body = {"instances": [list(range(10))] * batch}
            r = requests.post(f"{server.rest_url}/v1/models/{name}:predict", data=json.dumps(body), timeout=60)
            assert r.status_code == 200, r.text
    after = _scrape(server)
    assert _get(after, "ovms_requests_success_total", name="any") == 4
    assert _get(after, "ovms_inference_time_seconds_count", name="fixed") == 2
    shape_series = {
        n
        for (n, ls) in after
        if dict(ls).get("name") in ("fixed", "any")
        and (n.startswith("vinoserve_reshape") or n.startswith("vinoserve_variant"))
    }
    assert shape_series == set()


def test_without_metrics_enable_requests_update_no_series(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "aff")
    server = serve(
        ["--model_name", "aff", "--model_path", str(base), "--batch_size", "auto", "--plugin_config", F32], rest=True
    )
    assert _tfs_rest(server, 1).status_code == 200
    assert _tfs_rest(server, 2).status_code == 200  # a new shape: a reshape, still counted
    assert _tfs_rest(server, 1).status_code == 200
    assert requests.post(server.rest_url + "/v1/models/nope:predict", data="{}", timeout=60).status_code == 404
    registry = server.server.metrics.registry
    per_request = {
        "ovms_requests_success",
        "ovms_requests_fail",
        "ovms_request_time_seconds",
        "ovms_inference_time_seconds",
        "ovms_wait_for_infer_req_time_seconds",
        "ovms_current_requests",
        "vinoserve_variant_cache_hits",
        "vinoserve_variant_cache_misses",
    }
    updated = {
        family.name
        for family in registry.collect()
        for s in family.samples
        if family.name in per_request and s.labels.get("name") == "aff"
    }
    assert updated == set()
    assert (
        sum(
            s.value
            for family in registry.collect()
            if family.name == "vinoserve_requests_refused"
            for s in family.samples
            if s.name.endswith("_total")
        )
        == 0
    )
    labels = {"name": "aff", "version": "1", "cause": "request"}
    reshapes = registry.get_sample_value("vinoserve_reshapes_total", labels)
    assert reshapes == 1
