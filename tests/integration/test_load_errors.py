"""Load errors shown in model status say what went wrong without the server's paths (SPEC §6)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import requests

from vinoserve.protocol.generated.tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from ..helpers.management import write_config
from ..helpers.models import write_affine, write_rigid
from ..helpers.server import F32, RunningServer

# what each broken model's status must still say
EXPECTED = {
    "corrupt": "Cannot read model file model.xml",
    "layout": "Cannot apply layout: Dimension (N) is defined multiple times",
    "rigid": "Cannot reshape to b(2,10): Requested output shape [1,2,5] is incompatible",
}


@pytest.fixture
def server(serve: Callable[..., RunningServer], tmp_path: Path) -> RunningServer:
    corrupt = tmp_path / "corrupt" / "1"
    corrupt.mkdir(parents=True)
    (corrupt / "model.xml").write_text("<net>this is not a model")
    (corrupt / "model.bin").write_bytes(os.urandom(64))
    plugin = json.loads(F32)
    config = write_config(
        tmp_path / "config.json",
        [
            {"name": "corrupt", "base_path": str(tmp_path / "corrupt"), "plugin_config": plugin},
            {
                "name": "layout",
                "base_path": str(write_affine(tmp_path / "layout")),
                "layout": "NN",
                "plugin_config": plugin,
            },
            {
                "name": "rigid",
                "base_path": str(write_rigid(tmp_path / "rigid")),
                "shape": "(2,10)",
                "plugin_config": plugin,
            },
        ],
    )
    return serve(["--config_path", str(config)], rest=True)


def _assert_clean(text: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in text
    assert "src/" not in text and ".cpp" not in text and ".hpp" not in text, text
    assert not re.search(r"(^|[\s\"'(])/\w", text), text  # no absolute path of any kind


def test_status_texts_name_the_failure_without_paths(server: RunningServer, tmp_path: Path) -> None:
    with grpc.insecure_channel(server.grpc_address) as ch:
        status = model_service_pb2_grpc.ModelServiceStub(ch).GetModelStatus
        for name, expected in EXPECTED.items():
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = name
            (entry,) = status(req, timeout=30).model_version_status
            assert entry.state == get_model_status_pb2.ModelVersionStatus.LOADING
            assert expected in entry.status.error_message, entry.status.error_message
            _assert_clean(entry.status.error_message, tmp_path)

    for name, expected in EXPECTED.items():
        body = requests.get(f"{server.rest_url}/v1/models/{name}", timeout=30).text
        assert expected in json.loads(body)["model_version_status"][0]["status"]["error_message"]
        _assert_clean(body, tmp_path)
    config = requests.get(f"{server.rest_url}/v1/config", timeout=30).text
    assert all(expected in config for expected in EXPECTED.values())
    _assert_clean(config, tmp_path)
