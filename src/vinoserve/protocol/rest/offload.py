"""Large JSON work runs on a small thread pool, not on the event loop.

The event loop serves every gRPC and HTTP client. Parsing a 50 MB JSON body and turning its
values into numpy (or writing a large JSON response) takes seconds of CPU, and on the loop every
other client would wait that long. Work on a body or response above :data:`OFFLOAD_BYTES` moves to
two worker threads; smaller work stays inline, where a thread hop would cost more than it saves.

The workers still share the GIL with the loop. They give it back between the C calls of a
decode (the conversion goes in slices of 64 K values), so other clients are served in between;
the JSON parse itself is one C call (orjson, about 7 ms per MB here) that holds it throughout.
The garbage collector is paused while offloaded work runs: a JSON tree has no cycles, and the
collections that building millions of lists would trigger cost ~0.1 s each, holding the GIL.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

OFFLOAD_BYTES = 256 * 1024
WORKERS = 2  # the decode is mostly GIL-bound: more threads would only queue on it

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_gc_lock = threading.Lock()
_gc_pauses = 0  # offloaded calls running; the collector is back on when the last one ends
_gc_was_enabled = False


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # process-wide: idle threads cost nothing, and every server in the process may use it
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="vinoserve-json")
        return _pool


@contextmanager
def _gc_paused() -> Iterator[None]:
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _run_paused(fn: Callable[..., T], *args: Any) -> T:
    with _gc_paused():
        return fn(*args)


async def run_sized(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``: inline when ``size`` (bytes of the work's input) is small, else on the pool."""
    if size < OFFLOAD_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_executor(), _run_paused, fn, *args)


def outputs_size(outputs: dict[str, np.ndarray]) -> int:
    """The bytes of an inference result, to size the work of writing it as JSON."""
    return sum(int(a.nbytes) for a in outputs.values())
