"""vinoserve on Ray Serve: replicas across a Ray cluster, behind Ray's HTTP and gRPC proxies.

``serve run deploy/ray/serve.yaml`` starts it; ``vinoserve.ray:app_builder`` is the application's
import path. Ray is imported on first use of the deployment, so :mod:`vinoserve.ray.settings` works
without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "app_builder": "vinoserve.ray.deployment",
    "VinoserveDeployment": "vinoserve.ray.deployment",
    "MAX_ONGOING_REQUESTS": "vinoserve.ray.deployment",
    "GRPC_SERVICER_FUNCTIONS": "vinoserve.ray.grpc_ingress",
    "NODE_METADATA": "vinoserve.ray.grpc_ingress",
    "NODE_HEADER": "vinoserve.ray.http_ingress",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
