"""Typed settings built once, at the edge, from the command line (or ``config.json``).

Parsing here turns the OVMS string syntaxes (``--shape``, ``--batch_size``, ``--layout``,
``--model_version_policy``) into frozen values; anything malformed raises :class:`StartupError`
with one clear line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StartupError
from .tls import TlsFiles
from .types import Dim

_DIM_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(\d+)\s*)?$")


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
    """Everything about one served model."""

    name: str
    base_path: Path
    batch: BatchSetting | None = None
    shape: dict[str | None, ShapeSetting] | None = None  # None key: anonymous tuple
    layout: dict[str | None, LayoutSetting] | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    nireq: int = 0
    target_device: str = "CPU"
    plugin_config: dict[str, object] = field(default_factory=dict)
    shape_variants: int = 4

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


def _json(text: str, what: str) -> object:
    """A JSON value given on the command line, or one clear StartupError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StartupError(f"Invalid {what} JSON: {exc.msg}") from None


def parse_dim(text: str, what: str) -> Dim:
    """``N``, ``-1`` or ``a:b``."""
    m = _DIM_RE.match(text)
    if not m:
        raise StartupError(f"Invalid {what}: '{text}'")
    lo = int(m.group(1))
    if m.group(2) is not None:
        hi = int(m.group(2))
        if lo < 0 or hi < lo:
            raise StartupError(f"Invalid {what}: '{text}' (range must be a:b with 0 <= a <= b)")
        return Dim(lo, hi)
    if lo == -1:
        return Dim.any()
    if lo <= 0:
        raise StartupError(f"Invalid {what}: '{text}' (dimensions must be positive, -1 or a:b)")
    return Dim.static(lo)


def parse_batch(text: str) -> BatchSetting:
    """``--batch_size`` value."""
    t = str(text).strip()
    if t.lower() == "auto":
        return BatchSetting(auto=True)
    return BatchSetting(dim=parse_dim(t, "batch size"))


def _parse_one_shape(text: str, where: str) -> ShapeSetting:
    t = str(text).strip()
    if t.lower() == "auto":
        return ShapeSetting(auto=True)
    if len(t) < 2 or t[0] not in "([" or t[-1] not in ")]":
        raise StartupError(f"Invalid shape{where}: '{t}' (expected e.g. (1,3,224,224) or auto)")
    inner = t[1:-1].strip()
    parts = [p for p in inner.split(",")] if inner else []
    return ShapeSetting(dims=tuple(parse_dim(p, f"shape dimension{where}") for p in parts))


def parse_shape(text: str) -> dict[str | None, ShapeSetting]:
    """``--shape``: a tuple, ``auto``, or a JSON object of per-input shapes."""
    t = str(text).strip()
    if t.startswith("{"):
        return parse_shape_obj(_json(t, "shape"))
    return {None: _parse_one_shape(t, "")}


def parse_shape_obj(obj: object) -> dict[str | None, ShapeSetting]:
    """Per-input shapes from a JSON object (values are strings or lists of ints)."""
    if not isinstance(obj, dict) or not obj:
        raise StartupError("Invalid shape: expected an object of input name to shape")
    out: dict[str | None, ShapeSetting] = {}
    for name, val in obj.items():
        if isinstance(val, list):
            val = "(" + ",".join(str(v) for v in val) + ")"
        if not isinstance(val, str):
            raise StartupError(f"Invalid shape for input '{name}': {val!r}")
        out[str(name)] = _parse_one_shape(val, f" for input '{name}'")
    return out


def _parse_one_layout(text: str, where: str) -> LayoutSetting:
    t = str(text).strip()
    parts = t.split(":")
    if len(parts) > 2 or not all(re.fullmatch(r"[A-Za-z?.]+", p) for p in parts):
        raise StartupError(f"Invalid layout{where}: '{t}' (expected e.g. NCHW or NHWC:NCHW)")
    tensor, model = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[0])
    if len(parts) == 2 and sorted(tensor.upper()) != sorted(model.upper()):
        raise StartupError(f"Invalid layout{where}: '{t}' (both sides need the same dimensions)")
    return LayoutSetting(tensor.upper(), model.upper())


def parse_layout(text: str) -> dict[str | None, LayoutSetting]:
    """``--layout``: ``NCHW``, ``NHWC:NCHW`` or a JSON object of per-input layouts."""
    t = str(text).strip()
    if t.startswith("{"):
        return parse_layout_obj(_json(t, "layout"))
    return {None: _parse_one_layout(t, "")}


def parse_layout_obj(obj: object) -> dict[str | None, LayoutSetting]:
    """Per-input layouts from a JSON object."""
    if not isinstance(obj, dict) or not obj:
        raise StartupError("Invalid layout: expected an object of input name to layout")
    return {str(k): _parse_one_layout(str(v), f" for input '{k}'") for k, v in obj.items()}


def parse_policy(obj: object) -> VersionPolicy:
    """``model_version_policy`` from a JSON string or object."""
    if isinstance(obj, str):
        obj = _json(obj, "model_version_policy")
    if not isinstance(obj, dict) or len(obj) != 1:
        raise StartupError("Invalid model_version_policy: expected one of latest, specific, all")
    kind, body = next(iter(obj.items()))
    if not isinstance(body, dict):
        raise StartupError(f"Invalid model_version_policy: '{kind}' needs an object")
    if kind == "all" and not body:
        return VersionPolicy(kind="all")
    if kind == "latest" and set(body) <= {"num_versions"}:
        n = body.get("num_versions", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise StartupError("Invalid model_version_policy: num_versions must be a positive integer")
        return VersionPolicy(kind="latest", num_versions=n)
    if kind == "specific" and set(body) == {"versions"}:
        vs = body["versions"]
        if not isinstance(vs, list) or not vs or not all(isinstance(v, int) and v > 0 for v in vs):
            raise StartupError("Invalid model_version_policy: versions must be a list of positive integers")
        return VersionPolicy(kind="specific", versions=tuple(vs))
    raise StartupError(f"Invalid model_version_policy: {json.dumps(obj)}")


def parse_plugin_config(obj: object) -> dict[str, object]:
    """``plugin_config`` from a JSON string or object."""
    if isinstance(obj, str):
        obj = _json(obj, "plugin_config")
    if not isinstance(obj, dict):
        raise StartupError("Invalid plugin_config: expected a JSON object")
    return {str(k): v for k, v in obj.items()}
