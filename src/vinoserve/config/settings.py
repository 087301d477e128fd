"""Typed settings of the server and of each model: frozen values built once, at the edge.

The command line and ``config.json`` are parsed into these (``flags.py``, ``model.py``, ``file.py``);
nothing past start-up reads a flag string again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..tls import TlsFiles
from ..types import Dim


@dataclass(frozen=True, slots=True)
class ShapeSetting:
    """One input's configured shape: ``auto``, or dims (static, ``-1`` or ranges)."""

    auto: bool = False
    dims: tuple[Dim, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchSetting:
    """``--batch_size``: ``auto``, or one dimension (``N``, ``-1``, ``a:b``) for the batch axis."""

    auto: bool = False
    dim: Dim | None = None


@dataclass(frozen=True, slots=True)
class LayoutSetting:
    """Request-side layout and model-side layout (equal unless ``NHWC:NCHW`` asks for a transpose)."""

    tensor: str
    model: str


@dataclass(frozen=True, slots=True)
class DynamicBatching:
    """``dynamic_batching`` of a model (SPEC §7.4): how concurrent requests are merged."""

    max_batch_size: int = 8
    max_queue_delay_ms: float = 0.0  # 0: take what is queued now, never wait when idle
    preferred_batch_sizes: tuple[int, ...] = ()  # under auto: the sizes batches land on
    max_queue_size: int = 1024


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which versions on disk are served: ``latest`` N, ``specific`` list, or ``all``."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions among ``available`` that this policy serves."""
        if self.kind == "all":
            return sorted(available)
        if self.kind == "specific":
            return sorted(v for v in available if v in self.versions)
        return sorted(available)[-self.num_versions :]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything about one served model, as ``config.model.build_model_config`` builds it.

    The fields have no defaults here: the builder is the one place that spells them, for the flags
    and for ``config.json`` alike.
    """

    name: str
    base_path: Path
    batch: BatchSetting | None
    shape: dict[str | None, ShapeSetting] | None  # None key: anonymous tuple
    layout: dict[str | None, LayoutSetting] | None
    version_policy: VersionPolicy
    nireq: int
    target_device: str
    plugin_config: dict[str, object]
    shape_variants: int
    warmup_batch_sizes: tuple[int, ...]  # compiled and run on zeros before the version is AVAILABLE
    dynamic_batching: DynamicBatching | None = None  # None: every request runs on its own

    @property
    def is_auto(self) -> bool:
        """Whether any input reshapes on demand."""
        batch_auto = bool(self.batch and self.batch.auto)
        return batch_auto or bool(self.shape and any(s.auto for s in self.shape.values()))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The whole server's settings."""

    port: int = 0
    rest_port: int = 0
    grpc_bind_address: str = "0.0.0.0"
    rest_bind_address: str = "0.0.0.0"
    models: tuple[ModelConfig, ...] = ()
    config_path: Path | None = None
    file_system_poll_wait_seconds: float = 1.0
    log_level: str = "INFO"
    metrics_enable: bool = False
    cache_dir: str | None = None
    max_request_mb: int = 1024
    shape_variants: int = 4  # the default of models that do not set their own (config reloads need it)
    tls: TlsFiles | None = None  # both ports serve TLS (and demand client certificates with a client CA)
    shutdown_timeout_s: float = 30.0  # in-flight requests get this long after SIGTERM/SIGINT

    @property
    def max_request_bytes(self) -> int:
        """The request size limit in bytes."""
        return self.max_request_mb * 1024 * 1024
