"""Client side of vinoserve's TF Serving gRPC API (no TensorFlow needed).

``TfsClient`` calls Predict, GetModelMetadata and GetModelStatus with numpy arrays in and out,
over a plain or TLS channel. ``vinoserve.client.grpc_serving_client`` is the example client
installed as ``vinoserve-grpc-client``.
"""

from __future__ import annotations

from .tfs import (
    ClientError,
    ModelMetadata,
    TensorInfo,
    TfsClient,
    TlsFiles,
    VersionStatus,
    decode_outputs,
    predict_request,
)

__all__ = [
    "ClientError",
    "ModelMetadata",
    "TensorInfo",
    "TfsClient",
    "TlsFiles",
    "VersionStatus",
    "decode_outputs",
    "predict_request",
]
