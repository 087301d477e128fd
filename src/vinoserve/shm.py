"""System shared memory regions (the KServe v2 extension as Triton defines it), wire-neutral.

A co-located client creates a POSIX shared-memory object (``/dev/shm/<key>``), registers a
region of it under a name (key, offset, byte size), and then names that region in an inference
request instead of sending tensor data: inputs are read from it, outputs written into it.

Rules kept here:

* A key is a shared-memory name, not a path: leading slashes are dropped (as ``shm_open`` does),
  and a ``/`` anywhere else, ``..``, ``.``, an empty name or a NUL byte are refused; the object is
  opened without following a symbolic link and must be a regular file.
* Only ``offset .. offset + byte_size`` of the object is mapped (from the page boundary below
  ``offset``), and every tensor is checked to lie inside it before a view is made. Nothing is sized
  from a client's number before that number is checked against the region.
* A region in use by a request stays mapped until the request ends (:class:`Lease`), so
  unregistering while requests run is safe; :meth:`ShmRegistry.close` unmaps everything.

Inputs are handed on as views of the mapping, which OpenVINO reads in place (zero copy) when the
layout allows (contiguous, aligned to the element size). The mapping lives as long as any view of
it: the lease keeps the region registered-or-not until the request ends, and the runtime keeps the
views it reads until the inference ends, even when the request was cancelled meanwhile
(:class:`vinoserve.runtime.infer_slot.InferSlot`). Python's mmap refuses to unmap while a view
exists, and unmaps when the last one goes.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
from dataclasses import dataclass

import numpy as np

from .errors import StatusCode, VinoserveError

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
# Each region keeps a mapping and a file descriptor: a bound keeps registrations from starving the
# server of descriptors for its connections.
MAX_REGIONS = 1024


def _invalid(text: str) -> VinoserveError:
    return VinoserveError(StatusCode.INVALID_ARGUMENT, text)


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """A registered region as its registrant named it."""

    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class ShmRef:
    """What a tensor's ``shared_memory_*`` parameters name: a region, and a span of it."""

    region: str
    byte_size: int
    offset: int = 0


def object_name(key: str) -> str:
    """The file name under /dev/shm of a shared-memory key; anything that is not a plain name is refused."""
    name = key.lstrip("/")
    if not name or "/" in name or name in (".", "..") or ".." in name or "\0" in name:
        raise _invalid(f"shared memory key must be a name such as '/input0', not a path: {key!r}")
    return name


class Region:
    """One mapped region; unmapped when it is unregistered and no request holds it any more."""

    def __init__(self, status: RegionStatus, mapping: mmap.mmap, start: int) -> None:
        self.status = status
        self._mmap = mapping
        self._start = start  # where ``offset`` falls inside the page-aligned mapping
        self.users = 0
        self.removed = False

    def span(self, ref: ShmRef, what: str) -> memoryview:
        """The writable bytes ``ref`` names, once they lie inside the region."""
        size = self.status.byte_size
        if ref.offset < 0 or ref.byte_size < 0 or ref.offset + ref.byte_size > size:
            raise _invalid(
                f"shared memory offset {ref.offset} + byte size {ref.byte_size} of {what} is beyond the "
                f"{size} bytes of region '{self.status.name}'"
            )
        if self._mmap.size() < self.status.offset + size:
            # the client truncated the object after registering it: touching the pages would fault
            raise _invalid(f"shared memory region '{self.status.name}' no longer has its {size} bytes")
        begin = self._start + ref.offset
        return memoryview(self._mmap)[begin : begin + ref.byte_size]

    def close(self) -> bool:
        """Unmap now, unless a view of it is still alive (then it unmaps when the last view goes)."""
        try:
            self._mmap.close()
        except BufferError:
            return False
        return True


class Lease:
    """The regions one request uses, held from decoding until the request ends (``with`` block)."""

    def __init__(self, registry: ShmRegistry) -> None:
        self._registry = registry
        self._held: list[Region] = []
        self.outputs: dict[str, tuple[Region, ShmRef]] = {}

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _region(self, ref: ShmRef) -> Region:
        region = self._registry.get(ref.region)
        if region not in self._held:
            region.users += 1
            self._held.append(region)
        return region

    def input_bytes(self, ref: ShmRef, name: str) -> memoryview:
        """The bytes of input ``name`` (the decoder checks their size against the tensor).

        Writable, because OpenVINO shares only writable memory; it does not write to inputs.
        """
        return self._region(ref).span(ref, f"input {name}")

    def add_output(self, name: str, ref: ShmRef) -> None:
        """Send output ``name`` to ``ref``: the region must exist and hold the span now."""
        region = self._region(ref)
        region.span(ref, f"output {name}").release()
        self.outputs[name] = (region, ref)

    def write(self, name: str, data: np.ndarray | bytes) -> None:
        """Copy output ``name`` (an array, or BYTES already in wire form) into its span, if it fits.

        Touches only the region this lease holds, so it may run on a worker thread.
        """
        region, ref = self.outputs[name]
        size = len(data) if isinstance(data, bytes) else int(data.nbytes)
        if size > ref.byte_size:
            raise _invalid(
                f"shared memory size specified with the request for output '{name}' ({ref.byte_size} bytes) "
                f"should be at least {size} bytes to hold the results"
            )
        span = region.span(ref, f"output {name}")
        try:
            dst = np.frombuffer(span, dtype=np.uint8, count=size)
            if isinstance(data, bytes):
                dst[:] = np.frombuffer(data, dtype=np.uint8)
            else:
                np.copyto(dst.view(data.dtype).reshape(data.shape), data)
            del dst
        finally:
            span.release()

    def release(self) -> None:
        """The request ended: regions unregistered meanwhile are unmapped once nobody uses them."""
        for region in self._held:
            region.users -= 1
            if region.removed and region.users == 0:
                region.close()
        self._held.clear()
        self.outputs.clear()


class ShmRegistry:
    """Registered system shared memory regions by name."""

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the shared-memory object ``key`` as region ``name``."""
        if not name:
            raise _invalid("shared memory region name must not be empty")
        if name in self._regions:
            raise _invalid(f"shared memory region '{name}' already in manager")
        if len(self._regions) >= MAX_REGIONS:
            raise _invalid(f"at most {MAX_REGIONS} shared memory regions can be registered; unregister some first")
        if offset < 0 or byte_size <= 0:
            raise _invalid(f"shared memory region '{name}' needs offset >= 0 and byte_size > 0")
        path = os.path.join(SHM_DIR, object_name(key))
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise _invalid(f"Unable to open shared memory region: '{key}': {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _invalid(f"shared memory key '{key}' is not a shared memory object")
            if offset + byte_size > st.st_size:
                raise _invalid(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} is "
                    f"beyond the {st.st_size} bytes of '{key}'"
                )
            start = offset % mmap.ALLOCATIONGRANULARITY
            mapping = mmap.mmap(fd, start + byte_size, offset=offset - start)
        finally:
            os.close(fd)
        self._regions[name] = Region(RegionStatus(name, key, offset, byte_size), mapping, start)
        log.info("Registered shared memory region %s (key %s, offset %d, %d bytes)", name, key, offset, byte_size)

    def get(self, name: str) -> Region:
        """The region registered as ``name``; unknown names are a client error."""
        region = self._regions.get(name)
        if region is None:
            raise _invalid(f"Unable to find system shared memory region: '{name}'")
        return region

    def status(self, name: str = "") -> list[RegionStatus]:
        """One region, or all of them (in registration order) when ``name`` is empty."""
        if name:
            return [self.get(name).status]
        return [r.status for r in self._regions.values()]

    def unregister(self, name: str = "") -> None:
        """Forget one region (an unknown name is no error, as in Triton), or all when ``name`` is empty."""
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is None:
                continue
            region.removed = True
            if region.users == 0:
                region.close()
            log.info("Unregistered shared memory region %s", n)

    def lease(self) -> Lease:
        """A holder for the regions of one request."""
        return Lease(self)

    def close(self) -> None:
        """Unregister and unmap every region (server shutdown)."""
        self.unregister()
