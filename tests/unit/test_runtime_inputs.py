"""How an infer request takes its inputs: zero copy for writable arrays, kept alive while in use."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import numpy as np

from vinoserve.runtime.openvino import Runtime

from ..helpers.models import write_affine, write_slow


def test_an_array_read_in_place_lives_until_the_inference_ends(tmp_path: Path) -> None:
    """OpenVINO keeps only the address of a zero-copy input: the slot holds the array until the
    inference is done, even when the caller has gone (a cancelled request), then lets it go."""
    xml = write_slow(tmp_path / "slow", size=2048, repeat=256) / "1" / "model.xml"
    variant = Runtime().read(xml).compile(None, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, 1)
    slot = variant.slots[0]

    async def run() -> tuple[bool, bool, np.ndarray]:
        x = np.arange(4 * 2048, dtype=np.float32).reshape(4, 2048)  # 32 KiB: read in place
        ref = weakref.ref(x)
        done = slot.start({"x": x})
        del x  # the caller lets go while the inference may still run
        gc.collect()
        alive_while_running = ref() is not None  # done cannot complete before this coroutine yields
        await done
        await asyncio.sleep(0)  # done callbacks run
        gc.collect()
        return alive_while_running, ref() is None, slot.result()["y"]

    alive, released, y = asyncio.run(run())
    assert alive and released
    np.testing.assert_array_equal(y, np.roll(np.arange(4 * 2048, dtype=np.float32).reshape(4, 2048), 8, axis=1))


def test_read_only_unaligned_and_small_arrays_are_copied(tmp_path: Path) -> None:
    size = 8192  # 32 KiB a row: large enough to be read in place if it could be
    xml = write_slow(tmp_path / "slow", size=size, repeat=2) / "1" / "model.xml"
    slot = Runtime().read(xml).compile(None, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, 1).slots[0]
    buf = bytearray(4 * size + 1)
    unaligned = np.frombuffer(memoryview(buf)[1:], dtype=np.float32).reshape(1, size)
    read_only = np.frombuffer(bytes(4 * size), dtype=np.float32).reshape(1, size)

    async def run(x: np.ndarray) -> np.ndarray:
        await slot.start({"x": x})
        assert not slot._shared  # nothing held: OpenVINO read a copy
        return slot.result()["y"]

    for x in (unaligned, read_only):
        assert not (x.flags.writeable and x.flags.aligned)
        np.testing.assert_array_equal(asyncio.run(run(x)), np.roll(x, 8, axis=1))
    # a small writable array is copied too (cheaper than wrapping it), and the copy is refreshed
    # each time although the tensor stays bound
    small_xml = write_slow(tmp_path / "small", size=16, repeat=2) / "1" / "model.xml"
    slot = Runtime().read(small_xml).compile(None, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, 1).slots[0]
    for first in (0.0, 100.0):
        x = np.arange(first, first + 16, dtype=np.float32).reshape(1, 16)
        np.testing.assert_array_equal(asyncio.run(run(x)), np.roll(x, 8, axis=1))


def test_cpu_pinning_is_off_unless_the_plugin_config_turns_it_on(tmp_path: Path) -> None:
    """Small inferences run on the event loop's thread; OpenVINO must not pin it around each call."""
    source = Runtime().read(write_slow(tmp_path / "slow", size=16, repeat=2) / "1" / "model.xml")
    default = source.compile(None, "CPU", {}, 1).compiled
    asked = source.compile(None, "CPU", {"ENABLE_CPU_PINNING": "YES"}, 1).compiled
    assert default.get_property("ENABLE_CPU_PINNING") is False
    assert asked.get_property("ENABLE_CPU_PINNING") is True


def test_each_inference_reads_the_input_it_was_given_whichever_tensor_holds_it(tmp_path: Path) -> None:
    """One input bound in turn to the request's own tensor (small or read-only arrays, copied), to a
    caller's array (read in place), and to a new own tensor when the shape changes: the own tensor
    is set only when it is not the one bound, and every inference, started or inline, reads its input."""
    source = Runtime().read(write_affine(tmp_path / "m", shape=[-1, -1]) / "1" / "model.xml")
    slot = source.compile(None, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, 1).slots[0]
    small, large = (1, 4), (2, 8192)  # 16 B copied; 64 KiB read in place
    shapes = [small, large, small, (1, 8), small, large, large, small]
    arrays = [np.full(s, i + 1, dtype=np.float32) for i, s in enumerate(shapes)]
    arrays.append(np.frombuffer(np.full(small, 50, np.float32).tobytes(), np.float32).reshape(small))  # read-only
    arrays.append(np.full(small, 60, dtype=np.float32))

    async def started(x: np.ndarray) -> np.ndarray:
        await slot.start({"b": x})
        return slot.result()["y"]

    for x in arrays:
        np.testing.assert_array_equal(asyncio.run(started(x)), x * 2 + 1)
        np.testing.assert_array_equal(slot.run({"b": x})["y"], x * 2 + 1)
