"""Model versions through a real server and real file changes: switch-over, policies, repository contents."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import ovmsclient
import pytest

from vinoserve.runtime.openvino import Runtime

from ..helpers.clients import rpc_error
from ..helpers.management import Clients, add_version, predict, reload, states, version_object, wait_for, write_config
from ..helpers.models import write_affine
from ..helpers.server import F32


def test_new_version_takes_over_under_load_with_zero_failures(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--file_system_poll_wait_seconds",
            "0.1",
            "--plugin_config",
            F32,
        ]
    )
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


def test_request_waiting_for_a_compile_on_a_retiring_version_completes(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    gate, compiling = threading.Event(), threading.Event()
    runtime = Runtime()

    def hold_batch_3(shapes: Any) -> None:
        if next(iter(shapes.values()))[0].lo == 3:
            compiling.set()
            gate.wait(30)

    runtime.before_compile = hold_batch_3
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--batch_size",
            "auto",
            "--file_system_poll_wait_seconds",
            "0",
            "--plugin_config",
            F32,
        ],
        runtime=runtime,
    )
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
    cfg = write_config(
        tmp_path / "config.json",
        [
            {"name": "latest2", "base_path": "m", "model_version_policy": {"latest": {"num_versions": 2}}},
            {"name": "specific", "base_path": "m", "model_version_policy": {"specific": {"versions": [1, 3, 7]}}},
            {"name": "all", "base_path": "m", "model_version_policy": {"all": {}}},
            {"name": "default", "base_path": "m"},
        ],
    )
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


# -- repository contents ---------------------------------------------------------------------------


def test_mapping_aliases_in_metadata_and_inference(serve: Any, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    (base / "1" / "mapping_config.json").write_text(json.dumps({"inputs": {"b": "data"}, "outputs": {"y": "result"}}))
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--batch_size",
            "auto",
            "--file_system_poll_wait_seconds",
            "0",
            "--plugin_config",
            F32,
        ]
    )
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
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--model_version_policy",
            '{"all": {}}',
            "--file_system_poll_wait_seconds",
            "0",
            "--plugin_config",
            F32,
        ]
    )
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
    s = serve(
        ["--model_name", "m", "--model_path", str(base), "--file_system_poll_wait_seconds", "0", "--plugin_config", F32]
    )
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
    cfg = write_config(
        tmp_path / "config.json",
        [
            {"name": "empty", "base_path": "empty"},
            {"name": "missing", "base_path": "missing"},
            {"name": "a", "base_path": "a"},
        ],
    )
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
