"""config.json edits applied to a running server: add, change, remove, invalid files, reload over REST."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from vinoserve.types import VersionState

from ..helpers.clients import rpc_error
from ..helpers.management import Clients, predict, reload, states, version_object, wait_for, write_config
from ..helpers.models import write_affine
from ..helpers.server import RunningServer


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


def reshapes(s: RunningServer, model: str) -> float:
    value = s.server.metrics.registry.get_sample_value(
        "vinoserve_reshapes_total", {"name": model, "version": "1", "cause": "request"}
    )
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
    resident = s.server.metrics.registry.get_sample_value("vinoserve_variants_resident", {"name": "a", "version": "1"})
    assert resident == 2  # its own batch, compiled at load, and batch 4, warmed as the old object served it


def test_invalid_config_changes_nothing(serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_affine(tmp_path / "a", 1, bias=1.0)
    good = [{"name": "a", "base_path": "a"}]
    cfg = write_config(tmp_path / "config.json", good)
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    a1 = version_object(s, "a", 1)
    for text, error in (
        ("{not json", "is not valid JSON"),
        (
            json.dumps({"model_config_list": [{"config": {"name": "a", "base_path": "a", "x": 1}}]}),
            "Config of model 'a' has unknown key 'x'",
        ),
        (
            json.dumps({"model_config_list": [{"config": {"name": "a", "base_path": "a", "batch_size": "big"}}]}),
            "Config of model 'a': Invalid batch size: 'big'",
        ),
    ):
        cfg.write_text(text)
        caplog.clear()
        assert reload(s) is False
        assert error in (s.server.manager.config_error or "")
        assert [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()] == [
            f"Config file not applied, models unchanged: {s.server.manager.config_error}"
        ]
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
