"""One OpenVINO infer request (:class:`InferSlot`): set its inputs, run one inference, read its outputs.

With :mod:`.openvino`, the only modules that import OpenVINO. Which request an inference runs on,
and when, is decided in :mod:`vinoserve.scheduling`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import openvino as ov

from ..errors import StatusCode
from .errortext import translate

if TYPE_CHECKING:
    from .openvino import Port

# How soon, and at most how seldom, a running inference is checked for a failure (see InferSlot._watch).
_WATCH_FIRST_S = 0.005
_WATCH_MAX_S = 0.2
# Inputs smaller than this are copied even when they could be read in place: a copy of a few KiB
# costs less than wrapping the array in a tensor and setting it (about 3 us against 0.3 us here).
_SHARE_FROM_BYTES = 16 * 1024


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
            raise translate(exc, StatusCode.INTERNAL, "Inference failed", "could not start") from exc
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
            raise translate(exc, StatusCode.INTERNAL, "Inference failed", "inference error") from exc

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
            raise translate(exc, StatusCode.INTERNAL, "Inference failed", "inference error") from exc

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


def _read(tensor: ov.Tensor, port: Port) -> np.ndarray:
    """A copy of an output (the infer request reuses its memory); strings as an object array of bytes."""
    if port.precision.name == "STRING":
        return np.array(tensor.bytes_data, dtype=object).reshape(tuple(tensor.shape))
    return np.array(tensor.data, copy=True)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
