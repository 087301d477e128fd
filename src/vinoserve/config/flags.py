"""The OVMS value syntaxes of flags and ``config.json`` entries, parsed into frozen settings.

Parsing here turns the OVMS string syntaxes (``--shape``, ``--batch_size``, ``--layout``,
``--model_version_policy``, ``--plugin_config``) into frozen values; anything malformed raises
:class:`StartupError` with one clear line.
"""

from __future__ import annotations

import json
import re

from ..errors import StartupError
from ..types import Dim
from .settings import BatchSetting, DynamicBatching, LayoutSetting, ShapeSetting, VersionPolicy

_DIM_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(\d+)\s*)?$")


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


_BATCHING_KEYS = ("max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes", "max_queue_size")


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def parse_dynamic_batching(obj: object, label: str) -> DynamicBatching:
    """``dynamic_batching`` from a JSON string or object; errors name ``label`` and the key."""
    if isinstance(obj, str):
        obj = _json(obj, label)
    if not isinstance(obj, dict):
        raise StartupError(f"{label} must be a JSON object with keys {', '.join(_BATCHING_KEYS)}")
    unknown = sorted(set(obj) - set(_BATCHING_KEYS))
    if unknown:
        raise StartupError(f"{label} has unknown key '{unknown[0]}'")
    out = DynamicBatching()
    mbs = obj.get("max_batch_size", out.max_batch_size)
    if not _positive_int(mbs):
        raise StartupError(f"{label}: 'max_batch_size' must be a positive integer")
    delay = obj.get("max_queue_delay_ms", out.max_queue_delay_ms)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 60_000:
        raise StartupError(f"{label}: 'max_queue_delay_ms' must be a number from 0 to 60000")
    preferred = obj.get("preferred_batch_sizes", [])
    if not isinstance(preferred, list) or not all(_positive_int(n) and n <= mbs for n in preferred):
        raise StartupError(
            f"{label}: 'preferred_batch_sizes' must be a list of integers from 1 to max_batch_size ({mbs})"
        )
    size = obj.get("max_queue_size", out.max_queue_size)
    if not _positive_int(size):
        raise StartupError(f"{label}: 'max_queue_size' must be a positive integer")
    return DynamicBatching(int(mbs), float(delay), tuple(sorted(set(preferred))), int(size))
