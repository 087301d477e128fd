"""The shared memory registry on its own: key names, spans, truncated objects, leases and unmapping."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.shm import MAX_REGIONS, SHM_DIR, ShmRef, ShmRegistry, object_name


@pytest.fixture
def key() -> Iterator[str]:
    """A 64 KiB shared-memory object, removed after the test."""
    name = f"vinoserve-unit-{uuid.uuid4().hex[:12]}"
    path = Path(SHM_DIR, name)
    path.write_bytes(bytes(range(256)) * 256)
    yield "/" + name
    path.unlink(missing_ok=True)


def _maps(key: str) -> int:
    return Path("/proc/self/maps").read_text().count(f"{SHM_DIR}/{key.strip('/')}")


@pytest.mark.parametrize("bad", ["", "/", "a/b", "/a/../b", "..", ".", "a\0b", "//x/y"])
def test_object_name_refuses_what_is_not_a_plain_name(bad: str) -> None:
    with pytest.raises(VinoserveError) as info:
        object_name(bad)
    assert info.value.code == StatusCode.INVALID_ARGUMENT


def test_object_name_drops_leading_slashes_as_shm_open_does() -> None:
    assert object_name("/in0") == object_name("in0") == object_name("//in0") == "in0"


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"x" * 4096)
    link = Path(SHM_DIR, f"vinoserve-unit-{uuid.uuid4().hex[:12]}")
    link.symlink_to(target)
    try:
        with pytest.raises(VinoserveError, match="Unable to open"):
            ShmRegistry().register("r", link.name, 0, 16)
    finally:
        link.unlink()


def test_only_the_registered_span_is_mapped_and_read(key: str) -> None:
    reg = ShmRegistry()
    reg.register("r", key, 5000, 100)  # an offset inside the second page
    with reg.lease() as lease:
        data = np.frombuffer(lease.input_bytes(ShmRef("r", 4, 96), "x"), np.uint8)
        assert list(data) == [(5000 + 96 + i) % 256 for i in range(4)]
        assert data.flags.writeable  # OpenVINO reads writable memory in place
        with pytest.raises(VinoserveError, match="beyond the 100 bytes"):
            lease.input_bytes(ShmRef("r", 5, 96), "x")
        del data
    reg.close()
    assert _maps(key) == 0


def test_a_truncated_object_is_refused_not_touched(key: str) -> None:
    reg = ShmRegistry()
    reg.register("r", key, 0, 65536)
    os.truncate(Path(SHM_DIR, key.strip("/")), 100)  # reading the lost pages would raise SIGBUS
    with reg.lease() as lease, pytest.raises(VinoserveError, match="no longer has its 65536 bytes"):
        lease.input_bytes(ShmRef("r", 8, 0), "x")
    reg.close()


def test_an_unregistered_region_stays_mapped_while_leased(key: str) -> None:
    reg = ShmRegistry()
    reg.register("r", key, 0, 64)
    lease = reg.lease()
    lease.add_output("y", ShmRef("r", 16, 16))
    reg.unregister("r")
    assert reg.status() == [] and _maps(key) == 1
    lease.write("y", np.arange(4, dtype=np.float32))
    lease.release()
    assert _maps(key) == 0
    raw = Path(SHM_DIR, key.strip("/")).read_bytes()[16:32]
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32), np.arange(4, dtype=np.float32))


def test_registrations_are_bounded(key: str) -> None:
    reg = ShmRegistry()
    for i in range(MAX_REGIONS):
        reg.register(f"r{i}", key, 0, 8)
    with pytest.raises(VinoserveError, match=f"at most {MAX_REGIONS}"):
        reg.register("one-more", key, 0, 8)
    reg.unregister("r0")
    reg.register("one-more", key, 0, 8)
    reg.close()
    assert reg.status() == [] and _maps(key) == 0
