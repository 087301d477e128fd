"""Client side of vinoserve's TF Serving gRPC API (no TensorFlow needed).

``TfsClient`` calls Predict, GetModelMetadata and GetModelStatus with numpy arrays in and out,
over a plain or TLS channel; ``metadata()`` answers a ``TfsModelMetadata`` (the ``serving_default``
signature as ``TensorInfo`` entries) and ``status()`` a list of ``TfsVersionStatus``.
``vinoserve.client.grpc_serving_client`` is the example client installed as ``vinoserve-grpc-client``.

The names below are imported on first use, so that running the example client imports gRPC
only after it has set gRPC's log level.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tfs import (
        ClientError,
        ClientTlsFiles,
        TensorInfo,
        TfsClient,
        TfsModelMetadata,
        TfsVersionStatus,
        decode_outputs,
        predict_request,
    )

__all__ = [
    "ClientError",
    "ClientTlsFiles",
    "TensorInfo",
    "TfsClient",
    "TfsModelMetadata",
    "TfsVersionStatus",
    "decode_outputs",
    "predict_request",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".tfs", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
