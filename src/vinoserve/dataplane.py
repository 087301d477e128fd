"""The one business API that the gRPC and REST layers call (TFS and KServe alike)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from . import __version__
from .drain import Drain
from .errors import StatusCode, VinoserveError
from .manager.manager import ModelManager
from .manager.version import ModelVersion
from .metrics import Metrics
from .shm import ShmRegistry
from .types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    VersionState,
    VersionStatus,
)

log = logging.getLogger(__name__)

# Decodes a request body once its model version is known, from that version's metadata.
Decode = Callable[[ModelMetadata], Awaitable[dict[str, np.ndarray]]]
# KServe v2 protocol extensions, named as Triton names them
EXTENSIONS = ("system_shared_memory",)


class DataPlane:
    """Live/ready, metadata, status, inference and config reload over the model manager."""

    def __init__(self, manager: ModelManager, metrics: Metrics) -> None:
        self.manager = manager
        self.metrics = metrics
        self.drain = Drain()  # shutting down: not ready, new requests refused
        self.shm = ShmRegistry()  # system shared memory regions of co-located clients

    # -- server -----------------------------------------------------------------------------
    def live(self) -> bool:
        """The process is up and answering."""
        return True

    def ready(self) -> bool:
        """Every configured model finished its first load attempt, and the server is not shutting down."""
        return self.manager.ready and not self.drain.closing

    def server_metadata(self) -> ServerMetadata:
        """KServe ServerMetadata: name, version, extensions."""
        return ServerMetadata("vinoserve", __version__, EXTENSIONS)

    # -- models -----------------------------------------------------------------------------
    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Status of one version, or of all versions when ``version`` is None."""
        return self.manager.status(name, version)

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        """I/O of the requested (or default) version, as currently compiled."""
        return self.manager.get_version(name, version).metadata()

    def available_versions(self, meta: ModelMetadata) -> list[int]:
        """The versions of ``meta``'s model that serve requests, in order; ``meta``'s own when none does."""
        available = [s.version for s in self.manager.status(meta.name, None) if s.state == VersionState.AVAILABLE]
        return sorted(available) or [meta.version]

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
    async def infer(self, request: InferRequest, decode: Decode | None = None) -> InferResponse:
        """Run one request on the requested (or default) version, counting it in the metrics.

        With ``decode``, the inputs are decoded only once the version is found, from its metadata
        (``request.inputs`` is not read): TF Serving REST reads JSON numbers as the precisions of
        the model's inputs. Either way, a request whose version is not found is counted, and a
        request that fails to decode is not (as one that fails to decode before this call).
        """
        mv = self._version_for(request)
        inputs = request.inputs if decode is None else await decode(mv.metadata())
        series = mv.series.call(request.api, request.interface) if mv.series is not None else None
        start = time.perf_counter()
        if series is not None:
            series.current.inc()
        try:
            outputs = await mv.infer(inputs, request.requested_outputs)
        except VinoserveError:
            if series is not None:
                series.fail.inc()
            raise
        except Exception as exc:  # anything unexpected becomes INTERNAL; the server stays up
            log.exception("inference failed on model %s version %s", mv.name, mv.version)
            if series is not None:
                series.fail.inc()
            raise VinoserveError(StatusCode.INTERNAL) from exc
        finally:
            if series is not None:
                series.current.dec()
        if series is not None:
            series.success.inc()
            series.request_time.observe(time.perf_counter() - start)
        return InferResponse(mv.name, mv.version, outputs, request.id)

    def _version_for(self, request: InferRequest) -> ModelVersion:
        """The version ``request`` runs on; a request that finds none is counted here.

        Only versions that exist get series of their own; a request that finds none is counted
        without its model name (see :meth:`Metrics.refused`), so made-up names cost nothing.
        """
        try:
            return self.manager.get_version(request.model_name, request.model_version)
        except VinoserveError as exc:
            self._count_unserved(request, exc.code)
            raise

    def _count_unserved(self, request: InferRequest, code: StatusCode) -> None:
        """A version that exists (loading, or retired) counts as its own failure; the rest as refusals."""
        if not self.metrics.per_request:
            return
        model = self.manager.models.get(request.model_name)
        version = request.model_version
        if model is not None and not model.removed and version and version in model.versions:
            self.metrics.requests_fail.labels(
                model.config.name, str(version), request.api, request.interface, "infer"
            ).inc()
        else:
            self.metrics.refused(request.api, request.interface, code)
