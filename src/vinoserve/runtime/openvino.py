"""Read, reshape and compile models (with :mod:`.infer_slot`, the only modules that import OpenVINO).

OpenVINO exceptions are translated here, once, into :class:`VinoserveError`: the client gets a
short text without paths (:mod:`.errortext`), the log gets OpenVINO's full text. One inference runs
on one infer request (:class:`InferSlot`) on OpenVINO's own threads; which request a client's
inference gets, and when, is decided in :mod:`vinoserve.scheduling`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
from openvino.preprocess import PrePostProcessor

from ..errors import StatusCode, VinoserveError
from ..types import BY_NAME, Dim, Precision, Shape
from .errortext import translate
from .infer_slot import InferSlot

log = logging.getLogger(__name__)

_OV_TO_PRECISION = {
    "f32": "FP32",
    "f16": "FP16",
    "bf16": "BF16",
    "f64": "FP64",
    "i8": "I8",
    "u8": "U8",
    "i16": "I16",
    "u16": "U16",
    "i32": "I32",
    "u32": "U32",
    "i64": "I64",
    "u64": "U64",
    "boolean": "BOOL",
    "string": "STRING",
}
_PRECISION_TO_OV = {v: getattr(ov.Type, k) for k, v in _OV_TO_PRECISION.items()}
# Requested shapes per input name; a Dim may be static, -1 or a range.
ShapeMap = Mapping[str, Shape]
_compile_lock = threading.Lock()
# Properties the server sets on the CPU unless the model's plugin_config names them. Pinning off: a
# small inference runs on the event loop's own thread (see scheduling.pool), and with pinning on
# OpenVINO sets and resets that thread's CPU affinity around every such call (two sched_setaffinity
# calls and a migration, 10 % of a small request's latency here); streams still run in parallel.
CPU_DEFAULTS: Mapping[str, object] = {"ENABLE_CPU_PINNING": False}


@dataclass(frozen=True, slots=True)
class Port:
    """An input or output of a model as OpenVINO describes it."""

    name: str
    precision: Precision
    shape: Shape


def _precision(t: ov.Type) -> Precision:
    name = _OV_TO_PRECISION.get(t.get_type_name())
    if name is None:
        raise VinoserveError(StatusCode.INTERNAL, f"unsupported element type {t.get_type_name()}")
    return BY_NAME[name]


def _dims(ps: ov.PartialShape) -> Shape:
    if ps.rank.is_dynamic:
        raise VinoserveError(StatusCode.INTERNAL, "models with dynamic rank are not supported")
    out = []
    for d in ps:
        if d.is_static:
            out.append(Dim.static(d.get_length()))
        elif d.get_max_length() == -1 and d.get_min_length() <= 0:
            out.append(Dim.any())
        else:
            out.append(Dim(d.get_min_length(), d.get_max_length()))
    return tuple(out)


def _partial(shape: Shape) -> ov.PartialShape:
    return ov.PartialShape(
        [
            ov.Dimension(d.lo) if d.is_static else ov.Dimension(-1) if d.hi == -1 else ov.Dimension(d.lo, d.hi)
            for d in shape
        ]
    )


def _ports(outputs: list[ov.Output]) -> list[Port]:
    return [Port(o.get_any_name(), _precision(o.get_element_type()), _dims(o.get_partial_shape())) for o in outputs]


class Runtime:
    """One OpenVINO Core for the server. ``before_compile`` is a test seam (e.g. to slow compiles)."""

    def __init__(self, cache_dir: str | None = None) -> None:
        self.core = ov.Core()
        if cache_dir:
            self.core.set_property({"CACHE_DIR": cache_dir})
        self.before_compile: Callable[[ShapeMap], None] | None = None

    def read(self, path: Path) -> SourceModel:
        """Read a model file (IR ``.xml``, ``.onnx``, ``.pdmodel``, saved-model dir, ``.tflite``)."""
        try:
            model = self.core.read_model(str(path))
        except Exception as exc:
            # only the file's name: the repository's absolute path is not the client's business
            raise translate(
                exc, StatusCode.INTERNAL, f"Cannot read model file {path.name}", "unsupported format or corrupt file"
            ) from exc
        return SourceModel(self, model)


class SourceModel:
    """A read model (not compiled) after layout changes; compiled variants are made from clones."""

    def __init__(self, runtime: Runtime, model: ov.Model) -> None:
        self.runtime = runtime
        self.model = model

    @property
    def inputs(self) -> list[Port]:
        """The model's inputs as currently shaped."""
        return _ports(self.model.inputs)

    @property
    def outputs(self) -> list[Port]:
        """The model's outputs as currently shaped."""
        return _ports(self.model.outputs)

    def set_layouts(self, layouts: Mapping[str, tuple[str, str]]) -> None:
        """Per input (tensor layout, model layout); different layouts add a transpose in the graph."""
        try:
            ppp = PrePostProcessor(self.model)
            for name, (tensor, model) in layouts.items():
                info = ppp.input(name)
                info.model().set_layout(ov.Layout(model))
                info.tensor().set_layout(ov.Layout(tensor))
            self.model = ppp.build()
        except Exception as exc:
            raise translate(exc, StatusCode.INTERNAL, "Cannot apply layout", "invalid layout") from exc

    def reshape(self, shapes: ShapeMap) -> None:
        """Reshape the source model itself (used for load-time fixed shapes)."""
        try:
            self.model.reshape({n: _partial(s) for n, s in shapes.items()})
        except Exception as exc:
            raise translate(
                exc,
                StatusCode.RESHAPE_ERROR,
                f"Cannot reshape to {_describe(shapes)}",
                "the model cannot take this shape",
            ) from exc

    def compile(
        self, shapes: ShapeMap | None, device: str, config: Mapping[str, object], nireq: int
    ) -> CompiledVariant:
        """Clone, reshape to ``shapes`` (if given) and compile; blocking, run it off the event loop."""
        hook = self.runtime.before_compile
        if hook is not None and shapes is not None:
            hook(shapes)
        with _compile_lock:  # cloning shares graph nodes; keep clones one at a time
            model = self.model.clone() if shapes else self.model
        if shapes:
            try:
                model.reshape({n: _partial(s) for n, s in shapes.items()})
            except Exception as exc:
                raise translate(
                    exc,
                    StatusCode.RESHAPE_ERROR,
                    f"Cannot reshape to {_describe(shapes)}",
                    "the model cannot take this shape",
                ) from exc
        props = {**CPU_DEFAULTS, **config} if device == "CPU" else dict(config)
        try:
            compiled = self.runtime.core.compile_model(model, device, props)
        except Exception as exc:
            code = StatusCode.RESHAPE_ERROR if shapes else StatusCode.INTERNAL
            raise translate(exc, code, f"Cannot compile for {device}", "compilation failed") from exc
        return CompiledVariant(compiled, nireq)


class CompiledVariant:
    """A compiled model and its ``nireq`` infer requests (:class:`InferSlot`); scheduling pools them."""

    def __init__(self, compiled: ov.CompiledModel, nireq: int) -> None:
        self.compiled = compiled
        if nireq <= 0:
            # OpenVINO's optimum, but at least 2 so Python work overlaps with inference
            nireq = max(int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")), 2)
        self.nireq = nireq
        self.inputs = _ports(compiled.inputs)
        self.outputs = _ports(compiled.outputs)
        input_types = {p.name: _PRECISION_TO_OV[p.precision.name] for p in self.inputs}
        self.slots = [InferSlot(compiled.create_infer_request(), input_types, self.outputs) for _ in range(nireq)]


def _describe(shapes: ShapeMap) -> str:
    return " ".join(f"{n}({','.join(map(str, s))})" for n, s in sorted(shapes.items()))
