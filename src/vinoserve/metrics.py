"""Prometheus metrics (SPEC §5 Metrics), kept in one registry per server.

Per-request series (request counts and times, infer-request wait, inference time, variant cache
hits and misses, batch sizes, queue delays and padding) are updated only with ``--metrics_enable``:
without it nobody can read them, and on small requests their updates are a measurable share of the
server's own time. Each version resolves its labelled series once (:class:`VersionSeries`), not
with a ``labels()`` lookup per request.

Series are labelled only with models and versions that exist: a request for a model or version
that does not exist is counted in ``vinoserve_requests_refused`` by api, interface and reason, a
fixed set of series, so clients cannot grow the registry with names of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from .errors import StatusCode

_LAT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
_COMPILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MV = ("name", "version")
APIS = ("TFS", "KServe")
INTERFACES = ("gRPC", "REST")
# why a request found no model version to run on
REFUSALS = (
    StatusCode.MODEL_NOT_FOUND,
    StatusCode.VERSION_NOT_FOUND,
    StatusCode.VERSION_NOT_LOADED,
    StatusCode.VERSION_RETIRED,
)


class Metrics:
    """All server metrics; ``registry`` is what ``GET /metrics`` renders.

    ``per_request`` False (no ``--metrics_enable``): :meth:`version_series` gives None and nothing
    is updated per request; load, reshape and variant residency series are kept either way.
    """

    def __init__(self, per_request: bool = True) -> None:
        self.per_request = per_request
        r = self.registry = CollectorRegistry()
        self.requests_success = Counter(
            "ovms_requests_success", "Successful requests", (*_MV, "api", "interface", "method"), registry=r
        )
        self.requests_fail = Counter(
            "ovms_requests_fail", "Failed requests", (*_MV, "api", "interface", "method"), registry=r
        )
        self.request_time = Histogram(
            "ovms_request_time_seconds",
            "Request handling time",
            (*_MV, "api", "interface"),
            buckets=_LAT_BUCKETS,
            registry=r,
        )
        self.inference_time = Histogram(
            "ovms_inference_time_seconds", "Inference execution time", _MV, buckets=_LAT_BUCKETS, registry=r
        )
        self.wait_for_infer_req_time = Histogram(
            "ovms_wait_for_infer_req_time_seconds",
            "Time a request waited for a free infer request",
            _MV,
            buckets=_LAT_BUCKETS,
            registry=r,
        )
        self.current_requests = Gauge("ovms_current_requests", "Requests in progress", _MV, registry=r)
        self.reshapes = Counter("vinoserve_reshapes", "Shape variants compiled after load", (*_MV, "cause"), registry=r)
        self.reshape_failures = Counter(
            "vinoserve_reshape_failures", "Shapes the model could not take", _MV, registry=r
        )
        self.reshape_time = Histogram(
            "vinoserve_reshape_time_seconds",
            "Reshape and compile time of a shape variant",
            _MV,
            buckets=_COMPILE_BUCKETS,
            registry=r,
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
        self.variants_resident = Gauge("vinoserve_variants_resident", "Compiled shape variants held", _MV, registry=r)
        self.batch_size = Histogram(
            "vinoserve_batch_size",
            "Request rows merged into one inference by the batcher (without padding)",
            _MV,
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_queue_delay = Histogram(
            "vinoserve_batch_queue_delay_seconds",
            "Time a request waited in the batching queue",
            _MV,
            buckets=_LAT_BUCKETS,
            registry=r,
        )
        self.batch_padding_rows = Counter(
            "vinoserve_batch_padding_rows",
            "Rows added to merged batches to land on a compiled batch size",
            _MV,
            registry=r,
        )
        self.requests_refused = Counter(
            "vinoserve_requests_refused",
            "Requests for a model or version that does not exist or has none loaded, without the requested name",
            ("api", "interface", "reason"),
            registry=r,
        )
        for api in APIS:  # every series from the start: the set is fixed
            for interface in INTERFACES:
                for code in REFUSALS:
                    self.requests_refused.labels(api, interface, code.name)
        self._per_model: list[tuple[MetricWrapperBase, tuple[str, ...]]] = [
            (m, labels)
            for m, labels in (
                (self.requests_success, (*_MV, "api", "interface", "method")),
                (self.requests_fail, (*_MV, "api", "interface", "method")),
                (self.request_time, (*_MV, "api", "interface")),
                (self.inference_time, _MV),
                (self.wait_for_infer_req_time, _MV),
                (self.current_requests, _MV),
                (self.reshapes, (*_MV, "cause")),
                (self.reshape_failures, _MV),
                (self.reshape_time, _MV),
                (self.variant_hits, _MV),
                (self.variant_misses, _MV),
                (self.variant_evictions, _MV),
                (self.variants_resident, _MV),
                (self.batch_size, _MV),
                (self.batch_queue_delay, _MV),
                (self.batch_padding_rows, _MV),
            )
        ]

    def version_series(self, name: str, version: str) -> VersionSeries | None:
        """The per-request series of one version, or None when they are not kept."""
        return VersionSeries(self, name, version) if self.per_request else None

    def refused(self, api: str, interface: str, code: StatusCode) -> None:
        """Count a request that found no model version to run on (the name stays out of the labels)."""
        if self.per_request and code in REFUSALS and api in APIS and interface in INTERFACES:
            self.requests_refused.labels(api, interface, code.name).inc()

    def drop_model(self, name: str) -> None:
        """Remove every series of model ``name`` (it was taken out of the configuration)."""
        for metric, labelnames in self._per_model:
            keys = {
                tuple(sample.labels[n] for n in labelnames)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("name") == name
            }
            for key in keys:
                metric.remove(*key)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class CallSeries:
    """The series one request updates, for one version, api and interface."""

    current: Gauge
    success: Counter
    fail: Counter
    request_time: Histogram


class VersionSeries:
    """Per-request series of one model version, each labelled on first use and then kept.

    Created on first use rather than up front, so a series appears once it has something to count,
    as it did with a lookup per request.
    """

    __slots__ = ("_metrics", "_labels", "_calls", "_timing", "_variant")

    def __init__(self, metrics: Metrics, name: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (name, version)
        self._calls: dict[tuple[str, str], CallSeries] = {}  # at most 2 apis × 2 interfaces
        self._timing: tuple[Histogram, Histogram] | None = None
        self._variant: tuple[Counter, Counter] | None = None

    def call(self, api: str, interface: str) -> CallSeries:
        """In progress, succeeded, failed and request time of requests through ``api`` over ``interface``."""
        found = self._calls.get((api, interface))
        if found is None:
            m, labels = self._metrics, self._labels
            found = self._calls[(api, interface)] = CallSeries(
                m.current_requests.labels(*labels),
                m.requests_success.labels(*labels, api, interface, "infer"),
                m.requests_fail.labels(*labels, api, interface, "infer"),
                m.request_time.labels(*labels, api, interface),
            )
        return found

    def timing(self) -> tuple[Histogram, Histogram]:
        """(wait for an infer request, inference time)."""
        if self._timing is None:
            m = self._metrics
            self._timing = (m.wait_for_infer_req_time.labels(*self._labels), m.inference_time.labels(*self._labels))
        return self._timing

    def variant_cache(self) -> tuple[Counter, Counter]:
        """(hits, misses) of the shape variant cache."""
        if self._variant is None:
            m = self._metrics
            self._variant = (m.variant_hits.labels(*self._labels), m.variant_misses.labels(*self._labels))
        return self._variant
