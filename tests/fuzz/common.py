"""Shared by the fuzz modules: the server's models, Hypothesis settings, byte mutations, the tally."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ..helpers.models import write_affine, write_bool, write_strings
from ..helpers.server import RunningServer, serve_models

# `make test` runs a bounded, derandomized pass; `make fuzz` raises the count.
EXAMPLES = int(os.environ.get("VINOSERVE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

MODELS = ["aff", "i32", "str", "bool"]
NAMES = ["b", "s", "", "y", "b" * 300, "é\u0000"]
# Statuses a client mistake may get; INTERNAL, UNKNOWN and 500 never.
HTTP_ALLOWED = {200, 400, 404, 412, 413, 503}
TALLY: Counter[str] = Counter()  # requests sent, by module and outcome


def start_server(root: Path) -> RunningServer:
    """aff (FP32 [1,10]), i32 (I32 [-1,10]), str (STRING [-1]), bool (BOOL [1,4]); gRPC and REST."""
    paths = {
        "aff": write_affine(root / "aff"),
        "i32": write_affine(root / "i32", shape=[-1, 10], dtype=np.int32),
        "str": write_strings(root / "str"),
        "bool": write_bool(root / "bool"),
    }
    return serve_models(root, paths, "--max_request_mb", "8")


def dims() -> st.SearchStrategy[list[int]]:
    """Shapes: mostly plausible, sometimes negative, zero-element overflowing or past int64 in count."""
    dim = st.one_of(
        st.sampled_from([1, 10, 4, 0, 2]), st.integers(-3, 12), st.sampled_from([-1, 2**31, 2**40, 2**62, 2**63 - 1])
    )
    return st.lists(dim, max_size=6) | st.sampled_from([[1, 10], [1, 4], [2], [0, 2**40, 2**40], [1] * 65])


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` as sent, or with bit flips, a truncation, inserted or replaced bytes, or random bytes."""
    how = draw(st.sampled_from(["as-is", "flip", "truncate", "insert", "random"]))
    buf = bytearray(data)
    if how == "flip" and buf:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate" and buf:
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    elif how == "insert":
        at = draw(st.integers(0, len(buf)))
        buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif how == "random":
        return draw(st.binary(max_size=256))
    return bytes(buf)
