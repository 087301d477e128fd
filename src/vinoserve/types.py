"""Wire-neutral value types shared by the protocol layers, the data plane and the models."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Dim:
    """One dimension: static (``lo == hi``), any size (``-1``), or a range ``[lo~hi]``."""

    lo: int
    hi: int

    @staticmethod
    def static(n: int) -> Dim:
        """A dimension of exactly ``n``."""
        return Dim(n, n)

    @staticmethod
    def any() -> Dim:
        """A dimension that takes any size."""
        return Dim(-1, -1)

    @property
    def is_static(self) -> bool:
        """True when the dimension has one size."""
        return self.lo == self.hi and self.lo >= 0

    def accepts(self, n: int) -> bool:
        """Whether a concrete size ``n`` fits this dimension."""
        if self.lo == -1 and self.hi == -1:
            return True
        lo = max(self.lo, 0)
        return lo <= n and (self.hi == -1 or n <= self.hi)

    def __str__(self) -> str:
        if self.is_static:
            return str(self.lo)
        if self.lo == -1 and self.hi == -1:
            return "-1"
        return f"[{max(self.lo, 0)}~{self.hi}]"


Shape = tuple[Dim, ...]


def format_shape(dims: tuple[int, ...] | tuple[Dim, ...] | list[int]) -> str:
    """Print a shape as OVMS does: ``(1,3,224,224)``, dims as ``N``, ``-1`` or ``[a~b]``."""
    return "(" + ",".join(str(d) for d in dims) + ")"


def static_shape(dims: tuple[int, ...]) -> Shape:
    """A shape of static dimensions."""
    return tuple(Dim.static(d) for d in dims)


@dataclass(frozen=True, slots=True)
class Precision:
    """One element type under all its names: OVMS/KServe, numpy, TF DataType number."""

    name: str  # OVMS name used in error texts, e.g. FP32
    kserve: str  # KServe v2 datatype, e.g. FP32
    tf: int  # tensorflow.DataType enum value
    np_dtype: np.dtype  # in-memory representation (bf16 travels as its raw 16 bits)


def _p(name: str, kserve: str, tf: int, dt: str) -> Precision:
    return Precision(name, kserve, tf, np.dtype(dt))


PRECISIONS: tuple[Precision, ...] = (
    _p("FP32", "FP32", 1, "float32"),
    _p("FP64", "FP64", 2, "float64"),
    _p("I32", "INT32", 3, "int32"),
    _p("U8", "UINT8", 4, "uint8"),
    _p("I16", "INT16", 5, "int16"),
    _p("I8", "INT8", 6, "int8"),
    _p("STRING", "BYTES", 7, "object"),
    _p("I64", "INT64", 9, "int64"),
    _p("BOOL", "BOOL", 10, "bool"),
    _p("BF16", "BF16", 14, "uint16"),
    _p("U16", "UINT16", 17, "uint16"),
    _p("FP16", "FP16", 19, "float16"),
    _p("U32", "UINT32", 22, "uint32"),
    _p("U64", "UINT64", 23, "uint64"),
)
BY_NAME: dict[str, Precision] = {p.name: p for p in PRECISIONS}
BY_KSERVE: dict[str, Precision] = {p.kserve: p for p in PRECISIONS}
BY_TF: dict[int, Precision] = {p.tf: p for p in PRECISIONS}
# numpy dtype -> precision; uint16 maps to U16 (bf16 is only chosen when the model says so)
BY_NUMPY: dict[np.dtype, Precision] = {p.np_dtype: p for p in reversed(PRECISIONS) if p.name != "BF16"}


def precision_of(array: np.ndarray) -> Precision:
    """The precision a numpy array carries (object arrays are STRING)."""
    p = BY_NUMPY.get(array.dtype)
    if p is None:
        if array.dtype.kind in ("S", "U", "O"):
            return BY_NAME["STRING"]
        raise KeyError(str(array.dtype))
    return p


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """An input or output as a client sees it: alias name, precision and (current) shape."""

    name: str
    precision: Precision
    shape: Shape
    layout: str = ""


class VersionState(enum.IntEnum):
    """Model version states, with the OVMS/TF Serving numbers."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """The state of one model version; ``error`` is the load failure text, if any."""

    version: int
    state: VersionState
    error: str = ""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """Name, version and the I/O of the variant most recently used."""

    name: str
    version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What the server says of itself (KServe ServerMetadata): name, version, protocol extensions."""

    name: str
    version: str
    extensions: tuple[str, ...] = ()


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request: arrays by client-visible input name."""

    model_name: str
    model_version: int | None
    inputs: dict[str, np.ndarray]
    requested_outputs: list[str] | None = None
    id: str = ""
    # "TFS" or "KServe"; "gRPC" or "REST": labels for metrics only
    api: str = "TFS"
    interface: str = "gRPC"


@dataclass(slots=True)
class InferResponse:
    """Inference results by client-visible output name, in the model's output order."""

    model_name: str
    model_version: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    id: str = ""
