"""The one business API that the gRPC and REST layers call (TFS and KServe alike)."""

from __future__ import annotations

import logging
import time

from . import __version__
from .drain import Drain
from .errors import StatusCode, VinoserveError
from .manager.manager import ModelManager
from .metrics import Metrics
from .types import InferRequest, InferResponse, ModelMetadata, VersionState, VersionStatus

log = logging.getLogger(__name__)


class DataPlane:
    """Live/ready, metadata, status, inference and config reload over the model manager."""

    def __init__(self, manager: ModelManager, metrics: Metrics, max_request_bytes: int) -> None:
        self.manager = manager
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.drain = Drain()  # shutting down: not ready, new requests refused

    # -- server -----------------------------------------------------------------------------
    def live(self) -> bool:
        """The process is up and answering."""
        return True

    def ready(self) -> bool:
        """Every configured model finished its first load attempt, and the server is not shutting down."""
        return self.manager.ready and not self.drain.closing

    def server_metadata(self) -> dict[str, object]:
        """KServe ServerMetadata: name, version, extensions."""
        return {"name": "vinoserve", "version": __version__, "extensions": []}

    # -- models -----------------------------------------------------------------------------
    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Status of one version, or of all versions when ``version`` is None."""
        return self.manager.status(name, version)

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        """I/O of the requested (or default) version, as currently compiled."""
        return self.manager.get_version(name, version).metadata()

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether that version is AVAILABLE; unknown model/version raise NOT_FOUND."""
        try:
            v = self.manager.get_version(name, version)
        except VinoserveError as exc:
            if exc.code in (StatusCode.VERSION_NOT_LOADED, StatusCode.VERSION_RETIRED):
                return False
            raise
        return v.state == VersionState.AVAILABLE

    def config_status(self) -> dict[str, list[VersionStatus]]:
        """Status of every model, by name (``GET /v1/config``)."""
        return self.manager.all_status()

    async def reload_config(self) -> tuple[bool, dict[str, list[VersionStatus]]]:
        """Re-read the config and repository now; returns (anything changed, status map)."""
        changed = await self.manager.reload()
        return changed, self.manager.all_status()

    # -- inference --------------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResponse:
        """Run one request on the requested (or default) version, counting it in the metrics.

        Only versions that exist get series of their own; a request that finds none is counted
        without its model name (see :meth:`Metrics.refused`), so made-up names cost nothing.
        """
        m = self.metrics
        start = time.perf_counter()
        try:
            mv = self.manager.get_version(request.model_name, request.model_version)
        except VinoserveError as exc:
            self._count_unserved(request, exc.code)
            raise
        labels = (mv.name, str(mv.version))
        gauge = m.current_requests.labels(*labels)
        gauge.inc()
        try:
            outputs = await mv.infer(request.inputs, request.requested_outputs)
        except VinoserveError:
            m.requests_fail.labels(*labels, request.api, request.interface, "infer").inc()
            raise
        except Exception as exc:  # anything unexpected becomes INTERNAL; the server stays up
            log.exception("inference failed on model %s version %s", mv.name, mv.version)
            m.requests_fail.labels(*labels, request.api, request.interface, "infer").inc()
            raise VinoserveError(StatusCode.INTERNAL) from exc
        finally:
            gauge.dec()
        m.requests_success.labels(*labels, request.api, request.interface, "infer").inc()
        m.request_time.labels(*labels, request.api, request.interface).observe(time.perf_counter() - start)
        return InferResponse(mv.name, mv.version, outputs, request.id)

    def _count_unserved(self, request: InferRequest, code: StatusCode) -> None:
        """A version that exists (loading, or retired) counts as its own failure; the rest as refusals."""
        model = self.manager.models.get(request.model_name)
        version = request.model_version
        if model is not None and not model.removed and version and version in model.versions:
            self.metrics.requests_fail.labels(
                model.config.name, str(version), request.api, request.interface, "infer").inc()
        else:
            self.metrics.refused(request.api, request.interface, code)
