"""Prometheus metrics (SPEC §5 Metrics), kept in one registry per server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LAT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_COMPILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MV = ("name", "version")


class Metrics:
    """All server metrics; ``registry`` is what ``GET /metrics`` renders."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests_success = Counter(
            "ovms_requests_success", "Successful requests", (*_MV, "api", "interface", "method"), registry=r
        )
        self.requests_fail = Counter(
            "ovms_requests_fail", "Failed requests", (*_MV, "api", "interface", "method"), registry=r
        )
        self.request_time = Histogram(
            "ovms_request_time_seconds", "Request handling time", (*_MV, "api", "interface"),
            buckets=_LAT_BUCKETS, registry=r,
        )
        self.inference_time = Histogram(
            "ovms_inference_time_seconds", "Inference execution time", _MV, buckets=_LAT_BUCKETS, registry=r
        )
        self.wait_for_infer_req_time = Histogram(
            "ovms_wait_for_infer_req_time_seconds", "Time a request waited for a free infer request",
            _MV, buckets=_LAT_BUCKETS, registry=r,
        )
        self.current_requests = Gauge("ovms_current_requests", "Requests in progress", _MV, registry=r)
        self.reshapes = Counter(
            "vinoserve_reshapes", "Shape variants compiled after load", (*_MV, "cause"), registry=r
        )
        self.reshape_failures = Counter(
            "vinoserve_reshape_failures", "Shapes the model could not take", _MV, registry=r
        )
        self.reshape_time = Histogram(
            "vinoserve_reshape_time_seconds", "Reshape and compile time of a shape variant", _MV,
            buckets=_COMPILE_BUCKETS, registry=r,
        )
        self.variant_hits = Counter(
            "vinoserve_variant_cache_hits", "Requests served by an already compiled variant", _MV, registry=r
        )
        self.variant_misses = Counter(
            "vinoserve_variant_cache_misses", "Requests that needed a variant compiled", _MV, registry=r
        )
        self.variant_evictions = Counter(
            "vinoserve_variant_cache_evictions", "Compiled variants evicted", _MV, registry=r
        )
        self.variants_resident = Gauge(
            "vinoserve_variants_resident", "Compiled shape variants held", _MV, registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
