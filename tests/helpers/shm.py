"""Helpers of the system shared memory tests: shared-memory objects made and destroyed per test, and
tritonclient inputs and outputs that point into registered regions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm

WIDE = 4096  # f32 columns of the "wide" model: one row is 16 KiB, an input OpenVINO reads in place


class Regions:
    """Shared-memory objects made for one test, destroyed (unmapped and unlinked) after it."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def make(self, size: int) -> tuple[Any, str]:
        """A new object of ``size`` bytes and its key."""
        key = f"/vinoserve-test-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key.strip("/"), key, size, create_only=True)
        self.handles.append(handle)
        return handle, key

    def destroy(self, handle: Any) -> None:
        """Unmap and unlink one object now."""
        self.handles.remove(handle)
        shm.destroy_shared_memory_region(handle)


def mod(client: Any) -> Any:
    """The tritonclient module (gRPC or HTTP) of ``client``."""
    return tgrpc if isinstance(client, tgrpc.InferenceServerClient) else thttp


def shm_input(
    client: Any, name: str, shape: list[int], region: str, size: int, offset: int = 0, datatype: str = "FP32"
) -> Any:
    """Input ``name`` read from ``size`` bytes at ``offset`` of registered region ``region``."""
    i = mod(client).InferInput(name, shape, datatype)
    i.set_shared_memory(region, size, offset)
    return i


def shm_output(client: Any, name: str, region: str, size: int, offset: int = 0) -> Any:
    """Output ``name`` written to ``size`` bytes at ``offset`` of registered region ``region``."""
    o = mod(client).InferRequestedOutput(name)
    o.set_shared_memory(region, size, offset)
    return o


def plain_input(client: Any, name: str, array: np.ndarray) -> Any:
    """FP32 input ``name`` carrying ``array`` in the message."""
    i = mod(client).InferInput(name, list(array.shape), "FP32")
    i.set_data_from_numpy(array)
    return i


def mapped(key: str) -> bool:
    """Whether this process (the test server runs in it) maps the shared-memory object ``key``."""
    return f"/dev/shm/{key.strip('/')}" in Path("/proc/self/maps").read_text()
