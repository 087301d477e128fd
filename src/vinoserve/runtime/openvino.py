"""The only module that imports OpenVINO: read, reshape, compile and run models.

OpenVINO exceptions are translated here, once, into :class:`VinoserveError`: the client gets a
short text without paths (:mod:`.errortext`), the log gets OpenVINO's full text. One inference runs
on one infer request (:class:`InferSlot`) on OpenVINO's own threads; which request a client's
inference gets, and when, is decided in :mod:`vinoserve.scheduling`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from ..errors import StatusCode, VinoserveError
from ..types import BY_NAME, Dim, Precision, Shape
from .errortext import client_text

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
# How soon, and at most how seldom, a running inference is checked for a failure (see InferSlot._watch).
_WATCH_FIRST_S = 0.005
_WATCH_MAX_S = 0.2
# Inputs smaller than this are copied even when they could be read in place: a copy of a few KiB
# costs less than wrapping the array in a tensor and setting it (about 3 us against 0.3 us here).
_SHARE_FROM_BYTES = 16 * 1024


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


def _translate(exc: Exception, code: StatusCode, what: str, fallback: str) -> VinoserveError:
    """Log OpenVINO's full text; the error for the client says ``what``: its first clean line."""
    log.warning("%s: %s", what, str(exc).strip())
    return VinoserveError(code, f"{what}: {client_text(exc, fallback)}")


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
            raise _translate(
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
            raise _translate(exc, StatusCode.INTERNAL, "Cannot apply layout", "invalid layout") from exc

    def reshape(self, shapes: ShapeMap) -> None:
        """Reshape the source model itself (used for load-time fixed shapes)."""
        try:
            self.model.reshape({n: _partial(s) for n, s in shapes.items()})
        except Exception as exc:
            raise _translate(
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
                raise _translate(
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
            raise _translate(exc, code, f"Cannot compile for {device}", "compilation failed") from exc
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


class InferSlot:
    """One OpenVINO infer request: start one inference on it, then read its outputs; or run one inline.

    ``start`` runs the inference on OpenVINO's own threads; its completion resolves an asyncio
    future from OpenVINO's callback, so the event loop never blocks on a model. ``run`` infers on
    the calling thread (OpenVINO releases the GIL meanwhile), for models that take less time than
    that hand-off. Nothing here decides when, how or on which request an inference runs: that is
    :mod:`vinoserve.scheduling.pool`.
    """

    def __init__(self, request: ov.InferRequest, input_types: Mapping[str, ov.Type], outputs: list[Port]) -> None:
        self._request = request
        self._input_types = input_types
        self._outputs = outputs
        # per input that cannot be shared (see _set_input): the shape, a tensor this request owns and
        # a numpy view of its memory, reused while the shape stays the same
        self._own: dict[str, tuple[tuple[int, ...], ov.Tensor, np.ndarray]] = {}
        # per input, the own tensor when it is the one set now (set_tensor is not free); never a
        # tensor over a caller's array, which would keep that array (or a shared-memory view) alive
        self._bound: dict[str, ov.Tensor] = {}
        # arrays OpenVINO reads in place during the running inference: OpenVINO holds only their
        # address, so they are kept alive here until it is done (a cancelled caller lets go of them
        # while the inference still runs, and a shared-memory view must keep its mapping)
        self._shared: list[np.ndarray] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fut: asyncio.Future[None] | None = None
        self._started = 0.0
        self._device_seconds: float | None = None

    @property
    def device_seconds(self) -> float | None:
        """Seconds from ``start`` to OpenVINO's completion callback of the last inference (None: none yet)."""
        return self._device_seconds

    def _done(self, _: object) -> None:  # on an OpenVINO thread
        self._device_seconds = time.perf_counter() - self._started
        loop, fut = self._loop, self._fut
        if loop is None or fut is None:
            return
        try:
            loop.call_soon_threadsafe(_resolve, fut)
        except RuntimeError:  # the loop is closed (process exit): nobody is waiting
            pass

    def start(self, inputs: Mapping[str, np.ndarray]) -> asyncio.Future[None]:
        """Set the inputs and start; the future completes when OpenVINO is done with this request."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        shared: list[np.ndarray] = []  # this inference's own list: a late callback clears only its own
        self._shared = shared
        try:
            for name, arr in inputs.items():
                if self._set_input(name, arr):
                    shared.append(arr)
            if self._loop is None:  # one callback for the request's life; it reads the current future
                self._request.set_callback(self._done, None)
            self._loop, self._fut = loop, fut
            self._started = time.perf_counter()
            self._request.start_async()
        except Exception as exc:
            shared.clear()
            raise _translate(exc, StatusCode.INTERNAL, "Inference failed", "could not start") from exc
        # OpenVINO does not call the callback of an inference that fails: watch for that failure
        loop.call_later(_WATCH_FIRST_S, self._watch, fut, _WATCH_FIRST_S)
        fut.add_done_callback(lambda _: shared.clear())
        return fut

    def _watch(self, fut: asyncio.Future[None], delay: float) -> None:
        """Resolve ``fut`` once the inference failed (``result`` then raises its error); look again
        later, less and less often, while it runs."""
        if fut.done():
            return
        try:
            self._request.wait_for(0)
        except Exception:
            _resolve(fut)
            return
        delay = min(delay * 2, _WATCH_MAX_S)
        fut.get_loop().call_later(delay, self._watch, fut, delay)

    def result(self) -> dict[str, np.ndarray]:
        """The outputs (by model name) of the inference that completed; raises if it failed."""
        try:
            self._request.wait()  # returns at once (it has completed); raises if the inference failed
            return self._read_outputs()
        except Exception as exc:
            raise _translate(exc, StatusCode.INTERNAL, "Inference failed", "inference error") from exc

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set the inputs, infer on this thread and return the outputs (by model name).

        Arrays read in place need no keeping: the caller holds them until this returns.
        """
        try:
            for name, arr in inputs.items():
                self._set_input(name, arr)
            self._request.infer()
            return self._read_outputs()
        except Exception as exc:
            raise _translate(exc, StatusCode.INTERNAL, "Inference failed", "inference error") from exc

    def _read_outputs(self) -> dict[str, np.ndarray]:
        get = self._request.get_tensor
        return {p.name: _read(get(p.name), p) for p in self._outputs}

    def _set_input(self, name: str, arr: np.ndarray) -> bool:
        """Set one input; True when OpenVINO reads ``arr`` in place (zero copy)."""
        t = self._input_types[name]
        if t == ov.Type.string:
            self._request.set_tensor(name, ov.Tensor(np.asarray(arr, dtype=object).astype(bytes)))
            self._bound.pop(name, None)
            return False
        if (
            arr.nbytes >= _SHARE_FROM_BYTES
            and arr.flags.writeable
            and arr.flags.c_contiguous
            and arr.flags.aligned
            and t != ov.Type.bf16
        ):
            self._request.set_tensor(name, ov.Tensor(arr, shared_memory=True))  # zero copy
            self._bound.pop(name, None)
            return True
        # small arrays, and read-only wire buffers (np.frombuffer on a message), are copied into a
        # tensor this request keeps per input, reused while the shape stays the same
        own = self._own.get(name)
        if own is None or own[0] != arr.shape:
            tensor = ov.Tensor(t, ov.Shape(list(arr.shape)))
            data = tensor.data.view(np.uint16) if t == ov.Type.bf16 else tensor.data
            own = self._own[name] = (arr.shape, tensor, data.reshape(arr.shape))
        np.copyto(own[2], arr.view(np.uint16) if t == ov.Type.bf16 else arr)
        if self._bound.get(name) is not own[1]:
            self._request.set_tensor(name, own[1])
            self._bound[name] = own[1]
        return False


def _describe(shapes: ShapeMap) -> str:
    return " ".join(f"{n}({','.join(map(str, s))})" for n, s in sorted(shapes.items()))


def _read(tensor: ov.Tensor, port: Port) -> np.ndarray:
    """A copy of an output (the infer request reuses its memory); strings as an object array of bytes."""
    if port.precision.name == "STRING":
        return np.array(tensor.bytes_data, dtype=object).reshape(tuple(tensor.shape))
    return np.array(tensor.data, copy=True)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
