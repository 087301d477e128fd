"""vinoserve on Ray Serve: replicas across a Ray cluster, behind Ray's HTTP and gRPC proxies.

``serve run deploy/ray/serve.yaml`` starts it; :func:`app_builder` is the application's import path.
"""

from vinoserve.ray.deployment import MAX_ONGOING_REQUESTS, VinoserveDeployment, app_builder, replica_settings
from vinoserve.ray.grpc_ingress import GRPC_SERVICER_FUNCTIONS, NODE_METADATA
from vinoserve.ray.http_ingress import NODE_HEADER

__all__ = ["GRPC_SERVICER_FUNCTIONS", "MAX_ONGOING_REQUESTS", "NODE_HEADER", "NODE_METADATA",
           "VinoserveDeployment", "app_builder", "replica_settings"]
