"""The client library (``vinoserve.client.TfsClient``) against a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vinoserve.client import ClientError, TfsClient

from ...helpers.example_client import LABELS, quadrant_images
from ...helpers.models import write_affine
from ...helpers.server import F32, RunningServer, Serve


def test_library_predict_metadata_status(quad: RunningServer) -> None:
    imgs = quadrant_images(LABELS) * 255
    with TfsClient(quad.grpc_address) as client:
        assert client.wait_available("quad", timeout=30).state == "AVAILABLE"
        [status] = client.status("quad")
        assert (status.version, status.state, status.error_code) == (1, "AVAILABLE", 0)
        out = client.predict("quad", {"image": imgs[:8]}, version=1)
        assert list(out) == ["probabilities"] and out["probabilities"].shape == (8, 4)
        assert out["probabilities"].argmax(1).tolist() == LABELS[:8]
        meta = client.metadata("quad")
        assert meta.version == 1 and meta.labels == ()
        assert meta.inputs["image"].dtype == "DT_FLOAT" and meta.inputs["image"].shape == (8, 3, 8, 8)
        assert meta.outputs["probabilities"].shape == (8, 4)
        with pytest.raises(ClientError) as err:
            client.status("nope")
        assert str(err.value) == "NOT_FOUND: Model with requested name is not found"


def test_library_sends_messages_above_grpc_default_limit(serve: Serve, tmp_path: Path) -> None:
    """A batch of 8 images of 3x224x224 float32 (4.8 MB each way) is more than gRPC's 4 MB default."""
    server = serve(
        [
            "--model_name",
            "aff",
            "--model_path",
            str(write_affine(tmp_path / "aff", shape=[8, 3, 224, 224])),
            "--plugin_config",
            F32,
        ]
    )
    x = np.random.default_rng(0).random((8, 3, 224, 224), dtype=np.float32)
    with TfsClient(server.grpc_address) as client:
        y = client.predict("aff", {"b": x})["y"]
    np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)
