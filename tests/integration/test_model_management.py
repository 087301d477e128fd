"""Model management through a real server and real file changes: versions, policies, config edits."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import ovmsclient
import pytest
from conftest import F32, RunningServer
from models import write_affine

from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from vinoserve.runtime.openvino import Runtime
from vinoserve.types import VersionState

X1 = np.arange(10, dtype=np.float32).reshape(1, 10)


def request(inputs: dict[str, np.ndarray], model: str = "m", version: int | None = None) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    for name, arr in inputs.items():
        t = req.inputs[name]
        t.dtype = 1
        for d in arr.shape:
            t.tensor_shape.dim.add().size = d
        t.tensor_content = arr.tobytes()
    return req


def predict(s: RunningServer, model: str = "m", version: int | None = None, x: np.ndarray = X1,
            timeout: float = 30) -> tuple[int, float]:
    """(version that answered, bias of the affine model that answered: y - 2x)."""
    with grpc.insecure_channel(s.grpc_address) as ch:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(
            request({"b": x}, model, version), timeout=timeout)
    return resp.model_spec.version.value, bias_of(resp, x)


def bias_of(resp: predict_pb2.PredictResponse, x: np.ndarray) -> float:
    t = resp.outputs["y"]
    y = np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])
    return round(float((y - 2 * x).mean()), 3)


def rpc_error(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kw)
    return info.value


def states(s: RunningServer, model: str = "m") -> dict[int, str]:
    return {st.version: st.state.name for st in s.server.manager.status(model, None)}


def reload(s: RunningServer) -> bool:
    return bool(s.call(s.server.manager.reload()))


def wait_for(cond: Callable[[], bool], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def add_version(base: Path, version: int, staging: Path, **kw: object) -> None:
    """Write a version elsewhere, then move it in with one rename (how versions should be deployed)."""
    write_affine(staging, version, **kw)
    os.rename(staging / str(version), base / str(version))


def write_config(path: Path, models: Sequence[Mapping[str, object]]) -> Path:
    path.write_text(json.dumps({"model_config_list": [{"config": m} for m in models]}))
    return path


def version_object(s: RunningServer, model: str, version: int) -> Any:
    return s.server.manager.models[model].versions[version]


# -- versions on disk --------------------------------------------------------------------------------


class Clients:
    """Four threads sending batch-1 requests without a version until stopped; answers and failures."""

    def __init__(self, s: RunningServer, model: str = "m") -> None:
        self.seen: list[tuple[int, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s, model)) for _ in range(4)]

    def _run(self, s: RunningServer, model: str) -> None:
        with grpc.insecure_channel(s.grpc_address) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            while not self._stop.is_set() and len(self.seen) < 2000:
                try:
                    resp = stub.Predict(request({"b": X1}, model), timeout=30)
                    self.seen.append((resp.model_spec.version.value, bias_of(resp, X1)))
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code()}: {exc.details()}")

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait(self, more: int) -> None:
        """Until ``more`` further answers arrived."""
        target = len(self.seen) + more
        wait_for(lambda: len(self.seen) >= target)


def test_new_version_takes_over_under_load_with_zero_failures(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    s = serve(["--model_name", "m", "--model_path", str(base), "--file_system_poll_wait_seconds", "0.1",
               "--plugin_config", F32])
    with Clients(s) as clients:
        clients.wait(100)
        add_version(base, 2, tmp_path / "staging", bias=2.0)
        wait_for(lambda: states(s) == {2: "AVAILABLE", 1: "END"})
        clients.wait(100)
    assert clients.failures == []
    assert set(clients.seen) == {(1, 1.0), (2, 2.0)}
    assert clients.seen[-1] == (2, 2.0) and 200 <= len(clients.seen) <= 2000 + 4
    status = ovmsclient.make_grpc_client(s.grpc_address).get_model_status("m")
    assert status[1]["state"] == "END" and status[2]["state"] == "AVAILABLE"


def test_changed_config_entry_switches_under_load_with_zero_failures(serve: Any, tmp_path: Path) -> None:
    write_affine(tmp_path / "m", 1, bias=1.0)
    entry = {"name": "m", "base_path": "m", "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}
    cfg = write_config(tmp_path / "config.json", [entry])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    old = version_object(s, "m", 1)
    with Clients(s) as clients:
        clients.wait(100)
        write_config(cfg, [{**entry, "batch_size": "auto", "nireq": 2}])
        assert reload(s) is True
        clients.wait(100)
    assert clients.failures == [] and len(clients.seen) >= 200
    assert old.state == VersionState.END and version_object(s, "m", 1) is not old
    assert predict(s, x=np.ones((3, 10), np.float32)) == (1, 1.0)  # the new entry's batch auto is in force


def test_request_waiting_for_a_compile_on_a_retiring_version_completes(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    gate, compiling = threading.Event(), threading.Event()
    runtime = Runtime()

    def hold_batch_3(shapes: Any) -> None:
        if next(iter(shapes.values()))[0].lo == 3:
            compiling.set()
            gate.wait(30)

    runtime.before_compile = hold_batch_3
    s = serve(["--model_name", "m", "--model_path", str(base), "--batch_size", "auto",
               "--file_system_poll_wait_seconds", "0", "--plugin_config", F32], runtime=runtime)
    x3 = np.ones((3, 10), np.float32)
    with_version: dict[str, Any] = {}
    pending = threading.Thread(target=lambda: with_version.update(r=predict(s, x=x3)))
    pending.start()
    assert compiling.wait(10)
    add_version(base, 2, tmp_path / "staging", bias=2.0)
    reloading = threading.Thread(target=lambda: with_version.update(changed=reload(s)))
    reloading.start()
    wait_for(lambda: states(s) == {2: "AVAILABLE", 1: "UNLOADING"})
    assert predict(s) == (2, 2.0)  # new requests already go to the new version
    assert "changed" not in with_version  # retiring waits for the request on version 1
    gate.set()
    pending.join(30)
    reloading.join(30)
    assert with_version == {"r": (1, 1.0), "changed": True}
    assert states(s) == {2: "AVAILABLE", 1: "END"}


def test_policies_latest_specific_all(serve: Any, tmp_path: Path) -> None:
    base = tmp_path / "m"
    for v in (1, 2, 3):
        write_affine(base, v, bias=float(v))
    cfg = write_config(tmp_path / "config.json", [
        {"name": "latest2", "base_path": "m", "model_version_policy": {"latest": {"num_versions": 2}}},
        {"name": "specific", "base_path": "m", "model_version_policy": {"specific": {"versions": [1, 3, 7]}}},
        {"name": "all", "base_path": "m", "model_version_policy": {"all": {}}},
        {"name": "default", "base_path": "m"},
    ])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    assert states(s, "latest2") == {3: "AVAILABLE", 2: "AVAILABLE"}
    assert states(s, "specific") == {3: "AVAILABLE", 1: "AVAILABLE"}
    assert states(s, "all") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
    assert states(s, "default") == {3: "AVAILABLE"}
    for model in ("latest2", "specific", "all", "default"):
        assert predict(s, model) == (3, 3.0)
    assert predict(s, "latest2", 2) == (2, 2.0)
    assert predict(s, "specific", 1) == (1, 1.0)
    err = rpc_error(predict, s, "specific", 2)
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "Model with requested version is not found")

    # removing the highest directory: latest N slides down, specific keeps what is left, all shrinks
    shutil.rmtree(base / "3")
    assert reload(s) is True
    assert states(s, "latest2") == {3: "END", 2: "AVAILABLE", 1: "AVAILABLE"}
    assert states(s, "specific") == {3: "END", 1: "AVAILABLE"}
    assert states(s, "all") == {3: "END", 2: "AVAILABLE", 1: "AVAILABLE"}
    assert predict(s, "default") == (2, 2.0)
    err = rpc_error(predict, s, "default", 3)
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "Model with requested version is retired")

    # the same directory added again loads as a new version object
    old = version_object(s, "all", 3)
    write_affine(base, 3, bias=30.0)
    assert reload(s) is True
    assert version_object(s, "all", 3) is not old
    assert predict(s, "all") == (3, 30.0)
    assert reload(s) is False


def test_policy_change_in_config_keeps_the_versions_that_stay(serve: Any, tmp_path: Path) -> None:
    for v in (1, 2):
        write_affine(tmp_path / "m", v, bias=float(v))
    cfg = write_config(tmp_path / "config.json", [{"name": "m", "base_path": "m"}])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    v2 = version_object(s, "m", 2)
    write_config(cfg, [{"name": "m", "base_path": "m", "model_version_policy": {"all": {}}}])
    assert reload(s) is True
    assert states(s) == {2: "AVAILABLE", 1: "AVAILABLE"} and version_object(s, "m", 2) is v2
    write_config(cfg, [{"name": "m", "base_path": "m", "model_version_policy": {"specific": {"versions": [1]}}}])
    assert reload(s) is True
    assert states(s) == {2: "END", 1: "AVAILABLE"}
    assert predict(s) == (1, 1.0)


# -- config.json edits -----------------------------------------------------------------------------


def reshapes(s: RunningServer, model: str) -> float:
    value = s.server.metrics.registry.get_sample_value(
        "vinoserve_reshapes_total", {"name": model, "version": "1", "cause": "request"})
    return value or 0.0


def test_config_edits_add_change_and_remove_models(serve: Any, tmp_path: Path) -> None:
    for name, bias in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        write_affine(tmp_path / name, 1, bias=bias)
    a = {"name": "a", "base_path": "a", "batch_size": "auto", "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}
    b = {"name": "b", "base_path": str(tmp_path / "b")}
    cfg = write_config(tmp_path / "config.json", [a, b])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    x4 = np.ones((4, 10), np.float32)
    assert predict(s, "a", x=x4) == (1, 1.0)
    assert reshapes(s, "a") == 1
    a1, b1 = version_object(s, "a", 1), version_object(s, "b", 1)
    err = rpc_error(predict, s, "b", x=x4)
    assert err.details() == "Invalid input batch size - Expected: 1; Actual: 4; input name: b"
    assert reload(s) is False

    # add c, change b to batch auto, leave a as it is
    write_config(cfg, [a, {**b, "batch_size": "auto"}, {"name": "c", "base_path": "c"}])
    assert reload(s) is True
    assert version_object(s, "a", 1) is a1 and states(s, "a") == {1: "AVAILABLE"}
    assert predict(s, "a", x=x4) == (1, 1.0) and reshapes(s, "a") == 1  # its batch-4 variant was kept
    assert version_object(s, "b", 1) is not b1 and b1.state == VersionState.END
    assert predict(s, "b", x=x4) == (1, 2.0)
    assert predict(s, "c") == (1, 3.0)
    assert reload(s) is False

    # remove c: listed with END, requests are refused; add it back: a new object serves
    c1 = version_object(s, "c", 1)
    write_config(cfg, [a, {**b, "batch_size": "auto"}])
    assert reload(s) is True
    assert states(s, "c") == {1: "END"} and c1.state == VersionState.END
    err = rpc_error(predict, s, "c")
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "Model with requested version is retired")
    assert set(s.server.manager.all_status()) == {"a", "b", "c"}
    write_config(cfg, [a, {**b, "batch_size": "auto"}, {"name": "c", "base_path": "c"}])
    assert reload(s) is True
    assert version_object(s, "c", 1) is not c1 and predict(s, "c") == (1, 3.0)
    assert version_object(s, "a", 1) is a1

    # a changed auto model: the retiring object must not zero the new one's variant count
    write_config(cfg, [{**a, "nireq": 2}, {**b, "batch_size": "auto"}, {"name": "c", "base_path": "c"}])
    assert reload(s) is True and version_object(s, "a", 1) is not a1
    resident = s.server.metrics.registry.get_sample_value("vinoserve_variants_resident",
                                                          {"name": "a", "version": "1"})
    assert resident == 1


def test_invalid_config_changes_nothing(serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_affine(tmp_path / "a", 1, bias=1.0)
    good = [{"name": "a", "base_path": "a"}]
    cfg = write_config(tmp_path / "config.json", good)
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    a1 = version_object(s, "a", 1)
    for text, error in (("{not json", "is not valid JSON"),
                        (json.dumps({"model_config_list": [{"config": {"name": "a", "base_path": "a", "x": 1}}]}),
                         "Config of model 'a' has unknown key 'x'"),
                        (json.dumps({"model_config_list": [{"config": {"name": "a", "base_path": "a",
                                                                       "batch_size": "big"}}]}),
                         "Config of model 'a': Invalid batch size: 'big'")):
        cfg.write_text(text)
        caplog.clear()
        assert reload(s) is False
        assert error in (s.server.manager.config_error or "")
        assert [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()] == [
            f"Config file not applied, models unchanged: {s.server.manager.config_error}"]
        assert reload(s) is False  # the same bad content is not reported again
        assert version_object(s, "a", 1) is a1 and predict(s, "a") == (1, 1.0)
    cfg.unlink()
    assert reload(s) is False and "Cannot read config file" in (s.server.manager.config_error or "")
    write_config(cfg, good)  # back to what is served: nothing to do
    assert reload(s) is False and s.server.manager.config_error is None
    assert version_object(s, "a", 1) is a1


def test_watcher_follows_config_edits(serve: Any, tmp_path: Path) -> None:
    write_affine(tmp_path / "a", 1, bias=1.0)
    write_affine(tmp_path / "b", 1, bias=2.0)
    cfg = write_config(tmp_path / "config.json", [{"name": "a", "base_path": "a"}])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0.1"])
    write_config(cfg, [{"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"}])
    wait_for(lambda: "b" in s.server.manager.models and states(s, "b") == {1: "AVAILABLE"})
    assert predict(s, "b") == (1, 2.0)
    write_config(cfg, [{"name": "b", "base_path": "b"}])
    wait_for(lambda: states(s, "a") == {1: "END"})
    assert predict(s, "b") == (1, 2.0)


def test_rest_config_and_reload_codes(serve: Any, tmp_path: Path) -> None:
    write_affine(tmp_path / "a", 1)
    cfg = write_config(tmp_path / "config.json", [{"name": "a", "base_path": "a"}])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"], rest=True)

    def post_reload() -> tuple[int, Any]:
        req = urllib.request.Request(s.rest_url + "/v1/config/reload", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())

    assert post_reload()[0] == 200
    write_affine(tmp_path / "a", 2)
    code, body = post_reload()
    assert code == 201
    assert [v["state"] for v in body["a"]["model_version_status"]] == ["AVAILABLE", "END"]
    write_config(cfg, [])
    assert post_reload()[0] == 201
    with urllib.request.urlopen(s.rest_url + "/v1/config", timeout=30) as resp:
        listed = json.loads(resp.read())
    assert [v["state"] for v in listed["a"]["model_version_status"]] == ["END", "END"]


# -- repository contents ---------------------------------------------------------------------------


def test_mapping_aliases_in_metadata_and_inference(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    (base / "1" / "mapping_config.json").write_text(json.dumps({"inputs": {"b": "data"},
                                                                "outputs": {"y": "result"}}))
    s = serve(["--model_name", "m", "--model_path", str(base), "--batch_size", "auto",
               "--file_system_poll_wait_seconds", "0", "--plugin_config", F32])
    client = ovmsclient.make_grpc_client(s.grpc_address)
    meta = client.get_model_metadata("m")
    assert list(meta["inputs"]) == ["data"] and list(meta["outputs"]) == ["result"]
    x = np.ones((2, 10), np.float32)
    np.testing.assert_allclose(client.predict({"data": x}, "m"), x * 2 + 1, rtol=1e-6)
    assert client.get_model_metadata("m")["inputs"]["data"]["shape"] == [2, 10]
    with pytest.raises(ovmsclient.tfs_compat.base.errors.InvalidInputError) as info:
        client.predict({"b": x}, "m")
    assert "Missing input with specific name - Required input: data" in str(info.value)


def write_garbage(base: Path, version: int) -> None:
    d = base / str(version)
    d.mkdir(parents=True)
    (d / "model.xml").write_text("<net>this is not a model")
    (d / "model.bin").write_bytes(os.urandom(64))


def test_corrupt_version_beside_a_good_one_loads_once_fixed(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    write_garbage(base, 2)
    s = serve(["--model_name", "m", "--model_path", str(base), "--model_version_policy", '{"all": {}}',
               "--file_system_poll_wait_seconds", "0", "--plugin_config", F32])
    status = ovmsclient.make_grpc_client(s.grpc_address).get_model_status("m")
    assert status[1] == {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}
    assert status[2]["state"] == "LOADING" and status[2]["error_code"] != 0
    assert "Cannot read model" in status[2]["error_message"]
    assert predict(s) == (1, 1.0)
    err = rpc_error(predict, s, version=2)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == "Model with requested version is not loaded yet"
    assert reload(s) is False  # nothing changed on disk: no new attempt
    shutil.rmtree(base / "2")
    write_affine(base, 2, bias=2.0)
    assert reload(s) is True
    assert states(s) == {2: "AVAILABLE", 1: "AVAILABLE"} and predict(s) == (2, 2.0)


def test_half_copied_version_does_not_take_the_old_one_down(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    write_affine(tmp_path / "staging", 2, bias=2.0)
    s = serve(["--model_name", "m", "--model_path", str(base), "--file_system_poll_wait_seconds", "0",
               "--plugin_config", F32])
    (base / "2").mkdir()
    shutil.copy(tmp_path / "staging" / "2" / "model.xml", base / "2")  # the .bin is not there yet
    assert reload(s) is True
    assert states(s) == {2: "LOADING", 1: "AVAILABLE"}
    assert s.server.manager.status("m", 2)[0].error == "File not found or cannot open"
    assert predict(s) == (1, 1.0)
    shutil.copy(tmp_path / "staging" / "2" / "model.bin", base / "2")
    assert reload(s) is True
    assert states(s) == {2: "AVAILABLE", 1: "END"} and predict(s) == (2, 2.0)


def test_model_without_version_directories(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_affine(tmp_path / "a", 1)
    cfg = write_config(tmp_path / "config.json", [{"name": "empty", "base_path": "empty"},
                                                  {"name": "missing", "base_path": "missing"},
                                                  {"name": "a", "base_path": "a"}])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    assert s.server.dataplane.ready()
    assert states(s, "empty") == {} and states(s, "missing") == {}
    for model in ("empty", "missing"):
        err = rpc_error(predict, s, model)
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "Model with requested version is not found")
    assert predict(s, "a")[0] == 1
    write_affine(tmp_path / "empty", 4, bias=4.0)
    assert reload(s) is True
    assert predict(s, "empty") == (4, 4.0)
